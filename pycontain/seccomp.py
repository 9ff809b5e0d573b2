"""seccomp: the syscalls a container may not make, as data, compiled to BPF.

A seccomp filter is a small classic-BPF program the kernel runs on every
syscall of a process and of everything it execs.  It sees the syscall's
number, its architecture (ABI) and its six raw arguments (not the memory
they point to), and answers: allow, or fail with an errno.

Which model: a deny list over default-allow
-------------------------------------------
docker's profile is an *allow* list (about 370 names; anything else fails
with EPERM).  pycontain keeps a *deny* list instead: about 70 syscalls that
each have a stated reason, grouped by what they touch, readable in one
screen.  The trade-off, stated plainly:

* An allow list also refuses syscalls nobody has reviewed yet.  A deny list
  lets a new kernel's new syscall through until someone adds it here, and
  until libseccomp knows its name (names it does not know are skipped and
  ``describe`` flags them: on 2.5.4, open_tree_attr).
* An allow list breaks programs that use a syscall newer than the list (or
  newer than libseccomp's table, which decides what the list can name:
  Debian 12's 2.5.4 stops at number 453).  glibc falls back to an older
  syscall only on ENOSYS, not on EPERM; that is how docker's list broke
  images that used clone3 and faccessat2, and why docker returns ENOSYS for
  clone3.  Under emulation the process is QEMU, a host binary, so the list
  would also have to cover everything QEMU itself calls.
* Most of what docker refuses needs a capability the container does not
  keep, so the kernel refuses it anyway; the filter is a second wall for
  kernel code that a bug could open (keyrings, eBPF, io_uring, user
  namespaces).  The syscalls that matter most without any capability are
  here by name: unshare/clone with namespace flags (a new user namespace
  hands out every capability inside it), keyctl, userfaultfd, io_uring,
  bpf, perf_event_open, personality flags.

So the contents follow docker's profile (moby's profiles/seccomp), including
its capability gates: a group is allowed when the container keeps one of
the capabilities named beside it (``--cap-add SYS_ADMIN`` gives back mount
and unshare), and ``--privileged`` loads no filter at all.  Where pycontain
differs from docker, the group says so.  Denied calls fail with EPERM, as in
docker; clone3 fails with ENOSYS so that libc falls back to clone, whose
flags a filter can read (clone3 passes them in memory).

Architectures: the filter names syscalls, libseccomp turns names into
numbers for the host's ABI and its compat ABIs (i386 and x32 on x86_64),
and any other ABI kills the process (csrc/seccomp.c says why).  The host's
ABI is also right under emulation: QEMU translates the guest's syscalls
into host syscalls, and it is those that the kernel filters.

Cost: the program is compiled in the parent, by libseccomp through the C
shim (about 0.9 ms here), and cached under /run/pycontain/seccomp-cache, so
that a container start pays for one small file read (0.01 ms, plus 0.1 ms
to build the rules).  In the container, kernels since 5.11
precompute which syscalls a filter always allows and skip it for them,
which for a deny list is almost every syscall.
"""

from __future__ import annotations

import errno as _errno
import os

from .errors import PycontainError, strerror

try:
    from ._shim import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(f"the C shim is not built ({exc})") from None
if not hasattr(lib, "pc_seccomp_compile"):  # pragma: no cover - depends on the build
    raise ImportError("the C shim was built without csrc/seccomp.c")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# errno is built into the interpreter: free to import.  (ENOSYS is not 38
# everywhere: MIPS says 89.)
EPERM = _errno.EPERM
ENOSYS = _errno.ENOSYS

#: Where compiled programs are kept (tmpfs: gone at reboot, which is also
#: when the kernel or libseccomp may have changed).
CACHE_DIR = "/run/pycontain/seccomp-cache"

# A program cannot exceed BPF_MAXINSNS (4096) instructions of 8 bytes.
_MAX_PROG = 4096 * 8

# Comparison operators (csrc/seccomp_api.h, libseccomp's numbering).
NE, LT, LE, EQ, GE, GT, MASKED_EQ = 1, 2, 3, 4, 5, 6, 7
_OP_TEXT = {NE: "!=", LT: "<", LE: "<=", EQ: "==", GE: ">=", GT: ">"}


