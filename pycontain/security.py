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


def filter_rules(spec: dict) -> tuple[list, int, str] | None:
    """The spec's seccomp rules: (rules, default errno, what they are), or
    None without a filter.  One source for the filter and for --trace."""
    conf = spec["linux"].get("seccomp")
    if not conf:
        return None
    if "profile" not in conf:  # a full OCI profile, e.g. podman's or containerd's
        rules, default_errno = oci_seccomp_rules(conf)
        default = "allowed" if not default_errno else f"fail with errno {default_errno}"
        return rules, default_errno, (f"config.json's profile: {len(rules)} rules, "
                                      f"other calls {default}")
    from . import seccomp

    caps = {c.removeprefix("CAP_") for c in spec["process"]["capabilities"]["effective"]}
    rules = seccomp.default_rules(caps)
    return rules, 0, (f"pycontain's default profile: {len(rules)} rules, denied calls "
                      "fail with EPERM")


def seccomp_steps(spec: dict) -> list[p.Step]:
    """The filter, compiled to BPF in the parent and loaded last in the child."""
    found = filter_rules(spec)
    if found is None:
        return []
    from . import seccomp

    rules, default_errno, what = found
    prog = seccomp.compile_filter(rules, default_errno)
    return [p.Step(p.SECCOMP, a=prog, dev=len(prog), why=what)]


# --- OCI seccomp profiles -------------------------------------------------

