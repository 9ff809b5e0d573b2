"""The QEMU target table: identities, platforms, and binfmt magic/mask bytes."""

from __future__ import annotations

import codecs
import glob
import os
from pathlib import Path

import pytest

from pycontain import arch
from pycontain.arch import all_targets, platform_of, target_by_name, target_for
from pycontain.elf import is_native, read_ident
from pycontain.errors import PycontainError

#: Every row NOTES.md section 3 requires, plus the other qemu-binfmt-conf.sh ones.
REQUIRED = {
    "x86_64", "i386", "aarch64", "aarch64_be", "arm", "armeb", "riscv64", "riscv32",
    "ppc64le", "ppc64", "ppc", "s390x", "mips64el", "mips64", "mipsel", "mips",
    "mipsn32el", "mipsn32", "loongarch64", "sparc64", "sparc", "sh4", "m68k", "alpha",
    "hppa", "microblaze", "or1k", "xtensa",
}  # fmt: skip

#: (target, class bits, little endian?, e_machine) straight from NOTES.md section 3.
NOTES_TABLE = [
    ("x86_64", 64, True, 62), ("i386", 32, True, 3), ("aarch64", 64, True, 183),
    ("aarch64_be", 64, False, 183), ("arm", 32, True, 40), ("armeb", 32, False, 40),
    ("riscv64", 64, True, 243), ("riscv32", 32, True, 243), ("ppc64le", 64, True, 21),
    ("ppc64", 64, False, 21), ("ppc", 32, False, 20), ("s390x", 64, False, 22),
    ("mips64el", 64, True, 8), ("mips64", 64, False, 8), ("mipsel", 32, True, 8),
    ("mips", 32, False, 8), ("mipsn32el", 32, True, 8), ("mipsn32", 32, False, 8),
    ("loongarch64", 64, True, 258), ("sparc64", 64, False, 43),
]  # fmt: skip


def header(bits: int, little: bool, machine: int, flags: int = 0, e_type: int = 2,
           osabi: int = 0, abiversion: int = 0) -> bytes:
    order = "little" if little else "big"
    h = bytearray(64)
    h[0:4] = b"\x7fELF"
    h[4] = 2 if bits == 64 else 1
    h[5] = 1 if little else 2
    h[6] = 1
    h[7] = osabi
    h[8] = abiversion
    h[16:18] = e_type.to_bytes(2, order)
    h[18:20] = machine.to_bytes(2, order)
    at = 48 if bits == 64 else 36
    h[at:at + 4] = flags.to_bytes(4, order)
    return bytes(h)


def test_table_has_every_required_row() -> None:
    names = {t.name for t in all_targets()}
    assert REQUIRED <= names
    assert len(names) == len(all_targets()), "duplicate target names"


@pytest.mark.parametrize("name,bits,little,machine", NOTES_TABLE)
def test_notes_row_maps_from_synthesized_header(name: str, bits: int, little: bool,
                                                machine: int) -> None:
    flags = 0x20 if name.startswith("mipsn32") else 0
    for e_type in (2, 3):  # executables and PIEs
        for osabi in (0, 3):  # SYSV and GNU/Linux: both seen in real binaries
            h = header(bits, little, machine, flags, e_type, osabi)
            t = target_for(read_ident(h))
            assert t is not None and t.name == name
            assert t.matches_header(h), f"{name}: binfmt magic rejects its own header"


@pytest.mark.parametrize("t", all_targets(), ids=lambda t: t.name)
def test_every_row_roundtrips_and_is_disjoint(t: arch.Target) -> None:
    magic, mask = t.magic_mask()
    assert len(magic) == len(mask) <= 256
    assert bytes(a & b for a, b in zip(magic, mask)) == magic, "magic has bits the mask drops"
    for e_type in (2, 3):
        h = t.sample_header(e_type)
        assert target_for(read_ident(h)) is t
        assert t.matches_header(h)
        others = [o.name for o in all_targets() if o is not t and o.matches_header(h)]
        assert others == [], f"{t.name}'s header also matches {others}"
    # Relocatable objects and core files are not programs.
    assert not t.matches_header(t.sample_header(1))
    assert not t.matches_header(t.sample_header(4))


