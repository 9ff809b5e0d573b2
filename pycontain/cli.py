"""The command line: ``pycontain run [OPTIONS] ROOTFS CMD [ARG...]`` and friends.

``run`` is on the hot path of every container, so its options are parsed
by a small table-driven parser instead of argparse (whose import alone
costs about as much as cloning a container).  Sub-commands that are not
latency-sensitive (inspect, binfmt, gc ...) may use argparse.

Options stop at ROOTFS: everything after it is the command, taken as is,
the way ``docker run`` and ``sudo`` do it.
"""

from __future__ import annotations

import os
import sys

from .errors import EXIT_RUNTIME, PycontainError

USAGE = """\
usage: pycontain run [OPTIONS] ROOTFS [CMD [ARG...]]
       pycontain inspect ROOTFS [CMD...] [--json]
       pycontain explain ROOTFS [--json]
       pycontain bench-emulation NATIVE_ROOTFS FOREIGN_ROOTFS [-n ROUNDS] [--json]
                 [--plot FILE.png] [-- CMD...]
       pycontain binfmt status|install|uninstall|prune [...]
       pycontain run -d [--name N] [OPTIONS] ROOTFS CMD...;  ps [-a];  logs N;
       pycontain exec [-t] N CMD...;  stop N;  rm [-f] N
       pycontain [--root DIR] [--log F] [--log-format text|json] OCI-COMMAND ...
           spec | create --bundle DIR [--pid-file F] [--console-socket S] ID | start ID
           | state ID | kill [--all] ID [SIG] | delete [--force] ID | run --bundle DIR [-d] ID
           | exec [--process F] [-d] [-t] ID [CMD...] | list | ps ID | pause ID | resume ID
       pycontain gc            remove what containers killed with SIGKILL left behind
       pycontain version

ROOTFS is a directory, or a .tar, .tar.gz/.tgz, .tar.xz or .tar.zst archive.
CMD defaults to /bin/sh.

run options:
  -t, --tty                 give the command a terminal (raw mode, resizes follow)
  -i, --interactive         keep stdin open (without it the command reads /dev/null)
  -e, --env KEY=VAL         set an environment variable (repeatable)
  -w, --workdir DIR         working directory inside the container
  -u, --user USER[:GROUP]   user name or uid (from the rootfs's /etc/passwd)
  -v, --volume HOST:CTR[:ro]  bind-mount a host path (repeatable)
  -h, --hostname NAME       the container's hostname (default: its id)
      --name NAME           the container's id: ps, exec, stop and rm take it
  -d, --detach              run in the background (output in `pycontain logs NAME`;
                            not with -t or --network bridge)
      --read-only           mount the rootfs read-only
      --network none|host|bridge  only lo (default), the host's network, or a veth
                            on the bridge pycontain0 (subnet: $PYCONTAIN_SUBNET,
                            default 172.29.0.0/16) with outbound NAT
  -p, --publish [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]  publish a port (bridge only)
      --ip ADDR             a fixed address on the bridge (bridge only)
      --no-pivot            use MS_MOVE + chroot instead of pivot_root
      --emulation MODE      auto|sandbox|host|off: how to run a foreign-CPU rootfs
      --qemu-dir DIR        look for qemu-<arch>-static in DIR first
      --trace               print every kernel-level step on stderr, with timings
      --dry-run             print the plan and run nothing
      --stats               print peak memory and CPU time at exit
      --rm                  accepted for docker compatibility (always true)
      --cap-add CAP, --cap-drop CAP   change docker's 14 default capabilities (ALL works)
      --privileged          all capabilities; no masked paths, read-only paths or seccomp
      --security-opt OPT    no-new-privileges=false, seccomp=unconfined
      --userns host|auto|C:H:S[,...]  container root as host root (default), or as an
                            unprivileged range of host ids: auto leases 65536 ids from
                            100000 up; the rootfs is idmapped (or copied and chowned)
  resource limits (cgroup v2): --memory, --memory-swap, --memory-reservation,
      --cpus, --cpu-shares, --cpu-weight, --cpuset-cpus, --cpuset-mems,
      --pids-limit, --device-read-bps DEV:RATE, --device-write-bps DEV:RATE
"""

