"""Bad input: one line on stderr, docker's exit codes, and nothing left behind."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

from pchelpers import host_mounts, leftovers, one_line_error, pycontain_cmd, requires_root

pytestmark = requires_root


def test_missing_rootfs(pycontain, tmp_path):
    out = pycontain.run(tmp_path / "nope", "/bin/true")
    assert out.returncode == 125
    assert "no such file or directory" in one_line_error(out)


def test_rootfs_that_is_neither_dir_nor_tarball(pycontain, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    out = pycontain.run(f, "/bin/true")
    assert out.returncode == 125
    assert "not a directory or a tarball" in one_line_error(out)


def test_command_not_found(pycontain, rootfs):
    out = pycontain.run(rootfs, "no-such-command")
    assert out.returncode == 127
    assert "not found" in one_line_error(out)
    out = pycontain.run(rootfs, "/no/such/path")
    assert out.returncode == 127
    one_line_error(out)


def test_command_not_executable(pycontain, rootfs_copy):
    (rootfs_copy / "bin" / "notexec").write_text("#!/bin/sh\necho hi\n")
    os.chmod(rootfs_copy / "bin" / "notexec", 0o644)
    out = pycontain.run(rootfs_copy, "/bin/notexec")
    assert out.returncode == 126
    assert "permission denied" in one_line_error(out)
    out = pycontain.run(rootfs_copy, "notexec")
    assert out.returncode == 126


def test_garbage_binary_is_exec_format_error(pycontain, rootfs_copy):
    bad = rootfs_copy / "bin" / "garbage"
    bad.write_bytes(b"\x00\x01not a program at all" * 10)
    bad.chmod(0o755)
    out = pycontain.run(rootfs_copy, "/bin/garbage")
    assert out.returncode == 126
    one_line_error(out)


def test_unknown_option_and_missing_rootfs_argument(pycontain):
    out = pycontain.run("--bogus", "x")
    assert out.returncode == 125
    one_line_error(out)
    out = pycontain.run()
    assert out.returncode == 125
    one_line_error(out)


def test_not_running_as_root(rootfs):
    cmd = pycontain_cmd()
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          *cmd, "run", str(rootfs), "/bin/true"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 125, out.stderr
    assert "root" in one_line_error(out)


def _tar_with(tmp_path, name: str, build) -> str:
    path = tmp_path / name
    with tarfile.open(path, "w") as tar:
        build(tar)
    return str(path)


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"x", **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def test_hostile_tarballs_are_refused_and_write_nothing(pycontain, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    mounts = host_mounts()

    def traversal(tar):
        _add(tar, "../../" + str(victim.relative_to("/")) + "/pwned")

    def symlink_escape(tar):
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = str(victim)
        tar.addfile(link)
        _add(tar, "evil/pwned")

    def hardlink_escape(tar):
        link = tarfile.TarInfo("hard")
        link.type = tarfile.LNKTYPE
        link.linkname = "../../../../../../etc/passwd"
        tar.addfile(link)

    def absolute(tar):
        _add(tar, str(victim / "pwned"))

    for name, build in [("traversal.tar", traversal), ("symlink.tar", symlink_escape),
                        ("hardlink.tar", hardlink_escape), ("absolute.tar", absolute)]:
        out = pycontain.run(_tar_with(tmp_path, name, build), "/bin/true")
        assert out.returncode == 125, (name, out.stderr)
        one_line_error(out)
        assert list(victim.iterdir()) == [], name
    assert leftovers() == []
    assert host_mounts() == mounts


def test_device_node_in_tarball_is_not_created(pycontain, rootfs, tmp_path):
    archive = tmp_path / "dev.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
        dev = tarfile.TarInfo("hostdisk")
        dev.type = tarfile.BLKTYPE
        dev.devmajor, dev.devminor = 8, 0
        tar.addfile(dev)
    out = pycontain.run(archive, "/bin/sh", "-c", "test -e /hostdisk; echo $?")
    assert "hostdisk" in out.stderr  # named in the warning
    assert out.stdout == "1\n"
    assert leftovers() == []
