#!/usr/bin/env python3
"""A container's whole OCI life: ``create``, ``start``, wait for exit, ``delete``.

This is how youki compares runtimes (one cycle from creation to deletion,
``create -b B ID && start ID && delete ID``), with one difference: we wait
for the command to exit before ``delete``, so every runtime does the same
work and none of it is a ``kill``.  Each runtime drives the same OCI bundle
(``/bin/true`` in the busybox rootfs, the namespaces of benchmarks/startup.py)
from its own command line, exactly as containerd or podman would.

How the exit is awaited matters more than it looks:

* ``--wait pid`` (default): ``create --pid-file`` names the container's
  process; we open a pidfd on it before ``start`` (it is blocked before
  execve then, so it cannot have exited and had its PID reused) and poll
  the pidfd, which becomes readable the moment the process exits.  No
  runtime process runs while we wait.
* ``--wait state``: run ``RUNTIME state ID`` until it says "stopped".  Each
  poll is one more runtime start-up, so this measures the ``state`` command
  as much as the container.

Like containerd-shim and conmon, this process makes itself a child
subreaper: once ``create`` returns, the container's process is re-parented
to us rather than to PID 1.  We reap it as soon as it exits (its status
must be 0, or the cycle failed), and every other orphan the runtimes leave,
so that no zombie outlives the benchmark; PID 1 here reaps only lazily.

``create`` leaves the container holding the stdio it inherited, so the
runtime's stdout and stderr go to a file, never to a pipe we would wait on.

Runs are interleaved (each iteration runs every runtime once, in rotating
order) and every container gets a unique id; a cycle that fails is cleaned
up with ``delete --force``, and at the end each runtime's ``list`` is checked
for anything of ours left behind.  Needs root.  ``--help`` for the options.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# startup.py sits beside this file, and running this file as a script puts
# that directory first on sys.path: the bundle and the crun fix are shared.
from startup import (
    NAMESPACES,
    fix_hybrid_cgroups_for_crun,
    host_arch,
    make_bundle,
    percentile,
    report_setup,
    undo_crun_fix,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYCONTAIN = REPO / ".venv" / "bin" / "pycontain"
RUNTIMES = ("pycontain", "crun", "runc")
PHASES = ("create", "start", "wait", "delete")
COMMAND = ["/bin/true"]


PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> bool:
    """Adopt our descendants' orphans, as a container shim does."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_orphans() -> None:
    """Reap every child that has exited (none of subprocess's: those are waited for)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class CycleError(Exception):
    """One phase of one cycle failed; the message says which and why."""


class Runtime:
    """One OCI runtime binary and the ids of the containers it made for us."""

    def __init__(self, name: str, exe: str, prefix: str) -> None:
        self.name = name
        self.exe = exe
        self.prefix = f"{prefix}-{name}"
        self._counter = 0

    def new_id(self) -> str:
        # Unique ids: a container id is state on disk (/run/crun, /run/runc,
        # /run/pycontain), and reusing one races with the last cycle's cleanup.
        self._counter += 1
        return f"{self.prefix}-{self._counter}"

    def cmd(self, *args: str) -> list[str]:
        return [self.exe, *args]


def default_rootfs() -> Path:
    return REPO / "build" / "rootfs" / host_arch()


def check_rootfs(path: Path) -> Path:
    true = path / "bin" / "true"
    if not (true.exists() or true.is_symlink()):
        hint = " (build it: rootfs-scripts/busybox.sh ARCH DIR)"
        sys.exit(f"lifecycle.py: {path}: no bin/true in this rootfs{hint}")
    return path.resolve()


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else "(nothing on stderr)"


def _run_quiet(cmd: list[str], out: Path) -> int:
    """Run cmd with stdout and stderr in the file out, and return its exit status.

    A file, not a pipe: after ``create`` the container still holds these fds,
    and reading a pipe to EOF would wait for the container to exit.
    """
    with open(out, "wb") as f:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                              check=False).returncode


def _wait_pidfd(pidfd: int, timeout: float) -> None:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if not poller.poll(timeout * 1000):
        raise CycleError(f"the container was still running after {timeout:g} s")


def _reap(pid: int) -> None:
    """Collect the exited container process, and fail the cycle unless it exited 0."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return  # not our child (no subreaper): its parent reaps it, status unknown
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise CycleError(f"the container's process {pid} exited with {code}, not 0")


