"""The QEMU targets: which ELF headers each one runs, and how to tell the kernel.

One row per ``qemu-<target>`` user-mode emulator.  From the row's ELF
identity (class, byte order, e_machine, and for MIPS one e_flags bit) we
derive everything else the same way QEMU's ``scripts/qemu-binfmt-conf.sh``
does, so that the binfmt_misc entry we register matches exactly the
binaries QEMU's own entry would:

* e_ident: magic, class, data and EI_VERSION must match exactly;
* EI_OSABI is ignored (mask 00) - Linux binaries say SYSV(0) or GNU(3) -
  except on the targets where QEMU's script only allows OSABI 0..3 (mask fc);
* EI_ABIVERSION must be 0 (mask ff); MIPS allows 0 or 1 (fe, the MIPS PLT
  ABI); loongarch64 ignores it (00);
* the padding up to byte 16 must be zero;
* e_type is ET_EXEC(2) or ET_DYN(3): magic 2 with mask fe on the low byte;
* e_machine must match;
* o32 vs n32 MIPS: the EF_MIPS_ABI2 bit (0x20) of e_flags, so the magic
  grows to cover e_flags (offset 36 in a 32-bit header).

The table is data; the module is imported only when a container is foreign
(or by ``inspect``/``binfmt``), never on the native start path.
"""

from __future__ import annotations

from .elf import (
    EF_ARM_ABI_FLOAT_HARD,
    EF_ARM_ABI_FLOAT_SOFT,
    EF_MIPS_ABI2,
    ELF_MAGIC,
    ELFCLASS32,
    ELFCLASS64,
    ELFDATA2LSB,
    ELFDATA2MSB,
    Ident,
    host_machine,
)
from .errors import PycontainError

__all__ = [
    "Target",
    "all_targets",
    "host_machine",
    "host_platform",
    "platform_of",
    "target_by_name",
    "target_for",
]

LE, BE = ELFDATA2LSB, ELFDATA2MSB
C32, C64 = ELFCLASS32, ELFCLASS64


class Target:
    """One QEMU user-mode target and the ELF headers it accepts."""

    __slots__ = (
        "abiversion_mask",
        "data",
        "debian",
        "elf_class",
        "flags_mask",
        "flags_value",
        "machine",
        "name",
        "note",
        "osabi_mask",
        "platform",
        "qemu",
    )

    def __init__(
        self,
        name: str,
        elf_class: int,
        data: int,
        machine: int,
        platform: str,
        debian: str | None,
        *,
        qemu: str | None = None,
        flags_mask: int = 0,
        flags_value: int = 0,
        osabi_mask: int = 0x00,
        abiversion_mask: int = 0xFF,
        note: str = "",
    ) -> None:
        self.name = name
        #: The emulator is ``qemu-<qemu>``; differs from ``name`` for i486.
        self.qemu = qemu or name
        self.elf_class = elf_class
        self.data = data
        self.machine = machine
        self.flags_mask = flags_mask
        self.flags_value = flags_value
        self.osabi_mask = osabi_mask
        self.abiversion_mask = abiversion_mask
        #: OCI/docker platform (GOOS/GOARCH[/variant]); for CPUs that Go
        #: does not know, Debian's name stands in for GOARCH.
        self.platform = platform
        self.debian = debian
        self.note = note

    # -- identity -------------------------------------------------------------

    def identifies(self, ident: Ident) -> bool:
        """Is ``ident`` code for this CPU (class, byte order, machine, ABI bit)?"""
        return (
            ident.elf_class == self.elf_class
            and ident.data == self.data
            and ident.machine == self.machine
            and (ident.flags & self.flags_mask) == self.flags_value
        )

    def magic_mask(self) -> tuple[bytes, bytes]:
        """The binfmt_misc magic and mask (offset 0) for this target.

        ``magic & mask == magic`` always holds, so the kernel's own masking
        of the magic at registration changes nothing and an entry read back
        from ``/proc/sys/fs/binfmt_misc`` compares equal.
        """
        little = self.data == LE
        magic = bytearray(ELF_MAGIC + bytes([self.elf_class, self.data, 1, 0, 0]) + bytes(7))
        mask = bytearray(b"\xff" * 7 + bytes([self.osabi_mask, self.abiversion_mask]) + b"\xff" * 7)
        # e_type: ET_EXEC (2) or ET_DYN (3) -> value 2, low bit ignored.
        magic += b"\x02\x00" if little else b"\x00\x02"
        mask += b"\xfe\xff" if little else b"\xff\xfe"
        magic += self.machine.to_bytes(2, "little" if little else "big")
        mask += b"\xff\xff"
        if self.flags_mask:
            flags_at = 36 if self.elf_class == C32 else 48
            order = "little" if little else "big"
            magic += bytes(flags_at - len(magic)) + self.flags_value.to_bytes(4, order)
            mask += bytes(flags_at - len(mask)) + self.flags_mask.to_bytes(4, order)
            # QEMU's script stops at the last byte that is actually compared.
            while mask and mask[-1] == 0:
                del mask[-1]
                del magic[-1]
        return bytes(magic), bytes(mask)

    def matches_header(self, header: bytes) -> bool:
        """Would the kernel hand ``header`` to this target's binfmt entry?"""
        magic, mask = self.magic_mask()
        if len(header) < len(magic):
            return False
        return all((h & m) == g for h, m, g in zip(header, mask, magic))

    def sample_header(self, e_type: int = 2) -> bytes:
        """A 64-byte ELF header this target accepts (tests, entry matching)."""
        little = self.data == LE
        order = "little" if little else "big"
        h = bytearray(64)
        h[0:4] = ELF_MAGIC
        h[4], h[5], h[6] = self.elf_class, self.data, 1
        h[16:18] = e_type.to_bytes(2, order)
        h[18:20] = self.machine.to_bytes(2, order)
        h[20:24] = (1).to_bytes(4, order)
        flags_at = 36 if self.elf_class == C32 else 48
        h[flags_at : flags_at + 4] = self.flags_value.to_bytes(4, order)
        return bytes(h)

    def as_dict(self) -> dict[str, object]:
        magic, mask = self.magic_mask()
        return {
            "name": self.name,
            "qemu": f"qemu-{self.qemu}",
            "class": 64 if self.elf_class == C64 else 32,
            "endianness": "little" if self.data == LE else "big",
            "machine": self.machine,
            "flags_mask": self.flags_mask,
            "flags_value": self.flags_value,
            "platform": self.platform,
            "debian": self.debian,
            "magic": magic.hex(),
            "mask": mask.hex(),
        }

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.platform!r})"


