"""Resource limits on *this* host: applied where cgroup v2 has the controller,
refused in one line where it does not (a hybrid host).  The limits themselves
are proven in the test VM (tests/vm, `make test-vm`)."""

from __future__ import annotations

import pytest
from pchelpers import leftovers, one_line_error, requires_root

from pycontain.cgroups import available_controllers, find_v2_mount

pytestmark = requires_root

V2 = find_v2_mount()
HAVE = available_controllers(V2) if V2 else set()


@pytest.mark.parametrize("flag,value,controller", [
    ("--memory", "64m", "memory"), ("--pids-limit", "50", "pids"), ("--cpus", "0.5", "cpu"),
])
def test_limit_is_applied_or_refused_with_the_controller_named(pycontain, rootfs, flag, value,
                                                               controller):
    out = pycontain.run(flag, value, rootfs, "/bin/true")
    if controller in HAVE:
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode == 125
        line = one_line_error(out)
        assert f"'{controller}'" in line and flag in line
    assert leftovers() == []


def test_containers_without_limits_work_and_stats_report_cpu(pycontain, rootfs):
    out = pycontain.run("--stats", rootfs, "/bin/sh", "-c",
                        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    assert out.returncode == 0, out.stderr
    assert "pycontain: stats:" in out.stderr and "CPU" in out.stderr


def test_bad_limit_values_are_one_line_errors(pycontain, rootfs):
    for args in (["--memory", "lots"], ["--cpus", "-1"], ["--pids-limit", "x"],
                 ["--device-write-bps", "/nonexistent:1mb"]):
        out = pycontain.run(*args, rootfs, "/bin/true")
        assert out.returncode == 125, args
        one_line_error(out)
    assert leftovers() == []


def test_the_container_is_born_in_its_own_cgroup(pycontain, rootfs):
    out = pycontain.run("--trace", rootfs, "cat", "/proc/self/cgroup")
    assert out.returncode == 0, out.stderr
    assert "CLONE_INTO_CGROUP" in out.stderr
    # Inside its cgroup namespace, the container's own group is the root.
    assert "0::/" in out.stdout.splitlines()
