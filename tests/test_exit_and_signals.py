"""Exit statuses follow docker; signals reach the command; zombies are reaped."""

from __future__ import annotations

import os
import signal
import time

from pchelpers import leftovers, read, requires_root

pytestmark = requires_root


def test_exit_status_is_passed_through(pycontain, rootfs):
    assert pycontain.run(rootfs, "/bin/sh", "-c", "exit 42").returncode == 42
    assert pycontain.run(rootfs, "/bin/true").returncode == 0
    assert pycontain.run(rootfs, "/bin/false").returncode == 1


def test_killed_by_a_signal_gives_128_plus_signal(pycontain, rootfs):
    out = pycontain.run(rootfs, "/bin/sh", "-c", "kill -9 $$")
    assert out.returncode == 137


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        children = read(f"/proc/{pid}/task/{pid}/children").split()
    except OSError:
        return out
    for c in map(int, children):
        out.append(c)
        out += _descendants(c)
    return out


def _container_running(proc) -> bool:
    """True once some process of the container has exec'd sleep."""
    for pid in _descendants(proc.pid):
        try:
            if read(f"/proc/{pid}/comm").strip() == "sleep":
                return True
        except OSError:
            pass
    return False


def test_sigterm_to_pycontain_reaches_the_command(pycontain, rootfs):
    proc = pycontain.popen("run", rootfs, "sleep", "30")
    assert _wait_for(lambda: _container_running(proc))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143


def test_sigint_and_sigusr1_are_forwarded(pycontain, rootfs):
    script = "trap 'echo got-usr1; exit 7' USR1; while true; do sleep 0.05; done"
    proc = pycontain.popen("run", rootfs, "/bin/sh", "-c", script,
                           stdout=-1, text=True)
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 7
    assert "got-usr1" in out


def test_orphaned_grandchildren_are_reaped(pycontain, rootfs):
    # The subshell exits at once, orphaning `sh -c 'exit 0'`, which the
    # kernel re-parents to PID 1.  If PID 1 did not wait() for it, it would
    # stay a zombie (state Z).
    script = ("(sh -c 'sleep 0.1; exit 0' &); sleep 0.6; "
              "for f in /proc/[0-9]*/stat; do cut -d' ' -f3 $f; done")
    out = pycontain.run(rootfs, "/bin/sh", "-c", script)
    assert out.returncode == 0, out.stderr
    assert "Z" not in out.stdout.split(), out.stdout


def test_if_pycontain_dies_the_container_dies(pycontain, rootfs):
    marker = "pycontain-orphan-check-31337"
    proc = pycontain.popen("run", rootfs, "/bin/sh", "-c", f"sleep 60; echo {marker}")
    assert _wait_for(lambda: _container_running(proc))
    proc.kill()
    proc.wait()

    def gone() -> bool:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if marker in read(f"/proc/{pid}/cmdline"):
                    return False
            except OSError:
                pass
        return True

    assert _wait_for(gone), "the container outlived its pycontain"
    # What the SIGKILL left behind is cleaned by the next run.
    assert pycontain.run(rootfs, "/bin/true").returncode == 0
    assert leftovers() == []


def test_output_is_not_buffered(pycontain, rootfs):
    proc = pycontain.popen("run", rootfs, "/bin/sh", "-c", "echo first; sleep 5; echo second",
                           stdout=-1, text=True)
    start = time.monotonic()
    line = proc.stdout.readline()
    assert line == "first\n"
    assert time.monotonic() - start < 4
    proc.kill()
    proc.wait()
    assert pycontain.run(rootfs, "/bin/true").returncode == 0


def test_stdin_is_dev_null_without_i_and_passed_with_i(pycontain, rootfs):
    out = pycontain.run(rootfs, "cat", input="hello\n")
    assert out.stdout == ""
    out = pycontain.run("-i", rootfs, "cat", input="hello\n")
    assert out.stdout == "hello\n"
