"""Foreign-architecture rootfs: decide whether QEMU is needed, and arrange it.

A container shares the host's kernel, so the host CPU executes the
container's binaries directly: an arm64 image on an x86_64 host fails
with "exec format error".  binfmt_misc fixes that: it tells the kernel to
hand files that match a magic (an ELF header for another machine) to an
interpreter (a static QEMU user-mode emulator).

:func:`detect` runs on every start and is cheap for native images: it
resolves the entrypoint inside the rootfs (``entrypoint.py``, symlinks and
``#!`` followed) and compares a 64-byte ELF header with the host
(``elf.py``).  Only a foreign entrypoint pays for the QEMU table
(``arch.py``) and binfmt_misc (``binfmt.py``).

Two ways to register QEMU (``--emulation``):

``sandbox`` (default on Linux >= 6.7)
    The container gets a user namespace (identity-mapped: root stays root
    for file ownership) and therefore a binfmt_misc instance of its own.
    Its PID 1 mounts that instance at ``<rootfs>/proc/sys/fs/binfmt_misc``
    and registers the entries with flag F *before* pivot_root: F opens the
    QEMU binary at registration, while the host's /usr/bin is still
    reachable, and keeps it open for the instance's lifetime.  Mounting it
    inside the new root keeps the instance alive after the old root is
    detached (NOTES §2).  The host's table is never written, and the
    entries vanish with the container.
``host`` (older kernels, or on request)
    pycontain registers ``pycontain-<target>`` entries in the host's table,
    reference-counted across concurrent containers (binfmt.HostTable), and
    the last container out removes them.
"""

from __future__ import annotations

import os

from . import plan as p
from .errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, EXIT_RUNTIME, PycontainError
from .spec import DEFAULT_PATH, getenv, has_namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .container import RunOptions, Tracer

#: An identity map: container root is host root (file ownership in the
#: rootfs stays as it is), but its capabilities only count in its own
#: user namespace.
IDENTITY_MAP = [{"containerID": 0, "hostID": 0, "size": 4294967295}]


class Emulation:
    """What running a foreign entrypoint adds to a container start."""

    __slots__ = ("_held", "_release", "mode", "notes", "qemu", "setup_steps", "target")

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.setup_steps: list[p.Step] = []
        self.mode = ""
        self.target = ""
        self.qemu = ""
        self._release = None
        self._held: list = []  # host mode: (target, qemu) entries we hold

    def hand_over(self, pid: int) -> None:
        """Host mode, detached container: the container's init becomes the
        holder of our binfmt_misc entries (pycontain is about to exit), so
        they live as long as it does; `delete` prunes them after."""
        from . import binfmt

        for target, qemu in self._held:
            binfmt.acquire(target, qemu, pid)
            binfmt.release(target)
        self._held = []
        self._release = None

    def release(self, tracer: Tracer) -> None:
        if self._release is not None:
            self._release(tracer)
            self._release = None


def detect(spec: dict, opts: RunOptions, tracer: Tracer) -> Emulation | None:
    """None for a native entrypoint; otherwise the emulation plan.

    Raises a one-line PycontainError for what cannot run: a missing QEMU,
    an unknown machine, ``--emulation=off``, a symlink loop ..."""
    from .elf import host_machine, is_native
    from .entrypoint import resolve

    root = spec["root"]["path"]
    argv0 = spec["process"]["args"][0]
    path_env = getenv(spec, "PATH") or DEFAULT_PATH
    volumes = [m["destination"].rstrip("/") for m in spec["mounts"]
               if m.get("type") == "bind" or "bind" in m.get("options", [])
               or "rbind" in m.get("options", [])]

    def in_a_volume(path: str) -> bool:  # the volume itself (a file), or below it
        return any(path == v or path.startswith(v + "/") for v in volumes)

    # A volume may provide (or shadow) the command: what the rootfs
    # directory holds at that path is not what execve will see, so a
    # command found under a volume (or not found at all) gets no verdict
    # here: execve has the last word.
    in_volume = False
    if volumes:
        from .entrypoint import find_command

        where = argv0 if "/" in argv0 else find_command(root, argv0, path_env)
        in_volume = where is None or in_a_volume(where)
    try:
        r = resolve(root, argv0, path_env)
    except PycontainError as e:
        if in_volume or (e.exit_code == EXIT_NOT_FOUND and volumes):
            return None
        raise
    if in_volume and any(in_a_volume(p) for p in r.chain):
        return None
    if r.ident is None or is_native(r.ident, host_machine()):
        return None
    return _plan_foreign(spec, opts, tracer, r)


