"""cgroup v2: one group per container, created before it starts, removed after.

The container's init is cloned *into* its group (clone3 with
CLONE_INTO_CGROUP, see csrc/shim.c), so there is no moment at which the
command runs outside its limits.  When the container ends we kill whatever
is left (``cgroup.kill``) and remove the directory.

The v2 hierarchy is found in /proc/self/mountinfo: at /sys/fs/cgroup on a
unified host, at /sys/fs/cgroup/unified on a hybrid one (like the machine
this was written on, where v2 has no resource controllers at all).
"""

from __future__ import annotations

import os
import time

from .errors import PycontainError, strerror

#: All our groups live under this directory of the v2 hierarchy.
PARENT = "pycontain"


def find_v2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Mount point of the cgroup2 hierarchy, or None on a v1-only host."""
    best: str | None = None
    try:
        with open(mountinfo) as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] == "cgroup2":
                    mnt = fields[4]
                    # Prefer the canonical places if several are mounted.
                    if mnt in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                        return mnt
                    best = best or mnt
    except OSError:
        return None
    return best


def own_group(pid: int | str = "self") -> str:
    """The v2 group of a process, as in /proc/<pid>/cgroup ("0::/path")."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return "/"


def available_controllers(group_dir: str) -> set[str]:
    try:
        with open(os.path.join(group_dir, "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


class Cgroup:
    """One container's group: ``<v2 mount>/pycontain/<id>``."""

    __slots__ = ("fd", "mount", "path")

    def __init__(self, mount: str, container_id: str) -> None:
        self.mount = mount
        self.path = os.path.join(mount, PARENT, container_id)
        self.fd = -1

    @property
    def relpath(self) -> str:
        """The group as the container's /proc/self/cgroup names it from outside."""
        return "/" + os.path.relpath(self.path, self.mount)

    def create(self) -> None:
        parent = os.path.dirname(self.path)
        try:
            for attempt in range(5):
                os.makedirs(parent, exist_ok=True)
                try:
                    os.mkdir(self.path, 0o755)
                    break
                except FileNotFoundError:
                    # The last container out removed the parent between
                    # our makedirs and mkdir (remove_group): make it again.
                    if attempt == 4:
                        raise
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise PycontainError(
                f"cannot create cgroup {self.path}: {strerror(e.errno or 0)}"
            ) from None

    def write(self, name: str, value: str) -> None:
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise PycontainError(f"cgroup: writing {value!r} to {path}: "
                                 f"{strerror(e.errno or 0)}") from None

    def read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def add_pid(self, pid: int) -> None:
        """Fallback for kernels without clone3: move before the child runs."""
        self.write("cgroup.procs", str(pid))

    def destroy(self) -> None:
        """Kill what is left in the group and remove it.  Idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        remove_group(self.path)


def remove_group(path: str, timeout: float = 2.0) -> None:
    """rmdir a group, killing its processes first if it is still busy."""
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        try:
            os.rmdir(path)
            _remove_unused_parent(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != 16:  # EBUSY: processes are still inside
                raise PycontainError(f"cannot remove cgroup {path}: {strerror(e.errno or 0)}")
        if not killed:
            try:  # cgroup.kill (Linux 5.14) SIGKILLs the whole subtree
                with open(os.path.join(path, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                _kill_procs(path)
            killed = True
        if time.monotonic() > deadline:
            raise PycontainError(f"cannot remove cgroup {path}: processes will not die")
        time.sleep(0.002)


def _remove_unused_parent(path: str) -> None:
    """The last container out also removes ``<v2 mount>/pycontain``, so that
    nothing of ours stays in the hierarchy.  Only that directory: the
    parents of an OCI cgroupsPath belong to whoever chose the path.  rmdir
    fails harmlessly while other containers' groups are in it."""
    parent = os.path.dirname(path)
    if os.path.basename(parent) != PARENT:
        return
    try:
        os.rmdir(parent)
    except OSError:
        pass


def _kill_procs(path: str) -> None:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(x) for x in f.read().split()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def stale_groups(mount: str, alive: set[str]) -> list[str]:
    """Our groups whose container id is not in ``alive``."""
    parent = os.path.join(mount, PARENT)
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return [os.path.join(parent, n) for n in names
            if n not in alive and os.path.isdir(os.path.join(parent, n))]