class Arg:
    """One condition on a raw syscall argument: ``arg<index> <op> value``,
    or for MASKED_EQ ``(arg<index> & value) == expect``."""

    __slots__ = ("expect", "index", "op", "value")

    def __init__(self, index: int, op: int, value: int, expect: int = 0) -> None:
        self.index, self.op, self.value, self.expect = index, op, value, expect

    def __repr__(self) -> str:
        if self.op == MASKED_EQ:
            return f"(arg{self.index} & {self.value:#x}) == {self.expect:#x}"
        op = _OP_TEXT.get(self.op, f"op{self.op}")
        return f"arg{self.index} {op} {self.value:#x}"


class Rule:
    """``name`` fails with ``errno`` (0: is allowed), if all ``args`` hold."""

    __slots__ = ("args", "errno", "key", "name", "why")

    def __init__(self, name: str, errno: int = EPERM, args: tuple[Arg, ...] = (),
                 why: str = "") -> None:
        if len(args) > lib.PC_SECCOMP_MAX_CMP:
            raise ValueError(f"{name}: at most {lib.PC_SECCOMP_MAX_CMP} conditions")
        if len({a.index for a in args}) != len(args):
            # libseccomp's rule: one comparison per argument.  A test that
            # needs two has to be rephrased as several rules (which are
            # ORed): see _personality.
            raise ValueError(f"{name}: two conditions on one argument")
        self.name, self.errno, self.args, self.why = name, errno, args, why
        # What makes two rules the same program: the cache key is built
        # from it, so it must not include `why`.
        self.key = f"{name} {errno} {args!r}"

    def __repr__(self) -> str:
        return f"Rule({self.key})"


class Group:
    """Syscalls denied for one reason, unless the container keeps one of
    ``caps`` (docker's gates).  ``args`` lists argument patterns: a call is
    denied when any one of them matches (each becomes a rule of its own);
    the default, one empty pattern, denies every call."""

    __slots__ = ("args", "caps", "errno", "names", "why")

    def __init__(self, names: tuple[str, ...], why: str, caps: tuple[str, ...] = (),
                 errno: int = EPERM, args: tuple[tuple[Arg, ...], ...] = ((),)) -> None:
        self.names, self.why, self.caps, self.errno, self.args = names, why, caps, errno, args

    def rules(self) -> list[Rule]:
        return [Rule(n, self.errno, a, self.why) for n in self.names for a in self.args]


# --- argument patterns ----------------------------------------------------

#: The namespace flags of clone() and unshare().  CLONE_NEWTIME (0x80) is
#: unshare/clone3-only: in clone() those bits are the exit signal.
CLONE_NS_FLAGS = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
CLONE_NEWTIME = 0x80


def _any_flag(index: int, flags: Iterable[int]) -> tuple[tuple[Arg, ...], ...]:
    """One pattern per flag: a rule matches if *any* flag is set (libseccomp
    ORs separate rules, and has no "mask is not zero" test)."""
    return tuple((Arg(index, MASKED_EQ, f, f),) for f in flags)


def _clone_flags_arg() -> int:
    # s390's clone takes the stack first and the flags second.
    return 1 if os.uname().machine.startswith("s390") else 0


#: personality(2) values docker allows: PER_LINUX (0), PER_LINUX32 (8),
#: UNAME26 (0x20000), both, and 0xffffffff, which only *queries*.
PERSONALITY_SAFE_BITS = 0x0008 | 0x0020000
PERSONALITY_QUERY = 0xFFFFFFFF


