#!/usr/bin/env python3
"""Build and boot the pycontain test VM (cgroup v2 with every controller, Linux 6.1).

    vm/testvm.py build [--force]
    vm/testvm.py run [--timeout S] [--results DIR] [--env K=V] -- CMD...
    vm/testvm.py test [--timeout S] [--results DIR] [-- PYTEST_ARGS...]

``run`` boots the VM, runs CMD as root in the guest, streams the guest's
serial console to stdout, and exits with CMD's exit status.  When the VM
cannot be built or booted it prints one line starting with ``testvm:`` and
exits 125; when it times out, 124.

Inside the guest: the host's working tree is at /src (read-only, 9p), the
results directory at /results (read-write, 9p), and a 256 MB scratch disk
whose device path is in /run/pycontain-vm/scratch-disk.  Every boot starts
from the same clean image (QEMU ``snapshot=on``).

How it works, timings and the cache: vm/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build as vmbuild  # a sibling module, found through the line above

EXIT_VM_FAILED = 125
EXIT_TIMEOUT = 124
MARKER_EXIT = re.compile(r"PYCONTAIN-VM-EXIT=(\d+)")
MARKER_ERROR = re.compile(r"PYCONTAIN-VM-ERROR=(.*)")
MARKER_READY = "PYCONTAIN-VM-READY"
PYTEST_SUMMARY = re.compile(
    r"^=*\s*((?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)"
    r"(?:, )?)+ in [\d.]+s(?: \([^)]*\))?|no tests ran in [\d.]+s)\s*=*$")
GUEST_INIT = Path(__file__).resolve().parent / "guest_init.sh"


class Options:
    """How to boot: resources and where things go."""

    __slots__ = ("accel", "cpus", "env", "memory_mb", "results", "timeout")

    def __init__(self, *, cpus: int = 2, memory_mb: int = 2048, timeout: float = 600.0,
                 results: Path | None = None, env: list[str] | None = None,
                 accel: str | None = None) -> None:
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.timeout = timeout
        self.results = results
        self.env = env or []
        self.accel = accel


class Outcome:
    """What one boot produced."""

    __slots__ = ("boot_seconds", "exit_status", "lines", "total_seconds")

    def __init__(self) -> None:
        self.exit_status: int | None = None
        self.boot_seconds: float | None = None
        self.total_seconds = 0.0
        self.lines: list[str] = []


def host_tsc_khz() -> int:
    """The host's TSC frequency in kHz, for the guest's tsc_early_khz=.

    Without it, the 6.1 kernel on a microvm calibrates the TSC against a
    timer that TCG emulates slowly, and about half the boots hang.  Under TCG
    the guest's TSC runs at the host's rate, so the host's value is right.
    """
    try:
        text = Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text()
        return int(text.strip())
    except (OSError, ValueError):
        pass
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":", 1)[1]) * 1000)
    raise vmbuild.VMError("cannot read the host CPU frequency from /proc/cpuinfo for tsc_early_khz")


def choose_accel(requested: str | None) -> str:
    """KVM only where a stock kernel runs under it, else TCG.

    Some hosts (this one) expose /dev/kvm through PVM (/sys/module/kvm_pvm),
    which only runs PVM-aware guest kernels: Debian's kernel hangs there.
    """
    if requested:
        return requested
    if os.environ.get("PYCONTAIN_VM_ACCEL"):
        return os.environ["PYCONTAIN_VM_ACCEL"]
    if Path("/sys/module/kvm_pvm").exists():
        return "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm"
    return "tcg"


def opt(path: Path) -> str:
    """A path as a QEMU option value, where a comma must be doubled."""
    return str(path).replace(",", ",,")


def qemu_argv(image: vmbuild.Image, ctl: Path, results: Path, opts: Options) -> list[str]:
    accel = choose_accel(opts.accel)
    if accel == "tcg":
        # One host thread per vCPU; the guest is slow enough already.
        accel_args = ["-accel", "tcg,thread=multi", "-cpu", "max"]
    else:
        accel_args = ["-accel", accel, "-cpu", "host"]
    cmdline = " ".join([
        "console=ttyS0",
        "quiet",
        # A panic ends the VM (-no-reboot) instead of hanging until the timeout.
        "panic=-1",
        f"tsc_early_khz={host_tsc_khz()}",
        # No v1 hierarchy may claim a controller: cgroup2 gets them all.
        "cgroup_no_v1=all",
    ])
    return [
        "qemu-system-x86_64", *accel_args,
        "-M", "microvm", "-m", str(opts.memory_mb), "-smp", str(opts.cpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initramfs), "-append", cmdline,
        # snapshot=on: writes go to a temporary overlay, every boot starts clean.
        "-drive", f"id=root,file={opt(image.rootfs)},format=raw,if=none,snapshot=on",
        "-device", "virtio-blk-device,drive=root,serial=pycontain-root",
        "-drive", f"id=scratch,file={opt(image.scratch)},format=raw,if=none,snapshot=on",
        "-device", "virtio-blk-device,drive=scratch,serial=pycontain-scratch",
        "-fsdev", f"local,id=src,path={opt(vmbuild.REPO)},security_model=none,readonly=on",
        "-device", "virtio-9p-device,fsdev=src,mount_tag=src",
        "-fsdev", f"local,id=results,path={opt(results)},security_model=none",
        "-device", "virtio-9p-device,fsdev=results,mount_tag=results",
        "-fsdev", f"local,id=vmctl,path={opt(ctl)},security_model=none",
        "-device", "virtio-9p-device,fsdev=vmctl,mount_tag=vmctl",
    ]


def write_control(ctl: Path, argv: list[str], env: list[str]) -> None:
    shutil.copy2(GUEST_INIT, ctl / "init.sh")
    exports = "".join(f"export {shlex.quote(item)}\n" for item in env)
    (ctl / "cmd.sh").write_text(f"{exports}exec {shlex.join(argv)}\n")
    (ctl / "epoch").write_text(f"{int(time.time())}\n")


def boot(argv: list[str], opts: Options, *, echo: bool = True) -> Outcome:
    """Boot the VM, run argv in it, and return what happened.

    Raises VMError when the VM cannot be built, started or finished.
    """
    for item in opts.env:
        if "=" not in item:
            raise vmbuild.VMError(f"--env {item!r}: expected NAME=VALUE")
    vmbuild.ensure_host_tools(("qemu-system-x86_64",))
    image = vmbuild.build(quiet=True)
    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="pycontain-vm-") as tmp:
        ctl = Path(tmp) / "ctl"
        ctl.mkdir()
        results = opts.results or Path(tmp) / "results"
        results.mkdir(parents=True, exist_ok=True)
        write_control(ctl, argv, opts.env)
        stderr_path = Path(tmp) / "qemu.stderr"
        started = time.monotonic()
        with open(stderr_path, "w+b") as qemu_stderr:
            proc = subprocess.Popen(qemu_argv(image, ctl, results, opts), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=qemu_stderr)
            timed_out = threading.Event()

            def expire() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(opts.timeout, expire)
            timer.start()
            error = None
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n").replace("\r", "")
                    outcome.lines.append(line)
                    if echo:
                        sys.stdout.write(line + "\n")
                        sys.stdout.flush()
                    if line.strip() == MARKER_READY and outcome.boot_seconds is None:
                        outcome.boot_seconds = time.monotonic() - started
                    found = MARKER_EXIT.search(line)
                    if found:
                        outcome.exit_status = int(found.group(1))
                    failed = MARKER_ERROR.search(line)
                    if failed:
                        error = failed.group(1).strip()
                proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                timer.cancel()
            outcome.total_seconds = time.monotonic() - started
            # The exit file is written before the marker; it survives a
            # marker line garbled by interleaved console output.
            exit_file = ctl / "exit"
            if outcome.exit_status is None and exit_file.is_file():
                text = exit_file.read_text().strip()
                if text.isdigit():
                    outcome.exit_status = int(text)
            if outcome.exit_status is not None:
                return outcome
            if timed_out.is_set():
                raise VMError(f"the VM did not finish within {opts.timeout:g} s (killed)",
                              EXIT_TIMEOUT)
            if error:
                raise VMError(f"the guest failed to boot: {error}")
            qemu_stderr.seek(0)
            complaint = [ln for ln in qemu_stderr.read().decode(errors="replace").splitlines()
                         if ln.strip()]
            panic = [ln for ln in outcome.lines if "Kernel panic" in ln]
            if complaint:
                why = f"qemu says: {complaint[-1]}"
            elif panic:
                why = f"the guest kernel panicked: {panic[-1].strip()}"
            else:
                why = "see the guest console output above"
            raise VMError(f"the VM stopped (qemu exit {proc.returncode}) before the guest "
                          f"reported an exit status; {why}")


class VMError(vmbuild.VMError):
    """A VM failure with the exit status testvm.py should end with."""

    def __init__(self, message: str, exit_status: int = EXIT_VM_FAILED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def guest_test_argv(pytest_args: list[str]) -> list[str]:
    return ["sh", "/src/tests/vm/run_in_guest.sh", *pytest_args]


def cmd_build(args: argparse.Namespace) -> int:
    image = vmbuild.build(force=args.force)
    print(image.directory)
    return 0


def options_from(args: argparse.Namespace) -> Options:
    results = Path(args.results).resolve() if args.results else None
    return Options(cpus=args.cpus, memory_mb=args.memory, timeout=args.timeout,
                   results=results, env=args.env, accel=args.accel)


def cmd_run(args: argparse.Namespace) -> int:
    argv = strip_dashes(args.cmd)
    if not argv:
        raise VMError("run: no command given (use: testvm.py run -- CMD...)", 2)
    outcome = boot(argv, options_from(args))
    report_timing(outcome)
    assert outcome.exit_status is not None
    return outcome.exit_status


def cmd_test(args: argparse.Namespace) -> int:
    outcome = boot(guest_test_argv(strip_dashes(args.pytest_args)), options_from(args))
    summary = next((m.group(1) for m in map(PYTEST_SUMMARY.match, reversed(outcome.lines)) if m),
                   None)
    report_timing(outcome)
    assert outcome.exit_status is not None
    vmbuild.log(f"guest pytest: {summary or 'no pytest summary line'} (exit {outcome.exit_status})")
    return outcome.exit_status


def report_timing(outcome: Outcome) -> None:
    boot_s = f"{outcome.boot_seconds:.1f} s" if outcome.boot_seconds is not None else "?"
    vmbuild.log(f"boot {boot_s}, total {outcome.total_seconds:.1f} s, "
                f"guest exit status {outcome.exit_status}")


def strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv and argv[0] == "--" else argv


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="testvm.py", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the VM image (a cache hit when nothing changed)")
    b.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    b.set_defaults(func=cmd_build)
    for name, default_timeout, func, helptext in (
            ("run", 600.0, cmd_run, "boot the VM and run CMD in it as root"),
            ("test", 900.0, cmd_test, "run pytest on tests/vm inside the VM")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--timeout", type=float, default=default_timeout,
                       help=f"seconds before the VM is killed (default {default_timeout:g})")
        p.add_argument("--results", help="host directory shared read-write at /results "
                       "(default: a temporary one)")
        p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                       help="environment for the guest command (repeatable)")
        p.add_argument("--cpus", type=int, default=2, help="vCPUs (default 2)")
        p.add_argument("--memory", type=int, default=2048, help="guest memory in MiB (default 2048)")
        p.add_argument("--accel", choices=("tcg", "kvm"),
                       help="force an accelerator (default: kvm if usable, else tcg)")
        if name == "run":
            p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
        else:
            p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- extra pytest arguments")
        p.set_defaults(func=func)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except VMError as exc:
        vmbuild.log(str(exc))
        return exc.exit_status
    except vmbuild.VMError as exc:
        vmbuild.log(str(exc))
        return EXIT_VM_FAILED
    except KeyboardInterrupt:
        vmbuild.log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
