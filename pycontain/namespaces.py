"""Linux namespaces: which ones a container gets, and how to see them.

Each namespace type isolates one kernel resource; everything else (the
kernel itself, its clock, its modules, its sysctls outside the namespaced
ones) stays shared with the host.  ``/proc/<pid>/ns/<name>`` is a handle on
a namespace; its inode number is the namespace's identity, which is how
``pycontain explain`` shows host and container side by side.
"""

from __future__ import annotations

import os

# clone(2) flags, from <linux/sched.h>.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

#: OCI runtime-spec namespace type -> (clone flag, /proc/<pid>/ns name)
BY_OCI_TYPE: dict[str, tuple[int, str]] = {
    "mount": (CLONE_NEWNS, "mnt"),
    "uts": (CLONE_NEWUTS, "uts"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "user": (CLONE_NEWUSER, "user"),
    "time": (CLONE_NEWTIME, "time"),
}

_FLAG_NAMES = [
    (CLONE_NEWNS, "CLONE_NEWNS"), (CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
    (CLONE_NEWUTS, "CLONE_NEWUTS"), (CLONE_NEWIPC, "CLONE_NEWIPC"),
    (CLONE_NEWUSER, "CLONE_NEWUSER"), (CLONE_NEWPID, "CLONE_NEWPID"),
    (CLONE_NEWNET, "CLONE_NEWNET"), (CLONE_NEWTIME, "CLONE_NEWTIME"),
]

#: The names under /proc/<pid>/ns that pycontain shows and tests.
NS_NAMES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


def flag_names(flags: int) -> str:
    names = [name for bit, name in _FLAG_NAMES if flags & bit]
    return "|".join(names) if names else "0"


#: Namespaces a config may name by ``path`` (podman passes the network
#: namespace it set up).  The container's PID 1 joins them with setns() as
#: its first step.  Not pid (setns into a PID namespace only moves children,
#: and our init must be PID 1 of its own), not mount (we build the mount
#: tree ourselves), not user (the maps are ours to write).
JOINABLE = ("network", "ipc", "uts")


def joined(namespaces: list[dict]) -> list[tuple[int, str]]:
    """(clone flag, path) of each namespace the spec joins by path."""
    return [(BY_OCI_TYPE[ns["type"]][0], ns["path"]) for ns in namespaces
            if ns.get("path") and ns["type"] in JOINABLE]


def clone_flags(namespaces: list[dict]) -> tuple[int, int]:
    """Split the spec's ``linux.namespaces`` into (flags for clone3, flags
    to unshare later in the child).

    The cgroup namespace is unshared by the child *after* clone3 has put
    it in its own cgroup: a cgroup namespace is rooted at the cgroup its
    creator is in at that moment, and clone3 creates namespaces before it
    moves the child (runc and crun order it the same way).
    """
    at_clone = later = 0
    for ns in namespaces:
        if ns.get("path"):
            if ns["type"] in JOINABLE:
                continue  # joined with setns() instead: see joined()
            from .errors import PycontainError

            raise PycontainError(
                f"joining an existing {ns['type']} namespace ({ns['path']}) is not supported: "
                f"pycontain joins only {', '.join(JOINABLE)} namespaces by path"
            )
        flag = BY_OCI_TYPE[ns["type"]][0]
        if flag == CLONE_NEWCGROUP:
            later |= flag
        else:
            at_clone |= flag
    return at_clone, later


def inodes(pid: int | str = "self") -> dict[str, int]:
    """Namespace inode numbers of a process: the namespaces' identities."""
    out = {}
    for name in NS_NAMES:
        try:
            out[name] = os.stat(f"/proc/{pid}/ns/{name}").st_ino
        except OSError:
            pass
    return out
