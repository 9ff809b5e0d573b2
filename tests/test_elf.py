"""ELF header parsing: real binaries, and fuzzed garbage that must never crash it."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from pycontain.arch import all_targets, target_for
from pycontain.elf import ElfInfo, is_native, is_static_elf, read_elf, read_ident
from pycontain.errors import PycontainError

REPO = Path(__file__).resolve().parent.parent
SEED = 20260128

#: Debian architecture -> the QEMU target its busybox must map to.
DEBIAN_TO_TARGET = {
    "arm64": "aarch64", "armhf": "arm", "ppc64el": "ppc64le", "s390x": "s390x",
    "mips64el": "mips64el", "i386": "i386",
}  # fmt: skip


def busybox_for(arch: str) -> Path:
    """A static busybox for Debian ``arch``: build/rootfs/<arch>, else built.

    Prefers rootfs-scripts/busybox.sh (shared with the other tests); falls
    back to ``apt-get download busybox-static:<arch>`` + ``dpkg -x`` into
    build/cache/elf-tests.  Skips the test if neither can produce one.
    """
    dest = REPO / "build" / "rootfs" / arch
    if (dest / "bin" / "busybox").is_file():
        return dest / "bin" / "busybox"
    script = REPO / "rootfs-scripts" / "busybox.sh"
    if script.is_file():
        r = subprocess.run(["bash", str(script), arch, str(dest)], check=False,
                           capture_output=True, text=True)
        if r.returncode == 0 and (dest / "bin" / "busybox").is_file():
            return dest / "bin" / "busybox"
    cache = REPO / "build" / "cache" / "elf-tests" / arch
    extracted = cache / "x" / "bin" / "busybox"
    if extracted.is_file():
        return extracted
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["apt-get", "download", f"busybox-static:{arch}"], cwd=cache,
                       check=False, capture_output=True, text=True)
    debs = sorted(cache.glob("busybox-static_*.deb"))
    if r.returncode != 0 or not debs:
        pytest.skip(f"no busybox-static:{arch} (dpkg --add-architecture {arch}; apt-get update)")
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(cache / "x")], check=True)
    return extracted


@pytest.mark.parametrize("deb_arch", sorted(DEBIAN_TO_TARGET))
def test_real_busybox_maps_to_its_target(deb_arch: str) -> None:
    path = busybox_for(deb_arch)
    head = path.read_bytes()[:64]
    ident = read_ident(head)
    assert ident is not None
    t = target_for(ident)
    assert t is not None and t.name == DEBIAN_TO_TARGET[deb_arch]
    # The magic/mask we would register really matches the distribution's
    # binaries (which carry OSABI 3, GNU/Linux, not 0).
    assert t.matches_header(head)
    info = read_elf(str(path))
    assert info.static and info.interpreter is None
    assert is_static_elf(str(path))
    assert info.ident == ident
    if os.uname().machine == "x86_64":
        assert is_native(ident, "x86_64") == (deb_arch == "i386")


def test_read_elf_dynamic_host_binary() -> None:
    ls = shutil.which("ls")
    assert ls is not None
    info = read_elf(ls)
    assert not info.static
    assert info.interpreter and info.interpreter.startswith("/")
    assert os.path.exists(info.interpreter)
    assert not is_static_elf(ls)


def test_static_qemu_is_static() -> None:
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        pytest.skip("qemu-user-static is not installed")
    assert is_static_elf(qemu)
    assert read_elf(qemu).static


def test_read_ident_rejects_non_elf() -> None:
    assert read_ident(b"") is None
    assert read_ident(b"#!/bin/sh\n") is None
    assert read_ident(b"\x7fELF") is None  # truncated
    assert read_ident(b"\x7fELF\x03\x01\x01" + bytes(57)) is None  # bad class
    assert read_ident(b"\x7fELF\x02\x03\x01" + bytes(57)) is None  # bad byte order
    assert read_ident("not bytes") is None  # type: ignore[arg-type]


def _with_phdrs(h: bytes) -> bytes:
    """A 64-bit LE header that announces 3 program headers right after it."""
    b = bytearray(h)
    b[32:40] = (64).to_bytes(8, "little")  # e_phoff
    b[54:56] = (56).to_bytes(2, "little")  # e_phentsize
    b[56:58] = (3).to_bytes(2, "little")  # e_phnum
    return bytes(b)


def test_read_elf_errors_are_one_line(tmp_path: Path) -> None:
    cases = {
        "text": b"hello world\n",
        "empty": b"",
        "short": b"\x7fELF\x02\x01\x01",
        "header_only": _with_phdrs(all_targets()[0].sample_header()),  # phdrs past EOF
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(PycontainError) as e:
            read_elf(str(p))
        assert e.value.exit_code == 126
        assert "\n" not in e.value.message and str(p) in e.value.message
    with pytest.raises(PycontainError) as e:
        read_elf(str(tmp_path / "missing"))
    assert e.value.exit_code == 126


def _mutations(rng: random.Random, seed_headers: list[bytes], n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:  # pure noise, any length up to 80
            out.append(rng.randbytes(rng.randrange(81)))
        elif kind == 1:  # valid prefix, noise after
            h = rng.choice(seed_headers)
            cut = rng.randrange(len(h) + 1)
            out.append(h[:cut] + rng.randbytes(rng.randrange(64)))
        elif kind == 2:  # valid header, a few bytes flipped
            h = bytearray(rng.choice(seed_headers))
            for _ in range(rng.randrange(1, 6)):
                h[rng.randrange(len(h))] = rng.randrange(256)
            out.append(bytes(h))
        else:  # truncated valid header
            h = rng.choice(seed_headers)
            out.append(h[: rng.randrange(len(h) + 1)])
    return out


def test_fuzz_read_ident_and_target_for_never_raise() -> None:
    rng = random.Random(SEED)
    seeds = [t.sample_header(e) for t in all_targets() for e in (2, 3)]
    found = 0
    for data in _mutations(rng, seeds, 20000):
        ident = read_ident(data)  # must not raise
        t = target_for(ident)
        if t is not None:
            found += 1
            t.matches_header(data)
            is_native(ident, "x86_64")
            is_native(ident, "aarch64")
    # Sanity: the mutations kept plenty of recognisable headers.
    assert found > 1000
    for t in all_targets():  # every truncation of every row
        h = t.sample_header()
        for cut in range(len(h)):
            ident = read_ident(h[:cut])
            assert (ident is None) == (cut < (40 if t.elf_class == 1 else 52))


def test_fuzz_read_elf_raises_only_pycontain_error(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    real = busybox_for("arm64").read_bytes()
    seeds = [real[:4096]] + [t.sample_header() for t in all_targets()]
    p = tmp_path / "f"
    ok = bad = 0
    for i in range(1500):
        if i % 3 == 0:  # a real file cut short anywhere
            data = real[: rng.randrange(len(real))]
        else:
            data = _mutations(rng, seeds, 1)[0]
            if rng.random() < 0.5:  # with a real program header table behind it
                data = data[:64] + real[64:2048]
        p.write_bytes(data)
        try:
            info = read_elf(str(p))
        except PycontainError as e:
            assert e.exit_code == 126 and "\n" not in e.message
            bad += 1
        else:
            assert isinstance(info, ElfInfo)
            ok += 1
        is_static_elf(str(p))  # must not raise either
    assert bad > 0


def test_arm32_el0_probe_asks_the_kernel_and_restores_the_persona() -> None:
    # The probe behind "can this arm64 host run 32-bit ARM": personality(2)
    # through the C shim.  On x86_64 PER_LINUX32 is always accepted.
    from pycontain._shim import lib

    from pycontain import elf

    before = lib.pc_personality(0xFFFFFFFF)
    elf._arm32_cache.clear()
    assert isinstance(elf._arm32_el0(), bool)
    if os.uname().machine == "x86_64":
        assert elf._arm32_el0() is True
    assert lib.pc_personality(0xFFFFFFFF) == before
