"""Linux capabilities: names, numbers, and the set a container keeps.

Root's power is split into ~40 capabilities.  A container's root keeps
docker's 14 by default; everything else (CAP_SYS_ADMIN, CAP_SYS_MODULE,
CAP_NET_ADMIN ...) is dropped from all five sets: bounding (the ceiling for
anything exec'd later), permitted, effective, inheritable and ambient.

The numbers are the kernel's ABI (linux/capability.h), so they are kept
here as a table: the start path must not import python-prctl just to
spell them.  The dropping itself happens in C (PC_OP_CAPBSET and
PC_OP_CAPSET in csrc/shim.c), in the command's process right before
execve, because no Python runs there.  python-prctl is used where Python
inspects capabilities of a live process: ``pycontain explain`` and the
tests.
"""

from __future__ import annotations

from .errors import PycontainError

NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
NUMBER = {name: i for i, name in enumerate(NAMES)}

#: docker's default set (moby's oci/caps/defaults.go), NOTES §5.
DOCKER_DEFAULT = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def normalize(name: str) -> str:
    """``cap_sys_admin``, ``SYS_ADMIN`` and ``CAP_SYS_ADMIN`` all mean one thing."""
    n = name.strip().upper()
    n = n.removeprefix("CAP_")
    if n != "ALL" and n not in NUMBER:
        raise PycontainError(f"unknown capability {name!r}")
    return n


def mask(names: list[str] | tuple[str, ...]) -> int:
    m = 0
    for n in names:
        m |= 1 << NUMBER[normalize(n)]
    return m


def names(m: int) -> str:
    """A mask as ``CAP_CHOWN,CAP_KILL`` (for --trace)."""
    out = [f"CAP_{n}" for i, n in enumerate(NAMES) if m & (1 << i)]
    extra = m >> len(NAMES)
    if extra:
        out.append(f"+{extra << len(NAMES):#x}")
    return ",".join(out) or "none"


def current_bounding(pid: int | str = "self") -> int:
    """CapBnd of a process: nothing can be kept that is not in it."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return (1 << len(NAMES)) - 1


def resolve(cap_add: list[str], cap_drop: list[str], privileged: bool) -> list[str]:
    """docker's rules: start from the default (or all), drop, then add."""
    if privileged:
        return [f"CAP_{n}" for n in NAMES]
    keep = list(DOCKER_DEFAULT)
    drops = [normalize(c) for c in cap_drop]
    adds = [normalize(c) for c in cap_add]
    if "ALL" in drops:
        keep = []
    keep = [c for c in keep if c not in drops]
    if "ALL" in adds:
        keep = list(NAMES)
    for c in adds:
        if c != "ALL" and c not in keep:
            keep.append(c)
    return [f"CAP_{n}" for n in keep]
