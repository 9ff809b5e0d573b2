"""pycontain bench-emulation: native against emulated arm64, for real.

The containers run on the real kernel and the arm64 one really runs under
QEMU through binfmt_misc; the only timing fact asserted is the one that
cannot be noise: translated code is slower than native code.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from pchelpers import busybox_rootfs, requires_root

from pycontain.bench_emulation import COMPAT_CHECKS, format_markdown, parse_stats

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64",
    reason="compares build/rootfs/amd64 (native) with build/rootfs/arm64 (foreign): "
    "an x86_64 host is needed")


@pytest.fixture(scope="module")
def report(pycontain) -> dict:
    if os.geteuid() != 0:
        pytest.skip("starting containers needs root (run the suite with sudo)")
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static is missing (apt-get install qemu-user-static)")
    native, foreign = busybox_rootfs("amd64"), busybox_rootfs("arm64")
    res = pycontain("bench-emulation", native, foreign, "-n", "1", "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@requires_root
def test_cpu_bound_workload_is_slower_under_emulation(report: dict) -> None:
    cpu = next(w for w in report["workloads"] if w["name"] == "cpu")
    assert cpu["native"]["errors"] == [] and cpu["foreign"]["errors"] == []
    assert cpu["ratio"]["wall_s"] > 1
    assert cpu["ratio"]["cpu_s"] > 1


@requires_root
def test_the_foreign_side_really_was_emulated(report: dict) -> None:
    assert report["native"]["native"] is True
    assert report["foreign"]["native"] is False
    assert report["foreign"]["platform"].startswith("linux/arm64")
    assert report["foreign"]["qemu"].endswith("qemu-aarch64-static")


@requires_root
def test_compatibility_checks_pass_on_busybox(report: dict) -> None:
    checks = report["compatibility"]
    assert [c["name"] for c in checks] == [name for name, _ in COMPAT_CHECKS]
    failed = [(c["name"], c["native"], c["foreign"]) for c in checks if not c["pass"]]
    assert failed == []
    md5 = next(c for c in checks if c["name"] == "md5sum")
    assert md5["foreign"]["stdout"] == "1fd5ffb8bad9078513dece392c26dbb6  -\n"


@requires_root
def test_every_run_is_measured(report: dict) -> None:
    for w in report["workloads"]:
        for side in ("native", "foreign"):
            (run,) = w[side]["runs"]
            assert run["exit_code"] == 0
            assert run["cpu_s"] > 0 or w["name"] == "start"
            assert run["peak_bytes"] > 0
    assert "Does it still work? 11/11" in format_markdown(report)


@requires_root
def test_custom_command_and_failures(pycontain) -> None:
    native, foreign = busybox_rootfs("amd64"), busybox_rootfs("arm64")
    res = pycontain("bench-emulation", native, foreign, "-n", "1", "--json", "--",
                    "/bin/sh", "-c", "exit 3", timeout=300)
    assert res.returncode == 1  # a failed run is a finding, not a crash
    (w,) = json.loads(res.stdout)["workloads"]
    assert w["name"] == "command" and w["command"] == ["/bin/sh", "-c", "exit 3"]
    assert w["native"]["errors"] == ["exit 3: (nothing on stderr)"]
    assert w["ratio"]["wall_s"] is None


def test_usage_errors(pycontain) -> None:
    res = pycontain("bench-emulation", "/nonexistent-a", "/nonexistent-b")
    assert res.returncode == 125
    assert res.stderr.strip() == "pycontain: rootfs /nonexistent-a: no such directory"


def test_plot_without_matplotlib_says_what_to_install(pycontain) -> None:
    try:
        import matplotlib  # noqa: F401
        pytest.skip("matplotlib is installed here, so --plot cannot fail for its absence")
    except ImportError:
        pass
    if os.geteuid() != 0:
        pytest.skip("the root check comes before the matplotlib check")
    native, foreign = busybox_rootfs("amd64"), busybox_rootfs("arm64")
    res = pycontain("bench-emulation", native, foreign, "--plot", "/tmp/x.png")
    assert res.returncode == 125
    assert len(res.stderr.strip().splitlines()) == 1
    assert "install pycontain[plot]" in res.stderr


def test_parse_stats() -> None:
    err = ("something else\n"
           "pycontain: stats: peak memory 12.5 MiB, CPU 0.947 s (user 0.943 s, system 0.004 s)\n")
    assert parse_stats(err) == (0.947, int(12.5 * 1024 * 1024), "something else")
    na = ("pycontain: stats: peak memory n/a (no memory controller in this group), "
          "CPU 0.103 s (user 0.103 s, system 0.000 s)\n")
    assert parse_stats(na) == (0.103, None, "")