def _personality() -> tuple[tuple[Arg, ...], ...]:
    """Patterns matching every personality value except the safe ones.

    Wanted: deny when the (32-bit) value has a bit outside the safe bits,
    unless it is the query, 0xffffffff.  A filter rule cannot say "value is
    not 0xffffffff and some bad bit is set" in one comparison, and libseccomp
    allows one comparison per argument, so it is spelled as 32 rules, one
    per bit c: "bit c is clear and bit next(c) is set", where next(c) is the
    next *bad* bit above c, wrapping around.

    Why that covers every unsafe value v: v is not all ones, so some bit c0
    is clear; follow c -> next(c) from c0 along the cycle of bad bits.  v has
    a bad bit set, so the walk meets a set bit; the step just before it goes
    from a clear bit c to a set bit next(c): that rule matches.  And no rule
    matches a safe value: each needs a bad bit set and some bit clear.
    tests/test_seccomp_profile.py checks this, and the kernel test runs it.
    """
    bad = [b for b in range(32) if not PERSONALITY_SAFE_BITS >> b & 1]
    patterns = []
    for c in range(32):
        nxt = next((b for b in bad if b > c), bad[0])
        patterns.append((Arg(0, MASKED_EQ, 1 << c | 1 << nxt, 1 << nxt),))
    return tuple(patterns)


# --- the default profile --------------------------------------------------
# Capabilities are spelled without CAP_.  A group with caps=() is always
# denied (docker never allows it either, short of --privileged).


def _groups() -> list[Group]:
    clone_arg = _clone_flags_arg()
    ns_flags = tuple(CLONE_NS_FLAGS.values())
    return [
        Group(("keyctl", "add_key", "request_key"),
              "kernel keyrings are not namespaced: they hold the host's keys"),
        Group(("init_module", "finit_module", "delete_module"),
              "kernel modules run as part of the host kernel", caps=("SYS_MODULE",)),
        Group(("create_module", "get_kernel_syms", "query_module"),
              "pre-2.6 module interface"),
        Group(("kexec_load", "kexec_file_load"), "replaces the running host kernel"),
        Group(("reboot",), "restarts the host (in a PID namespace: kills its init)",
              caps=("SYS_BOOT",)),
        Group(("swapon", "swapoff"), "host memory management"),
        Group(("acct",), "process accounting into a host-wide file", caps=("SYS_PACCT",)),
        # adjtimex/clock_adjtime stay allowed, as in docker: with modes == 0
        # they only read (ntp_gettime), and the kernel asks for CAP_SYS_TIME
        # in the initial user namespace before they change anything.
        Group(("settimeofday", "stime", "clock_settime", "clock_settime64"),
              "the realtime clock is the host's (time namespaces do not cover it)",
              caps=("SYS_TIME",)),
        # docker never allows pivot_root, even with CAP_SYS_ADMIN; here it
        # goes with the rest of the mount API.
        Group(("mount", "umount", "umount2", "pivot_root", "mount_setattr",
               "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
               "open_tree_attr"),
              "changes the mount tree: could uncover masked or read-only paths",
              caps=("SYS_ADMIN",)),
        Group(("setns",), "joins another namespace", caps=("SYS_ADMIN",)),
        # docker denies unshare outright; unsharing only files, fs or
        # semaphore undo state (no namespace flag) is harmless, so it stays.
        Group(("unshare",), "new namespaces, above all a user namespace, hand out "
              "every capability inside them", caps=("SYS_ADMIN",),
              args=_any_flag(0, (*ns_flags, CLONE_NEWTIME))),
        Group(("clone",), "new namespaces, above all a user namespace, hand out "
              "every capability inside them", caps=("SYS_ADMIN",),
              args=_any_flag(clone_arg, ns_flags)),
        Group(("clone3",), "its flags are in memory a filter cannot read: ENOSYS "
              "makes libc fall back to clone()", caps=("SYS_ADMIN",), errno=ENOSYS),
        Group(("open_by_handle_at",), "opens any file of a filesystem by handle, "
              "past the container's root (the 'shocker' escape)",
              caps=("DAC_READ_SEARCH",)),
        Group(("bpf",), "eBPF programs run in the host kernel", caps=("SYS_ADMIN", "BPF")),
        Group(("perf_event_open",), "observes the host; a rich source of kernel bugs",
              caps=("SYS_ADMIN", "PERFMON")),
        Group(("userfaultfd",), "lets a process stall the kernel mid-copy, the usual "
              "tool for winning kernel races"),
        # docker >= 25 blocks io_uring as well (moby#46762).
        Group(("io_uring_setup", "io_uring_enter", "io_uring_register"),
              "its operations never pass through seccomp, and it is a rich source "
              "of kernel bugs"),
        # ptrace and process_vm_readv/writev stay allowed, as in docker:
        # since Linux 4.8 seccomp re-checks a syscall a tracer rewrote.
        Group(("kcmp", "pidfd_getfd", "process_madvise"),
              "inspects or steals from other processes", caps=("SYS_PTRACE",)),
        Group(("iopl", "ioperm"), "direct access to the host's I/O ports",
              caps=("SYS_RAWIO",)),
        Group(("quotactl", "quotactl_fd"), "host filesystem quotas", caps=("SYS_ADMIN",)),
        Group(("lookup_dcookie",), "host-wide path lookup for profilers",
              caps=("SYS_ADMIN",)),
        Group(("fanotify_init",), "can watch whole host filesystems", caps=("SYS_ADMIN",)),
        Group(("syslog",), "reads and clears the host kernel's log",
              caps=("SYS_ADMIN", "SYSLOG")),
        Group(("sethostname", "setdomainname"), "the hostname is pycontain's to set",
              caps=("SYS_ADMIN",)),
        Group(("vhangup",), "hangs up the terminal", caps=("SYS_TTY_CONFIG",)),
        Group(("get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind",
               "migrate_pages", "move_pages"),
              "NUMA placement is the host's policy", caps=("SYS_NICE",)),
        Group(("chroot",), "needs CAP_SYS_CHROOT anyway", caps=("SYS_CHROOT",)),
        Group(("uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "bdflush",
               "vm86", "vm86old"),
              "obsolete interfaces: old kernel code, no modern users"),
        Group(("personality",), "only PER_LINUX, PER_LINUX32 and UNAME26 (or a query): "
              "other flags turn off ASLR or make data executable", args=_personality()),
        # AF_VSOCK = 40.  Newer docker refuses it too.
        Group(("socket",), "AF_VSOCK talks to the hypervisor, outside any namespace",
              args=((Arg(0, EQ, 40),),)),
    ]


