"""``--user NAME|UID[:GID]``, resolved from the *rootfs's* /etc/passwd.

The container's users are the image's, not the host's: ``--user nobody``
means the uid the image calls nobody.  Files are read through
paths.resolve_in_root so that a hostile /etc/passwd symlink cannot make
pycontain read a host file.
"""

from __future__ import annotations

from .errors import PycontainError
from .paths import resolve_in_root


def _read_db(root: str, name: str) -> list[list[str]]:
    try:
        with open(resolve_in_root(root, f"/etc/{name}"), errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if ":" in line]
    except OSError:
        return []


def _lookup_group(root: str, token: str) -> int:
    if token.isdigit():
        return int(token)
    for fields in _read_db(root, "group"):
        if fields[0] == token and len(fields) > 2 and fields[2].isdigit():
            return int(fields[2])
    raise PycontainError(f"--user: no group {token!r} in the rootfs's /etc/group")


def resolve_user(root: str, spec: str) -> tuple[int, int, list[int], str | None]:
    """(uid, gid, supplementary gids, home) for a ``--user`` value."""
    user, _, group = spec.partition(":")
    uid: int | None = None
    gid: int | None = None
    home: str | None = None
    name: str | None = None
    passwd = _read_db(root, "passwd")
    for fields in passwd:
        if len(fields) < 4:
            continue
        if (user.isdigit() and fields[2] == user) or fields[0] == user:
            name = fields[0]
            uid = int(fields[2]) if fields[2].isdigit() else None
            gid = int(fields[3]) if fields[3].isdigit() else None
            home = fields[5] if len(fields) > 5 and fields[5] else None
            break
    if uid is None:
        if not user.isdigit():
            raise PycontainError(f"--user: no user {user!r} in the rootfs's /etc/passwd")
        uid = int(user)
    if group:
        gid = _lookup_group(root, group)
    if gid is None:
        gid = 0 if uid == 0 else uid
    extra: list[int] = []
    if name:
        for fields in _read_db(root, "group"):
            if len(fields) > 3 and name in fields[3].split(",") and fields[2].isdigit():
                g = int(fields[2])
                if g != gid:
                    extra.append(g)
    return uid, gid, extra, home
