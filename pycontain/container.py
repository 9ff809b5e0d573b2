"""One container's life, from spec to exit status.

:func:`run` is the story ``pycontain run`` tells, in order:

1. record the container under /run/pycontain (so a crash can be cleaned up);
2. unpack a tarball rootfs, if that is what we were given;
3. look at the entrypoint: native, or foreign and needing QEMU?;
4. compile everything into a :class:`~pycontain.plan.Plan`;
5. create the cgroup, clone3 the container's init into it, write the
   user-namespace maps, and let the init run its setup;
6. forward signals (and relay the terminal) until the command exits;
7. remove the cgroup, the state and the unpacked rootfs, whatever happened.
"""

from __future__ import annotations

import os
import sys
import time

from . import plan as p
from .errors import (
    EXIT_CANNOT_INVOKE,
    EXIT_NOT_FOUND,
    EXIT_RUNTIME,
    PycontainError,
    strerror,
)
from .namespaces import CLONE_NEWNET, CLONE_NEWUSER, clone_flags, joined
from .spec import DEFAULT_PATH, getenv, has_namespace, setenv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .emulation import Emulation
    from .network import Attachment, BridgeConfig

#: Signals pycontain does not forward (docker and runc skip the same).
_NOT_FORWARDED = {17, 28, 23}  # SIGCHLD, SIGWINCH, SIGURG


class RunOptions:
    """How to run, as opposed to what to run (that is the spec)."""

    __slots__ = (
        "bundle",
        "console_socket",
        "container_id",
        "detach",
        "dry_run",
        "emulation",
        "exec_fifo",
        "interactive",
        "name",
        "net",
        "no_pivot",
        "qemu_dir",
        "remove_rootfs",
        "result_pid",
        "state_root",
        "stats",
        "trace",
    )

    def __init__(self) -> None:
        self.trace = False
        self.dry_run = False
        self.interactive = False
        self.no_pivot = False
        self.emulation = "auto"    # auto | sandbox | host | off
        self.qemu_dir: str | None = None
        self.name: str | None = None
        self.stats = False
        self.state_root = "/run/pycontain"
        self.remove_rootfs = False
        self.net: BridgeConfig | None = None  # --network bridge (network.py)
        # OCI create (oci.py): a given id, and a container that outlives us,
        # blocked before execve on the exec FIFO until `start`.
        self.container_id: str | None = None
        self.bundle = ""                   # OCI: the bundle, for state and hooks
        self.detach = False
        self.exec_fifo = -1                # O_PATH fd of the FIFO, inherited
        self.console_socket: str | None = None  # OCI --console-socket path
        self.result_pid = 0                # out: the container's init pid


class Tracer:
    """``--trace``: each kernel-level step on stderr, with its time since start."""

    __slots__ = ("enabled", "t0")

    def __init__(self, enabled: bool, t0: int) -> None:
        self.enabled = enabled
        self.t0 = t0

    def emit(self, phase: str, text: str, ns: int | None = None) -> None:
        if not self.enabled:
            return
        ms = ((ns if ns is not None else time.monotonic_ns()) - self.t0) / 1e6
        sys.stderr.write(f"[{ms:8.3f} ms] {phase:<8} {text}\n")
        sys.stderr.flush()


def new_id() -> str:
    return os.urandom(6).hex()


# --------------------------------------------------------------- planning --

