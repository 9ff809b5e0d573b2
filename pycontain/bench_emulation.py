"""``pycontain bench-emulation NATIVE FOREIGN``: what a foreign CPU costs.

A container shares the host's kernel, so a rootfs built for another CPU
(arm64 on an x86_64 box) cannot run as is: every one of its processes
runs inside QEMU user mode, which translates the instructions and passes
the system calls through to the same kernel.  This command answers the
three questions that raises, by running the same workloads in a container
from each rootfs:

- how much slower?  wall time and CPU time, foreign / native;
- does it still work?  a few commands whose output must match the native one;
- how many more resources?  CPU time and peak memory.

What is measured, and how (each run is ``pycontain run --stats ROOTFS ...``
started from a small Python wrapper process of its own):

- **wall time**: around ``pycontain run`` inside the wrapper, so it covers
  the container's set-up and tear-down (and, for the foreign rootfs, the
  binfmt_misc registration) but not the wrapper's interpreter start-up.
- **CPU time**: the container cgroup's ``cpu.stat`` ``usage_usec``, from the
  ``--stats`` line.  Every process of the container is in that cgroup from
  its first instruction (clone3 with CLONE_INTO_CGROUP), and under
  emulation QEMU *is* the container's process, so translation is counted.
  When no stats line comes back, user+system time from getrusage() (below).
- **peak memory**: the cgroup's ``memory.peak`` when the memory controller
  is enabled for it (the sum over the container's processes).  Otherwise
  (a hybrid-cgroup host: controllers stay on v1) ``ru_maxrss`` from
  ``getrusage(RUSAGE_CHILDREN)`` in the wrapper.  That counts the whole
  container tree: the wrapper waits for pycontain-init, and init waits for
  every process of the PID namespace, and each wait folds the reaped
  child's usage into its parent's.  ru_maxrss is the largest peak RSS of
  any *single* process of that tree, not a sum; and pycontain-init starts
  as a copy of the Python process, whose anonymous pages (a few MiB) set a
  floor that is the same for both rootfs.

Each round runs every workload natively then foreign, so slow drifts of
the machine hit both sides alike; the report shows medians.
"""

from __future__ import annotations

import os
import sys

from .errors import EXIT_RUNTIME, PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Workload:
    """One thing to time: a name, a line for humans, the command to run."""

    __slots__ = ("argv", "description", "name")

    def __init__(self, name: str, description: str, argv: list[str]) -> None:
        self.name = name
        self.description = description
        self.argv = argv


def _sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


#: busybox-compatible, each about 0.1-0.3 s natively on a 2020s x86_64 core.
DEFAULT_WORKLOADS: tuple[Workload, ...] = (
    # The fixed costs: container set-up, for the foreign rootfs the binfmt_misc
    # registration and one QEMU start-up; its peak memory is also the floor
    # under which ru_maxrss cannot see (see the module's docstring).
    Workload("start", "/bin/true (container start-up, one exec)", ["/bin/true"]),
    Workload("cpu", "shell loop, 100000 iterations (pure CPU in one process)",
             _sh("i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")),
    Workload("gzip", "gzip 8 MiB of /dev/urandom (CPU, pipes, a kernel RNG)",
             _sh("dd if=/dev/urandom bs=1M count=8 2>/dev/null | gzip -c > /dev/null")),
    Workload("spawn", "200 x fork+exec /bin/true (process start-up)",
             _sh("i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done")),
)

#: (name, shell snippet): their output must be byte-identical on both CPUs.
COMPAT_CHECKS: tuple[tuple[str, str], ...] = (
    ("echo", "echo hello, world"),
    ("sort", "printf 'pear\\napple\\nfig\\n10\\n9\\n' | sort"),
    ("md5sum", "printf 'pycontain\\n' | md5sum"),
    ("sha256sum", "printf 'pycontain\\n' | sha256sum"),
    ("expr", "expr 6 \\* 7"),
    ("arith", "echo $((1000000 * 1000 / 7)) $((-7 % 3))"),
    ("wc", "printf 'one two\\nthree\\n' | wc"),
    ("sed", "echo hello | sed 's/l/L/g'"),
    ("awk", "echo 3 4 | awk '{ printf \"%d %.4f\\n\", $1 * $2, $1 / $2 }'"),
    ("gzip", "printf 'round trip\\n' | gzip -c | gunzip -c"),
    ("date", "date -u -d @86400 +%Y-%m-%dT%H:%M:%S"),
)


class Measurement:
    """One ``pycontain run`` of one workload."""

    __slots__ = ("cpu_s", "cpu_source", "error", "exit_code", "peak_bytes", "peak_source",
                 "rusage_cpu_s", "rusage_maxrss_bytes", "wall_s")

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.cpu_source = "cgroup cpu.stat"
        self.peak_bytes: int | None = None
        self.peak_source = "cgroup memory.peak"
        self.rusage_cpu_s = 0.0
        self.rusage_maxrss_bytes = 0
        self.exit_code = 0
        self.error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


