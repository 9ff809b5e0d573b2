"""The OCI runtime command line (runtime-spec ``runtime.md``, runc's flags).

This is how podman, containerd and friends drive a runtime::

    pycontain [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...

    spec      write a default config.json
    create    build the container, stop just before execve (exec FIFO)
    start     let it exec
    state     print its state as JSON
    kill      send a signal (to the init, which forwards it)
    delete    remove what is left of it
    run       create + start (+ wait, unless -d)
    exec      run another process in its namespaces
    list, ps, pause, resume

A created container's init outlives ``pycontain create``: it is re-parented
to the caller's subreaper (conmon, containerd-shim) or to PID 1, which
reaps it.  pycontain keeps no daemon; everything about a container is in
``<root>/containers/<id>/`` (``state.json`` and friends), and the init
writes the command's exit status there before it exits.
"""

from __future__ import annotations

import os
import sys
import time

from .errors import PycontainError, strerror
from .state import DEFAULT_ROOT, ContainerState, owner_alive, start_time, write_pid_file

OCI_VERSION = "1.0.2"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .container import RunOptions


def _json():
    """json, imported on demand: its import (re, enum ...) costs about 5 ms,
    and start/kill/delete, which conmon and containerd call for every
    container, do not need it."""
    import json

    return json


class Globals:
    __slots__ = ("debug", "log", "log_format", "root")

    def __init__(self) -> None:
        self.root = DEFAULT_ROOT
        self.log: str | None = None
        self.log_format = "text"
        self.debug = False


def parse_globals(argv: list[str]) -> tuple[Globals, list[str]]:
    """runc's global options come before the command."""
    g = Globals()
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        name, eq, value = argv[i].partition("=")
        if name in ("--root", "--log", "--log-format", "--criu"):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise PycontainError(f"option {name} needs a value")
                value = argv[i]
            if name == "--root":
                g.root = value
            elif name == "--log":
                g.log = value
            elif name == "--log-format":
                if value not in ("text", "json"):
                    raise PycontainError("--log-format must be text or json")
                g.log_format = value
        elif name == "--debug":
            g.debug = True
        elif name == "--systemd-cgroup":
            raise PycontainError("--systemd-cgroup is not supported: pycontain manages "
                                 "cgroupfs directly (use podman's cgroupfs manager)")
        else:
            break
        i += 1
    return g, argv[i:]


def log_error(g: Globals, message: str) -> None:
    """runc writes its errors to --log too, where conmon reads them."""
    if not g.log:
        return
    try:
        with open(g.log, "a") as f:
            if g.log_format == "json":
                f.write(_json().dumps({"level": "error", "msg": message,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime())}) + "\n")
            else:
                f.write(f"level=error msg={message!r}\n")
    except OSError:
        pass


# ------------------------------------------------------------------ state --

def _state(g: Globals, cid: str, must_exist: bool = True) -> ContainerState:
    if not cid or "/" in cid or cid.startswith("."):
        raise PycontainError(f"invalid container id {cid!r}")
    st = ContainerState(cid, g.root)
    if must_exist and st.read("state.json") is None:
        raise PycontainError(f"container {cid} does not exist")
    return st


def _load(st: ContainerState) -> dict:
    return _json().loads(st.read("state.json") or "{}")


def status_of(st: ContainerState) -> tuple[str, int]:
    """(created|running|paused|stopped, pid) from what the host can see."""
    # The plain "pid" file: no JSON to parse on this hot path.
    pid_text = (st.read("pid") or "").strip()
    pid = int(pid_text) if pid_text.isdigit() else 0
    owner = (st.read("owner") or "").strip()
    if not pid or not owner_alive(owner):
        return "stopped", 0
    # The owner may be a foreground pycontain while its init has exited
    # (a zombie, not yet reaped): that container is stopped too.
    if start_time(pid) is None:
        return "stopped", 0
    if os.path.exists(os.path.join(st.dir, "exec.fifo")):
        return "created", pid
    cg = (st.read("cgroup") or "").strip()
    if cg:
        try:
            with open(os.path.join(cg, "cgroup.freeze")) as f:
                if f.read().strip() == "1":
                    return "paused", pid
        except OSError:
            pass
    return "running", pid


def state_json(st: ContainerState) -> dict:
    info = _load(st)
    status, pid = status_of(st)
    out = {"ociVersion": OCI_VERSION, "id": st.id, "status": status, "pid": pid,
           "bundle": info.get("bundle", ""), "annotations": info.get("annotations", {})}
    if info.get("created"):
        out["created"] = info["created"]
    return out