def build_plan(spec: dict, opts: RunOptions, *, etc_files: dict[str, str],
               console_fd: int = -1, emulation: Emulation | None = None) -> p.Plan:
    """Compile the spec into the steps a container start takes."""
    from . import rootfs

    plan = p.Plan()
    plan.root = spec["root"]["path"]
    at_clone, later = clone_flags(spec["linux"]["namespaces"])
    plan.clone_flags = at_clone
    process = spec["process"]
    in_userns = bool(at_clone & CLONE_NEWUSER)

    # First of all, join the namespaces the config names by path (podman's
    # network namespace): the mounts below (sysfs) must see the joined one.
    for flag, ns_path in joined(spec["linux"]["namespaces"]):
        plan.setup.append(p.Step(p.SETNS, b=ns_path, flags=flag, why=f"join {ns_path}",
                                 mode=0 if opts.dry_run else _open_namespace(ns_path)))
    if later:
        plan.setup.append(p.Step(p.UNSHARE, flags=later,
                                 why="cgroup namespace rooted at our own group"))
    if at_clone & CLONE_NEWNET:  # a joined one is its maker's to set up
        plan.setup.append(p.Step(p.LOOPBACK_UP, why="a new netns has only lo, and it is down"))
    if spec.get("hostname") and has_namespace(spec, "uts"):
        plan.setup.append(p.Step(p.SETHOSTNAME, a=spec["hostname"]))

    extra: list[p.Step] = []
    if emulation is not None:
        plan.notes += emulation.notes
        extra += emulation.setup_steps
    from . import security

    extra += security.sysctl_steps(spec)  # before /proc/sys turns read-only
    extra += security.path_steps(spec)
    if in_userns:
        plan.uid_map = _id_map(spec["linux"].get("uidMappings"))
        plan.gid_map = _id_map(spec["linux"].get("gidMappings"))
    no_pivot = opts.no_pivot or rootfs.host_root_is_ramfs()
    plan.setup += rootfs.root_steps(spec, in_userns=in_userns,
                                    own_netns=has_namespace(spec, "network"),
                                    etc_files=etc_files,
                                    no_pivot=no_pivot, extra_after_mounts=extra)
    if in_userns and spec.get("annotations", {}).get("io.pycontain.userns") in ("auto", "map"):
        from .userns import attach_host_trees

        # Rootfs idmapped, host binds cloned by pycontain: see userns.py.
        plan.setup = attach_host_trees(plan.setup, spec["root"]["path"])

    # The command's own steps, after pivot_root, in container paths.
    if process.get("terminal"):
        # flags=1: wait for pycontain's answer (window size set); an OCI
        # caller's --console-socket sends none.
        plan.process.append(p.Step(p.CONSOLE, mode=console_fd,
                                   flags=0 if opts.console_socket else 1))
    cwd = process.get("cwd") or "/"
    if cwd != "/":
        plan.process.append(p.Step(p.MKDIR, b=cwd, mode=0o755, why="docker creates -w"))
    plan.process.append(p.Step(p.CHDIR, b=cwd))
    wait = [p.Step(p.WAIT_START, mode=opts.exec_fifo)] if opts.exec_fifo >= 0 else []
    plan.process += security.process_steps(spec, wait_start=wait)

    plan.argv = list(process["args"])
    plan.file = plan.argv[0]
    plan.env = list(process["env"])
    plan.search_path = getenv(spec, "PATH") or DEFAULT_PATH
    return plan


def _open_namespace(path: str) -> int:
    """An fd for setns(); the init inherits it across clone (CLOEXEC only
    matters at execve, and the init closes it before the command runs)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PycontainError(f"namespace {path}: {strerror(e.errno or 0)}") from None


def _cgroups_path(mount: str, value: str) -> str:
    """linux.cgroupsPath under the v2 mount: absolute from its root,
    relative under pycontain's own parent group."""
    from .cgroups import PARENT

    if ":" in value:
        raise PycontainError(f"config.json: linux.cgroupsPath {value!r} is systemd's "
                             "slice:prefix:name form; pycontain manages cgroupfs directly")
    parts = [x for x in value.split("/") if x]
    if not parts or any(x in (".", "..") for x in parts):
        raise PycontainError(f"config.json: linux.cgroupsPath {value!r} is not a group path")
    if value.startswith("/"):
        return os.path.join(mount, *parts)
    return os.path.join(mount, PARENT, *parts)


