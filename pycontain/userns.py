"""User namespaces: the container's root as an unprivileged range of host ids.

``--userns=auto`` or ``--userns=C:H:S[,C:H:S...]`` puts the container in a
user namespace whose uid/gid 0 is a host id nobody uses (100000 and up).
Its capabilities then only count inside: a file it creates on a volume is
owned on the host by 100000+, and a host file owned by root (which it sees
as ``nobody``) is closed to it unless "others" may read it.
``--userns=host`` (the default) keeps the host's user namespace.

Three problems, and how pycontain solves them:

*Who gets which range* (``auto``).  Ranges of 65536 ids starting at
100000 + N*65536 (``PYCONTAIN_USERNS_BASE`` and ``PYCONTAIN_USERNS_SIZE``
change both) are leased under /run/pycontain/userns/: one file per range,
naming its owner (pid + start time, like the container state), created
under an flock so that two concurrent starts never get the same range.  A
lease whose owner died is reclaimed by the next allocation.

*Rootfs ownership.*  The rootfs's files belong to host root, which is
``nobody`` inside.  An **idmapped mount** fixes that without touching the
files: a mount that shifts ids through the container's own user namespace
(host 0 on disk appears as the range's first id, i.e. root inside, and
what container root writes lands on disk as 0).  Only host root can make
one (``mount_setattr(MOUNT_ATTR_IDMAP)`` needs CAP_SYS_ADMIN over the
filesystem's own user namespace), and the user namespace must exist and
have its maps first.  So the order is: clone the child (it waits on its
sync pipe), write uid_map/gid_map, then pycontain, still host root in the
host's namespaces, makes a detached clone of the rootfs with
``open_tree(OPEN_TREE_CLONE)``, idmaps it through
``/proc/<child>/ns/user``, and sends the fd over a unix socket; the child's
first mount step (``PC_OP_ATTACH_TREE``) receives it and ``move_mount``s
it over its working directory, which is the rootfs directory (pycontain
clones it from there: clone(CLONE_NEWNS) translates the working directory
into the child's copy of the mount table, while an fd opened on the host
would still name the host's mount), then ``fchdir``s into the new mount.
Where the filesystem has no idmapped mounts (or ``PYCONTAIN_USERNS_IDMAP=0``),
pycontain falls back to a **private copy** of the rootfs chowned into the
range (removed at exit; a tarball rootfs, already private, is shifted in
place).

*Host paths the container may not walk.*  Inside its user namespace the
container's root cannot enter host directories that are closed to
"others": a rootfs or a volume under a 0700 directory, pycontain's own
state directory (/etc/hostname comes from there).  So every bind mount
from a host path is made the same way: pycontain clones the source tree on
the host and sends it, and the child only attaches it.  The steps after
the rootfs's attach use paths relative to the rootfs (the working
directory), so nothing walks the host's directories above it.
"""

from __future__ import annotations

import os

from . import plan as p
from .errors import PycontainError, strerror

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .container import Tracer

DEFAULT_BASE = 100000
DEFAULT_SIZE = 65536
LEASE_DIR = "/run/pycontain/userns"
ANNOTATION = "io.pycontain.userns"
_MAX_ID = 4294967295  # (uid_t)-1 is never a valid id

#: errnos meaning "this filesystem/kernel cannot idmap": use the copy.
_NO_IDMAP = (22, 95, 38, 1)  # EINVAL, EOPNOTSUPP, ENOSYS, EPERM


# ---------------------------------------------------------------- option --

def parse_map(value: str) -> list[dict]:
    """``0:100000:65536[,...]`` (container:host:size) as OCI id mappings."""
    out: list[dict] = []
    for part in value.split(","):
        fields = part.split(":")
        try:
            cid, hid, size = (int(f) for f in fields)
        except ValueError:
            raise PycontainError(
                f"--userns {value!r}: expected host, auto or CONTAINER:HOST:SIZE[,...]"
            ) from None
        if size <= 0 or min(cid, hid) < 0 or max(cid, hid) + size > _MAX_ID:
            raise PycontainError(f"--userns {part!r}: ids out of range")
        out.append({"containerID": cid, "hostID": hid, "size": size})
    if not any(m["containerID"] == 0 for m in out):
        raise PycontainError(f"--userns {value!r}: container uid 0 must be mapped")
    return out


def apply_option(spec: dict, value: str) -> None:
    """Record ``--userns=VALUE`` in the spec (``auto`` is resolved at run time)."""
    from .spec import drop_namespace

    if value == "host":
        drop_namespace(spec, "user")
        spec["annotations"].pop(ANNOTATION, None)
        return
    linux = spec["linux"]
    if value == "auto":
        linux.pop("uidMappings", None)
        linux.pop("gidMappings", None)
    else:
        maps = parse_map(value)
        linux["uidMappings"] = [dict(m) for m in maps]
        linux["gidMappings"] = [dict(m) for m in maps]
        value = "map"
    drop_namespace(spec, "user")
    linux["namespaces"].append({"type": "user"})
    spec["annotations"][ANNOTATION] = value


