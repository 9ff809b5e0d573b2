"""Emulation on a kernel older than 6.7: QEMU through the *host's* binfmt_misc.

The guest runs Debian 12's 6.1 kernel, which has no per-user-namespace
binfmt_misc instance, so ``--emulation auto`` must choose host mode: a
reference-counted ``pycontain-<target>`` entry in the guest's own table,
removed by the last container out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vmguest import SRC, PycontainRun

BINFMT = Path("/proc/sys/fs/binfmt_misc")
HOST_ROOTFS = Path("/src/build/rootfs/arm64")


def table() -> dict[str, str]:
    if not (BINFMT / "register").exists():
        return {}
    return {p.name: p.read_text() for p in BINFMT.iterdir()
            if p.name not in ("register", "status")}


@pytest.fixture(scope="module")
def arm64_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert (HOST_ROOTFS / "bin" / "busybox").exists(), (
        "build/rootfs/arm64 is missing in the working tree: run `make rootfs-foreign`")
    dst = tmp_path_factory.mktemp("arm64") / "rootfs"
    shutil.copytree(HOST_ROOTFS, dst, symlinks=True)
    return dst


def test_this_kernel_predates_sandboxed_binfmt_misc() -> None:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert (major, minor) < (6, 7)


def test_auto_mode_registers_in_the_host_table_and_cleans_up(
        pycontain_run: PycontainRun, arm64_rootfs: Path) -> None:
    before = table()
    result = pycontain_run("--trace", str(arm64_rootfs), "uname", "-m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "aarch64"
    assert "emulation: host" in result.stderr, result.stderr
    assert table() == before, "an entry of ours was left in the binfmt_misc table"


def test_sandbox_mode_is_refused_with_a_reason(pycontain_run: PycontainRun,
                                               arm64_rootfs: Path) -> None:
    result = pycontain_run("--emulation", "sandbox", str(arm64_rootfs), "uname", "-m")
    assert result.returncode == 125
    assert "6.7" in result.stderr and "Traceback" not in result.stderr


def test_concurrent_containers_share_one_entry(arm64_rootfs: Path) -> None:
    before = table()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    procs = [subprocess.Popen([sys.executable, "-m", "pycontain", "run", str(arm64_rootfs),
                               "sleep", "4"], env=env, cwd=str(SRC))
             for _ in range(2)]
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not seen:
        seen = [n for n in table() if n.startswith("pycontain-aarch64")]
        time.sleep(0.1)
    time.sleep(1.5)  # both containers are up by now (each sleeps 4 s)
    seen = [n for n in table() if n.startswith("pycontain-aarch64")]
    assert len(seen) == 1, seen
    assert all(p.poll() is None for p in procs), "a container ended too early to tell"
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    assert table() == before
