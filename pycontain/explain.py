"""``pycontain explain ROOTFS``: host and container, side by side.

A container is only a process on the host's kernel.  This command shows
it: it starts a container from ROOTFS that reports, from the inside, the
same facts pycontain reads on the host, and prints the two columns next
to each other: the kernel (the same), the namespaces (different inodes),
the cgroup, the capabilities, and the CPU architecture of the host next
to that of the rootfs's binaries (with the emulation decision).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from . import capabilities, cgroups
from .errors import PycontainError
from .namespaces import NS_NAMES, inodes

#: What the container reports about itself (busybox or any POSIX shell).
_PROBE = r"""
echo "release=$(uname -r)"
echo "version=$(uname -v)"
echo "machine=$(uname -m)"
echo "hostname=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
for ns in cgroup ipc mnt net pid user uts; do
  echo "ns.$ns=$(stat -L -c %i /proc/self/ns/$ns 2>/dev/null || echo ?)"
done
echo "cgroup=$(grep '^0::' /proc/self/cgroup | cut -d: -f3)"
echo "pid=$$"
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
"""


def _host_facts() -> dict:
    uname = os.uname()
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
                status[key] = value.strip()
    from .arch import host_platform

    return {
        "release": uname.release, "version": uname.version, "machine": uname.machine,
        "hostname": uname.nodename, "platform": host_platform(),
        "namespaces": inodes(), "cgroup": cgroups.own_group(), "pid": os.getpid(),
        "capabilities": capabilities.names(int(status.get("CapEff", "0"), 16)),
        "bounding": capabilities.names(int(status.get("CapBnd", "0"), 16)),
        "no_new_privs": status.get("NoNewPrivs"), "seccomp": status.get("Seccomp"),
    }


def _container_facts(rootfs: str, run_args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pycontain", "run", *run_args, rootfs, "/bin/sh", "-c", _PROBE]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        err = out.stderr.strip().splitlines()
        raise PycontainError("explain: the probe container failed: "
                             + (err[-1] if err else f"exit {out.returncode}"))
    raw = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {
        "release": raw.get("release"), "version": raw.get("version"),
        "machine": raw.get("machine"), "hostname": raw.get("hostname"),
        "namespaces": {n: int(raw[f"ns.{n}"]) for n in NS_NAMES
                       if raw.get(f"ns.{n}", "?").isdigit()},
        "cgroup": raw.get("cgroup"), "pid": int(raw.get("pid", "0") or 0),
        "capabilities": capabilities.names(int(raw.get("CapEff", "0"), 16)),
        "bounding": capabilities.names(int(raw.get("CapBnd", "0"), 16)),
        "no_new_privs": raw.get("NoNewPrivs"), "seccomp": raw.get("Seccomp"),
    }


def explain(rootfs: str, run_args: list[str] | None = None) -> dict:
    from .inspect_image import inspect

    host = _host_facts()
    image = inspect(rootfs, ["/bin/sh"])
    ctr = _container_facts(rootfs, run_args or [])
    ctr["platform"] = image.get("image_platform")
    ns = {n: {"host": host["namespaces"].get(n), "container": ctr["namespaces"].get(n),
              "shared": host["namespaces"].get(n) == ctr["namespaces"].get(n)}
          for n in NS_NAMES}
    return {"rootfs": rootfs, "host": host, "container": ctr, "namespaces": ns,
            "emulation": image.get("emulation"),
            "kernel_shared": host["release"] == ctr["release"]}


def format_explain(d: dict) -> str:
    h, c = d["host"], d["container"]
    rows = [
        ("kernel release", h["release"], c["release"]),
        ("kernel version", h["version"], c["version"]),
        ("hostname", h["hostname"], c["hostname"]),
        ("CPU (uname -m)", h["machine"], c["machine"]),
        ("platform", h["platform"], c["platform"]),
        ("my PID", str(h["pid"]), str(c["pid"])),
    ]
    for n, v in d["namespaces"].items():
        mark = "same" if v["shared"] else "different"
        rows.append((f"{n} namespace", str(v["host"]), f"{v['container']}  ({mark})"))
    rows += [
        ("cgroup", h["cgroup"], f"{c['cgroup']}  (its own namespace root)"),
        ("NoNewPrivs", str(h["no_new_privs"]), str(c["no_new_privs"])),
        ("Seccomp mode", str(h["seccomp"]), str(c["seccomp"])),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(str(r[1])) for r in rows)
    lines = [f"{'':<{w0}}  {'host':<{w1}}  container", ""]
    lines += [f"{a:<{w0}}  {b!s:<{w1}}  {cc}" for a, b, cc in rows]
    lines += ["", f"capabilities (host):      {h['capabilities']}",
              f"capabilities (container): {c['capabilities']}", ""]
    emu = d.get("emulation") or {}
    if emu.get("needed"):
        how = (f"The rootfs's binaries are {c['platform']}, the host's CPU is {h['platform']}: "
               f"each of them runs inside {emu.get('qemu')} (QEMU user mode), which the kernel "
               f"starts through binfmt_misc ({emu.get('mode')} mode). The kernel is still the "
               "host's: QEMU translates the instructions and passes the system calls through.")
    else:
        how = ("The rootfs's binaries are built for this CPU, so the host CPU runs them "
               "directly: no emulation.")
    shared = [n for n, v in d["namespaces"].items() if v["shared"]]
    lines.append(
        "What is shared: the kernel itself (same release and build), its scheduler, memory "
        "manager, drivers and system calls"
        + (f", and the {', '.join(shared)} namespace(s)" if shared else "") + ". "
        "What is isolated: each namespace with a different inode above (its own PIDs, "
        "mounts, hostname, IPC, network and cgroup view), a cgroup of its own, and a reduced "
        "set of capabilities. A VM would show a different kernel release. " + how)
    return "\n".join(lines)


def main_explain(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="pycontain explain",
                                 description="Show what a container shares with the host")
    ap.add_argument("rootfs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("run_args", nargs="*", help="extra 'pycontain run' options, after --")
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise PycontainError("pycontain explain starts a container: run it as root")
    if not os.path.isdir(ns.rootfs):
        raise PycontainError(f"rootfs {ns.rootfs}: no such directory")
    d = explain(os.path.abspath(ns.rootfs), ns.run_args)
    print(json.dumps(d, indent=2) if ns.json else format_explain(d))
    return 0