def _wait_state(rt: Runtime, cid: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(rt.cmd("state", cid), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise CycleError(f"state failed (exit {res.returncode}): "
                             f"{(res.stderr.strip().splitlines() or [''])[-1]}")
        if json.loads(res.stdout).get("status") == "stopped":
            return
        if time.monotonic() > deadline:
            raise CycleError(f"the container was still running after {timeout:g} s")


def _reap_killed(pid: int) -> None:
    """After ``delete --force``: give the killed process a moment to die, then reap it."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], 2.0)
    finally:
        os.close(fd)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def cycle(rt: Runtime, bundle: Path, workdir: Path, wait: str,
          timeout: float) -> dict[str, float]:
    """One create + start + wait + delete; return each phase's milliseconds.

    Whatever fails, the container is gone afterwards (``delete --force``).
    """
    cid = rt.new_id()
    pid_file = workdir / f"{cid}.pid"
    log = workdir / f"{rt.name}.log"
    pid = pidfd = -1
    deleted = False
    t = [time.perf_counter_ns()]
    try:
        rc = _run_quiet(rt.cmd("create", "--bundle", str(bundle), "--pid-file", str(pid_file),
                               cid), log)
        t.append(time.perf_counter_ns())
        if rc != 0:
            raise CycleError(f"create failed (exit {rc}): {_last_line(log)}")
        pid = int(pid_file.read_text())
        if wait == "pid":
            # Opened before start: the process is blocked before execve, so
            # this PID is still the container's and not a recycled one.
            pidfd = os.pidfd_open(pid)
        t[-1] = time.perf_counter_ns()  # reading the PID is our cost, not the runtime's
        rc = _run_quiet(rt.cmd("start", cid), log)
        t.append(time.perf_counter_ns())
        if rc != 0:
            raise CycleError(f"start failed (exit {rc}): {_last_line(log)}")
        if wait == "pid":
            _wait_pidfd(pidfd, timeout)
        else:
            _wait_state(rt, cid, timeout)
        _reap(pid)  # what a shim does on SIGCHLD, before it deletes; microseconds
        t.append(time.perf_counter_ns())
        # No --force: the runtime must itself see the container as stopped.
        rc = _run_quiet(rt.cmd("delete", cid), log)
        t.append(time.perf_counter_ns())
        if rc != 0:
            raise CycleError(f"delete failed (exit {rc}): {_last_line(log)}")
        deleted = True
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        if not deleted:
            subprocess.run(rt.cmd("delete", "--force", cid), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if pid > 0:
                _reap_killed(pid)
        pid_file.unlink(missing_ok=True)
        reap_orphans()
    return {phase: (t[i + 1] - t[i]) / 1e6 for i, phase in enumerate(PHASES)}


def find_runtimes(wanted: list[str], pycontain: Path,
                  prefix: str) -> tuple[list[Runtime], dict[str, str]]:
    found: list[Runtime] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        if name == "pycontain":
            if not os.access(pycontain, os.X_OK):
                skipped[name] = f"{pycontain} is not an executable (use --pycontain PATH)"
                continue
            exe = str(pycontain)
        elif name in ("crun", "runc"):
            which = shutil.which(name)
            if which is None:
                skipped[name] = f"{name} is not installed"
                continue
            exe = which
        else:
            skipped[name] = f"unknown runtime (choose from {', '.join(RUNTIMES)})"
            continue
        found.append(Runtime(name, exe, prefix))
    return found, skipped


def warm_up(runtimes: list[Runtime], bundle: Path, workdir: Path, wait: str,
            timeout: float) -> tuple[list[Runtime], dict[str, str], list[str]]:
    """One untimed cycle each: it proves the runtime works here and warms caches."""
    ok: list[Runtime] = []
    failed: dict[str, str] = {}
    setup: list[str] = []
    for rt in runtimes:
        try:
            cycle(rt, bundle, workdir, wait, timeout)
        except CycleError as e:
            if rt.name == "crun" and "hybrid" in str(e):
                setup.extend(fix_hybrid_cgroups_for_crun())
                try:
                    cycle(rt, bundle, workdir, wait, timeout)
                except CycleError as e2:
                    failed[rt.name] = f"a test cycle failed: {e2}"
                    continue
            else:
                failed[rt.name] = f"a test cycle failed: {e}"
                continue
        ok.append(rt)
    return ok, failed, setup


def time_cycles(runtimes: list[Runtime], runs: int, bundle: Path, workdir: Path, wait: str,
                timeout: float) -> tuple[dict[str, list[dict[str, float]]], dict[str, str]]:
    times: dict[str, list[dict[str, float]]] = {rt.name: [] for rt in runtimes}
    failed: dict[str, str] = {}
    for i in range(runs):
        k = i % len(runtimes)
        for rt in runtimes[k:] + runtimes[:k]:
            if rt.name in failed:
                continue
            try:
                times[rt.name].append(cycle(rt, bundle, workdir, wait, timeout))
            except CycleError as e:
                failed[rt.name] = f"cycle {i + 1} failed: {e}"
    return times, failed


def leftovers(runtimes: list[Runtime]) -> dict[str, list[str]]:
    """Containers of ours that a runtime still lists (there should be none)."""
    left: dict[str, list[str]] = {}
    for rt in runtimes:
        res = subprocess.run(rt.cmd("list", "-q"), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=False)
        ours = [cid for cid in res.stdout.split() if cid.startswith(rt.prefix + "-")]
        if res.returncode != 0:
            ours.append(f"(list failed, exit {res.returncode})")
        if ours:
            left[rt.name] = ours
    return left


def summarize(times: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    for name, cycles in times.items():
        if not cycles:
            continue
        totals = [sum(c.values()) for c in cycles]
        rows[name] = {
            "median_ms": round(statistics.median(totals), 2),
            "p90_ms": round(percentile(totals, 90), 2),
            "runs": len(totals),
            "phases_median_ms": {
                p: round(statistics.median(c[p] for c in cycles), 2) for p in PHASES
            },
        }
    crun = rows.get("crun", {}).get("median_ms")
    for row in rows.values():
        median = row["median_ms"]
        row["ratio_to_crun"] = (round(float(median) / float(crun), 2)  # type: ignore[arg-type]
                                if crun else None)
    return rows


def print_table(rows: dict[str, dict[str, object]]) -> None:
    head = f"{'runtime':<10} {'median ms':>10} {'p90 ms':>8} {'x crun':>7} {'runs':>5}"
    print(head + "".join(f" {p + ' ms':>10}" for p in PHASES))
    for name, row in rows.items():
        ratio = row["ratio_to_crun"]
        phases = row["phases_median_ms"]
        assert isinstance(phases, dict)
        print(f"{name:<10} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f} "
              f"{(f'{ratio:.2f}' if ratio is not None else '-'):>7} {row['runs']:>5}"
              + "".join(f" {phases[p]:>10.2f}" for p in PHASES))


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
        description="Time a full OCI life (create, start, wait for exit, delete) of /bin/true "
        "for pycontain, crun and runc: same bundle, interleaved runs. Needs root."
    )
    parser.add_argument("-n", "--runs", type=int, default=30,
                        help="timed cycles per runtime (default 30)")
    parser.add_argument("--rootfs", type=Path, default=None,
                        help="busybox rootfs (default: <repo>/build/rootfs/<host arch>)")
    parser.add_argument("--pycontain", type=Path, default=DEFAULT_PYCONTAIN,
                        help=f"the pycontain executable (default: {DEFAULT_PYCONTAIN})")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"comma-separated subset of {','.join(RUNTIMES)}")
    parser.add_argument("--wait", choices=("pid", "state"), default="pid",
                        help="how to wait for the exit: a pidfd on the --pid-file PID "
                        "(default), or polling `RUNTIME state ID` until 'stopped'")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds a container may run before the cycle fails (default 10)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    opts = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("lifecycle.py: needs root (the runtimes create namespaces without a user "
              "namespace)", file=sys.stderr)
        return 1
    if opts.runs < 1:
        parser.error("--runs must be at least 1")
    rootfs = check_rootfs(opts.rootfs or default_rootfs())
    wanted = [r.strip() for r in opts.runtimes.split(",") if r.strip()]
    log = sys.stderr if opts.json else sys.stdout
    prefix = f"lc{os.getpid()}"

    if not become_subreaper():
        print("# could not become a child subreaper: container exit codes are not checked, "
              "and PID 1 reaps the containers", file=log)
    runtimes, skipped = find_runtimes(wanted, opts.pycontain.resolve(), prefix)
    with tempfile.TemporaryDirectory(prefix="pycontain-lifecycle-") as tmp:
        workdir = Path(tmp)
        bundle = make_bundle(workdir, "bundle", rootfs, COMMAND)
        working, failed, setup = warm_up(runtimes, bundle, workdir, opts.wait, opts.timeout)
        skipped.update(failed)
        report_setup(setup, skipped, log)
        if not working:
            print("lifecycle.py: no runtime could run", file=sys.stderr)
            return 1
        print(f"# {opts.runs} interleaved create+start+wait({opts.wait})+delete cycles of "
              f"{' '.join(COMMAND)} on {rootfs}: {', '.join(rt.name for rt in working)}",
              file=log, flush=True)
        times, failed = time_cycles(working, opts.runs, bundle, workdir, opts.wait,
                                    opts.timeout)
        for name, why in failed.items():
            print(f"# {name} stopped: {why}", file=log)
        left = leftovers(runtimes)
        for name, ids in left.items():
            print(f"# {name} left containers behind: {' '.join(ids)}", file=log)

    rows = summarize(times)
    if opts.json:
        json.dump({"rootfs": str(rootfs), "runs": opts.runs, "command": COMMAND,
                   "wait": opts.wait, "namespaces": list(NAMESPACES), "phases": list(PHASES),
                   "id_prefix": prefix, "results": rows, "skipped": {**skipped, **failed},
                   "setup": setup, "leftovers": left}, sys.stdout, indent=2)
        print()
    else:
        print_table(rows)
    return 1 if failed or left else 0


if __name__ == "__main__":
    sys.exit(main())