# option -> (destination, takes a value, repeatable)
_RUN_OPTIONS: dict[str, tuple[str, bool, bool]] = {
    "-t": ("tty", False, False), "--tty": ("tty", False, False),
    "-i": ("interactive", False, False), "--interactive": ("interactive", False, False),
    "-e": ("env", True, True), "--env": ("env", True, True),
    "-w": ("workdir", True, False), "--workdir": ("workdir", True, False),
    "-u": ("user", True, False), "--user": ("user", True, False),
    "-v": ("volume", True, True), "--volume": ("volume", True, True),
    "-h": ("hostname", True, False), "--hostname": ("hostname", True, False),
    "--name": ("name", True, False),
    "--read-only": ("read_only", False, False),
    "--network": ("network", True, False), "--net": ("network", True, False),
    "-p": ("publish", True, True), "--publish": ("publish", True, True),
    "--ip": ("ip", True, False),
    "--no-pivot": ("no_pivot", False, False),
    "--emulation": ("emulation", True, False),
    "--qemu-dir": ("qemu_dir", True, False),
    "--trace": ("trace", False, False),
    "--dry-run": ("dry_run", False, False),
    "--stats": ("stats", False, False),
    "--rm": ("rm", False, False),
    "-d": ("detach", False, False), "--detach": ("detach", False, False),
    "--memory": ("memory", True, False), "-m": ("memory", True, False),
    "--memory-swap": ("memory_swap", True, False),
    "--memory-reservation": ("memory_reservation", True, False),
    "--cpus": ("cpus", True, False),
    "--cpu-shares": ("cpu_shares", True, False), "-c": ("cpu_shares", True, False),
    "--cpu-weight": ("cpu_weight", True, False),
    "--cpuset-cpus": ("cpuset_cpus", True, False),
    "--cpuset-mems": ("cpuset_mems", True, False),
    "--pids-limit": ("pids_limit", True, False),
    "--device-read-bps": ("device_read_bps", True, True),
    "--device-write-bps": ("device_write_bps", True, True),
    "--cap-add": ("cap_add", True, True),
    "--cap-drop": ("cap_drop", True, True),
    "--privileged": ("privileged", False, False),
    "--security-opt": ("security_opt", True, True),
    "--userns": ("userns", True, False),
}


def parse_run(argv: list[str]) -> tuple[dict, list[str]]:
    """Split ``run``'s arguments into (options, [ROOTFS, CMD, ARG...])."""
    opts: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in _RUN_OPTIONS and not arg.startswith("--") and len(arg) > 2:
            # Bundled short flags (-it) or a short option with its value (-eFOO=1).
            first = "-" + arg[1]
            if first in _RUN_OPTIONS and _RUN_OPTIONS[first][1]:
                name, eq, value = first, "=", arg[2:]
            elif all(("-" + c) in _RUN_OPTIONS and not _RUN_OPTIONS["-" + c][1]
                     for c in arg[1:]):
                for c in arg[1:]:
                    opts[_RUN_OPTIONS["-" + c][0]] = True
                i += 1
                continue
        if name == "--help":
            raise _Help()
        if name not in _RUN_OPTIONS:
            raise PycontainError(f"unknown option {arg!r} (see 'pycontain run --help')")
        dest, takes_value, repeat = _RUN_OPTIONS[name]
        if takes_value:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise PycontainError(f"option {name} needs a value")
                value = argv[i]
            if repeat:
                opts.setdefault(dest, []).append(value)
            else:
                opts[dest] = value
        else:
            if eq:
                raise PycontainError(f"option {name} takes no value")
            opts[dest] = True
        i += 1
    return opts, argv[i:]


class _Help(Exception):
    pass


