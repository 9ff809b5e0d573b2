"""Foreign-architecture rootfs run under QEMU through binfmt_misc, for real."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time

import pytest
from pchelpers import busybox_rootfs, leftovers, one_line_error, read, requires_root

pytestmark = requires_root

BINFMT = "/proc/sys/fs/binfmt_misc"

#: Debian arch -> what `uname -m` prints under its QEMU.
GUESTS = {"arm64": "aarch64", "armhf": "armv7l", "ppc64el": "ppc64le",
          "s390x": "s390x", "mips64el": "mips64"}


def binfmt_snapshot() -> tuple[bool, dict[str, str]]:
    """Is the host's binfmt_misc mounted, and every entry's content."""
    mounted = any(line.split()[4] == BINFMT for line in read("/proc/self/mountinfo").splitlines())
    entries: dict[str, str] = {}
    if mounted:
        for name in sorted(os.listdir(BINFMT)):
            if name != "register":
                entries[name] = read(os.path.join(BINFMT, name))
    return mounted, entries


@pytest.fixture(scope="module")
def arm64():
    return busybox_rootfs("arm64")


@pytest.mark.parametrize("arch", sorted(GUESTS))
def test_foreign_rootfs_prints_its_own_machine(pycontain, arch):
    before = binfmt_snapshot()
    out = pycontain.run(busybox_rootfs(arch), "uname", "-m")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == GUESTS[arch]
    # Sandbox mode (the default on this kernel) never writes the host table.
    assert binfmt_snapshot() == before
    assert leftovers() == []


def test_foreign_shebang_script_runs(pycontain, arm64, tmp_path):
    root = tmp_path / "rootfs"
    shutil.copytree(arm64, root, symlinks=True)
    script = root / "usr" / "local" / "bin" / "hello"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\necho \"hello from $(uname -m)\"\n")
    script.chmod(0o755)
    out = pycontain.run(root, "hello")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello from aarch64\n"


def test_trace_shows_the_binfmt_registration(pycontain, arm64):
    out = pycontain.run("--trace", arm64, "true")
    assert out.returncode == 0, out.stderr
    assert "binfmt_misc/register" in out.stderr
    assert "qemu-aarch64" in out.stderr
    assert "CLONE_NEWUSER" in out.stderr


def test_host_mode_restores_the_host_table(pycontain, arm64):
    before = binfmt_snapshot()
    out = pycontain.run("--emulation", "host", arm64, "uname", "-m")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "aarch64"
    # Entries and the mount itself: if pycontain mounted binfmt_misc for
    # this container, it unmounted it again.
    assert binfmt_snapshot() == before, "the host's binfmt_misc is not as it was"


def test_host_mode_concurrent_containers_share_one_entry(pycontain, arm64):
    before = binfmt_snapshot()[1]
    procs = [pycontain.popen("run", "--emulation", "host", arm64, "sleep", "2")
             for _ in range(2)]
    deadline = time.monotonic() + 15
    seen: list[str] = []
    while time.monotonic() < deadline:
        _, entries = binfmt_snapshot()
        seen = [n for n in entries if n.startswith("pycontain-aarch64")]
        if seen and len(leftovers()) >= 2:
            break
        time.sleep(0.05)
    assert len(seen) == 1, seen  # both containers use the one entry
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    assert binfmt_snapshot()[1] == before


def test_emulation_off_is_a_clear_error(pycontain, arm64):
    out = pycontain.run("--emulation", "off", arm64, "uname")
    assert out.returncode == 126
    line = one_line_error(out)
    assert "linux/arm64" in line and "linux/amd64" in line
    assert leftovers() == []


def test_missing_qemu_is_a_clear_error(pycontain, arm64):
    env = dict(os.environ, PATH="/nonexistent")
    out = pycontain.run(arm64, "uname", env=env)
    assert out.returncode == 125
    line = one_line_error(out)
    assert "no static qemu-aarch64" in line and "install qemu-user-static" in line
    assert leftovers() == []


def _elf_header(machine: int, size: int = 64) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    rest = struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x400000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    return (ident + rest)[:size]


@pytest.mark.parametrize("name,content,code", [
    ("unknown-machine", _elf_header(0x7777), 125),
    ("truncated", _elf_header(183, 30), 126),
    ("not-elf", b"MZ\x90\x00 this is not a program", 126),
])
def test_bad_entrypoints(pycontain, rootfs_copy, name, content, code):
    path = rootfs_copy / "bin" / name
    path.write_bytes(content)
    path.chmod(0o755)
    out = pycontain.run(rootfs_copy, f"/bin/{name}")
    assert out.returncode == code, out.stderr
    one_line_error(out)
    assert leftovers() == []


def test_symlink_loop_and_escape(pycontain, rootfs_copy):
    (rootfs_copy / "bin" / "loop1").symlink_to("loop2")
    (rootfs_copy / "bin" / "loop2").symlink_to("loop1")
    out = pycontain.run(rootfs_copy, "loop1")
    assert out.returncode == 126, out.stderr
    one_line_error(out)
    (rootfs_copy / "bin" / "escape").symlink_to("../../../../../../usr/bin/python3")
    out = pycontain.run(rootfs_copy, "escape")
    assert out.returncode in (126, 127), out.stderr
    one_line_error(out)
    assert leftovers() == []


def test_inspect_reports_platform_and_emulation(pycontain, arm64):
    out = pycontain("inspect", arm64, "ls", "--json")
    assert out.returncode == 0, out.stderr
    import json

    info = json.loads(out.stdout)
    assert info["image_platform"] == "linux/arm64/v8"
    assert info["host_platform"] == "linux/amd64"
    assert info["emulation"]["needed"] is True


def test_qemu_itself_is_not_visible_as_a_process_argv(pycontain, arm64):
    # With P the kernel keeps argv[0]: busybox finds its applet by name.
    out = pycontain.run(arm64, "/bin/sh", "-c", "echo $0")
    assert out.stdout.strip() == "/bin/sh"


def test_native_start_does_not_import_pyelftools(rootfs):
    code = ("import sys; from pycontain.cli import main; rc = main(['run', sys.argv[1], "
            "'/bin/true']); assert 'elftools' not in sys.modules, 'pyelftools imported'; "
            "assert 'pyroute2' not in sys.modules; sys.exit(rc)")
    from pchelpers import REPO

    py = str(REPO / ".venv" / "bin" / "python")
    out = subprocess.run([py, "-c", code, str(rootfs)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
