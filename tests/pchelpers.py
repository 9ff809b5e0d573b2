"""Shared helpers: the pycontain binary, the busybox rootfs, and a runner.

These tests start real containers on the real kernel, as root.  Nothing
here is mocked: a test that says "PID namespace" looks at /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD_ROOTFS = REPO / "build" / "rootfs"


def host_debian_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "amd64")


def pycontain_cmd() -> list[str]:
    """The installed console script, or the module from this checkout."""
    exe = os.environ.get("PYCONTAIN") or str(REPO / ".venv" / "bin" / "pycontain")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "pycontain"]


def busybox_rootfs(arch: str) -> Path:
    """build/rootfs/<arch>, built by rootfs-scripts/busybox.sh if missing."""
    dest = BUILD_ROOTFS / arch
    if not (dest / "bin" / "busybox").exists():
        subprocess.run([str(REPO / "rootfs-scripts" / "busybox.sh"), arch, str(dest)],
                       check=True)
    return dest


requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="starting containers needs root (run the suite with sudo)"
)






class Runner:
    def __init__(self) -> None:
        self.cmd = pycontain_cmd()

    def __call__(self, *args: str | os.PathLike, timeout: float = 60,
                 input: str | None = None, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*self.cmd, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, input=input, check=False, **kw)

    def run(self, *args: str | os.PathLike, **kw) -> subprocess.CompletedProcess:
        return self("run", *args, **kw)

    def popen(self, *args: str | os.PathLike, **kw) -> subprocess.Popen:
        return subprocess.Popen([*self.cmd, *map(str, args)], **kw)




def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert stderr is exactly one 'pycontain: ...' line, and return it."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pycontain: "), lines[0]
    return lines[0]


def leftovers() -> list[str]:
    """Anything of ours still on the host: state dirs, cgroups, unpacked rootfs."""
    found: list[str] = []
    for base in ("/run/pycontain/containers", "/var/lib/pycontain/rootfs"):
        if os.path.isdir(base):
            found += [os.path.join(base, n) for n in os.listdir(base)]
    for v2 in ("/sys/fs/cgroup/unified/pycontain", "/sys/fs/cgroup/pycontain"):
        if os.path.isdir(v2):
            # The parent itself goes with the last container (cgroups.py).
            found.append(v2)
            found += [os.path.join(v2, n) for n in os.listdir(v2)
                      if os.path.isdir(os.path.join(v2, n))]
    return found


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)
