"""rootfs-scripts/busybox.sh builds a real rootfs; the benchmarks start.

The rootfs checks read what the script produced on disk (ELF headers,
symlinks, modes, tar members) and run its busybox for real: natively through
chroot, and the arm64 one through the static QEMU.  The benchmarks are only
asked for ``--help``: timing has no place in a test run.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUSYBOX_SH = REPO / "rootfs-scripts" / "busybox.sh"

#: Debian architecture -> (ELF class, data encoding, e_machine).
ELF_IDS = {"amd64": (2, 1, 62), "arm64": (2, 1, 183)}


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUSYBOX_SH), *args], capture_output=True, text=True, timeout=600, check=False
    )


def elf_ident(path: Path) -> tuple[int, int, int]:
    """(EI_CLASS, EI_DATA, e_machine) from an ELF header."""
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    order = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack(order + "H", head[18:20])
    return head[4], head[5], machine


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """amd64 and arm64 rootfs directories built by the script.

    The .deb cache is the repository's (or $PYCONTAIN_CACHE), so this is
    quick once `make rootfs-foreign` has run; the first run downloads.
    """
    base = tmp_path_factory.mktemp("rootfs")
    out = {}
    for arch in ELF_IDS:
        res = run_script(arch, str(base / arch))
        if res.returncode != 0:
            pytest.fail(f"busybox.sh {arch} failed: {res.stderr.strip()}")
        out[arch] = base / arch
    return out


@pytest.mark.parametrize("arch", sorted(ELF_IDS))
def test_busybox_is_an_elf_for_the_architecture(built: dict[str, Path], arch: str) -> None:
    busybox = built[arch] / "bin" / "busybox"
    assert busybox.is_file() and not busybox.is_symlink()
    assert os.access(busybox, os.X_OK)
    assert elf_ident(busybox) == ELF_IDS[arch]


@pytest.mark.parametrize("arch", sorted(ELF_IDS))
def test_applets_are_absolute_links_to_bin_busybox(built: dict[str, Path], arch: str) -> None:
    root = built[arch]
    assert (root / "bin" / "sh").is_symlink()
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    links = [
        p for d in ("bin", "sbin", "usr/bin", "usr/sbin") for p in (root / d).iterdir()
        if p.is_symlink()
    ]
    assert len(links) > 100, "expected one link per applet"
    assert {os.readlink(p) for p in links} == {"/bin/busybox"}


def test_layout_and_identity_files(built: dict[str, Path]) -> None:
    root = built["arm64"]
    for d in ("proc", "sys", "dev", "etc", "root", "home", "usr/bin", "usr/sbin", "run"):
        assert (root / d).is_dir(), d
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert os.readlink(root / "var" / "run") == "/run"
    passwd = {line.split(":")[0]: line.split(":") for line in
              (root / "etc" / "passwd").read_text().splitlines()}
    assert passwd["root"][2] == "0"
    assert passwd["nobody"][2] == "65534"
    assert passwd["user"][2] == "1000"
    groups = (root / "etc" / "group").read_text()
    assert "root:x:0:" in groups and "user:x:1000:" in groups
    assert (root / "etc" / "hostname").read_text().strip()
    os_release = (root / "etc" / "os-release").read_text()
    assert "pycontain busybox" in os_release and "arm64" in os_release


def test_second_run_is_a_no_op(built: dict[str, Path]) -> None:
    busybox = built["amd64"] / "bin" / "busybox"
    before = busybox.stat().st_mtime_ns
    res = run_script("amd64", str(built["amd64"]))
    assert res.returncode == 0, res.stderr
    assert "up to date" in res.stderr
    assert busybox.stat().st_mtime_ns == before


def test_links_resolve_inside_the_root(built: dict[str, Path]) -> None:
    """/bin/sh -> /bin/busybox only works once / is the rootfs: chroot proves it."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    if os.uname().machine != "x86_64":
        pytest.skip("the native check assumes an x86_64 host (amd64 rootfs)")
    res = subprocess.run(
        ["chroot", str(built["amd64"]), "/bin/sh", "-c", "echo ok; id -un"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["ok", "root"]


def test_arm64_busybox_runs_under_qemu(built: dict[str, Path]) -> None:
    qemu = "/usr/bin/qemu-aarch64-static"
    if not os.access(qemu, os.X_OK):
        pytest.skip(f"{qemu} missing (apt-get install qemu-user-static)")
    res = subprocess.run(
        [qemu, str(built["arm64"] / "bin" / "busybox"), "uname", "-m"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "aarch64"


def test_tar_gz_output(tmp_path: Path) -> None:
    dest = tmp_path / "arm64.tar.gz"
    res = run_script("arm64", str(dest))
    assert res.returncode == 0, res.stderr
    with tarfile.open(dest, "r:gz") as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        busybox = members["bin/busybox"]
        assert busybox.isfile() and busybox.uid == 0 and busybox.gid == 0
        data = tar.extractfile(busybox)
        assert data is not None
        head = data.read(20)
    assert head[:4] == b"\x7fELF" and struct.unpack("<H", head[18:20])[0] == 183
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert members["tmp"].mode & 0o7777 == 0o1777
    assert all(m.uid == 0 for name, m in members.items() if not name.startswith("home/user"))
    # A second run finds the tarball up to date.
    again = run_script("arm64", str(dest))
    assert again.returncode == 0 and "up to date" in again.stderr


def test_tar_zst_output(tmp_path: Path) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed (apt-get install zstd)")
    dest = tmp_path / "amd64.tar.zst"
    res = run_script("amd64", str(dest))
    assert res.returncode == 0, res.stderr
    listing = subprocess.run(
        ["tar", "--zstd", "--numeric-owner", "-tvf", str(dest)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert any(line.endswith("./bin/sh -> /bin/busybox") for line in listing.splitlines())
    assert any(" 0/0 " in line and line.endswith("./bin/busybox") for line in listing.splitlines())


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    dest = tmp_path / "precious"
    dest.mkdir()
    (dest / "keep").write_text("data")
    res = run_script("amd64", str(dest))
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1
    assert "refusing" in res.stderr
    assert (dest / "keep").read_text() == "data"


def test_unknown_architecture_is_one_clear_line(tmp_path: Path) -> None:
    res = run_script("vax", str(tmp_path / "x"))
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "vax" in res.stderr


@pytest.mark.parametrize("script", ["startup.py", "emulation.py"])
def test_benchmark_help(script: str) -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--help"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout and "--pycontain" in res.stdout
