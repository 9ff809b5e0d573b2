"""``exec``: start another process inside a running container.

A container is a set of namespaces and a cgroup, held open by its init.
Entering it means: clone3 straight into its cgroup, then ``setns()`` into
each of its namespaces, read from ``/proc/<init>/ns/*`` (the user
namespace first, so that the others are joined with the capabilities it
grants).  Joining the mount namespace also moves us to its root, which is
the container's pivoted root.  Joining the PID namespace only affects
children, which is why the shim's init forks the command *after* the
``setns`` steps: the command is born inside the container's PID namespace.

The process then gets the same treatment as the container's own command:
working directory, user, capabilities, no_new_privs, seccomp.
"""

from __future__ import annotations

import os

from . import plan as p
from .errors import PycontainError
from .namespaces import BY_OCI_TYPE

#: Join order: user first (it owns the others), mount last but one, so the
#: /proc paths of the init are still reachable while we join the rest.
_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "mount")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .state import ContainerState


def exec_in(st: ContainerState, init_pid: int, config: dict, process: dict, *,
            detach: bool = False, pid_file: str | None = None,
            console_socket: str | None = None, trace: bool = False) -> int:
    from . import security, shim
    from .container import (
        Tracer,
        _exit_code,
        _Forwarder,
        _process_limits,
        _step_error,
        _wait,
    )
    from .spec import DEFAULT_PATH

    plan = p.Plan()
    fds: list[int] = []
    try:
        for ns_type in _ORDER:
            flag, name = BY_OCI_TYPE[ns_type]
            theirs = f"/proc/{init_pid}/ns/{name}"
            try:
                if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                    continue  # shared with the host: nothing to join
                fd = os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise PycontainError(f"exec: cannot open {theirs}: "
                                     f"{os.strerror(e.errno or 0).lower()}") from None
            fds.append(fd)
            plan.setup.append(p.Step(p.SETNS, b=theirs, mode=fd, flags=flag))

        spec = {"process": process, "linux": config.get("linux", {}),
                "root": config.get("root", {})}
        console_parent = console_child = -1
        if process.get("terminal"):
            from .tty import console_channel

            console_parent, console_child = console_channel(console_socket)
            plan.process.append(p.Step(p.CONSOLE, mode=console_child,
                                       flags=0 if console_socket else 1))
        plan.process.append(p.Step(p.CHDIR, b=process.get("cwd") or "/"))
        plan.process += security.process_steps(spec)
        plan.argv = list(process["args"])
        plan.file = plan.argv[0]
        plan.env = list(process.get("env", []))
        path = next((e[5:] for e in plan.env if e.startswith("PATH=")), DEFAULT_PATH)
        plan.search_path = path

        cg = (st.read("cgroup") or "").strip()
        cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if cg else -1
        forwarder = None if detach else _Forwarder()
        try:
            spawned = shim.spawn(plan, cgroup_fd=cg_fd, trace=trace, detach=detach)
        finally:
            if cg_fd >= 0:
                os.close(cg_fd)
            if console_child >= 0:
                os.close(console_child)
        if forwarder is not None:
            forwarder.attach(spawned.pid)
        _process_limits({"process": process}, spawned.pid, Tracer(trace, 0))
        spawned.release()
        master = -1
        if console_parent >= 0:
            from .tty import accept

            master = accept(console_parent)
        error = None
        tracer = Tracer(trace, 0)
        for r in spawned.reports():
            if r.kind == shim.REPORT_ERROR:
                error = _step_error(plan, r.stage, r.index, r.err)
            elif r.kind == shim.REPORT_DONE:
                tracer.emit("exec", (plan.setup if r.stage == shim.STAGE_SETUP
                                     else plan.process)[r.index].describe(), r.ns)
        if pid_file:
            from .state import write_pid_file

            write_pid_file(pid_file, spawned.pid)
        if detach:
            if error is not None:
                raise error
            return 0
        tty = None
        if master >= 0 and error is None:
            from .tty import relay

            tty = relay(master, True)
        status = _wait(spawned.pid)
        if tty is not None:
            tty.finish()
        if forwarder is not None:
            forwarder.restore()
        if error is not None:
            raise error
        return _exit_code(status)
    finally:
        for fd in fds:
            os.close(fd)
