"""The container's filesystem: mounts, /dev, and the switch to the new root.

This module turns the spec's root and mounts into ``setup`` steps that the
container's PID 1 runs in its new mount namespace, in this order:

1. make every mount we inherited private (MS_REC|MS_PRIVATE on ``/``), so
   nothing we do propagates back to the host's mount table;
2. bind the rootfs onto itself: pivot_root needs the new root to be a
   mount point, and the bind is what ``--read-only`` later remounts;
3. the spec's mounts (proc, a tmpfs /dev, devpts, shm, mqueue, sysfs,
   cgroup2), then /dev's nodes and links, then /etc files and volumes;
4. remount the root read-only if asked (last, so the mount points above
   could still be created);
5. pivot_root and detach the old root (or MS_MOVE + chroot on ramfs).

Every target path is resolved *inside* the rootfs (paths.resolve_in_root),
so a rootfs whose ``/proc`` is a symlink to ``/etc`` mounts over its own
``/etc``, never over the host's.
"""

from __future__ import annotations

import os

from . import plan as p
from .errors import PycontainError
from .paths import resolve_in_root

#: OCI mount option -> (flags to set, flags to clear)
_OPTION_FLAGS: dict[str, tuple[int, int]] = {
    "ro": (p.MS_RDONLY, 0), "rw": (0, p.MS_RDONLY),
    "nosuid": (p.MS_NOSUID, 0), "suid": (0, p.MS_NOSUID),
    "nodev": (p.MS_NODEV, 0), "dev": (0, p.MS_NODEV),
    "noexec": (p.MS_NOEXEC, 0), "exec": (0, p.MS_NOEXEC),
    "noatime": (p.MS_NOATIME, 0), "nodiratime": (p.MS_NODIRATIME, 0),
    "relatime": (p.MS_RELATIME, 0), "strictatime": (p.MS_STRICTATIME, 0),
    "bind": (p.MS_BIND, 0), "rbind": (p.MS_BIND | p.MS_REC, 0),
    "defaults": (0, 0),
}

#: Propagation options: applied by a second mount(2) call once the mount
#: exists (the kernel takes a propagation change alone, without a source).
_PROPAGATION: dict[str, int] = {
    "private": p.MS_PRIVATE, "rprivate": p.MS_PRIVATE | p.MS_REC,
    "slave": p.MS_SLAVE, "rslave": p.MS_SLAVE | p.MS_REC,
    "shared": p.MS_SHARED, "rshared": p.MS_SHARED | p.MS_REC,
    "unbindable": 0x20000, "runbindable": 0x20000 | p.MS_REC,
}

#: The device nodes every container gets (runtime-spec "Default Devices").
DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

