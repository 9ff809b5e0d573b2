"""Helpers for the in-VM tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

GUEST_MARK = Path("/run/pycontain-vm")
# run_in_guest.sh copies the tree to a writable place and builds the shim there.
SRC = Path(__file__).resolve().parent.parent.parent


def in_guest() -> bool:
    """True inside the VM: its stage-2 init (vm/guest_init.sh) leaves this behind."""
    return GUEST_MARK.is_dir()


def remove_cgroup(path: Path, timeout: float = 10.0) -> None:
    """Kill what is left in a cgroup and rmdir it (EBUSY until it is empty)."""
    if not path.exists():
        return
    kill = path / "cgroup.kill"
    if kill.exists():
        kill.write_text("1")
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def spawn_in_cgroup(cgroup: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start argv already inside cgroup: a shell moves itself there, then execs it.

    Moving the process after it started would let it allocate outside the
    limit first.  (A shell rather than preexec_fn, which is unsafe once the
    test process has threads.)
    """
    script = 'echo $$ >"$0" && exec "$@"'
    return subprocess.Popen(["/bin/sh", "-c", script, str(cgroup / "cgroup.procs"), *argv])


def major_minor(device: str) -> str:
    st = os.stat(device)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


class PycontainRun:
    """`python3 -m pycontain run ...` from the guest's copy of the tree."""

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        return subprocess.run([sys.executable, "-m", "pycontain", "run", *args],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(SRC), check=False)