def _build(opts: dict, positional: list[str]):  # -> tuple[dict, RunOptions]
    from .container import RunOptions
    from .spec import default_spec, setenv

    if not positional:
        raise PycontainError("'run' needs a ROOTFS (a directory or a tarball)")
    rootfs_arg, cmd = positional[0], positional[1:] or ["/bin/sh"]
    run_opts = RunOptions()
    run_opts.trace = bool(opts.get("trace"))
    run_opts.dry_run = bool(opts.get("dry_run"))
    run_opts.interactive = bool(opts.get("interactive"))
    run_opts.no_pivot = bool(opts.get("no_pivot"))
    run_opts.stats = bool(opts.get("stats"))
    run_opts.name = opts.get("name")
    run_opts.qemu_dir = opts.get("qemu_dir")
    emu = opts.get("emulation", "auto")
    if emu not in ("auto", "sandbox", "host", "off"):
        raise PycontainError(f"--emulation must be auto, sandbox, host or off, not {emu!r}")
    run_opts.emulation = emu

    spec = default_spec(os.path.abspath(rootfs_arg), cmd)
    process = spec["process"]
    process["terminal"] = bool(opts.get("tty"))
    if process["terminal"]:
        setenv(spec, "TERM", os.environ.get("TERM", "xterm"))
    for item in opts.get("env", []):
        key, eq, value = item.partition("=")
        if not key:
            raise PycontainError(f"-e {item!r}: expected KEY=VALUE")
        if not eq:  # docker: -e KEY passes the host's value through
            if key not in os.environ:
                continue
            value = os.environ[key]
        setenv(spec, key, value)
    if opts.get("workdir"):
        if not opts["workdir"].startswith("/"):
            raise PycontainError(f"-w {opts['workdir']}: the working directory must be absolute")
        process["cwd"] = opts["workdir"]
    if opts.get("hostname"):
        spec["hostname"] = opts["hostname"]
    if opts.get("read_only"):
        spec["root"]["readonly"] = True
    network = opts.get("network", "none")
    if network == "host":
        from .spec import drop_namespace

        drop_namespace(spec, "network")
    elif network == "bridge":
        from .network import bridge_config

        run_opts.net = bridge_config(opts.get("publish", []), opts.get("ip"))
    elif network != "none":
        raise PycontainError(f"--network {network}: must be none, host or bridge")
    if network != "bridge" and (opts.get("publish") or opts.get("ip")):
        raise PycontainError(f"{'-p' if opts.get('publish') else '--ip'} needs "
                             f"--network bridge (the network is '{network}')")
    for vol in opts.get("volume", []):
        spec["mounts"].append(_parse_volume(vol))
    if opts.get("name"):
        spec["annotations"]["io.pycontain.name"] = opts["name"]
    _security(opts, spec)
    if opts.get("userns"):
        from .userns import apply_option

        apply_option(spec, opts["userns"])
    _limits(opts, spec)
    return spec, run_opts, rootfs_arg


def _parse_volume(vol: str) -> dict:
    parts = vol.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise PycontainError(f"-v {vol!r}: expected HOST:CONTAINER[:ro|rw]")
    host, ctr = os.path.abspath(parts[0]), parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise PycontainError(f"-v {vol!r}: the mode must be ro or rw, not {mode!r}")
    if not ctr.startswith("/"):
        raise PycontainError(f"-v {vol!r}: the container path must be absolute")
    if not os.path.exists(host):
        raise PycontainError(f"-v {vol!r}: {host}: no such file or directory")
    return {"destination": ctr, "type": "bind", "source": host,
            "options": ["rbind", "nosuid", "nodev", mode]}


def _security(opts: dict, spec: dict) -> None:
    """--privileged, --cap-add/--cap-drop, --security-opt: docker's semantics."""
    from .capabilities import resolve
    from .security import apply_defaults

    no_new_privs = seccomp = True
    for item in opts.get("security_opt", []):
        key, sep, value = item.replace(":", "=", 1).partition("=")
        value = value if sep else "true"
        if key == "no-new-privileges" and value in ("true", "false"):
            no_new_privs = value == "true"
        elif key == "seccomp" and value in ("unconfined", "default"):
            seccomp = value == "default"
        else:
            raise PycontainError(
                f"--security-opt {item!r}: supported are no-new-privileges[=true|false] "
                "and seccomp=unconfined|default")
    privileged = bool(opts.get("privileged"))
    caps = resolve(opts.get("cap_add", []), opts.get("cap_drop", []), privileged)
    apply_defaults(spec, privileged=privileged, caps=caps, no_new_privs=no_new_privs,
                   seccomp=seccomp)


