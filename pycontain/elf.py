"""What kind of program is this?  ELF headers, cheaply and then thoroughly.

The runtime must decide, for *every* container, whether the entrypoint can
run on this CPU or needs QEMU through binfmt_misc.  That decision only needs
the first 64 bytes of the file (the ELF header), so :func:`read_ident` and
:func:`is_native` cost a ``struct.unpack`` and nothing else.  They are on
the start path of every container: no pyelftools, no QEMU table here.

:func:`read_elf` is the thorough reader (program headers, ``PT_INTERP``)
for ``pycontain inspect`` and for checking that a QEMU binary is static.
It imports pyelftools lazily.

Layout of the fields we read (System V gABI, "ELF Header")::

    0  e_ident[16]: 7f 'E' 'L' 'F', EI_CLASS, EI_DATA, EI_VERSION,
                    EI_OSABI, EI_ABIVERSION, padding
    16 e_type (2)   18 e_machine (2)   20 e_version (4)
    24 e_entry ...  e_flags sits at 36 (32-bit) or 48 (64-bit)
"""

from __future__ import annotations

import os
import struct
import sys

from .errors import EXIT_CANNOT_INVOKE, PycontainError

ELF_MAGIC = b"\x7fELF"

ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1  # little-endian
ELFDATA2MSB = 2  # big-endian

ET_EXEC = 2
ET_DYN = 3

#: The e_machine values this module names (from the gABI registry).
EM_386 = 3
EM_486 = 6  # obsolete, still in QEMU's binfmt list
EM_MIPS = 8
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_SPARCV9 = 43
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258

#: MIPS e_flags bit for the n32 ABI (EF_MIPS_ABI2): 32-bit ELF on a 64-bit ABI.
EF_MIPS_ABI2 = 0x20
#: ARM EABI float ABI flags (EF_ARM_ABI_FLOAT_HARD / _SOFT).
EF_ARM_ABI_FLOAT_HARD = 0x400
EF_ARM_ABI_FLOAT_SOFT = 0x200

#: Bytes needed to read every field of the largest (64-bit) ELF header.
HEADER_SIZE = 64

_CLASS_NAMES = {ELFCLASS32: "ELF32", ELFCLASS64: "ELF64"}
_DATA_NAMES = {ELFDATA2LSB: "little-endian", ELFDATA2MSB: "big-endian"}
_TYPE_NAMES = {0: "NONE", 1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}


class Ident:
    """The identity fields of an ELF header (no section or segment data)."""

    __slots__ = (
        "abiversion",
        "data",
        "e_type",
        "elf_class",
        "flags",
        "machine",
        "osabi",
        "version",
    )

    def __init__(
        self,
        elf_class: int,
        data: int,
        version: int,
        osabi: int,
        abiversion: int,
        e_type: int,
        machine: int,
        flags: int,
    ) -> None:
        self.elf_class = elf_class
        self.data = data
        self.version = version
        self.osabi = osabi
        self.abiversion = abiversion
        self.e_type = e_type
        self.machine = machine
        self.flags = flags

    @property
    def bits(self) -> int:
        return 64 if self.elf_class == ELFCLASS64 else 32

    @property
    def little_endian(self) -> bool:
        return self.data == ELFDATA2LSB

    def describe(self) -> str:
        """``ELF64 little-endian EXEC machine=183 flags=0x0`` - for messages."""
        return (
            f"{_CLASS_NAMES.get(self.elf_class, f'class {self.elf_class}')} "
            f"{_DATA_NAMES.get(self.data, f'data {self.data}')} "
            f"{_TYPE_NAMES.get(self.e_type, f'type {self.e_type}')} "
            f"machine={self.machine} flags={self.flags:#x}"
        )

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ident):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in self.__slots__))

    def __repr__(self) -> str:
        return f"Ident({self.describe()}, osabi={self.osabi}, abiversion={self.abiversion})"