def test_mips_o32_vs_n32_by_e_flags() -> None:
    # Real e_flags carry arch bits too (EF_MIPS_ARCH_32R2 | NOREORDER | PIC | CPIC).
    base = 0x70001007
    for little, o32, n32 in ((True, "mipsel", "mipsn32el"), (False, "mips", "mipsn32")):
        assert target_for(read_ident(header(32, little, 8, base & ~0x20))).name == o32
        assert target_for(read_ident(header(32, little, 8, base | 0x20))).name == n32
        h_o32 = header(32, little, 8, base & ~0x20)
        h_n32 = header(32, little, 8, base | 0x20)
        assert target_by_name(o32).matches_header(h_o32)
        assert not target_by_name(o32).matches_header(h_n32)
        assert target_by_name(n32).matches_header(h_n32)
        assert not target_by_name(n32).matches_header(h_o32)
    # 64-bit MIPS does not look at the bit.
    assert target_for(read_ident(header(64, True, 8, 0x20))).name == "mips64el"


def test_abiversion_and_osabi_rules() -> None:
    aarch64 = target_by_name("aarch64")
    assert aarch64.matches_header(header(64, True, 183, osabi=3))
    assert not aarch64.matches_header(header(64, True, 183, abiversion=1))
    mips = target_by_name("mips64el")
    assert mips.matches_header(header(64, True, 8, abiversion=1))  # MIPS PLT ABI
    assert not mips.matches_header(header(64, True, 8, abiversion=2))
    loong = target_by_name("loongarch64")
    assert loong.matches_header(header(64, True, 258, osabi=3, abiversion=5))
    assert not loong.matches_header(header(64, True, 258, osabi=4))


def test_native_families() -> None:
    i386 = read_ident(header(32, True, 3))
    assert is_native(i386, "x86_64")
    assert is_native(read_ident(header(64, True, 62)), "x86_64")
    assert not is_native(read_ident(header(64, True, 183)), "x86_64")
    assert not is_native(read_ident(header(64, True, 62)), "aarch64")
    assert not is_native(read_ident(header(64, True, 62)), "i386")
    assert is_native(read_ident(header(32, True, 8, 0x20)), "mips64el")  # n32
    assert not is_native(read_ident(header(32, False, 8)), "mips64el")  # other byte order
    assert not is_native(read_ident(header(64, False, 21)), "ppc64le")


def test_platform_and_debian_names() -> None:
    expect = {
        "x86_64": ("linux/amd64", "amd64"), "i386": ("linux/386", "i386"),
        "aarch64": ("linux/arm64/v8", "arm64"), "arm": ("linux/arm/v7", "armhf"),
        "ppc64le": ("linux/ppc64le", "ppc64el"), "s390x": ("linux/s390x", "s390x"),
        "mips64el": ("linux/mips64le", "mips64el"), "mipsel": ("linux/mipsle", "mipsel"),
        "riscv64": ("linux/riscv64", "riscv64"), "loongarch64": ("linux/loong64", "loong64"),
    }  # fmt: skip
    for name, (plat, deb) in expect.items():
        t = target_by_name(name)
        assert (t.platform, t.debian) == (plat, deb)
    hard = read_ident(header(32, True, 40, 0x05000400))
    soft = read_ident(header(32, True, 40, 0x05000200))
    assert platform_of(hard) == "linux/arm/v7" and arch.debian_arch_of(hard) == "armhf"
    assert platform_of(soft) == "linux/arm/v5" and arch.debian_arch_of(soft) == "armel"
    assert platform_of(hard, "v6") == "linux/arm/v6"


def test_target_by_name_aliases() -> None:
    for alias in ("aarch64", "arm64", "linux/arm64", "linux/arm64/v8"):
        assert target_by_name(alias).name == "aarch64"
    assert target_by_name("ppc64el").name == "ppc64le"
    assert target_by_name("amd64").name == "x86_64"
    with pytest.raises(PycontainError) as e:
        target_by_name("vax")
    assert e.value.exit_code == 125 and "\n" not in str(e.value)


def test_host_machine_on_this_machine() -> None:
    uname = os.uname().machine
    if uname != "x86_64":
        pytest.skip(f"facts below are for x86_64 hosts, this one is {uname}")
    assert arch.host_machine() == "x86_64"
    assert arch.host_platform() == "linux/amd64"


CONFS = sorted(glob.glob("/usr/lib/binfmt.d/qemu-*.conf"))
#: Where we knowingly differ from QEMU's script (checked against 7.2):
#: its ppc64le mask ignores the high byte of e_machine; ours compares it.
KNOWN_DIFFERENCES = {"ppc64le": 19}