def _plan_foreign(spec: dict, opts: RunOptions, tracer: Tracer, r) -> Emulation:
    from . import arch, binfmt

    root = spec["root"]["path"]
    host_plat = arch.host_platform()
    target = arch.target_for(r.ident)
    chain = " -> ".join(r.chain)
    if target is None:
        raise PycontainError(
            f"{chain}: unknown CPU architecture ({r.ident.describe()}); no QEMU target "
            "matches it", EXIT_RUNTIME)
    image_plat = arch.platform_of(r.ident) or target.platform
    mode = binfmt.default_mode() if opts.emulation == "auto" else opts.emulation
    if mode == "off":
        raise PycontainError(
            f"rootfs is {image_plat}, host is {host_plat}: {r.final} cannot run on this CPU, "
            "and --emulation=off forbids QEMU", EXIT_CANNOT_INVOKE)
    if mode == "sandbox" and not binfmt.sandbox_supported():
        raise PycontainError(
            f"--emulation=sandbox needs Linux 6.7 or newer (this is {os.uname().release}); "
            "use --emulation=host", EXIT_RUNTIME)
    # Its error already reads "rootfs is linux/arm64, host is linux/amd64,
    # and no static qemu-aarch64 was found; install qemu-user-static".
    qemu = binfmt.find_static_qemu(target.qemu, opts.qemu_dir)

    emu = Emulation()
    emu.mode, emu.target, emu.qemu = mode, target.name, qemu
    targets = {target.name: (target, qemu)}
    # Every foreign CPU the rootfs may exec, not only the entrypoint's
    # (an arm64 image with armhf helpers, say).  Missing emulators for
    # those are not fatal: only the entrypoint must run.
    from .inspect_image import foreign_targets

    for name in sorted(foreign_targets(root) - {target.name}):
        other = arch.target_by_name(name)
        try:
            targets[name] = (other, binfmt.find_static_qemu(other.qemu, opts.qemu_dir))
        except PycontainError:
            emu.notes.append(f"the rootfs also has {other.platform} binaries, but no static "
                             f"qemu-{other.qemu} was found: those will not run")

    emu.notes.append(f"entrypoint {chain} is {image_plat} ({r.ident.describe()}); "
                     f"the host is {host_plat}: its CPU cannot run it")
    if r.depth >= 5:
        emu.notes.append("warning: 5 levels of #! plus binfmt_misc's hand-over exceed the "
                         "kernel's limit: execve will fail with ELOOP")

    user_env = {e.partition("=")[0]: e.partition("=")[2] for e in spec["process"]["env"]}
    tuned = binfmt.qemu_env(target.name, qemu, user_env)
    for key, value in tuned.items():
        if key not in user_env:
            spec["process"]["env"].append(f"{key}={value}")
            emu.notes.append(f"{key}={value} for qemu-{target.qemu}: QEMU's default CPU model "
                             "is slow for this target (set QEMU_CPU yourself to override)")

    if mode == "sandbox":
        _sandbox(spec, emu, targets, binfmt)
    else:
        _host(emu, targets, binfmt, tracer)
    spec["annotations"]["io.pycontain.emulation"] = f"{target.name} {mode} {qemu}"
    return emu


def _sandbox(spec: dict, emu: Emulation, targets: dict, binfmt) -> None:
    """Own user namespace, own binfmt_misc instance, entries registered by PID 1."""
    linux = spec["linux"]
    if not has_namespace(spec, "user"):
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [dict(m) for m in IDENTITY_MAP]
        linux["gidMappings"] = [dict(m) for m in IDENTITY_MAP]
    else:
        # --userns (or a config.json) already gives the container a user
        # namespace: the binfmt_misc instance belongs to that one.  A
        # namespace only needs to exist for the instance, so one is enough.
        emu.notes.append("emulation: sandbox: binfmt_misc instance of the container's own "
                         "user namespace (no second namespace is created)")
    from .paths import resolve_in_root

    mnt = resolve_in_root(spec["root"]["path"], "/proc") + "/sys/fs/binfmt_misc"
    emu.setup_steps.append(p.Step(
        p.MOUNT, a="binfmt_misc", b=mnt, c="binfmt_misc",
        flags=p.MS_NOSUID | p.MS_NODEV | p.MS_NOEXEC,
        why="a binfmt_misc instance of the container's own user namespace"))
    lines = binfmt.sandbox_register_lines([t for t, _ in targets.values()],
                                          {n: q for n, (_, q) in targets.items()})
    for line in lines:
        emu.setup_steps.append(p.Step(
            p.WRITE_FILE, a=line.decode(), b=mnt + "/register",
            why="register QEMU in the container's own binfmt_misc instance (not the host's)"))
    for name, (_, qemu) in targets.items():
        emu.notes.append(f"emulation: sandbox: {name} binaries run through {qemu}, registered "
                         "in a binfmt_misc instance private to this container; the host's "
                         "table is not touched")


def _host(emu: Emulation, targets: dict, binfmt, tracer: Tracer) -> None:
    """Reference-counted entries in the host's table, released at exit."""
    acquired = []
    try:
        for name, (target, qemu) in targets.items():
            held = binfmt.acquire(target, qemu)
            acquired.append(target)
            emu._held.append((target, qemu))
            tracer.emit("binfmt", f"host binfmt_misc: {held}")
            emu.notes.append(f"emulation: host: {name} binaries run through {qemu}, "
                             "via the host's binfmt_misc table (reference-counted, "
                             "removed by the last container out)")
    except BaseException:
        for target in acquired:
            binfmt.release(target)
        raise

    def release(tracer: Tracer) -> None:
        for target in acquired:
            removed = binfmt.release(target)
            tracer.emit("cleanup", f"host binfmt_misc: released {target.name}"
                        + (" (entry removed)" if removed else ""))

    emu._release = release