def _cap(name: str) -> str:
    return name.strip().upper().removeprefix("CAP_")


def default_rules(caps: Iterable[str]) -> list[Rule]:
    """pycontain's default profile for a container that keeps ``caps``
    (``SYS_ADMIN`` or ``CAP_SYS_ADMIN``, any case)."""
    kept = {_cap(c) for c in caps}
    rules: list[Rule] = []
    for group in _groups():
        if not kept.intersection(group.caps):
            rules += group.rules()
    return rules


def describe(rules: list[Rule], default_errno: int = 0) -> list[str]:
    """One line per syscall (its rules merged), for ``--trace``.

    Marks the names this libseccomp does not know, since those are not
    filtered at all.
    """
    by_name: dict[str, list[Rule]] = {}
    for r in rules:
        by_name.setdefault(r.name, []).append(r)
    default = "allowed" if not default_errno else f"fail with {_errno_name(default_errno)}"
    head = (f"seccomp: syscalls not listed are {default} (libseccomp {version_text()}, "
            f"{os.uname().machine})")
    lines = [head]
    for name, group in by_name.items():
        actions = sorted({_errno_name(r.errno) if r.errno else "allow" for r in group})
        conds = [r.args for r in group if r.args]
        if len(conds) < len(group):
            when = ""
        elif len(conds) <= 2:
            when = " if " + " or ".join(" and ".join(map(repr, c)) for c in conds)
        else:
            when = f" if one of {len(conds)} conditions on its arguments holds"
        nr = lib.pc_seccomp_syscall_number(name.encode())
        note = ""
        if nr == -1:
            note = " [unknown to this libseccomp: NOT filtered]"
        elif nr < 0:
            note = " [compat ABIs only]"
        why = f": {group[0].why}" if group[0].why else ""
        lines.append(f"seccomp: {name} -> {'/'.join(actions)}{when}{why}{note}")
    return lines