def _process_limits(spec: dict, pid: int, tracer: Tracer) -> None:
    """process.rlimits and process.oomScoreAdj, set on the init from the
    host while it waits: the command it forks inherits both."""
    process = spec["process"]
    if process.get("rlimits"):
        import resource

        for r in process["rlimits"]:
            name = str(r.get("type", ""))
            which = getattr(resource, name, None) if name.startswith("RLIMIT_") else None
            if which is None:
                raise PycontainError(f"config.json: process.rlimits: unknown limit {name!r}")
            # JSON carries RLIM_INFINITY as 2**64-1.
            soft, hard = (resource.RLIM_INFINITY if int(r[k]) >= 1 << 63 else int(r[k])
                          for k in ("soft", "hard"))
            try:
                resource.prlimit(pid, which, (soft, hard))
            except ValueError:
                raise PycontainError(f"config.json: process.rlimits {name}: soft {soft} "
                                     f"is above hard {hard}") from None
            except OSError as e:
                own = resource.getrlimit(which)[1]
                why = strerror(e.errno or 0)
                if e.errno == 1 and own != resource.RLIM_INFINITY and hard > own:
                    why = (f"raising the hard limit above pycontain's own ({own}) needs "
                           "CAP_SYS_RESOURCE, which this process lacks")
                raise PycontainError(f"config.json: process.rlimits {name} "
                                     f"{soft}:{hard}: {why}") from None
            tracer.emit("host", f"prlimit({pid}, {name}, soft={soft}, hard={hard})")
    adj = process.get("oomScoreAdj")
    if adj is not None:
        path = f"/proc/{pid}/oom_score_adj"
        try:
            with open(path, "w") as f:
                f.write(str(int(adj)))
        except OSError as e:
            why = strerror(e.errno or 0)
            if e.errno == 13:
                why += " (lowering it needs CAP_SYS_RESOURCE)"
            raise PycontainError(f"config.json: process.oomScoreAdj {adj}: {path}: "
                                 f"{why}") from None
        tracer.emit("host", f"write {path} <- {adj}")


def _id_map(mappings: list[dict] | None) -> str:
    """OCI uid/gidMappings as the text /proc/<pid>/uid_map takes."""
    if not mappings:
        raise PycontainError("a user namespace needs linux.uidMappings and gidMappings")
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def etc_contents(spec: dict, network_host: bool,
                 net: Attachment | None = None) -> dict[str, str]:
    """What the container's /etc/hostname, /etc/hosts, /etc/resolv.conf say."""
    hostname = spec.get("hostname") or os.uname().nodename
    files = {"/etc/hostname": hostname + "\n"}
    if network_host:
        for name in ("hosts", "resolv.conf"):
            try:
                with open(f"/etc/{name}") as f:
                    files[f"/etc/{name}"] = f.read()
            except OSError:
                pass
    elif net is not None:
        files.update(net.etc_files(hostname))  # its bridge address, a resolv.conf
    else:
        files["/etc/hosts"] = (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.1.1\t{hostname}\n"
        )
        # No resolv.conf: a container with only lo has no one to ask.
    return files


# ---------------------------------------------------------------- running --

def _exec_error(plan: p.Plan, err: int) -> PycontainError:
    name = plan.file
    if err == 2:  # ENOENT
        if "/" in name:
            return PycontainError(f"{name}: no such file or directory", EXIT_NOT_FOUND)
        return PycontainError(f"executable file not found in $PATH: {name}", EXIT_NOT_FOUND)
    if err == 13:  # EACCES
        return PycontainError(f"{name}: permission denied (is it executable?)",
                              EXIT_CANNOT_INVOKE)
    if err == 8:  # ENOEXEC
        return PycontainError(
            f"{name}: exec format error (not a program this kernel can run; a binary "
            "for another CPU needs emulation, see 'pycontain inspect')", EXIT_CANNOT_INVOKE)
    return PycontainError(f"cannot execute {name}: {strerror(err)}", EXIT_CANNOT_INVOKE)


def _step_error(plan: p.Plan, stage: int, index: int, err: int) -> PycontainError:
    from . import shim

    if stage == shim.STAGE_EXEC:
        return _exec_error(plan, err)
    steps = {shim.STAGE_SETUP: plan.setup, shim.STAGE_PROCESS: plan.process}.get(stage)
    if steps is not None and 0 <= index < len(steps):
        step = steps[index]
        what = step.why or step.describe()
        if step.why:
            what = f"{step.why}: {step.describe()}"
        return PycontainError(f"container setup failed at {what}: {strerror(err)}")
    return PycontainError(f"starting the container failed: {strerror(err)}")


