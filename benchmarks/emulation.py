#!/usr/bin/env python3
"""What emulation costs: a busybox shell loop, native against QEMU user mode.

The same CPU-bound loop (``sh -c 'i=0; while [ $i -lt N ]; ...'``) runs:

- natively, with the host's busybox;
- through ``qemu-aarch64-static`` directly on the host, with the arm64
  busybox, once with QEMU's default CPU and once per ``QEMU_CPU`` tuning;
- through ``pycontain run`` on the arm64 rootfs (binfmt_misc emulation), and on
  the host-arch rootfs as the in-container native baseline, when pycontain
  can run.

Why the tunings: QEMU >= 8 emulates aarch64 pointer authentication with a
real cipher (QARMA) by default, which makes every function return slow;
``QEMU_CPU=cortex-a57`` (no pauth) or ``max,pauth-impdef=on`` (a cheap
implementation-defined algorithm) avoid it.  Debian 12 ships QEMU 7.2,
where the difference is small; the table shows it either way.

Runs are interleaved (each iteration runs every variant once).  Run
``benchmarks/emulation.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Python puts this script's directory first on sys.path: share startup.py's.
from startup import host_arch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYCONTAIN = REPO / ".venv" / "bin" / "pycontain"
QEMU = "/usr/bin/qemu-aarch64-static"
TUNINGS = ("cortex-a57", "max,pauth-impdef=on")


def ensure_rootfs(path: Path | None, arch: str) -> Path:
    if path is None:
        path = REPO / "build" / "rootfs" / arch
    if not (path / "bin" / "busybox").exists():
        print(f"# building {path} with rootfs-scripts/busybox.sh", file=sys.stderr, flush=True)
        subprocess.run([str(REPO / "rootfs-scripts" / "busybox.sh"), arch, str(path)], check=True)
    return path.resolve()


def qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.split("version", 1)[-1].strip() or "unknown"


def works(cmd: list[str], env: dict[str, str] | None = None) -> str | None:
    """None if ``cmd`` runs and exits 0, else a one-line reason."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if res.returncode == 0:
        return None
    err = (res.stderr.strip().splitlines() or ["no output"])[-1]
    return f"exit {res.returncode}: {err}"


class Variant:
    __slots__ = ("cmd", "env", "name")

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env


def build_variants(
    loop: str, arm64: Path, native: Path, pycontain: Path
) -> tuple[list[Variant], dict[str, str]]:
    variants: list[Variant] = []
    skipped: dict[str, str] = {}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("QEMU_")}

    host_busybox = shutil.which("busybox") or str(native / "bin" / "busybox")
    variants.append(Variant("native", [host_busybox, "sh", "-c", loop], base_env))

    bb = str(arm64 / "bin" / "busybox")
    if not os.access(QEMU, os.X_OK):
        skipped["qemu"] = f"{QEMU} is not installed (apt-get install qemu-user-static)"
    else:
        variants.append(Variant("qemu", [QEMU, bb, "sh", "-c", loop], base_env))
        for cpu in TUNINGS:
            env = {**base_env, "QEMU_CPU": cpu}
            why = works([QEMU, bb, "true"], env)
            if why is None:
                variants.append(Variant(f"qemu cpu={cpu}", [QEMU, bb, "sh", "-c", loop], env))
            else:
                skipped[f"qemu cpu={cpu}"] = f"this QEMU does not take it ({why})"

    if not os.access(pycontain, os.X_OK):
        skipped["pycontain"] = f"{pycontain} is not an executable (use --pycontain PATH)"
    else:
        candidates = [
            Variant("pycontain native", [str(pycontain), "run", str(native), "/bin/sh", "-c", loop]),
            Variant("pycontain arm64", [str(pycontain), "run", str(arm64), "/bin/sh", "-c", loop]),
            Variant("pycontain arm64 cpu=cortex-a57",
                    [str(pycontain), "run", "-e", "QEMU_CPU=cortex-a57", str(arm64),
                     "/bin/sh", "-c", loop]),
        ]
        for v in candidates:
            probe = [c if c != loop else "true" for c in v.cmd]
            why = works(probe)
            if why is None:
                variants.append(v)
            else:
                skipped[v.name] = f"a test run failed ({why})"
    return variants, skipped


def run_all(variants: list[Variant], runs: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    failed: dict[str, str] = {}
    for i in range(runs):
        k = i % len(variants)
        for v in variants[k:] + variants[:k]:
            if v.name in failed:
                continue
            t0 = time.perf_counter()
            res = subprocess.run(v.cmd, env=v.env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            elapsed = time.perf_counter() - t0
            if res.returncode != 0:
                err = res.stderr.decode(errors="replace").strip().splitlines()
                failed[v.name] = f"exit {res.returncode}: {err[-1] if err else 'no output'}"
                continue
            times[v.name].append(elapsed)
    return times, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Native vs QEMU-emulated (arm64) vs tuned-QEMU runs of a busybox shell "
        "loop, directly and through pycontain (interleaved runs)."
    )
    parser.add_argument("-n", "--runs", type=int, default=5, help="runs per variant (default 5)")
    parser.add_argument("--iterations", type=int, default=200000,
                        help="shell loop iterations (default 200000)")
    parser.add_argument("--rootfs", type=Path, default=None,
                        help="arm64 busybox rootfs (default <repo>/build/rootfs/arm64, built if "
                        "missing)")
    parser.add_argument("--native-rootfs", type=Path, default=None,
                        help="host-arch busybox rootfs (default <repo>/build/rootfs/<host arch>)")
    parser.add_argument("--pycontain", type=Path, default=DEFAULT_PYCONTAIN,
                        help=f"the pycontain executable (default: {DEFAULT_PYCONTAIN})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    opts = parser.parse_args(argv)
    if opts.runs < 1:
        parser.error("--runs must be at least 1")

    loop = f"i=0; while [ $i -lt {opts.iterations} ]; do i=$((i+1)); done"
    arm64 = ensure_rootfs(opts.rootfs, "arm64")
    native = ensure_rootfs(opts.native_rootfs, host_arch())
    log = sys.stderr if opts.json else sys.stdout
    variants, skipped = build_variants(loop, arm64, native, opts.pycontain.resolve())
    for name, why in skipped.items():
        print(f"# skipped {name}: {why}", file=log)
    print(f"# QEMU {qemu_version()}; {opts.runs} interleaved runs of: sh -c '{loop}'",
          file=log, flush=True)
    times, failed = run_all(variants, opts.runs)
    for name, why in failed.items():
        print(f"# {name} stopped: {why}", file=log)

    rows: dict[str, dict[str, float | int | None]] = {}
    for name, values in times.items():
        if values:
            rows[name] = {"median_s": round(statistics.median(values), 3), "runs": len(values)}
    native_median = rows.get("native", {}).get("median_s")
    for row in rows.values():
        median = row["median_s"]
        row["ratio_to_native"] = (
            round(float(median) / float(native_median), 2) if native_median and median else None
        )

    if opts.json:
        json.dump({"qemu": qemu_version(), "iterations": opts.iterations, "runs": opts.runs,
                   "results": rows, "skipped": {**skipped, **failed}}, sys.stdout, indent=2)
        print()
        return 0
    width = max(len(n) for n in rows) if rows else 10
    print(f"{'variant':<{width}} {'median s':>9} {'x native':>9}")
    for name, row in rows.items():
        ratio = row["ratio_to_native"]
        print(f"{name:<{width}} {row['median_s']:>9.3f} "
              f"{(f'{ratio:.2f}' if ratio is not None else '-'):>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
