"""The plan: every kernel-level step of one container, as data.

A container's start is compiled into a :class:`Plan` *before* anything
runs.  The same objects are then

* printed by ``--trace`` (and ``pycontain explain``),
* asserted on by the unit tests, and
* executed: the ``setup`` and ``process`` steps by the C shim inside the
  new namespaces (``shim.py`` turns each :class:`Step` into one
  ``struct pc_op``).

So what ``--trace`` shows cannot drift from what the runtime does.  What
Python does on the host around them (state dir, cgroup, binfmt_misc,
tarball, network) is done by ``container.py`` and traced as it happens.

The phases, in the order they run::

    clone     clone3() into new namespaces (and the cgroup)
    maps      Python writes uid_map/gid_map while the child waits
    setup     C, as the container's PID 1: mounts, hostname, pivot_root
    process   C, as the command: user, working directory, privileges
    exec      C: execve() of the command, searching the container's PATH
"""

from __future__ import annotations

# Op kinds: keep in sync with the enum in csrc/shim_api.h (checked by
# tests/test_plan.py against the compiled shim).
MOUNT = 1
REMOUNT = 2
MKDIR = 3
MKFILE = 4
MKNOD = 5
SYMLINK = 6
SETHOSTNAME = 7
PIVOT_ROOT = 8
MOVE_ROOT = 9
UNSHARE = 10
LOOPBACK_UP = 11
WRITE_FILE = 12
CHDIR = 13
SETGROUPS = 14
SETGID = 15
SETUID = 16
UMOUNT = 17
SETSID_CTTY = 18
NO_NEW_PRIVS = 19
CONSOLE = 20
MASK = 21
READONLY = 22
CAPBSET = 23
CAPSET = 24
SECCOMP = 25
WAIT_START = 26
SETNS = 27
ATTACH_TREE = 28
UMASK = 29

# mount(2) flags, from <sys/mount.h> (a stable kernel ABI).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

_MS_NAMES = [
    (MS_RDONLY, "MS_RDONLY"), (MS_NOSUID, "MS_NOSUID"), (MS_NODEV, "MS_NODEV"),
    (MS_NOEXEC, "MS_NOEXEC"), (MS_REMOUNT, "MS_REMOUNT"), (MS_NOATIME, "MS_NOATIME"),
    (MS_NODIRATIME, "MS_NODIRATIME"), (MS_BIND, "MS_BIND"), (MS_MOVE, "MS_MOVE"),
    (MS_REC, "MS_REC"), (MS_PRIVATE, "MS_PRIVATE"), (MS_SLAVE, "MS_SLAVE"),
    (MS_SHARED, "MS_SHARED"), (MS_RELATIME, "MS_RELATIME"),
    (MS_STRICTATIME, "MS_STRICTATIME"),
]


def mount_flag_names(flags: int) -> str:
    names = [name for bit, name in _MS_NAMES if flags & bit]
    return "|".join(names) if names else "0"