#: Links in /dev that programs expect.
DEFAULT_DEV_LINKS = {
    "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}


def parse_options(options: list[str]) -> tuple[int, str]:
    """Split OCI mount options into mount(2) flags and the data string."""
    flags = 0
    data: list[str] = []
    for opt in options:
        if opt in _PROPAGATION:
            continue  # see propagation()
        if opt in _OPTION_FLAGS:
            set_, clear = _OPTION_FLAGS[opt]
            flags = (flags | set_) & ~clear
        else:
            data.append(opt)  # filesystem-specific, e.g. mode=755
    return flags, ",".join(data)


def propagation(options: list[str]) -> int:
    """The last propagation option given (OCI: rprivate, shared ...), or 0."""
    flags = 0
    for opt in options:
        flags = _PROPAGATION.get(opt, flags)
    return flags


def _propagation_step(target: str, options: list[str]) -> list[p.Step]:
    flags = propagation(options)
    # The whole tree is made rprivate first (root_steps): private is a no-op.
    if not flags or flags & p.MS_PRIVATE:
        return []
    return [p.Step(p.MOUNT, a=None, b=target, flags=flags, why="mount propagation")]


def _is_file_source(source: str) -> bool:
    try:
        return not os.path.isdir(source)
    except OSError:
        return False


def mount_steps(root: str, m: dict, *, in_userns: bool, own_netns: bool = True) -> list[p.Step]:
    """The steps for one OCI mount entry, targets resolved inside ``root``."""
    if m.get("type") == "sysfs" and in_userns and not own_netns:
        # The kernel lets only the owner of the network namespace mount
        # sysfs.  A user namespace sharing the host's network does not own
        # it, so bind the host's /sys instead (read-only, as sysfs would be).
        m = {"destination": m["destination"], "type": "bind", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    dest = m["destination"]
    if not dest.startswith("/"):
        raise PycontainError(f"mount destination {dest!r} must be an absolute path")
    target = resolve_in_root(root, dest)
    fstype = m.get("type") or "none"
    source = m.get("source") or fstype
    flags, data = parse_options(m.get("options", []))
    steps: list[p.Step] = []
    bind = bool(flags & p.MS_BIND) or fstype == "bind"
    if bind:
        flags |= p.MS_BIND
        if not os.path.exists(source):
            raise PycontainError(f"volume source {source}: no such file or directory")
        if _is_file_source(source):
            steps.append(p.Step(p.MKDIR, b=os.path.dirname(target), mode=0o755))
            steps.append(p.Step(p.MKFILE, b=target, mode=0o644))
        else:
            steps.append(p.Step(p.MKDIR, b=target, mode=0o755))
        # A bind ignores every flag but MS_REC; the read-only and nosuid
        # parts take a second, remounting call.
        steps.append(p.Step(p.MOUNT, a=source, b=target, c=None,
                            flags=flags & (p.MS_BIND | p.MS_REC), why=f"bind {dest}"))
        steps += _propagation_step(target, m.get("options", []))
        extra = flags & (p.MS_RDONLY | p.MS_NOSUID | p.MS_NODEV | p.MS_NOEXEC)
        if extra:
            steps.append(p.Step(p.REMOUNT, b=target, flags=extra))
        return steps
    if dest == "/dev" and fstype == "tmpfs":
        flags |= p.MS_NODEV  # see dev_steps: devices come in as bind mounts
    steps.append(p.Step(p.MKDIR, b=target, mode=0o755))
    steps.append(p.Step(p.MOUNT, a=source, b=target, c=fstype, d=data or None,
                        flags=flags, why=f"{fstype} on {dest}"))
    steps += _propagation_step(target, m.get("options", []))
    return steps


def dev_steps(root: str, *, in_userns: bool) -> list[p.Step]:
    """Device nodes and links in the container's fresh /dev tmpfs.

    Devices and the kernel's device-access checks: cgroup v2 has no device
    controller file, only an eBPF hook, and pycontain installs no eBPF.  So
    it relies on ``nodev`` instead.  The rootfs, /dev, /dev/shm and every
    volume are mounted ``nodev``: a node the container creates there (it
    keeps CAP_MKNOD, as in docker) cannot be opened.  The few devices a
    container needs are the *host's* nodes, bind-mounted one by one: each
    bind is a mount of its own, from the host's devtmpfs, where device
    access is allowed.  The same works inside a user namespace, where
    mknod of a device is refused anyway."""
    dev = resolve_in_root(root, "/dev")
    steps: list[p.Step] = []
    for name in DEFAULT_DEVICES:
        path = f"{dev}/{name}"
        steps.append(p.Step(p.MKFILE, b=path, mode=0o666))
        steps.append(p.Step(p.MOUNT, a=f"/dev/{name}", b=path, flags=p.MS_BIND))
    for name, target in DEFAULT_DEV_LINKS.items():
        steps.append(p.Step(p.SYMLINK, a=target, b=f"{dev}/{name}"))
    return steps


def etc_file_steps(root: str, files: dict[str, str]) -> list[p.Step]:
    """Bind pycontain's /etc/hostname, /etc/hosts, /etc/resolv.conf (host
    paths in ``files``, keyed by container path) over the rootfs's own, the
    way docker does: the image is left alone, the container sees ours."""
    steps: list[p.Step] = []
    etc = resolve_in_root(root, "/etc")
    if not os.path.isdir(etc):
        return steps  # no /etc in this rootfs: these files make no sense
    for ctr_path, host_path in files.items():
        target = resolve_in_root(root, ctr_path)
        if os.path.dirname(target) != etc:
            continue  # a symlink leads elsewhere in the rootfs: leave it be
        steps.append(p.Step(p.MKFILE, b=target, mode=0o644))
        steps.append(p.Step(p.MOUNT, a=host_path, b=target, flags=p.MS_BIND,
                            why=f"bind {ctr_path}"))
    return steps


def root_steps(spec: dict, *, in_userns: bool, own_netns: bool, etc_files: dict[str, str],
               no_pivot: bool, extra_after_mounts: list[p.Step] | None = None) -> list[p.Step]:
    """Everything from "make / private" to the pivot, in order."""
    root = spec["root"]["path"]
    steps = [
        p.Step(p.MOUNT, a=None, b="/", flags=p.MS_REC | p.MS_PRIVATE,
               why="stop mount propagation to the host"),
        p.Step(p.MOUNT, a=root, b=root, flags=p.MS_BIND | p.MS_REC,
               why="make the rootfs a mount point for pivot_root"),
        p.Step(p.REMOUNT, b=root, flags=p.MS_NODEV,
               why="device nodes in the rootfs must not reach host devices"),
    ]
    dev_done = False
    for m in spec["mounts"]:
        steps += mount_steps(root, m, in_userns=in_userns, own_netns=own_netns)
        if m["destination"] == "/dev/pts" and not dev_done:
            steps += dev_steps(root, in_userns=in_userns)
            dev_done = True
    if not dev_done and any(m["destination"] == "/dev" for m in spec["mounts"]):
        steps += dev_steps(root, in_userns=in_userns)
    steps += etc_file_steps(root, etc_files)
    if extra_after_mounts:
        steps += extra_after_mounts
    if spec["root"].get("readonly"):
        steps.append(p.Step(p.REMOUNT, b=root, flags=p.MS_RDONLY, why="--read-only"))
    steps.append(p.Step(p.MOVE_ROOT if no_pivot else p.PIVOT_ROOT, b=root))
    return steps


def host_root_is_ramfs() -> bool:
    """pivot_root(2) fails with EINVAL when / is the initial ramfs."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/":
                    sep = fields.index("-")
                    return fields[sep + 1] in ("rootfs", "ramfs")
    except OSError:
        pass
    return False