@pytest.mark.skipif(not CONFS, reason="qemu-user-static's /usr/lib/binfmt.d files are absent")
@pytest.mark.parametrize("conf", CONFS, ids=os.path.basename)
def test_magic_mask_equal_qemu_binfmt_conf(conf: str) -> None:
    """Byte for byte what Debian's qemu-user-static registers (QEMU's script output)."""
    with open(conf) as f:
        fields = f.read().strip().split(":")
    name = fields[1].removeprefix("qemu-")
    magic = codecs.escape_decode(fields[4])[0]
    mask = codecs.escape_decode(fields[5])[0]
    ours_magic, ours_mask = target_by_name(name).magic_mask()
    assert ours_magic == magic
    if name in KNOWN_DIFFERENCES:
        i = KNOWN_DIFFERENCES[name]
        assert ours_mask[:i] + ours_mask[i + 1:] == mask[:i] + mask[i + 1:]
        assert (ours_mask[i], mask[i]) == (0xFF, 0x00)
    else:
        assert ours_mask == mask


# -- pycontain inspect ---------------------------------------------------------


def _rootfs(arch_name: str) -> str:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "build" / "rootfs" / arch_name
    if not (root / "bin" / "busybox").is_file():
        pytest.skip(f"build/rootfs/{arch_name} is not built (rootfs-scripts/busybox.sh "
                    f"{arch_name} build/rootfs/{arch_name}; test_elf.py builds it)")
    return str(root)


def test_inspect_foreign_rootfs() -> None:
    from pycontain.binfmt import kernel_version
    from pycontain.inspect_image import format_inspect, inspect

    if os.uname().machine != "x86_64":
        pytest.skip("expectations are for an x86_64 host")
    d = inspect(_rootfs("arm64"), ["ls", "-l"])
    assert d["resolved"]["chain"] == ["/bin/ls", "/bin/busybox"]
    assert d["image_platform"] == "linux/arm64/v8" and d["host_platform"] == "linux/amd64"
    assert d["native"] is False
    emu = d["emulation"]
    assert emu["target"] == "aarch64" and emu["binfmt_matches"] is True
    assert emu["mode"] == ("sandbox" if kernel_version() >= (6, 7) else "host")
    assert d["elf"]["static"] is True
    assert d["foreign_targets"] == ["aarch64"]
    text = format_inspect(d)
    assert "/bin/ls -> /bin/busybox" in text and "linux/arm64/v8" in text
    assert inspect(_rootfs("arm64"))["argv"] == ["/bin/sh"]  # default command
    assert inspect(_rootfs("arm64"), mode="host")["emulation"]["mode"] == "host"


def test_inspect_native_and_armhf() -> None:
    from pycontain.inspect_image import inspect

    if os.uname().machine != "x86_64":
        pytest.skip("expectations are for an x86_64 host")
    d = inspect(_rootfs("i386"), ["sh"])
    assert d["native"] is True and d["emulation"] == {"needed": False}
    assert d["image_platform"] == "linux/386" and d["foreign_targets"] == []
    d = inspect(_rootfs("armhf"), ["sh"])
    # .ARM.attributes says v7; the header says hard float.
    assert d["image_platform"] == "linux/arm/v7" and d["debian_arch"] == "armhf"


def test_foreign_targets_of_a_mixed_rootfs(tmp_path: Path) -> None:
    from pycontain.inspect_image import foreign_targets

    if os.uname().machine != "x86_64":
        pytest.skip("expectations are for an x86_64 host")
    root = tmp_path
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/aarch64-linux-gnu").mkdir(parents=True)
    (root / "usr/libexec/helper").mkdir(parents=True)
    os.symlink("usr/bin", root / "bin")  # merged /usr: scanned once
    os.symlink("usr/lib", root / "lib")
    (root / "usr/bin/a").write_bytes(target_by_name("s390x").sample_header())
    (root / "usr/bin/native").write_bytes(target_by_name("i386").sample_header())
    (root / "usr/bin/text").write_bytes(b"#!/bin/sh\n")
    (root / "usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1").write_bytes(
        target_by_name("aarch64").sample_header(3))
    (root / "usr/lib/aarch64-linux-gnu/libc.so.6").write_bytes(  # not a loader: ignored
        target_by_name("riscv64").sample_header(3))
    (root / "usr/libexec/helper/x").write_bytes(target_by_name("mipsn32el").sample_header())
    os.symlink("/usr/bin/a", root / "usr/bin/link-to-a")
    assert foreign_targets(str(root)) == {"s390x", "aarch64", "mipsn32el"}