def read_ident(data: bytes) -> Ident | None:
    """Parse the identity of an ELF header, or None if ``data`` is not one.

    Never raises, whatever the input: a header that is truncated before
    e_flags, or has a class/byte order other than the two defined ones, is
    "not an ELF we can run", which the caller reports.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    data = bytes(data[:HEADER_SIZE])
    if len(data) < 20 or data[:4] != ELF_MAGIC:
        return None
    elf_class, byte_order = data[4], data[5]
    if byte_order == ELFDATA2LSB:
        order = "<"
    elif byte_order == ELFDATA2MSB:
        order = ">"
    else:
        return None
    if elf_class == ELFCLASS32:
        flags_at = 36
    elif elf_class == ELFCLASS64:
        flags_at = 48
    else:
        return None
    if len(data) < flags_at + 4:
        return None
    e_type, machine = struct.unpack_from(order + "HH", data, 16)
    (flags,) = struct.unpack_from(order + "I", data, flags_at)
    return Ident(elf_class, byte_order, data[6], data[7], data[8], e_type, machine, flags)


# -- which headers can this CPU run without QEMU ------------------------------

#: (class, data, machine) triples each host family runs natively.  The key is
#: a normalised host machine name (see :func:`host_machine`), which is also
#: the QEMU target name of that CPU.
_NATIVE: dict[str, tuple[tuple[int, int, int], ...]] = {
    # x86_64 kernels run i386 binaries through IA32 emulation (on in every
    # distribution kernel; ia32_emulation=0 on the command line disables it).
    "x86_64": (
        (ELFCLASS64, ELFDATA2LSB, EM_X86_64),
        (ELFCLASS32, ELFDATA2LSB, EM_386),
        (ELFCLASS32, ELFDATA2LSB, EM_486),
    ),
    "i386": ((ELFCLASS32, ELFDATA2LSB, EM_386), (ELFCLASS32, ELFDATA2LSB, EM_486)),
    # 32-bit ARM on an arm64 host is decided at run time: see _arm32_el0().
    "aarch64": ((ELFCLASS64, ELFDATA2LSB, EM_AARCH64),),
    "aarch64_be": ((ELFCLASS64, ELFDATA2MSB, EM_AARCH64),),
    "arm": ((ELFCLASS32, ELFDATA2LSB, EM_ARM),),
    "armeb": ((ELFCLASS32, ELFDATA2MSB, EM_ARM),),
    "ppc64le": ((ELFCLASS64, ELFDATA2LSB, EM_PPC64),),
    "ppc64": ((ELFCLASS64, ELFDATA2MSB, EM_PPC64), (ELFCLASS32, ELFDATA2MSB, EM_PPC)),
    "ppc": ((ELFCLASS32, ELFDATA2MSB, EM_PPC),),
    "s390x": ((ELFCLASS64, ELFDATA2MSB, EM_S390),),
    "riscv64": ((ELFCLASS64, ELFDATA2LSB, EM_RISCV),),
    "riscv32": ((ELFCLASS32, ELFDATA2LSB, EM_RISCV),),
    # A 64-bit MIPS kernel runs o32, n32 and n64 of its own byte order.
    "mips64el": ((ELFCLASS64, ELFDATA2LSB, EM_MIPS), (ELFCLASS32, ELFDATA2LSB, EM_MIPS)),
    "mips64": ((ELFCLASS64, ELFDATA2MSB, EM_MIPS), (ELFCLASS32, ELFDATA2MSB, EM_MIPS)),
    "mipsel": ((ELFCLASS32, ELFDATA2LSB, EM_MIPS),),
    "mips": ((ELFCLASS32, ELFDATA2MSB, EM_MIPS),),
    "loongarch64": ((ELFCLASS64, ELFDATA2LSB, EM_LOONGARCH),),
    "sparc64": ((ELFCLASS64, ELFDATA2MSB, EM_SPARCV9),),
}

_arm32_cache: list[bool] = []


def _arm32_el0() -> bool:
    """Can this arm64 host run 32-bit ARM code natively?

    Many arm64 CPUs (Apple M1, Neoverse V1/N2 based servers) have no
    AArch32 at EL0.  The kernel tells us: personality(PER_LINUX32) fails
    with EINVAL when 32-bit EL0 is unsupported.  Only ever called on
    aarch64 hosts with a 32-bit ARM entrypoint, so loading the C shim
    here does not touch the usual path.
    """
    if not _arm32_cache:
        from ._shim import lib

        current = lib.pc_personality(0xFFFFFFFF)  # query
        ok = lib.pc_personality(0x0008) >= 0  # PER_LINUX32
        if current >= 0:
            lib.pc_personality(current)
        _arm32_cache.append(ok)
    return _arm32_cache[0]


def is_native(ident: Ident, host_machine: str) -> bool:
    """True if ``host_machine`` runs ``ident`` without an emulator."""
    key = (ident.elf_class, ident.data, ident.machine)
    if key in _NATIVE.get(host_machine, ()):
        return True
    if host_machine == "aarch64" and key == (ELFCLASS32, ELFDATA2LSB, EM_ARM):
        return _arm32_el0()
    return False


_MACHINE_ALIASES = {
    "amd64": "x86_64",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "i86pc": "i386",
    "arm64": "aarch64",
    "armv8b": "aarch64_be",
    "ppc64el": "ppc64le",
    "powerpc": "ppc",
}


def host_machine() -> str:
    """The host CPU as a QEMU target name (``x86_64``, ``aarch64``, ``arm`` ...).

    ``uname -m`` alone is ambiguous: MIPS kernels say ``mips64`` in both byte
    orders and 32-bit ARM says ``armv7l``/``armv6l``; the byte order of this
    very interpreter settles it.
    """
    machine = os.uname().machine
    machine = _MACHINE_ALIASES.get(machine, machine)
    little = sys.byteorder == "little"
    if machine.startswith("arm") and machine not in ("armeb",):
        return "arm" if little else "armeb"
    if machine == "aarch64" and not little:
        return "aarch64_be"
    if machine in ("mips64", "mips"):
        return machine + "el" if little else machine
    if machine == "ppc64" and little:
        return "ppc64le"
    return machine


# -- the thorough reader ------------------------------------------------------


class ElfInfo:
    """Facts about an ELF file that need more than its header."""

    __slots__ = ("arm_arch", "entry", "ident", "interpreter", "path")

    def __init__(
        self,
        path: str,
        ident: Ident,
        entry: int,
        interpreter: str | None,
        arm_arch: str | None = None,
    ) -> None:
        self.path = path
        self.ident = ident
        self.entry = entry
        #: PT_INTERP (the dynamic loader), or None for a static binary.
        self.interpreter = interpreter
        #: For 32-bit ARM, the CPU architecture from .ARM.attributes ("v7" ...).
        self.arm_arch = arm_arch

    @property
    def static(self) -> bool:
        return self.interpreter is None

    @property
    def elf_class(self) -> int:
        return self.ident.elf_class

    @property
    def data(self) -> int:
        return self.ident.data

    @property
    def machine(self) -> int:
        return self.ident.machine

    @property
    def flags(self) -> int:
        return self.ident.flags

    @property
    def osabi(self) -> int:
        return self.ident.osabi

    @property
    def abiversion(self) -> int:
        return self.ident.abiversion

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "class": self.ident.bits,
            "endianness": "little" if self.ident.little_endian else "big",
            "type": _TYPE_NAMES.get(self.ident.e_type, str(self.ident.e_type)),
            "machine": self.ident.machine,
            "flags": self.ident.flags,
            "osabi": self.ident.osabi,
            "abiversion": self.ident.abiversion,
            "entry": self.entry,
            "static": self.static,
            "interpreter": self.interpreter,
            "arm_arch": self.arm_arch,
        }


#: Tag_CPU_arch values of the ARM EABI attributes, as docker variant names.
_ARM_CPU_ARCH = {
    1: "v4",
    2: "v4",  # v4T
    3: "v5",  # v5T
    4: "v5",  # v5TE
    5: "v5",  # v5TEJ
    6: "v6",
    7: "v6",  # v6KZ
    8: "v6",  # v6T2
    9: "v6",  # v6K
    10: "v7",
    11: "v6",  # v6-M
    12: "v6",  # v6S-M
    13: "v7",  # v7E-M
    14: "v8",
}


def read_elf(path: str) -> ElfInfo:
    """Read ``path`` as an ELF file: header, static/dynamic, loader path.

    Raises :class:`PycontainError` (126) with one line for anything that is
    not a complete, well-formed ELF file; pyelftools' own exceptions (and
    the struct/IndexError it sometimes leaks on crafted input) never escape.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
            ident = read_ident(head)
            if ident is None:
                if head[:4] == ELF_MAGIC:
                    raise PycontainError(
                        f"{path}: truncated or corrupt ELF header", EXIT_CANNOT_INVOKE
                    )
                raise PycontainError(f"{path}: not an ELF file", EXIT_CANNOT_INVOKE)
            f.seek(0)
            return _read_with_elftools(path, f, ident)
    except PycontainError:
        raise
    except OSError as e:
        raise PycontainError(
            f"{path}: cannot read: {(e.strerror or str(e)).lower()}", EXIT_CANNOT_INVOKE
        ) from None
    except Exception as e:  # noqa: BLE001 (pyelftools raises many kinds on corrupt input)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PycontainError(
            f"{path}: corrupt ELF file ({reason})", EXIT_CANNOT_INVOKE
        ) from None


