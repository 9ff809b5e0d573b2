"""Raw kernel facts about cgroup v2 limits, without pycontain.

They prove that the VM gives what the pycontain-level tests rely on: when
one of these fails, the VM is broken, not pycontain.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vmguest import major_minor, spawn_in_cgroup

MiB = 1 << 20
MakeCgroup = Callable[[str], Path]


def events(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def test_memory_max_oom_kills_the_process(make_cgroup: MakeCgroup) -> None:
    cg = make_cgroup("oom")
    (cg / "memory.max").write_text(str(32 * MiB))
    # No swap in the VM, but say so anyway: with swap the allocation
    # could succeed slowly instead of being killed.
    swap = cg / "memory.swap.max"
    if swap.exists():
        swap.write_text("0")
    # b"x" * n writes every byte, so every page is really charged (a zeroed
    # calloc could be backed by the shared zero page and never charged).
    proc = spawn_in_cgroup(cg, [sys.executable, "-c", f"b = b'x' * {64 * MiB}; print('survived')"])
    assert proc.wait(timeout=120) == -signal.SIGKILL, "64 MiB under memory.max=32M was not killed"
    counters = events(cg / "memory.events")
    assert counters["oom_kill"] >= 1, f"memory.events records no OOM kill: {counters}"
    assert counters["max"] >= 1, f"memory.events records no hit of memory.max: {counters}"


def test_io_max_throttles_direct_writes(make_cgroup: MakeCgroup,
                                        scratch_disk: tuple[str, Path]) -> None:
    device, mountpoint = scratch_disk
    rate = 1 * MiB
    size = 2 * MiB
    cg = make_cgroup("io")
    (cg / "io.max").write_text(f"{major_minor(device)} wbps={rate}")
    target = mountpoint / "io-max-raw"
    started = time.monotonic()
    # oflag=direct: buffered writes would be charged to the cgroup but
    # written back later, outside the timing window.
    proc = spawn_in_cgroup(cg, ["dd", "if=/dev/zero", f"of={target}", "bs=64k",
                                f"count={size // (64 * 1024)}", "oflag=direct"])
    assert proc.wait(timeout=120) == 0
    elapsed = time.monotonic() - started
    target.unlink()
    # 2 MiB at 1 MiB/s: about 2 s.  blk-throttle lets a first slice through
    # early, so allow some slack below, none for "not throttled at all".
    assert elapsed >= 1.2, f"2 MiB under wbps=1MiB/s took only {elapsed:.2f} s"
    stat = (cg / "io.stat").read_text()
    found = re.search(rf"^{re.escape(major_minor(device))} .*\bwbytes=(\d+)", stat, re.MULTILINE)
    assert found and int(found.group(1)) >= size, f"io.stat does not show the writes: {stat!r}"