def _errno_name(e: int) -> str:
    return _errno.errorcode.get(e, str(e))


def version_text() -> str:
    v = lib.pc_seccomp_version()
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


# --- compiling and caching ------------------------------------------------


def _compile(rules: list[Rule], default_errno: int) -> bytes:
    """Run libseccomp (through the C shim) over ``rules``."""
    c_rules = ffi.new("struct pc_seccomp_rule[]", len(rules))
    keep = []  # the name strings must outlive the call
    for c, r in zip(c_rules, rules):
        name = ffi.new("char[]", r.name.encode())
        keep.append(name)
        c.name, c.errno_ret, c.ncmp = name, r.errno, len(r.args)
        for slot, a in zip(c.cmp, r.args):
            slot.arg, slot.op, slot.a, slot.b = a.index, a.op, a.value, a.expect
    out = ffi.new("unsigned char[]", _MAX_PROG)
    n = lib.pc_seccomp_compile(c_rules, len(rules), default_errno, out, _MAX_PROG)
    if n < 0:
        bad = next((r for r, c in zip(rules, c_rules) if c.result < 0), None)
        what = f"rule {bad.key!r}" if bad is not None else "the profile"
        raise PycontainError(f"seccomp: cannot compile {what}: {strerror(-n)}")
    return ffi.buffer(out, n)[:]


def _cache_key(rules: list[Rule], default_errno: int) -> tuple[str, bytes]:
    """(file name, the exact text it must start with).

    Everything that shapes the program is in the text: the rules, the
    default, libseccomp's version (its tables and code generator), the arch
    and our generator's version.  The file holds the text in full and a hit
    compares it byte for byte, so the name needs to spread, not to resist
    collisions: hash() of an int is deterministic (unlike str's) and costs
    nothing, where importing hashlib alone takes ~2.5 ms.
    """
    machine = os.uname().machine
    head = (f"pycontain-seccomp gen={lib.PC_SECCOMP_GENERATOR} libseccomp={version_text()} "
            f"arch={machine} default={default_errno}\n")
    text = (head + "\n".join(r.key for r in rules) + "\n\0").encode()
    spread = hash(int.from_bytes(text, "little")) & 0xFFFFFFFFFFFFFFFF
    return f"{machine}-{spread:016x}.bpf", text


def _read_cache(path: str, text: bytes) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        # Only trust a file we wrote ourselves and nobody else can change:
        # a weakened program here would be loaded into every container.
        if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not 0 < st.st_size <= 1 << 20:
            return None
        data = os.read(fd, st.st_size)
    except OSError:
        return None
    finally:
        os.close(fd)
    prog = data[len(text):]
    if not data.startswith(text) or not prog or len(prog) % 8:
        return None
    return prog


def _write_cache(cache_dir: str, path: str, text: bytes, prog: bytes) -> None:
    """Best effort: a read-only /run or a non-root user only costs speed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, text + prog)
        finally:
            os.close(fd)
        # Readers see the old file or the whole new one, never half of it.
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def compile_filter(rules: list[Rule], default_errno: int = 0,
                   cache_dir: str | None = CACHE_DIR) -> bytes:
    """The BPF program (``struct sock_filter`` array) for ``rules``.

    ``default_errno`` is what syscalls no rule names get (0: allowed, the
    deny-list model).  With ``cache_dir`` (None: no cache) a program
    compiled once is reused by later container starts.
    """
    if cache_dir is None:
        return _compile(rules, default_errno)
    name, text = _cache_key(rules, default_errno)
    path = os.path.join(cache_dir, name)
    prog = _read_cache(path, text)
    if prog is None:
        prog = _compile(rules, default_errno)
        _write_cache(cache_dir, path, text, prog)
    return prog


def load(prog: bytes) -> None:
    """Load ``prog`` into the *calling* process (tests; pycontain itself
    loads it in C, as the container process's last step before execve).
    The caller must have set no_new_privs first."""
    rc = lib.pc_seccomp_load(prog, len(prog))
    if rc < 0:
        raise PycontainError(f"seccomp: cannot load the filter: {strerror(-rc)}")
