"""benchmarks/lifecycle.py: create + start + wait + delete, for real.

The cycles run real containers on the real kernel; only the shape of the
report is asserted (timings on a shared machine are noise), plus the one
hard fact the benchmark promises: no container of ours is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pchelpers import REPO, pycontain_cmd, requires_root

SCRIPT = REPO / "benchmarks" / "lifecycle.py"
PHASES = ["create", "start", "wait", "delete"]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_help() -> None:
    res = _bench("--help")
    assert res.returncode == 0, res.stderr
    for flag in ("--runs", "--rootfs", "--pycontain", "--runtimes", "--wait", "--json"):
        assert flag in res.stdout


@pytest.fixture(scope="module")
def report(rootfs: Path) -> dict:
    if os.geteuid() != 0:
        pytest.skip("starting containers needs root (run the suite with sudo)")
    exe = pycontain_cmd()
    if len(exe) != 1:
        pytest.skip("no pycontain executable (.venv/bin/pycontain or $PYCONTAIN): "
                    "the benchmark drives a console script, not python -m")
    res = _bench("-n", "2", "--json", "--rootfs", str(rootfs), "--pycontain", exe[0])
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@requires_root
def test_json_shape(report: dict, rootfs: Path) -> None:
    assert report["runs"] == 2
    assert report["rootfs"] == str(rootfs.resolve())
    assert report["command"] == ["/bin/true"]
    assert report["wait"] == "pid"
    assert report["phases"] == PHASES
    assert report["leftovers"] == {}
    assert isinstance(report["skipped"], dict) and isinstance(report["setup"], list)
    assert "pycontain" in report["results"], report["skipped"]
    for name, row in report["results"].items():
        assert name in ("pycontain", "crun", "runc")
        assert row["runs"] == 2
        assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"]
        assert list(row["phases_median_ms"]) == PHASES
        ratio = row["ratio_to_crun"]
        if "crun" in report["results"]:
            assert ratio > 0
        else:
            assert ratio is None
    assert set(report["results"]) | set(report["skipped"]) == {"pycontain", "crun", "runc"}


@requires_root
def test_skipped_runtimes_say_why(report: dict) -> None:
    for name, why in report["skipped"].items():
        assert why.strip(), name
        if shutil.which(name) is None and name != "pycontain":
            assert why == f"{name} is not installed"


@requires_root
def test_nothing_is_left_behind(report: dict) -> None:
    """Ask each runtime itself, not the benchmark, for containers with our ids."""
    prefix = report["id_prefix"] + "-"
    listers = {"pycontain": [*pycontain_cmd(), "list", "-q"]}
    for name in ("crun", "runc"):
        if name in report["results"]:
            listers[name] = [name, "list", "-q"]
    for name, cmd in listers.items():
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        assert [c for c in res.stdout.split() if c.startswith(prefix)] == [], name
    # The containers' processes were reaped too: no zombie or survivor names our bundle.
    ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True, check=True)
    assert "pycontain-lifecycle-" not in ps.stdout


def test_unknown_runtime_is_skipped_with_a_reason() -> None:
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    res = _bench("--runtimes", "nosuchruntime", "-n", "1")
    assert res.returncode == 1
    assert "# skipped nosuchruntime: unknown runtime" in res.stdout
    assert res.stderr.strip() == "lifecycle.py: no runtime could run"
