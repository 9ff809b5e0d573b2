#!/usr/bin/env python3
"""Start-up latency of ``pycontain run`` against crun, runc and bwrap.

Every runtime starts ``/bin/true`` from the same busybox rootfs in the same
namespaces (mount, uts, ipc, pid, net, cgroup; no user namespace).  Runs are
INTERLEAVED: each iteration runs every runtime once, in an order that rotates,
so a slow moment on the machine (another build, a page-cache flush) hits all
of them alike instead of one runtime's whole series.

It also reports the resident memory each runtime keeps while its container
runs: it starts ``/bin/sleep 1``, and half-way reads VmRSS of the runtime's
host-side processes (those whose root is still the host's ``/``; the
container's own processes have pivoted away).

Needs root.  Run ``benchmarks/startup.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYCONTAIN = REPO / ".venv" / "bin" / "pycontain"
RUNTIMES = ("pycontain", "crun", "runc", "bwrap")

#: The namespaces every runtime is asked for (OCI names).
NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup")


def host_arch() -> str:
    try:
        out = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "amd64"


def ensure_rootfs(path: Path | None) -> Path:
    """Return the rootfs to use, building the default one if it is missing."""
    if path is not None:
        if not (path / "bin" / "true").exists() and not (path / "bin" / "true").is_symlink():
            sys.exit(f"startup.py: {path}: no bin/true in this rootfs")
        return path.resolve()
    path = REPO / "build" / "rootfs" / host_arch()
    if not (path / "bin" / "busybox").exists():
        print(f"# building {path} with rootfs-scripts/busybox.sh", flush=True)
        subprocess.run(
            [str(REPO / "rootfs-scripts" / "busybox.sh"), host_arch(), str(path)], check=True
        )
    return path


# --- crun on hybrid cgroups ----------------------------------------------------


#: v1 hierarchies fix_hybrid_cgroups_for_crun mounted, for undo_crun_fix.
_MOUNTED: list[Path] = []


def fix_hybrid_cgroups_for_crun() -> list[str]:
    """Let crun run on this hybrid-cgroup host, and say what was changed
    (undo_crun_fix puts it back when the benchmark ends).

    crun refuses hybrid mode ("cgroups in hybrid mode not supported") as long
    as the cgroup2 tree at /sys/fs/cgroup/unified lists any controller.  Here
    it lists hugetlb, the one controller no v1 hierarchy claimed.  Mounting a
    v1 hierarchy for it moves the controller out of cgroup2 (a controller
    lives in one hierarchy at a time), which leaves cgroup2 empty.
    """
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    try:
        controllers = unified.read_text().split()
    except OSError:
        return []  # pure v2 or pure v1: crun is fine with both
    done = []
    for name in controllers:
        target = Path("/sys/fs/cgroup") / name
        target.mkdir(parents=True, exist_ok=True)
        cmd = ["mount", "-t", "cgroup", "-o", name, "none", str(target)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            done.append(f"FAILED: {' '.join(cmd)}: {res.stderr.strip()}")
        else:
            _MOUNTED.append(target)
            done.append(
                f"crun refuses hybrid cgroups while cgroup2 lists '{name}': ran {' '.join(cmd)}"
            )
    return done


def undo_crun_fix() -> list[str]:
    """Unmount what fix_hybrid_cgroups_for_crun mounted: the controller goes
    back to cgroup2 and the host is as the benchmark found it."""
    done = []
    while _MOUNTED:
        target = _MOUNTED.pop()
        res = subprocess.run(["umount", str(target)], capture_output=True, text=True,
                             check=False)
        if res.returncode == 0:
            try:
                target.rmdir()
            except OSError:
                pass
            done.append(f"undone: umount {target}")
        else:
            done.append(f"FAILED: umount {target}: {res.stderr.strip()}")
    return done


# --- OCI bundles -----------------------------------------------------------------


def oci_config(rootfs: Path, args: list[str]) -> dict[str, object]:
    """A minimal OCI runtime config, the same for crun and runc."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {"namespaces": [{"type": ns} for ns in NAMESPACES]},
    }


def make_bundle(parent: Path, name: str, rootfs: Path, args: list[str]) -> Path:
    bundle = parent / name
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(oci_config(rootfs, args), indent=1))
    return bundle


# --- the runtimes ------------------------------------------------------------------


