"""A hostile rootfs cannot make pycontain touch the host.

A rootfs is untrusted data: its /dev, /proc or /etc/hostname may be
symlinks that point out of it.  Every mount target is resolved *inside*
the rootfs (paths.resolve_in_root), so such links lead back into the
rootfs.  These tests plant a decoy file and a decoy directory next to the
rootfs on the host, point the rootfs's links at them, run a container, and
check the decoys and the host's mount table are exactly as they were.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pchelpers import host_mounts, requires_root

pytestmark = requires_root

DECOY_TEXT = "root:x:0:0:decoy, must stay as it is:/root:/bin/sh\n"


class Decoys:
    """A decoy file and a decoy directory on the host, outside the rootfs."""

    def __init__(self, base: Path) -> None:
        self.file = base / "decoy-passwd"
        self.file.write_text(DECOY_TEXT)
        self.dir = base / "decoy-dir"
        self.dir.mkdir()
        (self.dir / "null").write_text(DECOY_TEXT)
        (self.dir / "self").mkdir()
        old = 1_000_000_000  # an mtime no run could produce by accident
        for p in (self.file, self.dir / "null", self.dir):
            os.utime(p, (old, old), follow_symlinks=False)
        self.snapshot = self._state()

    def _state(self) -> list[tuple[str, int, int, str]]:
        out = []
        for p in sorted([self.file, self.dir, *self.dir.rglob("*")]):
            st = p.lstat()
            text = p.read_text() if p.is_file() else ""
            out.append((str(p), st.st_mtime_ns, st.st_mode, text))
        return out

    def unchanged(self) -> bool:
        return self._state() == self.snapshot


@pytest.fixture
def decoys(tmp_path: Path) -> Decoys:
    return Decoys(tmp_path)


def _replace_with_link(path: Path, target: str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def _climb(rootfs: Path, inside: str) -> str:
    """A relative link from ``rootfs/<inside>`` that climbs far above it."""
    depth = len(Path(inside).parts) - 1 + 8
    return "../" * depth


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_dev_symlinked_out_of_the_rootfs(pycontain, rootfs_copy, decoys, how):
    """/dev -> the decoy directory, whose "null" is the decoy file's twin."""
    target = (_climb(rootfs_copy, "dev") + str(decoys.dir).lstrip("/")
              if how == "relative" else str(decoys.dir))
    _replace_with_link(rootfs_copy / "dev", target)
    before = host_mounts()
    out = pycontain.run(rootfs_copy, "/bin/sh", "-c",
                        "echo escaped > /dev/null; ls /dev; cat /dev/null")
    assert host_mounts() == before
    assert decoys.unchanged(), "the decoy outside the rootfs was changed"
    assert "decoy" not in out.stdout


def test_dev_null_symlinked_to_a_host_file(pycontain, rootfs_copy, decoys):
    dev = rootfs_copy / "dev"
    dev.mkdir(exist_ok=True)
    _replace_with_link(dev / "null", str(decoys.file))
    before = host_mounts()
    out = pycontain.run(rootfs_copy, "/bin/sh", "-c", "echo escaped > /dev/null; cat /dev/null")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # the container's /dev/null is the real one
    assert host_mounts() == before
    assert decoys.unchanged()


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_proc_symlinked_out_of_the_rootfs(pycontain, rootfs_copy, decoys, how):
    """proc -> ../../../../<decoy dir>: proc must not be mounted on the host."""
    target = (_climb(rootfs_copy, "proc") + str(decoys.dir).lstrip("/")
              if how == "relative" else str(decoys.dir))
    _replace_with_link(rootfs_copy / "proc", target)
    before = host_mounts()
    out = pycontain.run(rootfs_copy, "/bin/sh", "-c", "cat /proc/self/comm 2>&1; ls /proc | head")
    assert host_mounts() == before
    assert decoys.unchanged()
    # A mount on the decoy would have shown up in our own mount table too.
    assert not any(m.startswith(str(decoys.dir)) for m in host_mounts())
    assert "decoy" not in out.stdout


def test_etc_hostname_symlinked_to_a_host_file(pycontain, rootfs_copy, decoys):
    etc = rootfs_copy / "etc"
    _replace_with_link(etc / "hostname", str(decoys.file))
    _replace_with_link(etc / "hosts", _climb(rootfs_copy, "etc/hosts")
                       + str(decoys.file).lstrip("/"))
    before = host_mounts()
    out = pycontain.run("--hostname", "hostile", rootfs_copy, "/bin/sh", "-c",
                        "echo escaped > /etc/hostname; echo escaped > /etc/hosts; "
                        "cat /etc/hostname")
    assert host_mounts() == before
    assert decoys.unchanged()
    assert "decoy" not in out.stdout


def test_sys_and_volume_target_symlinked_out(pycontain, rootfs_copy, decoys, tmp_path):
    """/sys and a volume's target as links out: both land inside the rootfs."""
    _replace_with_link(rootfs_copy / "sys", str(decoys.dir))
    (rootfs_copy / "data").mkdir(exist_ok=True)
    _replace_with_link(rootfs_copy / "data" / "vol", _climb(rootfs_copy, "data/vol")
                       + str(decoys.dir).lstrip("/"))
    src = tmp_path / "volume"
    src.mkdir()
    before = host_mounts()
    out = pycontain.run("-v", f"{src}:/data/vol", rootfs_copy, "/bin/sh", "-c",
                        "echo escaped > /data/vol/x; ls /sys | head -3")
    assert host_mounts() == before
    assert decoys.unchanged()
    assert "decoy" not in out.stdout
    # The write went to the volume, which the link now names inside the rootfs.
    assert out.returncode != 0 or (src / "x").read_text() == "escaped\n"