# ---------------------------------------------------------------- commands --

def _take(argv: list[str], flags: dict[str, bool]) -> tuple[dict, list[str]]:
    """A tiny option parser: ``flags`` maps option -> takes a value."""
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i + 1:]
            break
        name, eq, value = arg.partition("=")
        if name in flags:
            if flags[name]:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise PycontainError(f"option {name} needs a value")
                    value = argv[i]
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = True
        elif arg.startswith("-") and not rest:
            raise PycontainError(f"unknown option {arg!r}")
        else:
            rest.append(arg)
            if not arg.startswith("-"):
                rest += argv[i + 1:]
                break
        i += 1
    return opts, rest


def _one(opts: dict, *names: str) -> str | None:
    for n in names:
        if n in opts:
            return opts[n][-1] if isinstance(opts[n], list) else opts[n]
    return None


def load_bundle(bundle: str) -> dict:
    from .spec import validate

    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            spec = _json().load(f)
    except FileNotFoundError:
        raise PycontainError(f"{path}: no such file (is --bundle right?)") from None
    except (OSError, ValueError) as e:
        raise PycontainError(f"{path}: cannot read it: {e}") from None
    validate(spec)
    root = spec.get("root", {}).get("path", "rootfs")
    if not os.path.isabs(root):
        root = os.path.join(os.path.abspath(bundle), root)
    spec["root"]["path"] = root
    if not os.path.isdir(root):
        raise PycontainError(f"root.path {root}: no such directory")
    spec.setdefault("mounts", [])
    for m in spec["mounts"]:
        if m.get("type") == "cgroup":
            # Podman asks for a v1 "cgroup" mount when it takes a hybrid host
            # for cgroup v1.  pycontain's containers live in cgroup v2 only,
            # so they get the v2 hierarchy, with the options asked for.
            from .cgroups import find_v2_mount

            if not find_v2_mount():
                raise PycontainError(f"mount of type 'cgroup' on {m.get('destination')}: "
                                     "pycontain needs a cgroup v2 hierarchy on the host")
            m["type"] = "cgroup2"
        if "tmpcopyup" in m.get("options", []):
            _tmpcopyup(root, m)
    spec.setdefault("linux", {}).setdefault("namespaces", [])
    spec["linux"].setdefault("resources", {})
    spec.setdefault("annotations", {})
    spec["process"].setdefault("env", [])
    return spec


def _tmpcopyup(root: str, m: dict) -> None:
    """crun's and runc's ``tmpcopyup`` (podman asks for it on the tmpfs it
    puts over /tmp, /var/tmp and /run with --read-only): fill the new tmpfs
    with what the image has there.  pycontain does not copy; over an empty
    or missing directory there is nothing to copy, so the option is met."""
    from .paths import resolve_in_root

    where = resolve_in_root(root, m.get("destination", "/"))
    try:
        empty = not os.listdir(where)
    except FileNotFoundError:
        empty = True
    except OSError:
        empty = False
    if not empty:
        raise PycontainError(f"mount option 'tmpcopyup' on {m.get('destination')}: the image "
                             "has files there, and pycontain cannot copy them into the tmpfs")
    m["options"] = [o for o in m["options"] if o != "tmpcopyup"]


def cmd_spec(g: Globals, argv: list[str]) -> int:
    opts, _ = _take(argv, {"--bundle": True, "-b": True, "--rootless": False})
    from .capabilities import DOCKER_DEFAULT
    from .security import apply_defaults
    from .spec import default_spec

    bundle = _one(opts, "--bundle", "-b") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise PycontainError(f"{path} exists: remove it first")
    spec = default_spec("rootfs", ["sh"])
    spec["process"]["terminal"] = True
    spec["hostname"] = "pycontain"
    apply_defaults(spec, privileged=False, caps=[f"CAP_{c}" for c in DOCKER_DEFAULT],
                   no_new_privs=True, seccomp=True)
    with open(path, "w") as f:
        _json().dump(spec, f, indent=2)
        f.write("\n")
    return 0


