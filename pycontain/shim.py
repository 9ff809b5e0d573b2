"""The one door into C: turn a :class:`~pycontain.plan.Plan` into
``struct pc_op`` arrays and call ``pc_spawn``.

Everything else in pycontain is Python.  This module only marshals data
across the cffi boundary and turns the child's binary reports back into
step indexes, so that errors and ``--trace`` lines can name the step.
"""

from __future__ import annotations

import os

from .errors import PycontainError, strerror

try:
    from ._shim import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    raise PycontainError(
        f"the C shim is not built ({exc}); run 'make setup' or 'pip install .'"
    ) from None

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import Plan, Step

STAGE_SETUP = lib.PC_STAGE_SETUP
STAGE_PROCESS = lib.PC_STAGE_PROCESS
STAGE_EXEC = lib.PC_STAGE_EXEC
STAGE_SPAWN = lib.PC_STAGE_SPAWN
REPORT_DONE = lib.PC_REPORT_DONE
REPORT_ERROR = lib.PC_REPORT_ERROR
REPORT_EXEC = lib.PC_REPORT_EXEC
REPORT_READY = lib.PC_REPORT_READY
REPORT_SIZE = ffi.sizeof("struct pc_report")


class Report:
    """One record from the child: a finished or failed step."""

    __slots__ = ("err", "index", "kind", "ns", "stage")

    def __init__(self, raw: bytes) -> None:
        r = ffi.from_buffer("struct pc_report *", raw)
        self.kind, self.stage, self.index = r.kind, r.stage, r.index
        self.err, self.ns = r.err, r.ns


class Spawned:
    """The container's init, as seen from the host."""

    __slots__ = ("pid", "report_r", "sync_w", "used_clone3")

    def __init__(self, pid: int, sync_w: int, report_r: int, used_clone3: bool) -> None:
        self.pid = pid
        self.sync_w = sync_w      # write one byte to let the child go on
        self.report_r = report_r  # read struct pc_report records until EOF
        self.used_clone3 = used_clone3

    def release(self) -> None:
        """Let the child run its setup (after maps and cgroup are in place)."""
        os.write(self.sync_w, b"\x01")
        os.close(self.sync_w)
        self.sync_w = -1

    def reports(self):  # -> Iterator[Report]
        """Yield the child's reports until its exec closes the channel (or,
        for a created-not-started container, until it reports READY)."""
        buf = b""
        while True:
            try:
                chunk = os.read(self.report_r, REPORT_SIZE * 16)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if not chunk:
                break
            buf += chunk
            while len(buf) >= REPORT_SIZE:
                r = Report(buf[:REPORT_SIZE])
                buf = buf[REPORT_SIZE:]
                yield r
                if r.kind == REPORT_READY:
                    self.close()
                    return
        self.close()

    def close(self) -> None:
        if self.report_r >= 0:
            os.close(self.report_r)
            self.report_r = -1


def _ops(steps: list[Step], keep: list) -> object:
    """Marshal steps into a ``struct pc_op[]``; ``keep`` holds the strings
    alive for as long as the array is used."""
    arr = ffi.new("struct pc_op[]", max(len(steps), 1))
    for i, s in enumerate(steps):
        op = arr[i]
        op.kind = s.kind
        for field in ("a", "b", "c", "d"):
            value = getattr(s, field)
            if value is not None:
                # bytes pass through as they are (a BPF program has NULs).
                raw = value if isinstance(value, bytes) else value.encode()
                cstr = ffi.new("char[]", raw)
                keep.append(cstr)
                setattr(op, field, cstr)
        op.flags = s.flags
        op.mode = s.mode
        op.dev = s.dev
    return arr


def _strings(values: list[str], keep: list) -> object:
    arr = ffi.new("char *[]", len(values) + 1)  # NULL-terminated
    for i, v in enumerate(values):
        cstr = ffi.new("char[]", v.encode())
        keep.append(cstr)
        arr[i] = cstr
    return arr


def spawn(plan: Plan, *, cgroup_fd: int = -1, stdio: tuple[int, int, int] = (-1, -1, -1),
          trace: bool = False, detach: bool = False, status_fd: int = -1) -> Spawned:
    """clone3 the container's init; it waits until :meth:`Spawned.release`."""
    import _socket  # the C module: `socket` would cost an enum import

    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    # Reports travel over a unix socket so that the child can send() with
    # MSG_NOSIGNAL (see report() in shim.c).
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    report_r, report_w = a.detach(), b.detach()
    keep: list = []
    args = ffi.new("struct pc_spawn_args *")
    args.clone_flags = plan.clone_flags
    args.cgroup_fd = cgroup_fd
    args.sync_fd = sync_r
    args.report_fd = report_w
    args.close_fds = [sync_w, report_r, -1, -1]
    args.trace = 1 if trace else 0
    args.detach = 1 if detach else 0
    args.status_fd = status_fd
    # cffi frees an ffi.new() object when its Python owner dies, and a
    # struct field does not own what it points to: ``keep`` does.
    setup_ops, process_ops = _ops(plan.setup, keep), _ops(plan.process, keep)
    argv, envp = _strings(plan.argv, keep), _strings(plan.env, keep)
    keep += [setup_ops, process_ops, argv, envp]
    args.setup = setup_ops
    args.n_setup = len(plan.setup)
    args.process = process_ops
    args.n_process = len(plan.process)
    args.stdio = list(stdio)
    file = ffi.new("char[]", plan.file.encode())
    path = ffi.new("char[]", plan.search_path.encode())
    args.file = file
    args.search_path = path
    if plan.root:
        root = ffi.new("char[]", plan.root.encode())
        keep.append(root)
        args.root = root
    args.argv = argv
    args.envp = envp

    pid = lib.pc_spawn(args)
    os.close(sync_r)
    os.close(report_w)
    if pid < 0:
        os.close(sync_w)
        os.close(report_r)
        raise PycontainError(f"clone3 into new namespaces failed: {strerror(-pid)}")
    return Spawned(pid, sync_w, report_r, bool(args.used_clone3))


def check(rc: int, what: str) -> None:
    """Raise a one-line error for a negative errno from a shim wrapper."""
    if rc < 0:
        raise PycontainError(f"{what}: {strerror(-rc)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    c = ffi.NULL
    check(lib.pc_mount(source.encode() if source else c, target.encode(),
                       fstype.encode() if fstype else c, flags,
                       data.encode() if data else c),
          f"mount {fstype or source} on {target}")


def umount(target: str, flags: int = 0) -> None:
    check(lib.pc_umount2(target.encode(), flags), f"umount {target}")


def unshare(flags: int) -> None:
    check(lib.pc_unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    check(lib.pc_setns(fd, nstype), "setns")