def remapped(spec: dict) -> bool:
    """Did the user ask for a remapped user namespace (not the identity one
    that emulation's sandbox mode uses)?"""
    return spec.get("annotations", {}).get(ANNOTATION) in ("auto", "map")


# ---------------------------------------------------------------- leases --

class Lease:
    """A range of host ids held by this pycontain until :meth:`release`."""

    __slots__ = ("path", "size", "start")

    def __init__(self, start: int, size: int, path: str | None) -> None:
        self.start, self.size, self.path = start, size, path

    def hand_over(self, pid: int) -> None:
        """A detached container: the lease now lives as long as its init."""
        from .state import owner_token

        if self.path:
            with open(self.path, "w") as f:
                f.write(f"{self.size} {owner_token(pid)}\n")
            self.path = None  # not ours to release any more

    def release(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


def _settings(base: int | None, size: int | None) -> tuple[int, int]:
    try:
        b = base if base is not None else int(os.environ.get("PYCONTAIN_USERNS_BASE",
                                                             DEFAULT_BASE))
        s = size if size is not None else int(os.environ.get("PYCONTAIN_USERNS_SIZE",
                                                             DEFAULT_SIZE))
    except ValueError:
        raise PycontainError("PYCONTAIN_USERNS_BASE and PYCONTAIN_USERNS_SIZE must be "
                             "numbers") from None
    if b <= 0 or s <= 0 or b + s > _MAX_ID:
        raise PycontainError(f"user namespace range {b}+{s} is out of range")
    return b, s


def _held(lease_dir: str) -> list[tuple[int, int]]:
    """Live leases as (start, size); dead owners' leases are removed."""
    from .state import owner_alive

    held = []
    for name in os.listdir(lease_dir):
        if not name.isdigit():
            continue
        path = os.path.join(lease_dir, name)
        try:
            with open(path) as f:
                size_s, _, owner = f.read().strip().partition(" ")
            size = int(size_s)
        except (OSError, ValueError):
            continue
        if owner_alive(owner):
            held.append((int(name), size))
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return held


def _first_free(held: list[tuple[int, int]], base: int, size: int) -> int:
    start = base
    while start + size <= _MAX_ID:
        if all(start + size <= s or s + sz <= start for s, sz in held):
            return start
        start += size
    raise PycontainError(f"no free range of {size} host ids above {base}: "
                         f"{len(held)} containers hold them all")


def acquire(*, base: int | None = None, size: int | None = None,
            lease_dir: str = LEASE_DIR, dry_run: bool = False) -> Lease:
    """Lease the first free range (``dry_run``: only say which one it would be)."""
    import fcntl

    from .state import owner_token

    b, s = _settings(base, size)
    if dry_run and not os.path.isdir(lease_dir):
        return Lease(b, s, None)
    os.makedirs(lease_dir, mode=0o755, exist_ok=True)
    lock = os.open(os.path.join(lease_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        # One allocator at a time: list, pick, write, all under the lock.
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = _first_free(_held(lease_dir), b, s)
        if dry_run:
            return Lease(start, s, None)
        path = os.path.join(lease_dir, str(start))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{s} {owner_token()}\n".encode())
        finally:
            os.close(fd)
        return Lease(start, s, path)
    finally:
        os.close(lock)  # closing drops the flock


def prepare(spec: dict, *, dry_run: bool) -> Lease | None:
    """For ``--userns=auto``: lease a range and write it into the spec."""
    if spec.get("annotations", {}).get(ANNOTATION) != "auto":
        return None
    lease = acquire(dry_run=dry_run)
    maps = [{"containerID": 0, "hostID": lease.start, "size": lease.size}]
    spec["linux"]["uidMappings"] = [dict(m) for m in maps]
    spec["linux"]["gidMappings"] = [dict(m) for m in maps]
    return lease


def host_root(spec: dict) -> tuple[int, int]:
    """The host uid and gid that are root inside."""
    return (_host_id(spec["linux"]["uidMappings"], 0),
            _host_id(spec["linux"]["gidMappings"], 0))


# ------------------------------------------------------------- the plan --

def _under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` ("." for root itself), or None."""
    if path == root:
        return "."
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    return None


def attach_host_trees(setup: list[p.Step], root: str, sock_fd: int = -1) -> list[p.Step]:
    """Rewrite the setup steps for a remapped user namespace (see the module
    docstring): the rootfs and every bind from a host path become
    ATTACH_TREE steps fed by pycontain, and every target inside the rootfs
    becomes relative to it."""
    root = os.path.abspath(root)
    # clone() leaves our ids as they were (host root, kuid 0), which the
    # new namespace does not map: we would create files as "nobody" and
    # fail with EOVERFLOW.  Become the namespace's own root first, and shed
    # the host's supplementary groups.
    out: list[p.Step] = [
        p.Step(p.SETGROUPS, a="", mode=0, why="drop the host's supplementary groups"),
        p.Step(p.SETGID, mode=0, why="become gid 0 of the user namespace"),
        p.Step(p.SETUID, mode=0, why="become uid 0 of the user namespace"),
    ]
    attached = False
    for s in setup:
        if (s.kind == p.MOUNT and s.flags & p.MS_BIND and not attached
                and s.a == root and s.b == root):
            out.append(p.Step(p.ATTACH_TREE, a=root, b=".", c="idmap", dev=1,
                              flags=s.flags & p.MS_REC, mode=sock_fd,
                              why="the rootfs, idmapped (made on the host, attached here)"))
            attached = True
            continue
        rel = _under(s.b, root) if attached and isinstance(s.b, str) else None
        if (attached and s.kind == p.MOUNT and s.flags & p.MS_BIND
                and isinstance(s.a, str) and s.a.startswith("/") and rel is not None):
            out.append(p.Step(p.ATTACH_TREE, a=s.a, b=rel, flags=s.flags & p.MS_REC,
                              mode=sock_fd, why=s.why or f"bind {s.a}"))
            continue
        if rel is not None:
            s.b = rel
        out.append(s)
    if not attached:
        raise PycontainError("internal: no rootfs bind step to turn into an idmapped mount")
    return out


def set_socket(setup: list[p.Step], sock_fd: int) -> None:
    for s in setup:
        if s.kind == p.ATTACH_TREE:
            s.mode = sock_fd


# ----------------------------------------------------------- on the host --

def _host_id(maps: list[dict], cid: int) -> int:
    for m in maps:
        if m["containerID"] <= cid < m["containerID"] + m["size"]:
            return m["hostID"] + cid - m["containerID"]
    return 65534  # unmapped: "nobody", like the kernel's overflow id


def shift_tree(path: str, uid_maps: list[dict], gid_maps: list[dict]) -> None:
    """chown every file under ``path`` from container ids to host ids."""
    import stat

    def shift(p_: str) -> None:
        st = os.lstat(p_)
        os.lchown(p_, _host_id(uid_maps, st.st_uid), _host_id(gid_maps, st.st_gid))
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o6000:
            os.chmod(p_, stat.S_IMODE(st.st_mode))  # chown cleared setuid/setgid

    shift(path)
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            shift(os.path.join(dirpath, name))


def shifted_copy(src: str, dest: str, uid_maps: list[dict], gid_maps: list[dict]) -> None:
    """The fallback: a private copy of the rootfs, owned by the range."""
    import subprocess

    os.makedirs(dest, mode=0o700)
    r = subprocess.run(["cp", "-a", "--reflink=auto", src + "/.", dest + "/"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise PycontainError(f"copying the rootfs {src} for the user namespace failed: "
                             f"{r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
    shift_tree(dest, uid_maps, gid_maps)


def _open_tree(path: str, recursive: bool, userns_fd: int) -> int:
    from . import shim

    return shim.lib.pc_open_tree(path.encode(), 1 if recursive else 0, userns_fd)


def send_trees(setup: list[p.Step], pid: int, sock_fd: int, spec: dict, *,
               copy_dest: str, private_rootfs: bool, tracer: Tracer) -> str | None:
    """Clone each ATTACH_TREE source on the host and send it to the child,
    in step order.  Returns the directory of a fallback copy to remove at
    exit, if one was made."""
    import socket

    sock = socket.socket(fileno=os.dup(sock_fd))
    made_copy: str | None = None
    ns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for s in setup:
            if s.kind != p.ATTACH_TREE:
                continue
            src, recursive = str(s.a), bool(s.flags & p.MS_REC)
            if s.dev == 1:
                fd = -1
                if os.environ.get("PYCONTAIN_USERNS_IDMAP", "1") != "0":
                    fd = _open_tree(src, recursive, ns)
                    if fd >= 0:
                        tracer.emit("userns", f"open_tree({src!r}) + mount_setattr("
                                    f"MOUNT_ATTR_IDMAP, /proc/{pid}/ns/user)")
                    elif -fd not in _NO_IDMAP:
                        raise PycontainError(f"idmapped mount of the rootfs {src}: "
                                             f"{strerror(-fd)}")
                if fd < 0:
                    uid_maps = spec["linux"]["uidMappings"]
                    gid_maps = spec["linux"]["gidMappings"]
                    if private_rootfs:
                        shift_tree(src, uid_maps, gid_maps)
                        tree_src = src
                    else:
                        shifted_copy(src, copy_dest, uid_maps, gid_maps)
                        tree_src = made_copy = copy_dest
                    tracer.emit("userns", f"no idmapped mount for {src}: using {tree_src}, "
                                "chowned into the container's id range")
                    fd = _open_tree(tree_src, recursive, -1)
            else:
                fd = _open_tree(src, recursive, -1)
            if fd < 0:
                raise PycontainError(f"cloning the mount of {src} for the container: "
                                     f"{strerror(-fd)}")
            try:
                socket.send_fds(sock, [b"t"], [fd])
            finally:
                os.close(fd)
    finally:
        os.close(ns)
        sock.close()
    return made_copy