# The wrapper process: runs pycontain's own main() (no second interpreter in
# the tree), then reports its RUSAGE_CHILDREN -- which is exactly the
# container's process tree, since the wrapper starts with none -- on the
# pipe whose number it is given.
_WRAPPER = """\
import os, resource, sys, time
from pycontain.cli import main
fd = int(sys.argv[1])
t0 = time.perf_counter()
rc = main(sys.argv[2:])
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
os.write(fd, ("%d %.6f %.6f %.6f %d" % (rc, wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss)).encode())
sys.exit(rc)
"""

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}


def parse_stats(stderr: str) -> tuple[float | None, int | None, str]:
    """(CPU seconds, peak bytes or None, the rest of stderr) from a run's stderr.

    The line is ``pycontain: stats: peak memory 12.3 MiB, CPU 0.947 s (...)``,
    or ``peak memory n/a (...)`` without a memory controller.
    """
    import re

    cpu: float | None = None
    peak: int | None = None
    rest = []
    for line in stderr.splitlines():
        m = re.match(r"pycontain: stats: peak memory (.*?), CPU ([0-9.]+) s\b", line)
        if m is None:
            rest.append(line)
            continue
        cpu = float(m.group(2))
        mem = re.fullmatch(r"([0-9.]+) (B|KiB|MiB|GiB)", m.group(1))
        if mem:
            peak = int(float(mem.group(1)) * _UNITS[mem.group(2)])
    return cpu, peak, "\n".join(rest)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing on stderr)"


def measure(rootfs: str, argv: list[str], timeout: float = 600) -> Measurement:
    """Run ``argv`` in a container from ``rootfs`` once and measure it."""
    import subprocess

    m = Measurement()
    rfd, wfd = os.pipe()
    try:
        cmd = [sys.executable, "-c", _WRAPPER, str(wfd), "run", "--stats", rootfs, *argv]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, pass_fds=(wfd,), timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            m.exit_code, m.error = EXIT_RUNTIME, f"timed out after {timeout:.0f} s"
            return m
        os.close(wfd)
        wfd = -1
        report = os.read(rfd, 4096).decode().split()
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    stderr = proc.stderr.decode(errors="replace")
    cpu, peak, rest = parse_stats(stderr)
    m.exit_code = proc.returncode
    if len(report) != 5:  # the wrapper itself failed before main() returned
        m.error = f"exit {proc.returncode}: {_last_line(stderr)}"
        return m
    m.wall_s = float(report[1])
    m.rusage_cpu_s = float(report[2]) + float(report[3])
    m.rusage_maxrss_bytes = int(report[4]) * 1024  # Linux reports KiB
    if cpu is None:
        m.cpu_s, m.cpu_source = m.rusage_cpu_s, "getrusage utime+stime"
    else:
        m.cpu_s = cpu
    if peak is None:
        m.peak_bytes, m.peak_source = m.rusage_maxrss_bytes, "getrusage ru_maxrss"
    else:
        m.peak_bytes = peak
    if proc.returncode != 0:
        m.error = f"exit {proc.returncode}: {_last_line(rest)}"
    return m


def _run_output(rootfs: str, script: str) -> tuple[int, str, str]:
    """(exit status, stdout, last stderr line) of ``sh -c script`` in a container."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "pycontain", "run", rootfs, *_sh(script)],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                          check=False)
    err = proc.stderr.decode(errors="replace")
    last = _last_line(err) if err.strip() else ""
    return proc.returncode, proc.stdout.decode(errors="replace"), last


def compatibility(native: str, foreign: str) -> list[dict[str, object]]:
    """Each check's output and status on both rootfs, and whether they agree."""
    results = []
    for name, script in COMPAT_CHECKS:
        n_code, n_out, n_err = _run_output(native, script)
        f_code, f_out, f_err = _run_output(foreign, script)
        ok = n_code == 0 and (n_code, n_out) == (f_code, f_out)
        results.append({
            "name": name, "command": script, "pass": ok,
            "native": {"exit": n_code, "stdout": n_out, "stderr": n_err},
            "foreign": {"exit": f_code, "stdout": f_out, "stderr": f_err},
        })
    return results


