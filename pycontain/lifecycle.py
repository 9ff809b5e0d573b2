"""Docker-style detached containers, on top of the OCI lifecycle.

``pycontain run -d --name N ROOTFS CMD`` is ``create`` + ``start`` with the
container's id set to its name and its output sent to a log file; ``ps``,
``logs``, ``stop``, ``rm`` and ``exec`` then work on that id.  There is no
daemon: the container's init outlives the ``run -d`` that made it, writes
its command's exit status into the state directory, and ``rm`` removes
what is left.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from . import oci
from .errors import PycontainError
from .state import ContainerState, list_ids

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .container import RunOptions

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


def log_path(g: oci.Globals, cid: str) -> str:
    return os.path.join(g.root, "logs", f"{cid}.log")


def check_name(name: str, g: oci.Globals | None = None) -> str:
    """A --name is a container id: valid, and not taken."""
    g = g or oci.Globals()
    if not _NAME.match(name):
        raise PycontainError(f"--name {name!r}: use letters, digits, '_', '.' and '-'")
    if os.path.exists(os.path.join(g.root, "containers", name)):
        raise PycontainError(f"a container named {name} already exists (pycontain rm {name})")
    return name


def run_detached(spec: dict, name: str | None, g: oci.Globals | None = None,
                 run_opts: RunOptions | None = None) -> int:
    """``run -d``: print the id, leave the container running."""
    from .container import new_id

    if run_opts is not None and run_opts.net is not None:
        # Its port proxy and lease belong to the pycontain process that
        # made them, and `run -d` does not stay around.
        raise PycontainError("--network bridge with -d is not supported yet: "
                             "run it in the foreground (or use --network none|host)")
    g = g or oci.Globals()
    cid = check_name(name, g) if name else new_id()
    os.makedirs(os.path.join(g.root, "logs"), mode=0o700, exist_ok=True)
    log = log_path(g, cid)
    if os.path.exists(log):
        os.unlink(log)
    try:
        _, st = oci.create_container(g, spec, cid, bundle="", interactive=False, log_path=log,
                                     base=run_opts, no_pivot=bool(run_opts and run_opts.no_pivot))
    except BaseException:
        if os.path.exists(log):
            os.unlink(log)
        raise
    oci.start(st)
    print(cid)
    return 0


def _describe(st: ContainerState) -> dict:
    info = oci.state_json(st)
    config = oci._config(st)
    code = (st.read("exitcode") or "").strip()
    status = info["status"]
    shown = {"running": "Up", "created": "Created", "paused": "Paused"}.get(status, "Exited")
    if status == "stopped":
        shown = f"Exited ({code})" if code else "Exited"
    return {"id": st.id, "status": shown, "pid": info["pid"],
            "command": " ".join(config.get("process", {}).get("args", [])),
            "created": info.get("created", ""), "rootfs": oci._load(st).get("rootfs", "")}


def cmd_ps(argv: list[str], g: oci.Globals) -> int:
    show_all = any(a in ("-a", "--all") for a in argv)
    as_json = "--json" in argv or "--format=json" in argv
    rows = []
    for cid in sorted(list_ids(g.root)):
        st = ContainerState(cid, g.root)
        if st.read("state.json") is None:
            continue
        d = _describe(st)
        if show_all or d["status"] in ("Up", "Created", "Paused"):
            rows.append(d)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'NAME':<24} {'STATUS':<12} {'PID':<8} {'CREATED':<22} COMMAND")
    for d in rows:
        print(f"{d['id']:<24} {d['status']:<12} {d['pid'] or '-':<8} {d['created']:<22} "
              f"{d['command']}")
    return 0


def cmd_logs(argv: list[str], g: oci.Globals) -> int:
    names = [a for a in argv if not a.startswith("-")]
    if len(names) != 1:
        raise PycontainError("usage: pycontain logs NAME")
    path = log_path(g, names[0])
    if not os.path.exists(path):
        raise PycontainError(f"no container named {names[0]} (or it has no log)")
    with open(path, "rb") as f:
        sys.stdout.flush()
        os.write(1, f.read())
    return 0


def cmd_stop(argv: list[str], g: oci.Globals) -> int:
    timeout = 10.0
    names: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("-t", "--time", "--timeout"):
            timeout = float(argv[i + 1])
            i += 2
            continue
        names.append(argv[i])
        i += 1
    if not names:
        raise PycontainError("usage: pycontain stop [-t SECONDS] NAME...")
    for name in names:
        st = oci._state(g, name)
        status, pid = oci.status_of(st)
        if status == "stopped":
            continue
        os.kill(pid, 15)  # the init forwards SIGTERM to the command
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and oci.status_of(st)[0] != "stopped":
            time.sleep(0.02)
        if oci.status_of(st)[0] != "stopped":
            os.kill(pid, 9)
            oci._wait_gone(pid)
        print(name)
    return 0


def cmd_rm(argv: list[str], g: oci.Globals) -> int:
    force = any(a in ("-f", "--force") for a in argv)
    names = [a for a in argv if not a.startswith("-")]
    if not names:
        raise PycontainError("usage: pycontain rm [-f] NAME...")
    for name in names:
        st = oci._state(g, name)
        status, pid = oci.status_of(st)
        if status != "stopped" and not force:
            raise PycontainError(f"container {name} is running: stop it first, or rm -f")
        if pid:
            os.kill(pid, 9)
            oci._wait_gone(pid)
        oci.destroy(st)
        log = log_path(g, name)
        if os.path.exists(log):
            os.unlink(log)
        print(name)
    return 0


def cmd_exec(argv: list[str], g: oci.Globals) -> int:
    """docker's ``exec [-i] [-t] [-e K=V] [-w DIR] [-u UID] NAME CMD...``."""
    if any(a.partition("=")[0] in ("--process", "--pid-file", "--console-socket")
           for a in argv):
        return oci.cmd_exec(g, argv)  # the OCI form: podman's conmon, containerd's shim
    oci_args: list[str] = []
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in ("-i", "--interactive"):
            pass  # stdin is always passed through
        elif a in ("-t", "--tty", "-it", "-ti"):
            oci_args.append("--tty")
        elif a in ("-e", "--env", "-w", "--workdir", "-u", "--user"):
            key = {"-e": "--env", "--env": "--env", "-w": "--cwd", "--workdir": "--cwd",
                   "-u": "--user", "--user": "--user"}[a]
            oci_args += [key, argv[i + 1]]
            i += 1
        elif a in ("-d", "--detach"):
            oci_args.append("--detach")
        else:
            raise PycontainError(f"exec: unknown option {a!r}")
        i += 1
    return oci.cmd_exec(g, oci_args + argv[i:])