_FC = 0xFC  # OSABI 0..3 only, as QEMU's script has it for these targets

#: The whole table.  Sources: QEMU's scripts/qemu-binfmt-conf.sh (targets,
#: masks), the gABI e_machine registry, Go's GOARCH list (platforms) and
#: Debian's port names.  Order matters only for i386/i486 (distinct
#: machines anyway): every row's identity is disjoint from every other's.
_TABLE: tuple[Target, ...] = (
    Target("x86_64", C64, LE, 62, "linux/amd64", "amd64"),
    Target("i386", C32, LE, 3, "linux/386", "i386"),
    Target("i486", C32, LE, 6, "linux/386", "i386", qemu="i386",
           note="EM_486, obsolete; QEMU runs it with qemu-i386"),
    Target("aarch64", C64, LE, 183, "linux/arm64/v8", "arm64"),
    Target("aarch64_be", C64, BE, 183, "linux/arm64be", None),
    # armhf vs armel (and v5/v6/v7) is refined by platform_of().
    Target("arm", C32, LE, 40, "linux/arm/v7", "armhf"),
    Target("armeb", C32, BE, 40, "linux/armbe", None),
    Target("riscv64", C64, LE, 243, "linux/riscv64", "riscv64"),
    Target("riscv32", C32, LE, 243, "linux/riscv", None),
    Target("ppc64le", C64, LE, 21, "linux/ppc64le", "ppc64el", osabi_mask=_FC),
    Target("ppc64", C64, BE, 21, "linux/ppc64", "ppc64", osabi_mask=_FC),
    Target("ppc", C32, BE, 20, "linux/ppc", "powerpc", osabi_mask=_FC),
    Target("s390x", C64, BE, 22, "linux/s390x", "s390x", osabi_mask=_FC),
    Target("mips64el", C64, LE, 8, "linux/mips64le", "mips64el", abiversion_mask=0xFE),
    Target("mips64", C64, BE, 8, "linux/mips64", None, abiversion_mask=0xFE),
    Target("mipsel", C32, LE, 8, "linux/mipsle", "mipsel", abiversion_mask=0xFE,
           flags_mask=EF_MIPS_ABI2, flags_value=0, note="o32 ABI"),
    Target("mips", C32, BE, 8, "linux/mips", "mips", abiversion_mask=0xFE,
           flags_mask=EF_MIPS_ABI2, flags_value=0, note="o32 ABI"),
    Target("mipsn32el", C32, LE, 8, "linux/mips64p32le", None, abiversion_mask=0xFE,
           flags_mask=EF_MIPS_ABI2, flags_value=EF_MIPS_ABI2, note="n32 ABI"),
    Target("mipsn32", C32, BE, 8, "linux/mips64p32", None, abiversion_mask=0xFE,
           flags_mask=EF_MIPS_ABI2, flags_value=EF_MIPS_ABI2, note="n32 ABI"),
    Target("loongarch64", C64, LE, 258, "linux/loong64", "loong64",
           osabi_mask=_FC, abiversion_mask=0x00),
    Target("sparc64", C64, BE, 43, "linux/sparc64", "sparc64", osabi_mask=_FC),
    Target("sparc", C32, BE, 2, "linux/sparc", None, osabi_mask=_FC),
    Target("sparc32plus", C32, BE, 18, "linux/sparc", None, osabi_mask=_FC,
           note="EM_SPARC32PLUS: 32-bit code for V8+ CPUs"),
    Target("sh4", C32, LE, 42, "linux/sh4", "sh4", osabi_mask=_FC),
    Target("sh4eb", C32, BE, 42, "linux/sh4eb", None, osabi_mask=_FC),
    Target("m68k", C32, BE, 4, "linux/m68k", "m68k"),
    # EM_ALPHA has no gABI number; Linux/alpha uses the unofficial 0x9026.
    Target("alpha", C64, LE, 0x9026, "linux/alpha", "alpha"),
    Target("hppa", C32, BE, 15, "linux/hppa", "hppa"),
    # QEMU matches the old unofficial EM_MICROBLAZE (0xbaab), not 189.
    Target("microblaze", C32, BE, 0xBAAB, "linux/microblaze", None),
    Target("microblazeel", C32, LE, 0xBAAB, "linux/microblazeel", None),
    Target("or1k", C32, BE, 92, "linux/or1k", None),
    Target("xtensa", C32, LE, 94, "linux/xtensa", None),
    Target("xtensaeb", C32, BE, 94, "linux/xtensaeb", None),
    Target("cris", C32, LE, 76, "linux/cris", None),
    Target("hexagon", C32, LE, 164, "linux/hexagon", None),
)

