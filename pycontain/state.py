"""Runtime state on the host: one directory per live container.

``/run/pycontain/containers/<id>/`` holds what the container needs from
the host (its /etc/hostname, /etc/hosts, /etc/resolv.conf) and an
``owner`` file naming the pycontain process responsible for it.  A tarball
rootfs is unpacked under ``/var/lib/pycontain/rootfs/<id>``.

Everything a run creates is recorded here *before* it is created, so that
if pycontain is SIGKILLed, the next run (or ``pycontain gc``) can find the
directory, see that its owner is dead, and remove what it left: the state
directory, the unpacked rootfs and the cgroup.  Mounts need no such care:
they all live in the container's mount namespace and die with it.
"""

from __future__ import annotations

import os

DEFAULT_ROOT = "/run/pycontain"
ROOTFS_BASE = "/var/lib/pycontain/rootfs"


def start_time(pid: int | str) -> str | None:
    """Field 22 of /proc/<pid>/stat: distinguishes a reused pid.

    None when there is no such process, or when it has exited and only its
    zombie waits to be reaped: either way it is not alive any more."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None  # exited, not yet reaped by its parent: not alive
    return fields[19]


def owner_token(pid: int | str = "self") -> str:
    return f"{os.getpid() if pid == 'self' else pid} {start_time(pid)}"


def owner_alive(token: str) -> bool:
    try:
        pid, start = token.split()
    except ValueError:
        return False
    return start_time(pid) == start


def container_alive(root: str, cid: str) -> bool:
    """Must the state of container ``cid`` be kept?

    Yes while its owner (a pycontain, or a detached container's init) runs;
    while it is being created (the directory is made just before its owner
    file is written); and for an OCI or ``run -d`` container, whose state
    stays until ``delete``/``rm`` (podman asks for it after the exit)."""
    st = ContainerState(cid, root)
    owner = st.read("owner")
    if owner is not None and owner_alive(owner.strip()):
        return True
    if owner is None and _younger_than(st.dir, 30.0):
        return True
    return st.read("oci") is not None


class ContainerState:
    """The host-side directory of one running container."""

    __slots__ = ("dir", "id", "root", "rootfs_dir")

    def __init__(self, container_id: str, root: str = DEFAULT_ROOT) -> None:
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, "containers", container_id)
        self.rootfs_dir: str | None = None

    def create(self, owner: str) -> None:
        os.makedirs(os.path.dirname(self.dir), mode=0o700, exist_ok=True)
        os.mkdir(self.dir, 0o700)
        self.write("owner", owner)

    def write(self, name: str, data: str) -> str:
        path = os.path.join(self.dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
        return path

    def record(self, spec: dict, pid: int, bundle: str = "") -> None:
        """config.json and state.json: what ``state``, ``ps`` and ``exec``
        read back about a container that others may address by its id."""
        import json
        import time

        self.write("config.json", json.dumps(spec))
        self.write("state.json", json.dumps({
            "bundle": bundle, "pid": pid, "annotations": spec.get("annotations", {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rootfs": spec["root"]["path"]}))

    def read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read()
        except OSError:
            return None

    def remove(self) -> None:
        # The state dir only ever holds flat files: no need for shutil
        # (whose import costs milliseconds) on every container's exit.
        try:
            for name in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, name))
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass
        except OSError:
            remove_tree(self.dir)
        rootfs = self.rootfs_dir or os.path.join(ROOTFS_BASE, self.id)
        if os.path.lexists(rootfs):
            remove_tree(rootfs)


def remove_tree(path: str) -> None:
    """rm -rf that never follows symlinks (an unpacked rootfs is untrusted)."""
    import shutil

    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


def _younger_than(path: str, seconds: float) -> bool:
    import time

    try:
        return time.time() - os.stat(path).st_mtime < seconds
    except OSError:
        return False


def unpack_dir_name(container_id: str) -> str:
    """Where a tarball is unpacked: the name records who is unpacking it."""
    return f"unpack-{owner_token().replace(' ', '.', 1)}-{container_id}"


def write_pid_file(path: str, pid: int) -> None:
    """``--pid-file``: written whole or not at all (callers poll for it)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def list_ids(root: str = DEFAULT_ROOT) -> list[str]:
    try:
        return os.listdir(os.path.join(root, "containers"))
    except OSError:
        return []


def collect_garbage(root: str = DEFAULT_ROOT, *, verbose: bool = False) -> list[str]:
    """Remove everything left by containers whose pycontain has died.

    Returns a line per thing removed.  Safe to run at any time: live
    containers are recognised by their owner's pid and start time."""
    from . import cgroups

    removed: list[str] = []
    # Network leftovers first: their record lives in the state dirs below.
    from .network import collect_garbage as collect_network

    removed += collect_network(root)
    alive: set[str] = set()
    for cid in list_ids(root):
        if container_alive(root, cid):
            alive.add(cid)
            continue
        st = ContainerState(cid, root)
        cg = st.read("cgroup")
        if cg:
            cgroups.remove_group(cg.strip())
            removed.append(f"cgroup {cg.strip()}")
        st.remove()
        removed.append(f"state {st.dir}")
    mount = cgroups.find_v2_mount()
    if mount:
        for path in cgroups.stale_groups(mount, alive):
            cgroups.remove_group(path)
            removed.append(f"cgroup {path}")
    try:
        for cid in os.listdir(ROOTFS_BASE):
            if cid.startswith("unpack-"):
                # A tarball being unpacked before its container exists:
                # named unpack-<pid>.<start time>-<random> by its pycontain.
                token = cid[len("unpack-"):].rsplit("-", 1)[0].replace(".", " ", 1)
                if owner_alive(token):
                    continue
            elif cid in alive:
                continue
            remove_tree(os.path.join(ROOTFS_BASE, cid))
            removed.append(f"rootfs {os.path.join(ROOTFS_BASE, cid)}")
    except OSError:
        pass
    return removed