def _median(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


def _ratio(foreign: float | None, native: float | None) -> float | None:
    if foreign is None or not native:
        return None
    return foreign / native


def _platform(rootfs: str) -> dict[str, object]:
    from .inspect_image import inspect

    info = inspect(rootfs)
    emu = info.get("emulation") or {}
    assert isinstance(emu, dict)
    return {"rootfs": rootfs, "platform": info.get("image_platform"),
            "native": info.get("native"), "qemu": emu.get("qemu"),
            "qemu_version": emu.get("qemu_version"), "binfmt_mode": emu.get("mode")}


def run_benchmark(native: str, foreign: str, rounds: int = 3,
                  workloads: tuple[Workload, ...] | list[Workload] = DEFAULT_WORKLOADS,
                  progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """The whole comparison, as the dict that ``--json`` prints."""
    say = progress or (lambda _msg: None)
    report: dict[str, object] = {
        "native": _platform(native), "foreign": _platform(foreign), "rounds": rounds,
        "host": {"machine": os.uname().machine, "kernel": os.uname().release,
                 "cpus": os.cpu_count()},
    }
    # First, because it also warms up both sides (page cache, QEMU's
    # translation of the shell's start-up, pycontain's QEMU version cache).
    say("compatibility checks")
    compat = compatibility(native, foreign)
    runs: dict[str, dict[str, list[Measurement]]] = {
        w.name: {"native": [], "foreign": []} for w in workloads}
    for i in range(rounds):
        for w in workloads:
            for side, root in (("native", native), ("foreign", foreign)):
                say(f"round {i + 1}/{rounds}: {w.name} ({side})")
                runs[w.name][side].append(measure(root, w.argv))
    out = []
    for w in workloads:
        entry: dict[str, object] = {"name": w.name, "description": w.description,
                                    "command": w.argv}
        medians: dict[str, dict[str, float | None]] = {}
        for side in ("native", "foreign"):
            ms = runs[w.name][side]
            ok = [m for m in ms if m.error is None]
            medians[side] = {
                "wall_s": _median([m.wall_s for m in ok]),
                "cpu_s": _median([m.cpu_s for m in ok]),
                "peak_bytes": _median([float(m.peak_bytes or 0) for m in ok]),
            }
            entry[side] = {**medians[side], "runs": [m.as_dict() for m in ms],
                           "errors": [m.error for m in ms if m.error]}
        entry["ratio"] = {key: _ratio(medians["foreign"][key], medians["native"][key])
                          for key in ("wall_s", "cpu_s", "peak_bytes")}
        out.append(entry)
    report["workloads"] = out
    report["compatibility"] = compat
    sample = runs[workloads[0].name]["native"][0] if rounds else None
    report["measured"] = {
        "wall": "around `pycontain run` in a wrapper process (container set-up included)",
        "cpu": sample.cpu_source if sample else "cgroup cpu.stat",
        "memory": (f"{sample.peak_source} (largest single process of the container tree)"
                   if sample and sample.peak_source.startswith("getrusage")
                   else "cgroup memory.peak (the whole container)"),
    }
    return report


def _fmt_s(v: object) -> str:
    return "-" if v is None else f"{float(v):.3f} s"  # type: ignore[arg-type]


def _fmt_mib(v: object) -> str:
    return "-" if not v else f"{float(v) / 1024 ** 2:.1f} MiB"  # type: ignore[arg-type]


def _fmt_x(v: object) -> str:
    return "-" if v is None else f"{float(v):.1f}×"  # type: ignore[arg-type]


def _one_line(text: str, width: int = 40) -> str:
    flat = text.strip().replace("\n", "⏎").replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_markdown(report: dict) -> str:
    """The report as Markdown: a header, the timing table, the checks."""
    nat, frn, host = report["native"], report["foreign"], report["host"]
    emu = (f", QEMU {frn['qemu_version']}, binfmt_misc {frn['binfmt_mode']}"
           if not frn["native"] and frn.get("qemu") else "")
    rounds = report["rounds"]
    lines = [
        f"## {frn['platform']} ({frn['rootfs']}{emu}) vs {nat['platform']} ({nat['rootfs']})",
        "",
        (f"Host: {host['machine']}, kernel {host['kernel']}, {host['cpus']} CPUs. "
         f"Median of {rounds} round{'s' if rounds != 1 else ''}; × is foreign / native."),
        "",
    ]
    if frn["native"]:
        lines += [f"Note: {frn['rootfs']} runs natively on this CPU: nothing is emulated.", ""]
    lines += [
        ("| workload | wall native | wall foreign | × | CPU native | CPU foreign | × "
         "| peak mem native | peak mem foreign | × |"),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for w in report["workloads"]:
        n, f, r = w["native"], w["foreign"], w["ratio"]
        lines.append(
            f"| {w['name']}: {_one_line(w['description'], 80)} | {_fmt_s(n['wall_s'])} | {_fmt_s(f['wall_s'])} "
            f"| {_fmt_x(r['wall_s'])} | {_fmt_s(n['cpu_s'])} | {_fmt_s(f['cpu_s'])} "
            f"| {_fmt_x(r['cpu_s'])} | {_fmt_mib(n['peak_bytes'])} "
            f"| {_fmt_mib(f['peak_bytes'])} | {_fmt_x(r['peak_bytes'])} |")
    for w in report["workloads"]:
        for side in ("native", "foreign"):
            for err in w[side]["errors"]:
                lines += ["", f"{w['name']} failed ({side}): {err}"]
    compat = report["compatibility"]
    passed = sum(1 for c in compat if c["pass"])
    lines += [
        "",
        f"Does it still work? {passed}/{len(compat)} commands give the native output:",
        "",
        "| check | command | native output | foreign |",
        "|---|---|---|---|",
    ]
    for c in compat:
        verdict = "pass"
        if not c["pass"]:
            got = c["foreign"]
            shown = _one_line(got["stdout"] or got["stderr"] or "(no output)")
            verdict = f"FAIL: exit {got['exit']}, {shown!r}"
        lines.append(f"| {c['name']} | `{_one_line(c['command'], 60)}` "
                     f"| {_one_line(c['native']['stdout'])} | {verdict} |")
    m = report["measured"]
    lines += ["", (f"Measured: wall time {m['wall']}; CPU time from {m['cpu']}; "
                   f"peak memory from {m['memory']}.")]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    """Bars of native against foreign for each measure, ratios on top."""
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    names = [w["name"] for w in report["workloads"]]
    panels = (("wall_s", "wall time (s)", 1.0), ("cpu_s", "CPU time (s)", 1.0),
              ("peak_bytes", "peak memory (MiB)", 1024.0 ** 2))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    width = 0.38
    xs = list(range(len(names)))
    for ax, (key, title, scale) in zip(axes, panels):
        nat = [(w["native"][key] or 0) / scale for w in report["workloads"]]
        frn = [(w["foreign"][key] or 0) / scale for w in report["workloads"]]
        ax.bar([x - width / 2 for x in xs], nat, width,
               label=f"native {report['native']['platform']}")
        bars = ax.bar([x + width / 2 for x in xs], frn, width,
                      label=f"foreign {report['foreign']['platform']}")
        for bar, w in zip(bars, report["workloads"]):
            ratio = w["ratio"][key]
            if ratio is not None:
                ax.annotate(f"{ratio:.1f}×", (bar.get_x() + bar.get_width() / 2,
                                               bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
        ax.set_xticks(xs)
        ax.set_xticklabels(names)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report['foreign']['platform']} under emulation vs "
                 f"{report['native']['platform']} native (median of {report['rounds']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PycontainError("--plot needs matplotlib, which is not installed: "
                             "install pycontain[plot] (pip install 'pycontain[plot]')") from None


def main_bench_emulation(argv: list[str]) -> int:
    """The sub-command; 0 when every run worked and every check passed, else 1."""
    import argparse
    import json

    cmd: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, cmd = argv[:at], argv[at + 1:]
    ap = argparse.ArgumentParser(
        prog="pycontain bench-emulation",
        usage="pycontain bench-emulation NATIVE_ROOTFS FOREIGN_ROOTFS [-n ROUNDS] [--json] "
              "[--plot FILE.png] [-- CMD...]",
        description="Run the same workloads in a container from a native and from a "
                    "foreign-CPU rootfs and compare wall time, CPU time and peak memory; "
                    "check that a few commands give the same output on both.")
    ap.add_argument("native", metavar="NATIVE_ROOTFS")
    ap.add_argument("foreign", metavar="FOREIGN_ROOTFS")
    ap.add_argument("-n", "--rounds", type=int, default=3,
                    help="runs of each workload on each rootfs (default 3)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--plot", metavar="FILE.png", help="draw the comparison (needs matplotlib)")
    ns = ap.parse_args(argv)
    if ns.rounds < 1:
        raise PycontainError(f"-n {ns.rounds}: at least one round is needed")
    for root in (ns.native, ns.foreign):
        if not os.path.isdir(root):
            raise PycontainError(f"rootfs {root}: no such directory")
    if os.geteuid() != 0:
        raise PycontainError("pycontain bench-emulation starts containers and must be run "
                             "as root (try: sudo pycontain bench-emulation ...)")
    if ns.plot:
        _require_matplotlib()
    if cmd:
        import shlex

        workloads: tuple[Workload, ...] = (Workload("command", shlex.join(cmd), cmd),)
    else:
        workloads = DEFAULT_WORKLOADS

    def progress(msg: str) -> None:
        sys.stderr.write(f"bench-emulation: {msg}\n")
        sys.stderr.flush()

    report = run_benchmark(ns.native, ns.foreign, ns.rounds, workloads, progress)
    if ns.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(format_markdown(report))
    if ns.plot:
        plot(report, ns.plot)
        progress(f"plot written to {ns.plot}")
    failed = any(w[side]["errors"] for w in report["workloads"] for side in ("native", "foreign"))
    failed = failed or not all(c["pass"] for c in report["compatibility"])
    return 1 if failed else 0