def create_container(g: Globals, spec: dict, cid: str, *, bundle: str,
                     pid_file: str | None = None, console_socket: str | None = None,
                     no_pivot: bool = False, interactive: bool = True,
                     log_path: str | None = None,
                     base: RunOptions | None = None) -> tuple[int, ContainerState]:
    """Build a container and leave its command blocked before execve.

    ``base`` carries the caller's run options (``run -d``: emulation mode,
    QEMU directory, trace ...); the OCI specifics are set on top."""
    from .container import RunOptions, run

    st = _state(g, cid, must_exist=False)
    if os.path.exists(st.dir):
        raise PycontainError(f"container {cid} already exists")
    ro = base or RunOptions()
    ro.state_root = g.root
    ro.container_id = cid
    ro.detach = True
    ro.bundle = bundle
    ro.interactive = interactive  # OCI: the caller's stdin is the container's
    ro.no_pivot = no_pivot
    ro.console_socket = console_socket
    os.makedirs(os.path.dirname(st.dir), mode=0o700, exist_ok=True)
    # The FIFO is made beside the state dir (which run() creates) and moved
    # in once the container exists.
    tmp = os.path.join(g.root, f".fifo-{cid}-{os.getpid()}")
    os.mkfifo(tmp, 0o600)
    # The command opens it as the container's user, after dropping its
    # capabilities (runc uses 0622 too).  Only the O_PATH fd it inherited
    # reaches it: the state directory is root's alone.
    os.chmod(tmp, 0o622)
    fifo_fd = os.open(tmp, os.O_PATH | os.O_CLOEXEC)
    ro.exec_fifo = fifo_fd
    saved: list[int] = []
    try:
        if log_path:
            # docker-style -d: the container's stdout and stderr go to its log.
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            saved = [os.dup(1), os.dup(2)]
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
        try:
            run(spec, ro)
        finally:
            if saved:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
        os.rename(tmp, os.path.join(st.dir, "exec.fifo"))
    finally:
        os.close(fifo_fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
    pid = ro.result_pid
    st.write("oci", "1")
    if spec.get("hooks"):
        st.write("hooks", "1")  # start and delete look for hooks only then
    st.record(spec, pid, bundle)
    if pid_file:
        write_pid_file(pid_file, pid)
    return pid, st


def _create(g: Globals, opts: dict, cid: str) -> tuple[int, ContainerState]:
    bundle = os.path.abspath(_one(opts, "--bundle", "-b") or ".")
    return create_container(g, load_bundle(bundle), cid, bundle=bundle,
                            pid_file=_one(opts, "--pid-file"),
                            console_socket=_one(opts, "--console-socket"),
                            no_pivot=bool(opts.get("--no-pivot")))


CREATE_FLAGS = {"--bundle": True, "-b": True, "--pid-file": True, "--console-socket": True,
                "--no-pivot": False, "--no-new-keyring": False, "--preserve-fds": True}


def cmd_create(g: Globals, argv: list[str]) -> int:
    opts, rest = _take(argv, CREATE_FLAGS)
    if len(rest) != 1:
        raise PycontainError("usage: pycontain create --bundle DIR [--pid-file F] "
                             "[--console-socket SOCK] ID")
    if int(_one(opts, "--preserve-fds") or 0):
        raise PycontainError("--preserve-fds is not supported")
    _create(g, opts, rest[0])
    return 0


def _config(st: ContainerState) -> dict:
    text = st.read("config.json")
    return _json().loads(text) if text else {}


def start(st: ContainerState) -> None:
    status, pid = status_of(st)
    if status != "created":
        raise PycontainError(f"cannot start container {st.id}: it is {status}, not created")
    config = _config(st) if os.path.exists(os.path.join(st.dir, "hooks")) else {}
    if config.get("hooks"):
        from . import hooks

        hooks.run(config, "startContainer", state_json(st), pid=pid)
    fifo = os.path.join(st.dir, "exec.fifo")
    # The command is blocked opening the FIFO for writing; our open for
    # reading completes the rendezvous and it goes on to execve.
    fd = os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)
    os.unlink(fifo)
    if config.get("hooks"):
        hooks.run(config, "poststart", state_json(st), pid=pid)


def cmd_start(g: Globals, argv: list[str]) -> int:
    _, rest = _take(argv, {})
    if len(rest) != 1:
        raise PycontainError("usage: pycontain start ID")
    start(_state(g, rest[0]))
    return 0


def cmd_state(g: Globals, argv: list[str]) -> int:
    _, rest = _take(argv, {})
    if len(rest) != 1:
        raise PycontainError("usage: pycontain state ID")
    print(_json().dumps(state_json(_state(g, rest[0])), indent=2))
    return 0


def parse_signal(text: str) -> int:
    t = text.upper()
    if t.isdigit():
        return int(t)
    import signal  # only for names: it imports enum
    if not t.startswith("SIG"):
        t = "SIG" + t
    try:
        return int(getattr(signal.Signals, t))
    except AttributeError:
        raise PycontainError(f"unknown signal {text!r}") from None