_BY_NAME: dict[str, Target] = {t.name: t for t in _TABLE}


def all_targets() -> tuple[Target, ...]:
    """Every row of the table, in table order."""
    return _TABLE


def target_for(ident: Ident | None) -> Target | None:
    """The QEMU target that runs ``ident``, or None (unknown CPU or not ELF)."""
    if ident is None:
        return None
    for t in _TABLE:
        if t.identifies(ident):
            return t
    return None


def target_by_name(name: str) -> Target:
    """Look a target up by QEMU name, Debian arch, or OCI platform.

    ``aarch64``, ``arm64`` and ``linux/arm64/v8`` all give the aarch64 row.
    Raises :class:`PycontainError` (125) for anything else.
    """
    t = _BY_NAME.get(name)
    if t is not None:
        return t
    plat = name if name.startswith("linux/") else "linux/" + name
    for t in _TABLE:
        if name == t.debian or plat == t.platform or t.platform.startswith(plat + "/"):
            return t
    raise PycontainError(
        f"unknown architecture {name!r}; known: {', '.join(sorted(_BY_NAME))}"
    )


def platform_of(ident: Ident, arm_arch: str | None = None) -> str | None:
    """The OCI platform of a binary (``linux/arm64/v8``, ``linux/arm/v7`` ...).

    For 32-bit ARM the header only says hard float (armhf: v7 on Debian) or
    soft float (armel: v5); ``arm_arch`` from :func:`elf.read_elf` refines it.
    """
    t = target_for(ident)
    if t is None:
        return None
    if t.name == "arm":
        if arm_arch:
            return f"linux/arm/{arm_arch}"
        if ident.flags & EF_ARM_ABI_FLOAT_SOFT and not ident.flags & EF_ARM_ABI_FLOAT_HARD:
            return "linux/arm/v5"
    return t.platform


def debian_arch_of(ident: Ident) -> str | None:
    """Debian's name for the port a binary belongs to (armhf vs armel ...)."""
    t = target_for(ident)
    if t is None:
        return None
    if t.name == "arm" and ident.flags & EF_ARM_ABI_FLOAT_SOFT:
        return "armel"
    return t.debian


def host_platform() -> str:
    """This machine as an OCI platform, e.g. ``linux/amd64``."""
    t = _BY_NAME.get(host_machine())
    return t.platform if t is not None else "linux/" + host_machine()