class _Forwarder:
    """Forward every signal pycontain receives to the container's init.

    Uses the low-level ``_signal`` module: ``signal`` would import enum,
    which costs milliseconds on every start."""

    def __init__(self) -> None:
        import _signal

        self._signal = _signal
        self.pid = 0
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}
        for sig in range(1, _signal.NSIG):
            if sig in _NOT_FORWARDED or sig in (9, 19):  # KILL, STOP
                continue
            try:
                self.previous[sig] = _signal.signal(sig, self._handle)
            except (OSError, ValueError, RuntimeError):
                pass  # e.g. glibc's internal real-time signals

    def _handle(self, sig: int, frame: object) -> None:
        if self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        else:
            self.pending.append(sig)

    def attach(self, pid: int) -> None:
        self.pid = pid
        for sig in self.pending:
            os.kill(pid, sig)
        self.pending.clear()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            try:
                self._signal.signal(sig, handler)
            except (OSError, ValueError, TypeError):
                pass


def run(spec: dict, opts: RunOptions) -> int:
    """Run the container described by ``spec``; return its exit status."""
    from . import cgroups, state

    t0 = time.monotonic_ns()
    tracer = Tracer(opts.trace, t0)
    # The rootfs path itself is the host's to resolve (it is trusted); all
    # paths below it are resolved inside it, never following it out.
    spec["root"]["path"] = os.path.realpath(spec["root"]["path"])
    cid = opts.container_id or new_id()
    st = state.ContainerState(cid, opts.state_root)
    keep = False  # a detached container's state outlives this process
    cgroup: cgroups.Cgroup | None = None
    forwarder: _Forwarder | None = None
    tty = None
    plan: p.Plan | None = None
    emulation: Emulation | None = None
    net: Attachment | None = None
    lease = None  # --userns=auto: our range of host ids
    tree_socks = None  # --userns: mount trees pycontain sends to the init
    try:
        if not opts.dry_run:
            _collect_stale(opts)
            st.create(state.owner_token())
        root = spec["root"]["path"]
        if opts.remove_rootfs:
            st.rootfs_dir = root

        if not spec.get("hostname"):
            spec["hostname"] = cid
        if has_namespace(spec, "uts"):
            setenv(spec, "HOSTNAME", spec["hostname"])
        network_host = not has_namespace(spec, "network")
        if opts.net is not None and not opts.dry_run:
            # Bridge, lease, NAT rule, port proxy: before /etc/hosts (which
            # names the leased address) and before the clone.
            from .network import Attachment

            net = Attachment.prepare(cid, opts.net, st, tracer)
        etc_files: dict[str, str] = {}
        if not opts.dry_run:
            mounted = {m.get("destination") for m in spec["mounts"]}
            for ctr_path, text in etc_contents(spec, network_host, net).items():
                if ctr_path in mounted:
                    continue  # the config brings its own (podman does)
                etc_files[ctr_path] = st.write(os.path.basename(ctr_path), text)
        else:
            etc_files = {k: f"{st.dir}/{os.path.basename(k)}"
                         for k in etc_contents(spec, network_host, net)}

        if spec.get("annotations", {}).get("io.pycontain.userns") in ("auto", "map"):
            from . import userns

            lease = userns.prepare(spec, dry_run=opts.dry_run)
            if not opts.dry_run:
                import socket

                if opts.exec_fifo >= 0:  # the command, root of the range, opens it
                    os.chown(f"/proc/self/fd/{opts.exec_fifo}", *userns.host_root(spec))

                tree_socks = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        emulation = _prepare_emulation(spec, opts, tracer)

        console_parent = console_child = -1
        if spec["process"].get("terminal"):
            from .tty import console_channel

            console_parent, console_child = console_channel(opts.console_socket)
        plan = build_plan(spec, opts, etc_files=etc_files, console_fd=console_child,
                          emulation=emulation)
        if tree_socks is not None:
            userns.set_socket(plan.setup, tree_socks[1].fileno())

        v2 = cgroups.find_v2_mount()
        if v2:
            cgroup = cgroups.Cgroup(v2, cid)
            if spec["linux"].get("cgroupsPath"):
                cgroup.path = _cgroups_path(v2, spec["linux"]["cgroupsPath"])
            plan.cgroup_dir = cgroup.path
        if opts.dry_run:
            sys.stdout.write("\n".join(plan.lines()) + "\n")
            return 0

        for note in plan.notes:
            tracer.emit("note", note)
        from . import security

        found = security.filter_rules(spec) if opts.trace else None
        if found is not None:
            from . import seccomp

            for line in seccomp.describe(found[0], found[1]):
                tracer.emit("seccomp", line)
        if cgroup:
            st.write("cgroup", cgroup.path)
            cgroup.create()
            tracer.emit("host", f"mkdir {cgroup.path}  (the container's cgroup v2 group)")
            _apply_resources(spec, cgroup, tracer)

        stdin_fd = -1
        if not opts.interactive and not spec["process"].get("terminal"):
            # docker without -i: the command reads EOF, not our terminal.
            stdin_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

        forwarder = _Forwarder()
        from . import shim
        from .namespaces import flag_names

        tracer.emit("clone", f"clone3({flag_names(plan.clone_flags)}"
                    + ("|CLONE_INTO_CGROUP" if cgroup else "") + ")")
        status_fd = -1
        if opts.detach:  # nobody will wait() for it: the init records its status
            status_fd = os.open(os.path.join(st.dir, "exitcode"),
                                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        cwd_fd = -1
        if tree_socks is not None:
            # The init attaches the idmapped rootfs on its working directory
            # (clone translates it into the new mount namespace): see userns.py.
            cwd_fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            os.chdir(root)
        try:
            spawned = shim.spawn(plan, cgroup_fd=cgroup.fd if cgroup else -1,
                                 stdio=(stdin_fd, -1, -1), trace=opts.trace,
                                 detach=opts.detach, status_fd=status_fd)
        finally:
            if cwd_fd >= 0:
                os.fchdir(cwd_fd)
                os.close(cwd_fd)
        if status_fd >= 0:
            os.close(status_fd)
        if stdin_fd >= 0:
            os.close(stdin_fd)
        if console_child >= 0:
            os.close(console_child)
        pid = spawned.pid
        opts.result_pid = pid
        st.write("pid", str(pid))
        _process_limits(spec, pid, tracer)
        if opts.name and not opts.detach:
            # A named foreground container shows in `pycontain ps`, and
            # `pycontain exec NAME` can enter it, as with docker.
            st.record(spec, pid)
        if cgroup and not spawned.used_clone3:
            cgroup.add_pid(pid)
        if plan.uid_map is not None:
            _write_maps(pid, plan, tracer)
        if tree_socks is not None:
            tree_socks[1].close()
            from .state import ROOTFS_BASE

            userns.send_trees(plan.setup, pid, tree_socks[0].fileno(), spec,
                              copy_dest=os.path.join(ROOTFS_BASE, cid),
                              private_rootfs=opts.remove_rootfs, tracer=tracer)
            tree_socks[0].close()
        if net is not None:
            net.connect(pid, tracer)  # veth into the netns while init waits
        if spec.get("hooks"):
            # The namespaces exist, the init waits: the runtime's hooks,
            # then createContainer in the container's mount namespace.
            from . import hooks

            hook_state = {"ociVersion": spec.get("ociVersion", "1.0.2"), "id": cid,
                          "status": "creating", "pid": pid, "bundle": opts.bundle,
                          "annotations": spec.get("annotations", {})}
            for kind in ("prestart", "createRuntime", "createContainer"):
                hooks.run(spec, kind, hook_state, pid=pid)
                tracer.emit("hooks", f"{kind}: {len(spec['hooks'].get(kind) or [])} run")
        forwarder.attach(pid)
        spawned.release()
        master = -1
        if console_parent >= 0:
            from .tty import accept

            # Before draining the reports: the command waits for our answer.
            master = accept(console_parent)
            console_parent = -1

        error: PycontainError | None = None
        for r in spawned.reports():
            if r.kind == shim.REPORT_ERROR:
                error = _step_error(plan, r.stage, r.index, r.err)
            elif r.kind == shim.REPORT_DONE:
                steps = plan.setup if r.stage == shim.STAGE_SETUP else plan.process
                phase = "setup" if r.stage == shim.STAGE_SETUP else "process"
                tracer.emit(phase, steps[r.index].describe(), r.ns)
            elif r.kind == shim.REPORT_EXEC:
                tracer.emit("exec", f"execve({plan.file!r}, {plan.argv!r}) "
                            f"PATH={plan.search_path}", r.ns)
                if emulation is not None:
                    tracer.emit("exec", f"  {emulation.target} ELF: binfmt_misc makes the "
                                f"kernel run {emulation.qemu} with it", r.ns)
            elif r.kind == shim.REPORT_READY:
                tracer.emit("created", "the command waits for 'pycontain start'", r.ns)

        if opts.detach:
            if error is not None:
                os.kill(pid, 9)
                _wait(pid)
                raise error
            # Created: the init now belongs to whoever reaps orphans (the
            # caller's subreaper, e.g. conmon, or PID 1).  `delete` cleans up.
            st.write("owner", state.owner_token(pid))
            if lease is not None:
                lease.hand_over(pid)  # the range is the init's until it dies
            if emulation is not None:
                st.write("emulation", f"{emulation.mode}:{emulation.target}")
                emulation.hand_over(pid)
            keep = True
            return 0

        if master >= 0 and error is None:
            from .tty import relay

            tty = relay(master, opts.interactive)
        elif master >= 0:
            os.close(master)

        status = _wait(pid)
        if tty is not None:
            tty.finish()
        if error is not None:
            raise error
        code = _exit_code(status)
        if cgroup:
            code = _report_cgroup(cgroup, code, opts)
        tracer.emit("exit", f"container exited with status {code}")
        return code
    finally:
        if tty is not None:
            tty.restore()
        if not opts.dry_run and not keep:
            if cgroup is not None:
                cgroup.destroy()
                tracer.emit("cleanup", f"rmdir {cgroup.path}")
            if net is not None:
                net.release(tracer)
            if emulation is not None:
                emulation.release(tracer)
            if lease is not None:
                lease.release()
            st.remove()
            tracer.emit("cleanup", f"rm -r {st.dir}")
        # Last: a signal that arrives while we clean up is still forwarded
        # (to nobody), instead of killing us halfway through the cleanup.
        if forwarder is not None:
            forwarder.restore()


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            return 0
        except InterruptedError:  # pragma: no cover - PEP 475
            continue


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _write_maps(pid: int, plan: p.Plan, tracer: Tracer) -> None:
    for name, value in (("uid_map", plan.uid_map), ("gid_map", plan.gid_map)):
        path = f"/proc/{pid}/{name}"
        try:
            with open(path, "w") as f:
                f.write(value or "")
        except OSError as e:
            raise PycontainError(f"writing {path}: {strerror(e.errno or 0)}") from None
        tracer.emit("maps", f"write {path} <- {value!r}")


def _collect_stale(opts: RunOptions) -> None:
    """Clean up after containers whose pycontain was killed (cheap when
    there is nothing to do: one listdir)."""
    from . import state

    ids = state.list_ids(opts.state_root)
    if ids:
        state.collect_garbage(opts.state_root)


def _prepare_emulation(spec: dict, opts: RunOptions, tracer: Tracer) -> Emulation | None:
    """Decide, cheaply, whether the entrypoint is native; only a foreign one
    pays for pyelftools, the QEMU table and binfmt_misc (emulation.py)."""
    from .emulation import detect

    return detect(spec, opts, tracer)


def _apply_resources(spec: dict, cgroup: object, tracer: Tracer) -> None:
    resources = spec["linux"].get("resources") or {}
    if not resources:
        return
    from .cgroups import available_controllers
    from .limits import apply

    # Values that ask for nothing but the kernel's default need no
    # controller: containerd's shim always sends cpu.shares 1024 (v1's
    # default share), podman a pids limit of 0 or -1 (none).  On a host
    # where v2 lacks the controller (hybrid), they are met as they are;
    # any other value still needs the controller, and is refused by apply.
    have = available_controllers(cgroup.mount)  # type: ignore[attr-defined]
    resources = dict(resources)
    if "cpu" not in have and resources.get("cpu") == {"shares": 1024}:
        del resources["cpu"]
        tracer.emit("cgroup", "cpu.shares 1024 is the default share: nothing to write")
    if "pids" not in have and (resources.get("pids") or {}).get("limit", 1) <= 0:
        del resources["pids"]
        tracer.emit("cgroup", "pids limit <= 0 means no limit: nothing to write")
    apply(resources, cgroup, tracer)


def _report_cgroup(cgroup: object, code: int, opts: RunOptions) -> int:
    if not opts.stats and code != 137:
        return code
    try:
        from .limits import after_exit
    except ImportError:
        return code
    return after_exit(cgroup, code, opts)


__all__ = ["EXIT_RUNTIME", "RunOptions", "build_plan", "run"]