def cmd_kill(g: Globals, argv: list[str]) -> int:
    opts, rest = _take(argv, {"--all": False, "-a": False})
    if len(rest) not in (1, 2):
        raise PycontainError("usage: pycontain kill [--all] ID [SIGNAL]")
    st = _state(g, rest[0])
    sig = parse_signal(rest[1]) if len(rest) == 2 else 15
    status, pid = status_of(st)
    if status == "stopped":
        raise PycontainError(f"container {st.id} is not running")
    if opts.get("--all") or opts.get("-a"):
        for p in _cgroup_pids(st):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        return 0
    os.kill(pid, sig)  # the init forwards it to the command
    return 0


def _cgroup_pids(st: ContainerState) -> list[int]:
    cg = (st.read("cgroup") or "").strip()
    try:
        with open(os.path.join(cg, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def destroy(st: ContainerState) -> None:
    """Remove a stopped (or killed) container's cgroup and state."""
    from . import cgroups

    cg = (st.read("cgroup") or "").strip()
    if cg:
        cgroups.remove_group(cg)
    emu = st.read("emulation")
    if emu and emu.strip().startswith("host:"):
        from . import binfmt

        binfmt.prune()
    config = _config(st) if os.path.exists(os.path.join(st.dir, "hooks")) else {}
    state = state_json(st) if config.get("hooks") else {}
    st.remove()
    if config.get("hooks"):
        from . import hooks

        state["status"] = "stopped"
        hooks.run(config, "poststop", state)


def cmd_delete(g: Globals, argv: list[str]) -> int:
    opts, rest = _take(argv, {"--force": False, "-f": False})
    if len(rest) != 1:
        raise PycontainError("usage: pycontain delete [--force] ID")
    force = bool(opts.get("--force") or opts.get("-f"))
    try:
        st = _state(g, rest[0])
    except PycontainError:
        if force:
            return 0
        raise
    status, pid = status_of(st)
    if status in ("running", "paused") and not force:
        raise PycontainError(f"cannot delete container {st.id}: it is {status} "
                             "(stop it, or use --force)")
    if pid:
        try:
            os.kill(pid, 9)  # PID 1 of its namespace: everything inside dies
        except ProcessLookupError:
            pass
        _wait_gone(pid)
    destroy(st)
    return 0


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and start_time(pid) is not None:
        time.sleep(0.005)


def cmd_run(g: Globals, argv: list[str]) -> int:
    opts, rest = _take(argv, {**CREATE_FLAGS, "-d": False, "--detach": False,
                              "--keep": False})
    if len(rest) != 1:
        raise PycontainError("usage: pycontain run --bundle DIR [-d] ID")
    cid = rest[0]
    if opts.get("-d") or opts.get("--detach"):
        _, st = _create(g, opts, cid)
        start(st)
        return 0
    # Foreground: we are the init's parent, so this is a plain `run` with
    # the bundle's config and the given id, cleaned up at exit.
    from .container import RunOptions, run

    bundle = os.path.abspath(_one(opts, "--bundle", "-b") or ".")
    spec = load_bundle(bundle)
    if spec.get("hooks"):
        return _run_with_hooks(g, spec, cid, bundle, opts)
    ro = RunOptions()
    ro.bundle = bundle
    ro.state_root = g.root
    ro.container_id = cid
    ro.interactive = True
    ro.no_pivot = bool(opts.get("--no-pivot"))
    ro.console_socket = _one(opts, "--console-socket")
    if os.path.exists(_state(g, cid, must_exist=False).dir):
        raise PycontainError(f"container {cid} already exists")
    return run(spec, ro)


def _run_with_hooks(g: Globals, spec: dict, cid: str, bundle: str, opts: dict) -> int:
    """Foreground ``run`` of a config with hooks: create, start, wait and
    delete, so that every hook runs at its own moment."""
    from .container import _exit_code, _Forwarder, _wait

    forwarder = _Forwarder()
    try:
        pid, st = create_container(g, spec, cid, bundle=bundle,
                                   console_socket=_one(opts, "--console-socket"),
                                   no_pivot=bool(opts.get("--no-pivot")))
        forwarder.attach(pid)
        try:
            start(st)
            code = _exit_code(_wait(pid))  # we cloned it: it is our child
        finally:
            destroy(st)
        return code
    finally:
        forwarder.restore()


def cmd_exec(g: Globals, argv: list[str]) -> int:
    opts, rest = _take(argv, {"--process": True, "-p": True, "--pid-file": True,
                              "--detach": False, "-d": False, "--tty": False, "-t": False,
                              "--console-socket": True, "--cwd": True, "--env": True,
                              "-e": True, "--user": True, "-u": True, "--cap": True,
                              "--no-new-privs": False, "--process-label": True,
                              "--apparmor": True, "--preserve-fds": True})
    if not rest:
        raise PycontainError("usage: pycontain exec [--process JSON] [-d] [-t] ID [CMD...]")
    from .execute import exec_in

    st = _state(g, rest[0])
    status, pid = status_of(st)
    if status not in ("running", "created"):
        raise PycontainError(f"cannot exec in container {st.id}: it is {status}")
    config = _config(st)
    process = dict(config.get("process", {}))
    proc_file = _one(opts, "--process", "-p")
    if proc_file:
        with open(proc_file) as f:
            process = _json().load(f)
    elif len(rest) > 1:
        process["args"] = rest[1:]
    else:
        raise PycontainError("exec: give a command, or --process FILE")
    process["terminal"] = bool(opts.get("--tty") or opts.get("-t") or
                               (proc_file and process.get("terminal")))
    if _one(opts, "--cwd"):
        process["cwd"] = _one(opts, "--cwd")
    for e in opts.get("--env", []) + opts.get("-e", []):
        process["env"] = [*process.get("env", []), e]
    user = _one(opts, "--user", "-u")
    if user:
        uid, _, gid = user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    return exec_in(st, pid, config, process,
                   detach=bool(opts.get("--detach") or opts.get("-d")),
                   pid_file=_one(opts, "--pid-file"),
                   console_socket=_one(opts, "--console-socket"))


def cmd_list(g: Globals, argv: list[str]) -> int:
    opts, _ = _take(argv, {"--format": True, "-f": True, "--quiet": False, "-q": False})
    from .state import list_ids

    rows = []
    for cid in sorted(list_ids(g.root)):
        st = ContainerState(cid, g.root)
        if st.read("state.json") is None:
            continue
        rows.append(state_json(st))
    fmt = _one(opts, "--format", "-f") or "table"
    if opts.get("--quiet") or opts.get("-q"):
        print("\n".join(r["id"] for r in rows))
    elif fmt == "json":
        print(_json().dumps(rows))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<8} {'BUNDLE':<40} CREATED")
        for r in rows:
            print(f"{r['id']:<20} {r['pid']:<8} {r['status']:<8} {r['bundle']:<40} "
                  f"{r.get('created', '')}")
    return 0


def cmd_ps(g: Globals, argv: list[str]) -> int:
    opts, rest = _take(argv, {"--format": True, "-f": True})
    if not rest:
        raise PycontainError("usage: pycontain ps ID")
    st = _state(g, rest[0])
    pids = _cgroup_pids(st)
    if (_one(opts, "--format", "-f") or "table") == "json":
        print(_json().dumps(pids))
        return 0
    print(f"{'PID':<8} CMD")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        print(f"{pid:<8} {cmd}")
    return 0


def _freeze(g: Globals, argv: list[str], value: str) -> int:
    _, rest = _take(argv, {})
    if len(rest) != 1:
        raise PycontainError(f"usage: pycontain {'pause' if value == '1' else 'resume'} ID")
    st = _state(g, rest[0])
    status, _ = status_of(st)
    if status == "stopped":
        raise PycontainError(f"container {st.id} is not running")
    cg = (st.read("cgroup") or "").strip()
    try:
        with open(os.path.join(cg, "cgroup.freeze"), "w") as f:
            f.write(value)
    except OSError as e:
        raise PycontainError(f"cgroup.freeze in {cg}: {strerror(e.errno or 0)}") from None
    return 0


def cmd_pause(g: Globals, argv: list[str]) -> int:
    return _freeze(g, argv, "1")


def cmd_resume(g: Globals, argv: list[str]) -> int:
    return _freeze(g, argv, "0")


COMMANDS = {
    "spec": cmd_spec, "create": cmd_create, "start": cmd_start, "state": cmd_state,
    "kill": cmd_kill, "delete": cmd_delete, "exec": cmd_exec, "list": cmd_list,
    "ps": cmd_ps, "pause": cmd_pause, "resume": cmd_resume,
}


def main(g: Globals, command: str, argv: list[str]) -> int:
    try:
        if command == "run":
            return cmd_run(g, argv)
        return COMMANDS[command](g, argv)
    except PycontainError as e:
        log_error(g, e.message)
        sys.stderr.write(f"pycontain: {e.message}\n")
        return 1 if e.exit_code == 125 else e.exit_code