def _limits(opts: dict, spec: dict) -> None:
    keys = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
            "cpu_weight", "cpuset_cpus", "cpuset_mems", "pids_limit",
            "device_read_bps", "device_write_bps")
    wanted = {k: opts[k] for k in keys if k in opts}
    if wanted:
        from .limits import resources_from_flags

        spec["linux"]["resources"] = resources_from_flags(wanted)


def _prepare_rootfs(rootfs_arg: str, spec: dict, run_opts) -> None:
    """A directory is used in place; a tarball is unpacked (safely) into a
    private directory that is removed when the container exits."""
    path = spec["root"]["path"]
    if not os.path.exists(path):
        raise PycontainError(f"rootfs {rootfs_arg}: no such file or directory")
    if os.path.isdir(path):
        return
    from . import tarball

    if not tarball.is_tarball(path):
        raise PycontainError(
            f"rootfs {rootfs_arg}: not a directory or a tarball (.tar, .tar.gz, .tar.xz, .tar.zst)"
        )
    from .container import new_id
    from .state import ROOTFS_BASE, remove_tree, unpack_dir_name

    target = os.path.join(ROOTFS_BASE, unpack_dir_name(new_id()))
    os.makedirs(target, mode=0o700)
    try:
        tarball.unpack(path, target, warn=lambda msg: _warn(msg))
    except BaseException:
        remove_tree(target)
        raise
    spec["root"]["path"] = target
    run_opts.remove_rootfs = True