#: What pc_seccomp_compile filters on each machine: the native ABI and the
#: compat ABIs it can run, all with the same rules (csrc/seccomp.c).
_SECCOMP_ARCHES = {
    "x86_64": {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
    "aarch64": {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"},
    "s390x": {"SCMP_ARCH_S390X", "SCMP_ARCH_S390"},
}

_SECCOMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
                "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


def _seccomp_errno(action: str, errno_ret: int | None, where: str) -> int:
    """pycontain's model has two outcomes: allow (0) or fail with an errno."""
    from .errors import PycontainError

    if action == "SCMP_ACT_ALLOW":
        return 0
    if action == "SCMP_ACT_ERRNO":
        if errno_ret is None:
            return 1  # EPERM, what runc and crun use when errnoRet is absent
        if not 0 < int(errno_ret) < 4096:
            raise PycontainError(f"config.json: {where}: errnoRet {errno_ret} is not a "
                                 "valid errno")
        return int(errno_ret)
    raise PycontainError(f"config.json: {where}: seccomp action {action!r} is not supported "
                         "by pycontain (only SCMP_ACT_ALLOW and SCMP_ACT_ERRNO)")


def oci_seccomp_rules(conf: dict) -> tuple[list, int]:
    """(rules, default errno) for a runtime-spec ``linux.seccomp`` profile.

    Every field is either honoured or refused by name: a profile whose
    actions kill, trap, log or notify, or that names architectures other
    than the ones the compiler filters, would not mean what it says."""
    import os

    from . import seccomp
    from .errors import PycontainError

    for key in conf:
        if key not in ("defaultAction", "defaultErrnoRet", "architectures", "syscalls",
                       "flags"):
            raise PycontainError(f"config.json: field 'linux.seccomp.{key}' is not "
                                 "supported by pycontain")
    if conf.get("flags"):
        raise PycontainError(f"config.json: linux.seccomp.flags {conf['flags']!r} are not "
                             "supported by pycontain")
    default_errno = _seccomp_errno(conf.get("defaultAction", ""), conf.get("defaultErrnoRet"),
                                   "linux.seccomp.defaultAction")
    machine = os.uname().machine
    ours = _SECCOMP_ARCHES.get(machine, set())
    given = set(conf.get("architectures") or [])
    if given != ours:
        # A listed ABI we would not filter, or an unlisted one we would
        # filter with the same rules instead of killing: either way the
        # profile would not mean what it says.
        raise PycontainError(
            f"config.json: linux.seccomp.architectures {sorted(given)}: pycontain filters "
            f"exactly {sorted(ours) or 'nothing'} on {machine}, with the same rules")
    rules: list[seccomp.Rule] = []
    for i, entry in enumerate(conf.get("syscalls") or []):
        where = f"linux.seccomp.syscalls[{i}]"
        for key in entry:
            if key not in ("names", "action", "errnoRet", "args"):
                raise PycontainError(f"config.json: field '{where}.{key}' is not supported "
                                     "by pycontain")
        errno = _seccomp_errno(entry.get("action", ""), entry.get("errnoRet"), where)
        args = []
        for a in entry.get("args") or []:
            op = _SECCOMP_OPS.get(a.get("op", ""))
            if op is None:
                raise PycontainError(f"config.json: {where}: unknown comparison "
                                     f"{a.get('op')!r}")
            args.append(seccomp.Arg(int(a["index"]), op, int(a.get("value", 0)),
                                    int(a.get("valueTwo", 0))))
        for name in entry.get("names") or []:
            try:
                rules.append(seccomp.Rule(name, errno, tuple(args)))
            except ValueError as e:
                raise PycontainError(f"config.json: {where}: {e}") from None
    return rules, default_errno


#: Sysctls that belong to the IPC namespace (besides fs.mqueue.*).
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def _sysctl_namespace(key: str) -> str | None:
    """The namespace a sysctl belongs to, or None when it is host-wide."""
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    if key.startswith("net."):
        return "network"
    return None


def sysctl_steps(spec: dict) -> list[p.Step]:
    """``linux.sysctl``: written under the container's own /proc/sys, after
    /proc is mounted and before /proc/sys is made read-only.

    Only namespaced sysctls are allowed: any other one is the host's, and
    writing it from a container would change it for everyone."""
    from .errors import PycontainError
    from .spec import has_namespace

    root = spec["root"]["path"]
    steps = []
    for key, value in (spec["linux"].get("sysctl") or {}).items():
        ns = _sysctl_namespace(key)
        if ns is None:
            raise PycontainError(f"config.json: linux.sysctl {key!r} is not namespaced: "
                                 "setting it in a container would change it for the host")
        if not has_namespace(spec, ns):
            raise PycontainError(f"config.json: linux.sysctl {key!r} needs the container's "
                                 f"own {ns} namespace, and it shares the host's")
        parts = key.split(".")
        if any(part in ("", "..") for part in parts):
            raise PycontainError(f"config.json: linux.sysctl {key!r} is not a sysctl name")
        path = resolve_in_root(root, "/proc/sys/" + "/".join(parts))
        steps.append(p.Step(p.WRITE_FILE, a=str(value), b=path, why=f"sysctl {key}={value}"))
    return steps


def process_steps(spec: dict, *, wait_start: list[p.Step] | None = None) -> list[p.Step]:
    """The command's identity and privileges, in the order the kernel needs,
    for the container's command and for ``exec`` alike.

    Bounding set first (it needs CAP_SETPCAP), then the uid/gid switch (with
    KEEPCAPS), then capset, no_new_privs, and the seccomp filter last, so
    every syscall from there on (execve included) meets it.  Without
    no_new_privs the kernel only lets a process holding CAP_SYS_ADMIN
    install a filter: then it is loaded right after the bounding set, while
    we still hold it (what follows is all allowed by the filter).
    ``wait_start`` (the exec FIFO of a created container) goes just before
    the filter."""
    process = spec["process"]
    steps: list[p.Step] = []
    umask = process.get("user", {}).get("umask")
    if umask is not None:
        steps.append(p.Step(p.UMASK, mode=int(umask) & 0o777))
    before, after = capability_steps(spec)
    steps += before
    filter_steps = seccomp_steps(spec)
    if not process.get("noNewPrivileges"):
        steps += filter_steps
        filter_steps = []
    user = process.get("user", {})
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    groups = [int(g) for g in user.get("additionalGids", [])]
    if uid or gid or groups:
        steps += [p.Step(p.SETGROUPS, a=",".join(map(str, groups)), mode=len(groups)),
                  p.Step(p.SETGID, mode=gid), p.Step(p.SETUID, mode=uid)]
    steps += after
    if process.get("noNewPrivileges"):
        steps.append(p.Step(p.NO_NEW_PRIVS))
    steps += wait_start or []
    return steps + filter_steps