class Runtime:
    """How to start one container with a given runtime."""

    def __init__(self, name: str, build: Callable[[list[str], str], list[str]]) -> None:
        self.name = name
        self._build = build
        self._counter = 0

    def command(self, args: list[str]) -> list[str]:
        self._counter += 1
        # Unique ids: a container id is state on disk (/run/crun, /run/runc),
        # and reusing one races with the previous run's cleanup.
        return self._build(args, f"bench-{self.name}-{os.getpid()}-{self._counter}")


def make_runtimes(
    rootfs: Path, workdir: Path, pycontain: Path, wanted: list[str]
) -> tuple[list[Runtime], dict[str, str], list[str]]:
    """Return (runtimes that work, {name: why skipped}, setup actions taken)."""
    found: list[Runtime] = []
    skipped: dict[str, str] = {}
    setup: list[str] = []
    bundles: dict[tuple[str, ...], Path] = {}

    def bundle_for(args: list[str]) -> Path:
        key = tuple(args)
        if key not in bundles:
            bundles[key] = make_bundle(workdir, f"bundle{len(bundles)}", rootfs, args)
        return bundles[key]

    for name in wanted:
        if name == "pycontain":
            if not os.access(pycontain, os.X_OK):
                skipped[name] = f"{pycontain} is not an executable (use --pycontain PATH)"
                continue
            rt = Runtime(name, lambda a, _id: [str(pycontain), "run", str(rootfs), *a])
        elif name in ("crun", "runc"):
            exe = shutil.which(name)
            if exe is None:
                skipped[name] = f"{name} is not installed"
                continue
            rt = Runtime(
                name,
                lambda a, cid, exe=exe: [exe, "run", "--bundle", str(bundle_for(a)), cid],
            )
        elif name == "bwrap":
            exe = shutil.which("bwrap")
            if exe is None:
                skipped[name] = "bwrap is not installed"
                continue
            # --unshare-all: user (only if needed), ipc, pid, net, uts, cgroup;
            # the mount namespace is always new.  As root no user namespace is made.
            rt = Runtime(
                name,
                lambda a, _id, exe=exe: [
                    exe, "--unshare-all", "--bind", str(rootfs), "/",
                    "--proc", "/proc", "--dev", "/dev", *a,
                ],
            )
        else:
            skipped[name] = "unknown runtime"
            continue
        # One untimed run: it proves the runtime works here and warms caches.
        res = subprocess.run(rt.command(["/bin/true"]), capture_output=True, text=True, check=False)
        if res.returncode != 0 and name == "crun" and "hybrid" in res.stderr:
            setup.extend(fix_hybrid_cgroups_for_crun())
            res = subprocess.run(rt.command(["/bin/true"]), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            why = (res.stderr.strip().splitlines() or ["no output"])[-1]
            skipped[name] = f"a test run failed (exit {res.returncode}): {why}"
            continue
        found.append(rt)
    return found, skipped, setup


# --- measuring -----------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without math
    return ordered[int(rank) - 1]


def time_startups(
    runtimes: list[Runtime], runs: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    times: dict[str, list[float]] = {rt.name: [] for rt in runtimes}
    failed: dict[str, str] = {}
    for i in range(runs):
        k = i % len(runtimes)
        for rt in runtimes[k:] + runtimes[:k]:
            if rt.name in failed:
                continue
            cmd = rt.command(["/bin/true"])
            t0 = time.perf_counter_ns()
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, check=False)
            elapsed = (time.perf_counter_ns() - t0) / 1e6
            if res.returncode != 0:
                err = res.stderr.decode(errors="replace").strip().splitlines()
                failed[rt.name] = f"run {i + 1} failed (exit {res.returncode}): {err[-1] if err else ''}"
                continue
            times[rt.name].append(elapsed)
    return times, failed


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The comm field may hold spaces and parentheses: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def host_side_rss_kib(pid: int) -> int:
    """VmRSS summed over pid and its descendants still rooted at the host's /."""
    kids = _children()
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            if os.readlink(f"/proc/{p}/root") != "/":
                continue  # inside the container: not the runtime's memory
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def measure_rss(runtimes: list[Runtime], samples: int) -> dict[str, int]:
    result: dict[str, int] = {}
    for rt in runtimes:
        values = []
        for _ in range(samples):
            proc = subprocess.Popen(rt.command(["/bin/sleep", "1"]), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            values.append(host_side_rss_kib(proc.pid))
            proc.wait()
        result[rt.name] = int(statistics.median(values))
    return result


# --- output ------------------------------------------------------------------------------


def summarize(times: dict[str, list[float]]) -> dict[str, dict[str, float | int | None]]:
    rows: dict[str, dict[str, float | int | None]] = {}
    for name, values in times.items():
        if values:
            rows[name] = {
                "median_ms": round(statistics.median(values), 2),
                "p90_ms": round(percentile(values, 90), 2),
                "runs": len(values),
            }
    crun = rows.get("crun", {}).get("median_ms")
    for row in rows.values():
        median = row["median_ms"]
        row["ratio_to_crun"] = round(float(median) / float(crun), 2) if crun and median else None
    return rows


def print_table(rows: dict[str, dict[str, float | int | None]], rss: dict[str, int]) -> None:
    print(f"{'runtime':<10} {'median ms':>10} {'p90 ms':>8} {'x crun':>7} {'runs':>5} {'RSS KiB':>8}")
    for name, row in rows.items():
        ratio = row["ratio_to_crun"]
        print(
            f"{name:<10} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f} "
            f"{(f'{ratio:.2f}' if ratio is not None else '-'):>7} {row['runs']:>5} "
            f"{(str(rss[name]) if name in rss else '-'):>8}"
        )



def report_setup(setup: list[str], skipped: dict[str, str], log: object) -> None:
    """What the harness did to the host, and which runtimes it left out and why."""
    for line in setup:
        print(f"# setup: {line}", file=log)
    for name, why in skipped.items():
        print(f"# skipped {name}: {why}", file=log)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; whatever it changed on the host to let crun run
    is put back at the end."""
    try:
        return _main(argv)
    finally:
        for line in undo_crun_fix():
            print(f"# setup: {line}", file=sys.stderr)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time `pycontain run ROOTFS /bin/true` against crun, runc and bwrap "
        "(same busybox rootfs, same namespaces, interleaved runs). Needs root."
    )
    parser.add_argument("-n", "--runs", type=int, default=50, help="timed runs per runtime (default 50)")
    parser.add_argument("--rootfs", type=Path, default=None,
                        help="busybox rootfs (default: <repo>/build/rootfs/<host arch>, built if missing)")
    parser.add_argument("--pycontain", type=Path, default=DEFAULT_PYCONTAIN,
                        help=f"the pycontain executable (default: {DEFAULT_PYCONTAIN})")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"comma-separated subset of {','.join(RUNTIMES)}")
    parser.add_argument("--rss-samples", type=int, default=3,
                        help="runs of /bin/sleep 1 per runtime to measure resident memory (0: skip)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    opts = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("startup.py: needs root (the runtimes create namespaces without a user namespace)",
              file=sys.stderr)
        return 1
    if opts.runs < 1:
        parser.error("--runs must be at least 1")
    rootfs = ensure_rootfs(opts.rootfs)
    wanted = [r.strip() for r in opts.runtimes.split(",") if r.strip()]
    log = sys.stderr if opts.json else sys.stdout

    with tempfile.TemporaryDirectory(prefix="pycontain-bench-") as tmp:
        runtimes, skipped, setup = make_runtimes(rootfs, Path(tmp), opts.pycontain.resolve(), wanted)
        report_setup(setup, skipped, log)
        if not runtimes:
            print("startup.py: no runtime could run", file=sys.stderr)
            return 1
        print(f"# {opts.runs} interleaved runs of /bin/true on {rootfs}: "
              f"{', '.join(rt.name for rt in runtimes)}", file=log, flush=True)
        times, failed = time_startups(runtimes, opts.runs)
        for name, why in failed.items():
            print(f"# {name} stopped: {why}", file=log)
        ok = [rt for rt in runtimes if rt.name not in failed]
        rss = measure_rss(ok, opts.rss_samples) if opts.rss_samples > 0 else {}

    rows = summarize(times)
    if opts.json:
        json.dump({"rootfs": str(rootfs), "runs": opts.runs,
                   "namespaces": list(NAMESPACES),
                   "results": rows, "rss_kib": rss, "skipped": {**skipped, **failed},
                   "setup": setup}, sys.stdout, indent=2)
        print()
    else:
        print_table(rows, rss)
        if "pycontain" in rss:
            print(f"pycontain keeps {rss['pycontain'] / 1024:.1f} MiB resident while a container runs "
                  f"(median of {opts.rss_samples}, host-side processes only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