def _set_user(spec: dict, value: str, explicit_env: list[str]) -> None:
    """--user, resolved against the rootfs's own /etc/passwd and /etc/group."""
    from .spec import setenv
    from .users import resolve_user

    uid, gid, groups, home = resolve_user(spec["root"]["path"], value)
    spec["process"]["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
    if home and not any(e.startswith("HOME=") for e in explicit_env):
        setenv(spec, "HOME", home)


def _warn(msg: str) -> None:
    sys.stderr.write(f"pycontain: warning: {msg}\n")


def cmd_run(argv: list[str]) -> int:
    try:
        opts, positional = parse_run(argv)
    except _Help:
        sys.stdout.write(USAGE)
        return 0
    spec, run_opts, rootfs_arg = _build(opts, positional)
    if os.geteuid() != 0 and not run_opts.dry_run:
        raise PycontainError("pycontain run must be run as root (try: sudo pycontain run ...)")
    from .container import run

    if run_opts.dry_run:
        if not os.path.exists(spec["root"]["path"]):
            raise PycontainError(f"rootfs {rootfs_arg}: no such file or directory")
        return run(spec, run_opts)
    if opts.get("detach"):
        if not os.path.isdir(spec["root"]["path"]):
            raise PycontainError(f"rootfs {rootfs_arg}: -d needs a directory rootfs")
        if opts.get("tty"):
            raise PycontainError("-d with -t is not supported (no one would hold the terminal)")
        if opts.get("user"):
            _set_user(spec, opts["user"], explicit_env=opts.get("env", []))
        from .lifecycle import run_detached

        return run_detached(spec, opts.get("name"), _GLOBALS, run_opts)
    if run_opts.name:
        # The name is the container's id: unique, and what ps/exec/stop take.
        from .lifecycle import check_name

        run_opts.container_id = check_name(run_opts.name)
    _prepare_rootfs(rootfs_arg, spec, run_opts)
    try:
        if opts.get("user"):
            _set_user(spec, opts["user"], explicit_env=opts.get("env", []))
        return run(spec, run_opts)
    finally:
        if run_opts.remove_rootfs:
            from .state import remove_tree

            remove_tree(spec["root"]["path"])


def cmd_gc(argv: list[str]) -> int:
    from .state import collect_garbage

    if os.geteuid() != 0:
        raise PycontainError("pycontain gc must be run as root")
    for line in collect_garbage():
        print(f"removed {line}")
    return 0


def cmd_inspect(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="pycontain inspect",
                                 description="Show a rootfs's entrypoint, platform and "
                                 "whether it needs emulation")
    ap.add_argument("rootfs")
    ap.add_argument("cmd", nargs="*")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--qemu-dir")
    ap.add_argument("--emulation", default="auto",
                    choices=["auto", "sandbox", "host", "off"])
    ns = ap.parse_args(argv)
    from .inspect_image import format_inspect, inspect

    if not os.path.isdir(ns.rootfs):
        raise PycontainError(f"rootfs {ns.rootfs}: no such directory")
    info = inspect(ns.rootfs, ns.cmd or ["/bin/sh"], qemu_dir=ns.qemu_dir, mode=ns.emulation)
    if ns.json:
        import json

        print(json.dumps(info, indent=2))
    else:
        print(format_inspect(info))
    return 0


def cmd_binfmt(argv: list[str]) -> int:
    from .binfmt import main_binfmt

    return main_binfmt(argv)


def cmd_explain(argv: list[str]) -> int:
    from .explain import main_explain

    return main_explain(argv)


def cmd_bench_emulation(argv: list[str]) -> int:
    from .bench_emulation import main_bench_emulation

    return main_bench_emulation(argv)


def cmd_version(argv: list[str]) -> int:
    from . import __version__

    print(f"pycontain {__version__}")
    return 0


_GLOBALS = None  # set by main(): runc-style --root/--log options


def _oci(name: str):
    def command(argv: list[str]) -> int:
        from . import oci

        return oci.main(_GLOBALS or oci.Globals(), name, argv)
    return command


def _docker(name: str):
    def command(argv: list[str]) -> int:
        from . import lifecycle, oci

        return getattr(lifecycle, f"cmd_{name}")(argv, _GLOBALS or oci.Globals())
    return command


def cmd_run_any(argv: list[str]) -> int:
    """``run --bundle DIR ID`` is the OCI command; anything else is docker-style."""
    if any(a in ("--bundle", "-b") or a.startswith("--bundle=") for a in argv):
        return _oci("run")(argv)
    return cmd_run(argv)


def cmd_ps(argv: list[str]) -> int:
    """``ps ID`` lists a container's processes (OCI); ``ps [-a]`` lists containers."""
    if any(not a.startswith("-") for a in argv):
        return _oci("ps")(argv)
    return _docker("ps")(argv)


COMMANDS = {
    "run": cmd_run_any,
    "create": _oci("create"), "start": _oci("start"), "state": _oci("state"),
    "kill": _oci("kill"), "delete": _oci("delete"), "spec": _oci("spec"),
    "list": _oci("list"), "pause": _oci("pause"), "resume": _oci("resume"),
    "exec": _docker("exec"), "ps": cmd_ps, "logs": _docker("logs"),
    "stop": _docker("stop"), "rm": _docker("rm"),
    "gc": cmd_gc,
    "inspect": cmd_inspect,
    "binfmt": cmd_binfmt,
    "explain": cmd_explain,
    "bench-emulation": cmd_bench_emulation,
    "version": cmd_version,
}


def main(argv: list[str] | None = None) -> int:
    global _GLOBALS
    args = sys.argv[1:] if argv is None else argv
    if args and args[0].startswith("--") and args[0] not in ("--help",):
        from . import oci

        try:  # runc's global options: pycontain --root DIR --log F create ...
            _GLOBALS, args = oci.parse_globals(args)
        except PycontainError as e:
            sys.stderr.write(f"pycontain: {e.message}\n")
            return 1
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        sys.stderr.write(f"pycontain: unknown command {args[0]!r} (try 'pycontain --help')\n")
        return EXIT_RUNTIME
    try:
        return command(args[1:])
    except PycontainError as e:
        sys.stderr.write(f"pycontain: {e.message}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except BaseException as e:  # a bug: still one line, unless asked for more
        if os.environ.get("PYCONTAIN_DEBUG"):
            raise
        sys.stderr.write(f"pycontain: internal error: {type(e).__name__}: {e} "
                         "(run with PYCONTAIN_DEBUG=1 for the traceback)\n")
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
