"""pycontain's resource limits, end to end, on a real cgroup v2 kernel.

Each test starts a container with ``python3 -m pycontain run`` and a limit
option, and checks the kernel's own verdict: an OOM kill, a failed fork, the
CPU time in cpu.stat, the CPU mask, the disk throughput.

After every test, no cgroup of pycontain's is left (the autouse fixture
below).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from vmguest import PycontainRun, major_minor


@pytest.fixture(autouse=True)
def no_groups_left():
    yield
    parent = Path("/sys/fs/cgroup/pycontain")
    left = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    assert left == [], f"cgroups left behind: {left}"

MiB = 1 << 20


def test_memory_max_kills_with_137(pycontain_run: PycontainRun, busybox_rootfs: Path) -> None:
    # busybox dd allocates its bs buffer and fills it from /dev/zero: 64 MiB
    # really charged against a 32 MiB limit.
    result = pycontain_run("--memory", "32m", str(busybox_rootfs),
                           "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    assert result.returncode == 137, (result.returncode, result.stderr)
    assert "OOM" in result.stderr and "memory limit" in result.stderr, result.stderr


def test_memory_below_the_limit_succeeds(pycontain_run: PycontainRun,
                                         busybox_rootfs: Path) -> None:
    result = pycontain_run("--memory", "64m", str(busybox_rootfs),
                           "dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=1")
    assert result.returncode == 0, (result.returncode, result.stderr)


def test_pids_max_stops_a_fork_bomb(pycontain_run: PycontainRun, busybox_rootfs: Path) -> None:
    # A bounded "fork bomb": 64 sleepers against a limit of 16 tasks.  If the
    # limit does not hold, the VM survives 64 sleeps; nothing runs away.
    script = "i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); done; echo spawned-all"
    result = pycontain_run("--pids-limit", "16", str(busybox_rootfs), "sh", "-c", script,
                           timeout=120)
    assert "spawned-all" not in result.stdout, "64 processes started under --pids-limit 16"
    assert re.search(r"fork|resource temporarily unavailable", result.stderr,
                     re.IGNORECASE), result.stderr


def test_cpu_max_half_a_cpu(pycontain_run: PycontainRun, busybox_rootfs: Path) -> None:
    # Spin for 4 s of wall time under --cpus 0.5, then read the container's
    # own cpu.stat: usage should be about half the wall time, and the
    # scheduler should report throttling.
    script = ("timeout 4 sh -c 'while :; do :; done'; "
              "cat /sys/fs/cgroup/cpu.stat")
    result = pycontain_run("--cpus", "0.5", str(busybox_rootfs), "sh", "-c", script,
                           timeout=180)
    stat = dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)
    assert "usage_usec" in stat, (result.stdout, result.stderr)
    share = int(stat["usage_usec"]) / 4e6
    assert 0.3 <= share <= 0.65, f"a spinning loop under --cpus 0.5 used {share:.2f} CPU"
    assert int(stat.get("nr_throttled", 0)) > 0, stat


def test_cpuset_pins_to_one_cpu(pycontain_run: PycontainRun, busybox_rootfs: Path) -> None:
    result = pycontain_run("--cpuset-cpus", "1", str(busybox_rootfs),
                           "sh", "-c", "grep Cpus_allowed_list /proc/self/status; "
                                       "cat /sys/fs/cgroup/cpuset.cpus.effective")
    assert result.returncode == 0, result.stderr
    # The task's affinity mask, then the cgroup's effective CPUs.
    assert result.stdout.split() == ["Cpus_allowed_list:", "1", "1"], result.stdout


def test_io_max_on_the_scratch_disk(pycontain_run: PycontainRun, busybox_rootfs: Path,
                                    scratch_disk: tuple[str, Path]) -> None:
    # The container writes 2 MiB with O_DIRECT into a directory of the
    # scratch disk (bind-mounted), limited to 1 MiB/s on that disk.  It
    # times dd itself from /proc/uptime, so that pycontain's start-up time
    # (slow in the VM) does not count.
    device, mountpoint = scratch_disk
    workdir = mountpoint / "pycontain-io"
    workdir.mkdir(exist_ok=True)
    script = ("read a _ </proc/uptime; "
              "dd if=/dev/zero of=/scratch/f bs=64k count=32 oflag=direct || exit 1; "
              "read b _ </proc/uptime; echo \"elapsed $a $b\"")
    result = pycontain_run("--device-write-bps", f"{device}:1mb",
                           "-v", f"{workdir}:/scratch", str(busybox_rootfs),
                           "sh", "-c", script, timeout=180)
    assert result.returncode == 0, result.stderr
    times = re.search(r"elapsed ([\d.]+) ([\d.]+)", result.stdout)
    assert times, (result.stdout, result.stderr)
    seconds = float(times.group(2)) - float(times.group(1))
    assert seconds >= 1.2, (
        f"2 MiB under --device-write-bps {device} ({major_minor(device)}):1mb took {seconds:.2f} s")
