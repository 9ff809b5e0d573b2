"""Secure by default: what a container may see and do on the shared kernel.

A container is a process on the host's kernel, so every hole is a hole
into the host.  The defaults follow docker and runc (NOTES §5):

* masked paths: kernel files that leak host information or give power
  (/proc/kcore, /proc/keys, /sys/firmware ...) are covered;
* read-only paths: /proc/sys, /proc/sysrq-trigger, /proc/irq, /proc/bus
  (and /sys is mounted read-only as a whole);
* capabilities: docker's 14, in every set;
* no_new_privs: setuid binaries and file capabilities cannot raise
  privileges after execve;
* seccomp: a filter denying the syscalls docker's profile denies (see
  seccomp.py), loaded as the very last step before execve;
* devices: nodev everywhere, host device nodes bind-mounted (rootfs.py).

``--privileged`` lifts the masks, the read-only paths, the capability
drop and seccomp, as docker does.

This module only *decides*: it fills the OCI spec and turns it into
``setup`` and ``process`` steps.  The C shim performs them.
"""

from __future__ import annotations

from . import plan as p
from .capabilities import current_bounding, mask
from .paths import resolve_in_root

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]


def apply_defaults(spec: dict, *, privileged: bool, caps: list[str],
                   no_new_privs: bool, seccomp: bool) -> None:
    """Write the security settings into the OCI spec."""
    process = spec["process"]
    process["capabilities"] = {
        "bounding": list(caps), "effective": list(caps), "permitted": list(caps),
        "inheritable": list(caps), "ambient": [],
    }
    process["noNewPrivileges"] = no_new_privs
    linux = spec["linux"]
    if privileged:
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if seccomp and not privileged:
        linux["seccomp"] = {"profile": "default"}
    else:
        linux.pop("seccomp", None)


def path_steps(spec: dict) -> list[p.Step]:
    """Masks and read-only binds, run after /proc and /sys are mounted."""
    root = spec["root"]["path"]
    steps = [p.Step(p.MASK, b=resolve_in_root(root, path), why=f"mask {path}")
             for path in spec["linux"].get("maskedPaths", [])]
    steps += [p.Step(p.READONLY, b=resolve_in_root(root, path), why=f"read-only {path}")
              for path in spec["linux"].get("readonlyPaths", [])]
    return steps


def capability_steps(spec: dict) -> tuple[list[p.Step], list[p.Step]]:
    """(steps before the uid switch, steps after it) for process.capabilities."""
    caps = spec["process"].get("capabilities")
    if caps is None:
        return [], []
    # The kernel never lets a process gain a capability its bounding set
    # lacks; pycontain itself may run with a reduced set (this development
    # machine lacks CAP_SYS_RESOURCE), so keep only what we have.
    have = current_bounding()
    bounding = mask(caps.get("bounding", [])) & have
    keep = mask(caps.get("permitted", [])) & bounding
    ambient = mask(caps.get("ambient", [])) & keep
    before = [] if bounding == have else [p.Step(p.CAPBSET, flags=bounding)]
    return before, [p.Step(p.CAPSET, flags=keep, dev=ambient)]


def seccomp_steps(spec: dict) -> list[p.Step]:
    """The filter, compiled to BPF in the parent and loaded last in the child."""
    conf = spec["linux"].get("seccomp")
    if not conf:
        return []
    from . import seccomp

    caps = {c.removeprefix("CAP_") for c in spec["process"]["capabilities"]["effective"]}
    rules = seccomp.default_rules(caps)
    prog = seccomp.compile_filter(rules)
    return [p.Step(p.SECCOMP, a=prog, dev=len(prog),
                   why=f"pycontain's default profile: {len(rules)} rules, denied calls "
                       "fail with EPERM")]