def _read_with_elftools(path: str, f: object, ident: Ident) -> ElfInfo:
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(f)
    size = os.fstat(f.fileno()).st_size  # type: ignore[attr-defined]
    phoff = elf.header["e_phoff"]
    phnum = elf.header["e_phnum"]
    phentsize = elf.header["e_phentsize"]
    if phnum and phoff + phnum * phentsize > size:
        raise PycontainError(
            f"{path}: truncated ELF file (program headers end at byte "
            f"{phoff + phnum * phentsize}, file has {size})",
            EXIT_CANNOT_INVOKE,
        )
    interpreter = None
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_INTERP":
            if seg["p_offset"] + seg["p_filesz"] > size:
                raise PycontainError(
                    f"{path}: truncated ELF file (PT_INTERP past end of file)",
                    EXIT_CANNOT_INVOKE,
                )
            interpreter = seg.get_interp_name()
    arm_arch = None
    if ident.machine == EM_ARM and ident.elf_class == ELFCLASS32:
        arm_arch = _arm_arch(elf)
    return ElfInfo(path, ident, elf.header["e_entry"], interpreter, arm_arch)


def _arm_arch(elf: object) -> str | None:
    """Tag_CPU_arch from .ARM.attributes: armel/armhf alone cannot say v5/v6/v7."""
    try:
        sec = elf.get_section_by_name(".ARM.attributes")  # type: ignore[attr-defined]
        if sec is None:
            return None
        for sub in sec.iter_subsections():
            for subsub in sub.iter_subsubsections():
                for attr in subsub.iter_attributes():
                    if attr.tag == "TAG_CPU_ARCH":
                        return _ARM_CPU_ARCH.get(attr.value)
    except Exception:  # noqa: BLE001 (attributes are a nicety; corrupt is not fatal)
        return None
    return None


def is_static_elf(path: str) -> bool:
    """True if ``path`` is an ELF executable without PT_INTERP.

    A cheap check with struct only (no pyelftools): walk the program
    headers looking for PT_INTERP (type 3).  Used on QEMU binaries, which
    binfmt_misc's F flag pins as a file: their shared libraries would not
    be reachable from inside the container.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
            ident = read_ident(head)
            if ident is None or ident.e_type not in (ET_EXEC, ET_DYN):
                return False
            order = "<" if ident.little_endian else ">"
            if ident.elf_class == ELFCLASS64:
                (phoff,) = struct.unpack_from(order + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
                fmt = order + "I"
            else:
                (phoff,) = struct.unpack_from(order + "I", head, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
                fmt = order + "I"
            if phnum == 0 or phentsize < 4 or phnum > 4096:
                return phnum == 0
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            if len(table) < phentsize * phnum:
                return False
            for i in range(phnum):
                (p_type,) = struct.unpack_from(fmt, table, i * phentsize)
                if p_type == 3:  # PT_INTERP
                    return False
            return True
    except (OSError, struct.error, ValueError, OverflowError):
        # e_phoff beyond what seek() accepts, a truncated table, I/O errors:
        # whatever it is, it is not a static binary we would trust.
        return False
