"""After any run, failed or killed, nothing of ours is left on the host."""

from __future__ import annotations

import os
import signal
import time

from pchelpers import host_mounts, leftovers, requires_root

pytestmark = requires_root


def test_100_sequential_runs_leave_nothing(pycontain, rootfs):
    mounts = host_mounts()
    for _ in range(100):
        assert pycontain.run(rootfs, "/bin/true").returncode == 0
    assert leftovers() == []
    assert host_mounts() == mounts


def test_failed_runs_leave_nothing(pycontain, rootfs):
    mounts = host_mounts()
    assert pycontain.run(rootfs, "no-such-command").returncode == 127
    assert pycontain.run("-v", "/nonexistent-src:/x", rootfs, "/bin/true").returncode == 125
    assert pycontain.run("-w", "relative", rootfs, "/bin/true").returncode == 125
    assert leftovers() == []
    assert host_mounts() == mounts


def test_sigkilled_pycontain_is_cleaned_by_the_next_run_and_by_gc(pycontain, rootfs):
    for cleaner in ("run", "gc"):
        proc = pycontain.popen("run", rootfs, "sleep", "30")
        deadline = time.monotonic() + 10
        while not leftovers() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert leftovers() != []  # the state a crash leaves
        if cleaner == "run":
            assert pycontain.run(rootfs, "/bin/true").returncode == 0
        else:
            out = pycontain("gc")
            assert out.returncode == 0, out.stderr
            assert "removed" in out.stdout
        assert leftovers() == []
