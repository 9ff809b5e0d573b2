"""Resolve paths *inside* a root filesystem, never on the host.

A rootfs is untrusted: ``/bin/sh`` may be a symlink to ``/../../etc/shadow``
or to an absolute host path.  :func:`resolve_in_root` follows symlinks the
way the kernel would *after* ``chroot(root)``: an absolute link target
restarts at ``root``, and ``..`` never climbs above it.  This is the same
idea as ``openat2(RESOLVE_IN_ROOT)`` and Go's ``filepath-securejoin``.

It is a lexical walk with ``lstat``/``readlink``, so it is only as good as
the rootfs staying still while we look; the C side re-checks what it
mounts (see ``rootfs.py``).
"""

from __future__ import annotations

import os
import stat

from .errors import PycontainError

#: Linux gives up after 40 symlinks (MAXSYMLINKS); so do we.
MAX_SYMLINKS = 40


def resolve_in_root(root: str, path: str, *, follow_last: bool = True) -> str:
    """Return the host path of ``path`` as seen from inside ``root``.

    Symlinks are followed within ``root`` (``follow_last=False`` leaves the
    last component alone, like ``lstat``).  Components that do not exist
    yet are kept as they are, so the result can be used to create them.
    Raises :class:`PycontainError` on a symlink loop.
    """
    root = os.path.abspath(root)
    todo = [p for p in path.split("/") if p]
    todo.reverse()  # a stack: the next component is at the end
    done: list[str] = []  # components resolved so far, relative to root
    links = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        if not todo and not follow_last:
            done.append(part)
            break
        try:
            st = os.lstat(candidate)
        except OSError:
            # Missing (or unreadable): keep the name, nothing to follow.
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise PycontainError(
                f"{path}: too many levels of symbolic links inside the rootfs"
            )
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []  # absolute links restart at the rootfs, not the host
        parts = [p for p in target.split("/") if p]
        parts.reverse()
        todo.extend(parts)
    return os.path.join(root, *done)


def is_within(root: str, host_path: str) -> bool:
    """True if ``host_path`` is ``root`` or below it (lexically)."""
    root = os.path.abspath(root)
    host_path = os.path.abspath(host_path)
    return host_path == root or host_path.startswith(root.rstrip("/") + "/")