class Step:
    """One step: ``kind`` is a PC_OP_* number; the meaning of ``a``..``d``,
    ``flags``, ``mode`` and ``dev`` per kind is documented in
    csrc/shim_api.h."""

    __slots__ = ("a", "b", "c", "d", "dev", "flags", "kind", "mode", "why")

    def __init__(
        self,
        kind: int,
        a: str | bytes | None = None,
        b: str | None = None,
        c: str | None = None,
        d: str | None = None,
        flags: int = 0,
        mode: int = 0,
        dev: int = 0,
        why: str = "",
    ) -> None:
        self.kind = kind
        self.a, self.b, self.c, self.d = a, b, c, d
        self.flags, self.mode, self.dev = flags, mode, dev
        self.why = why

    def describe(self) -> str:
        """The step as a syscall-like line, for --trace and for tests."""
        k = self.kind
        if k == MOUNT:
            data = f", {self.d!r}" if self.d else ""
            return (f"mount({self.a!r}, {self.b!r}, {self.c!r}, "
                    f"{mount_flag_names(self.flags)}{data})")
        if k == REMOUNT:
            return (f"mount(NULL, {self.b!r}, NULL, MS_REMOUNT|MS_BIND|"
                    f"{mount_flag_names(self.flags)} + the flags it has)")
        if k == MKDIR:
            return f"mkdir -p {self.b} (mode {self.mode:o})"
        if k == MKFILE:
            return f"create {self.b} (mode {self.mode:o}) as a bind-mount target"
        if k == MKNOD:
            kind = "c" if self.mode & 0o020000 else "b"
            return (f"mknod({self.b!r}, {kind} {self.dev >> 8}:{self.dev & 0xff}, "
                    f"mode {self.mode & 0o7777:o})")
        if k == SYMLINK:
            return f"symlink({self.a!r} -> {self.b!r})"
        if k == SETHOSTNAME:
            return f"sethostname({self.a!r})"
        if k == PIVOT_ROOT:
            return (f"pivot_root({self.b!r}): fchdir, pivot_root('.', '.'), "
                    "old root MS_SLAVE|MS_REC, umount2('.', MNT_DETACH)")
        if k == MOVE_ROOT:
            return f"mount({self.b!r}, '/', MS_MOVE); chroot('.')  (no pivot_root)"
        if k == UNSHARE:
            from .namespaces import flag_names

            return f"unshare({flag_names(self.flags)})"
        if k == LOOPBACK_UP:
            return "ioctl(SIOCSIFFLAGS, 'lo', IFF_UP)"
        if k == WRITE_FILE:
            return f"write {self.b} <- {self.a!r}"
        if k == CHDIR:
            return f"chdir({self.b!r})"
        if k == SETGROUPS:
            return f"setgroups([{self.a}])"
        if k == SETGID:
            return f"setresgid({self.mode}, {self.mode}, {self.mode})"
        if k == SETUID:
            return f"setresuid({self.mode}, {self.mode}, {self.mode})"
        if k == UMOUNT:
            return f"umount2({self.b!r}, {'MNT_DETACH' if self.flags & MNT_DETACH else 0})"
        if k == SETSID_CTTY:
            return f"setsid(); ioctl({self.mode}, TIOCSCTTY)"
        if k == NO_NEW_PRIVS:
            return "prctl(PR_SET_NO_NEW_PRIVS, 1)"
        if k == CONSOLE:
            return ("open /dev/ptmx in the container, send the master to pycontain, "
                    "setsid(), TIOCSCTTY, dup2 the pty onto 0, 1, 2")
        if k == MASK:
            return f"mask {self.b} (empty read-only tmpfs, or /dev/null bound over it)"
        if k == READONLY:
            return f"mount({self.b!r}, {self.b!r}, MS_BIND|MS_REC) then remount MS_RDONLY"
        if k == CAPBSET:
            from .capabilities import names

            return (f"prctl(PR_SET_KEEPCAPS, 1); prctl(PR_CAPBSET_DROP) for all but "
                    f"[{names(self.flags)}]")
        if k == CAPSET:
            from .capabilities import names

            amb = f"; ambient [{names(self.dev)}]" if self.dev else "; ambient cleared"
            return f"capset(effective=permitted=inheritable=[{names(self.flags)}]){amb}"
        if k == SECCOMP:
            return (f"seccomp(SECCOMP_SET_MODE_FILTER, {self.dev // 8} BPF instructions)"
                    + (f": {self.why}" if self.why else ""))
        if k == WAIT_START:
            return ("wait for 'pycontain start': open the exec FIFO (fd "
                    f"{self.mode}) for writing")
        if k == SETNS:
            from .namespaces import flag_names

            return f"setns({self.b or self.mode}, {flag_names(self.flags)})"
        if k == ATTACH_TREE:
            idmap = " idmapped through the container's user namespace" if self.c else ""
            onto = "the rootfs directory, then fchdir into it" if self.dev == 1 else repr(self.b)
            return (f"move_mount(open_tree({self.a!r}, OPEN_TREE_CLONE"
                    f"{'|AT_RECURSIVE' if self.flags & MS_REC else ''}){idmap}, {onto})")
        if k == UMASK:
            return f"umask({self.mode:04o})"
        return f"op {k}"


class Plan:
    """Everything one container start will do, in order."""

    __slots__ = (
        "argv",
        "cgroup_dir",
        "clone_flags",
        "env",
        "file",
        "gid_map",
        "notes",
        "process",
        "root",
        "search_path",
        "setup",
        "uid_map",
    )

    def __init__(self) -> None:
        self.clone_flags = 0             # CLONE_NEW* passed to clone3
        self.cgroup_dir: str | None = None   # CLONE_INTO_CGROUP target
        self.uid_map: str | None = None  # written while the child waits
        self.gid_map: str | None = None
        self.setup: list[Step] = []      # C, as PID 1
        self.process: list[Step] = []    # C, as the command
        self.file = ""                   # what execve looks up
        self.argv: list[str] = []
        self.env: list[str] = []
        self.search_path = ""            # the container's PATH
        self.notes: list[str] = []       # decisions worth showing (emulation ...)
        self.root: str | None = None     # setup paths under it are walked safely (C)

    def lines(self) -> list[str]:
        """The whole plan as text, one step a line (``pycontain run --dry-run``)."""
        from .namespaces import flag_names

        out = [f"note: {n}" for n in self.notes]
        cg = f" into cgroup {self.cgroup_dir}" if self.cgroup_dir else ""
        out.append(f"clone:   clone3({flag_names(self.clone_flags)}){cg}")
        if self.uid_map:
            out.append(f"maps:    uid_map {self.uid_map!r}, gid_map {self.gid_map!r}")
        out += [f"setup:   {s.describe()}" for s in self.setup]
        out += [f"process: {s.describe()}" for s in self.process]
        out.append(f"exec:    execve({self.file!r}, {self.argv!r}) "
                   f"searching PATH={self.search_path}")
        return out
