"""Find the program a container will run, the way execve will, before it runs.

``pycontain run ROOTFS ls`` must know, before anything is set up, which
file ``ls`` is inside the rootfs and what CPU it was built for: a foreign
binary needs QEMU registered with binfmt_misc first.  This module repeats
the kernel's and libc's work *inside the rootfs*, from the host:

1. ``execvp``'s ``$PATH`` search (:func:`find_command`);
2. symlinks, resolved as if ``root`` were ``/`` (an absolute target
   restarts at the rootfs, never at the host's ``/``);
3. ``#!`` lines, as ``fs/binfmt_script.c`` parses them, recursively;
4. the first bytes of the final binary, parsed by :func:`elf.read_ident`.

It is on the start path of every container, so it does lstat/readlink and
one read of 256 bytes per step, and imports nothing heavy: no pyelftools,
no QEMU table.  It is a lexical walk, so a rootfs that changes while we look
can fool it; the kernel's execve has the last word and the worst outcome
is a less helpful error message.
"""

from __future__ import annotations

import os
import stat

from .elf import ELF_MAGIC, ET_DYN, ET_EXEC, HEADER_SIZE, Ident, read_ident
from .errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, PycontainError

#: Linux gives up after 40 symlinks in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40
#: How many ``#!`` interpreters may be stacked.  Measured on this kernel
#: (6.18): a chain of 5 scripts before the ELF runs, 6 fails with ELOOP;
#: fs/exec.c's exec_binprm() stops after its depth counter passes 5.  Every
#: rewrite counts, including binfmt_misc's own hand-over to QEMU, so a
#: foreign image has one level less (see :attr:`Resolved.depth`).
MAX_INTERPRETERS = 5
#: The kernel reads this much of a file to pick a binfmt handler, and a
#: ``#!`` line must fit in it (BINPRM_BUF_SIZE).
BINPRM_BUF_SIZE = 256
#: docker's default when the image sets no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Resolved:
    """Where an argv[0] leads inside a rootfs.

    ``chain`` lists the container paths in the order the kernel meets them:
    the command, the file each symlink leads to, each ``#!`` interpreter and
    what *its* symlinks lead to, e.g. ``["/usr/bin/app", "/bin/sh",
    "/bin/busybox"]``.  ``final`` is the last entry, the binary that is
    really loaded; ``host_path`` is the same file seen from the host.
    ``scripts`` holds ``(script, interpreter, optional_arg)`` per ``#!``.
    """

    __slots__ = ("chain", "final", "header", "host_path", "ident", "scripts")

    def __init__(
        self,
        chain: list[str],
        host_path: str,
        header: bytes,
        ident: Ident | None,
        scripts: list[tuple[str, str, str | None]],
    ) -> None:
        self.chain = chain
        self.final = chain[-1]
        self.host_path = host_path
        self.header = header
        self.ident = ident
        self.scripts = scripts

    @property
    def depth(self) -> int:
        """Interpreter rewrites used so far (binfmt_misc would add one more)."""
        return len(self.scripts)

    def as_dict(self) -> dict[str, object]:
        return {
            "chain": list(self.chain),
            "final": self.final,
            "host_path": self.host_path,
            "scripts": [list(s) for s in self.scripts],
            "ident": self.ident.as_dict() if self.ident else None,
        }

    def __repr__(self) -> str:
        return f"Resolved({' -> '.join(self.chain)})"


class _Missing(Exception):
    """A path component does not exist (ENOENT/ENOTDIR for execve)."""

    def __init__(self, dangling_link: str | None) -> None:
        super().__init__(dangling_link)
        #: The symlink whose target is missing, if a symlink led there.
        self.dangling_link = dangling_link


def _walk(root: str, path: str) -> tuple[str, str, os.stat_result]:
    """Resolve container ``path`` (absolute) under ``root``, following symlinks.

    Returns (container path, host path, lstat of the final file).  Raises
    PycontainError (126) for a loop or for a symlink that climbs above the
    rootfs with ``..`` (the kernel would clamp it at ``/`` after chroot, but
    in an image it is a bug or an attack, and we say so); raises _Missing
    when a component does not exist.  A plain ``..`` in ``path`` itself is
    clamped at ``/``, as the kernel does.
    """
    # A stack of (component, symlink it came from or None); next at the end.
    base = root.rstrip("/")  # so that root "/" does not give "//bin"
    todo: list[tuple[str, str | None]] = [
        (p, None) for p in reversed(path.split("/")) if p and p != "."
    ]
    done: list[str] = []
    links = 0
    st: os.stat_result | None = None  # lstat of done[-1], None after a ".."
    while todo:
        part, origin = todo.pop()
        if part == "..":
            st = None
            if done:
                done.pop()
            elif origin is not None:
                raise PycontainError(
                    f"symlink {origin} in the rootfs points above its root with '..'",
                    EXIT_CANNOT_INVOKE,
                )
            continue
        host = base + "/" + "/".join(done + [part])
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            raise _Missing(origin) from None
        except OSError as e:
            raise PycontainError(
                f"{path}: cannot look up {host}: {(e.strerror or str(e)).lower()}",
                EXIT_CANNOT_INVOKE,
            ) from None
        if not stat.S_ISLNK(st.st_mode):
            if todo and not stat.S_ISDIR(st.st_mode):
                raise _Missing(None)  # ENOTDIR: execve reports "not found" too
            done.append(part)
            continue
        links += 1
        link_cpath = "/" + "/".join(done + [part])
        if links > MAX_SYMLINKS:
            raise PycontainError(
                f"{path}: symlink loop inside the rootfs (more than {MAX_SYMLINKS} "
                f"links, last {link_cpath})",
                EXIT_CANNOT_INVOKE,
            )
        target = os.readlink(host)
        if not target:
            raise _Missing(link_cpath)
        if target.startswith("/"):
            done = []  # absolute: restart at the rootfs, never the host's /
        st = None  # the link's lstat describes nothing in `done`
        todo.extend((p, link_cpath) for p in reversed(target.split("/")) if p and p != ".")
    if not done:
        return "/", root, os.lstat(root)
    cpath = "/" + "/".join(done)
    return cpath, base + cpath, st if st is not None else os.lstat(base + cpath)


def _is_candidate(st: os.stat_result) -> bool:
    # execve needs a regular file with at least one execute bit, even for root.
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def find_command(root: str, argv0: str, path_env: str | None) -> str | None:
    """Where ``execvp(argv0)`` would find its file inside ``root``.

    Returns the container path as written in ``$PATH`` (``/bin/ls``, not
    what it links to), or None if no directory of ``path_env`` has an
    executable regular file by that name.  An ``argv0`` containing ``/`` is
    not searched, only checked (relative to ``/``, the container's usual
    working directory).  Like glibc's execvpe, a missing file, a dangling
    symlink or a non-executable file moves on to the next directory, while
    a symlink loop stops the search with PycontainError (126).
    """
    found, _ = _search(os.path.abspath(root), argv0, path_env)
    return found


def _search(root: str, argv0: str, path_env: str | None) -> tuple[str | None, str | None]:
    """(first executable match, first unusable candidate) in the rootfs.

    An unusable candidate exists but cannot be run: not executable, not a
    regular file, or a dangling symlink.  It explains a failed search.
    """
    if not argv0:
        return None, None
    if "/" in argv0:
        candidates = [argv0 if argv0.startswith("/") else "/" + argv0]
    else:
        # An empty PATH element means the working directory: "/" here.
        dirs = (path_env or DEFAULT_PATH).split(":")
        candidates = ["/" + (d.strip("/") + "/" if d.strip("/") else "") + argv0 for d in dirs]
    unusable: str | None = None
    for cand in candidates:
        try:
            _, _, st = _walk(root, cand)
        except _Missing as e:
            if e.dangling_link is not None and unusable is None:
                unusable = cand
            continue
        if _is_candidate(st):
            return cand, unusable
        if unusable is None:
            unusable = cand
    return None, unusable


def _parse_shebang(buf: bytes, cpath: str) -> tuple[str, str | None]:
    """(interpreter, optional argument) of a ``#!`` line, as binfmt_script does."""
    end = buf.find(b"\n")
    line = buf[2:] if end < 0 else buf[2:end]
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    line = line.lstrip(b" \t")
    interp, _, rest = _split_ws(line)
    if not interp:
        raise PycontainError(
            f"{cpath}: '#!' line names no interpreter", EXIT_CANNOT_INVOKE
        )
    if end < 0 and not rest and len(buf) >= BINPRM_BUF_SIZE:
        # The kernel refuses a #! line whose interpreter name runs past the
        # 256 bytes it read (since 5.0), rather than exec a truncated path.
        raise PycontainError(
            f"{cpath}: '#!' line is longer than {BINPRM_BUF_SIZE} bytes",
            EXIT_CANNOT_INVOKE,
        )
    arg = rest.strip(b" \t")
    return (
        interp.decode("utf-8", "surrogateescape"),
        arg.decode("utf-8", "surrogateescape") if arg else None,
    )


def _split_ws(line: bytes) -> tuple[bytes, bytes, bytes]:
    for i, c in enumerate(line):
        if c in (0x20, 0x09):
            return line[:i], line[i : i + 1], line[i + 1 :]
    return line, b"", b""


def _open_final(root: str, cpath: str) -> tuple[str, str, bytes]:
    """Resolve ``cpath``, check it is executable, return (cpath, host, bytes)."""
    try:
        final, host, st = _walk(root, cpath)
    except _Missing as e:
        if e.dangling_link:
            raise PycontainError(
                f"{cpath}: dangling symlink {e.dangling_link} in the rootfs",
                EXIT_CANNOT_INVOKE,
            ) from None
        raise
    if stat.S_ISDIR(st.st_mode):
        raise PycontainError(f"{cpath}: is a directory", EXIT_CANNOT_INVOKE)
    if not stat.S_ISREG(st.st_mode):
        raise PycontainError(
            f"{cpath}: not a regular file, cannot be executed", EXIT_CANNOT_INVOKE
        )
    if not st.st_mode & 0o111:
        raise PycontainError(
            f"{cpath}: permission denied (no execute bit)", EXIT_CANNOT_INVOKE
        )
    # O_NOFOLLOW: the walk ended on a non-link; if that changed, fail rather
    # than read through a link to the host.  O_NONBLOCK: never hang on a FIFO.
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise PycontainError(
            f"{cpath}: cannot open: {(e.strerror or str(e)).lower()}", EXIT_CANNOT_INVOKE
        ) from None
    try:
        buf = os.read(fd, BINPRM_BUF_SIZE)
    except OSError as e:
        raise PycontainError(
            f"{cpath}: cannot read: {(e.strerror or str(e)).lower()}", EXIT_CANNOT_INVOKE
        ) from None
    finally:
        os.close(fd)
    return final, host, buf


def resolve(root: str, argv0: str, path_env: str | None) -> Resolved:
    """Follow ``argv0`` through $PATH, symlinks and ``#!`` lines to a binary.

    Raises PycontainError with exit code 127 when nothing is found
    (``executable file not found in $PATH: X``, as docker words it) and
    126 when something is found but execve would fail: symlink loop,
    symlink escaping or dangling, no execute bit, a directory, a file
    that is neither ELF nor ``#!``, a truncated ELF header, too many
    interpreters.  A ``#!`` interpreter that does not exist is 127, as
    execve's ENOENT is for docker.  A returned ``ident`` is never None.
    """
    root = os.path.abspath(root)
    cmd, unusable = _search(root, argv0, path_env)
    if cmd is None:
        if unusable is not None:
            _open_final(root, unusable)  # raises the precise reason (126)
        if "/" in argv0:
            raise PycontainError(
                f"{argv0}: no such file or directory in the rootfs", EXIT_NOT_FOUND
            )
        raise PycontainError(
            f"executable file not found in $PATH: {argv0}", EXIT_NOT_FOUND
        )
    chain = [cmd]
    scripts: list[tuple[str, str, str | None]] = []
    cpath = cmd
    while True:
        try:
            final, host, buf = _open_final(root, cpath)
        except _Missing:
            # Only an interpreter can be missing here.  execve says ENOENT,
            # which docker reports as 127, as for a missing command.
            raise PycontainError(
                f"{scripts[-1][0]}: its '#!' interpreter {cpath} does not exist in the rootfs",
                EXIT_NOT_FOUND,
            ) from None
        if final != cpath:
            chain.append(final)
        if buf[:2] == b"#!":
            if len(scripts) >= MAX_INTERPRETERS:
                raise PycontainError(
                    f"{cmd}: more than {MAX_INTERPRETERS} nested '#!' interpreters "
                    f"(the kernel fails with ELOOP): {' -> '.join(chain)}",
                    EXIT_CANNOT_INVOKE,
                )
            interp, arg = _parse_shebang(buf, final)
            if not interp.startswith("/"):
                # The kernel resolves a relative interpreter against the
                # working directory; ours is "/" unless the spec says otherwise.
                interp = "/" + interp
            scripts.append((final, interp, arg))
            chain.append(interp)
            cpath = interp
            continue
        if buf[:4] != ELF_MAGIC:
            raise PycontainError(
                f"{final}: exec format error: neither an ELF binary nor a '#!' script"
                f" (starts with {buf[:4]!r})",
                EXIT_CANNOT_INVOKE,
            )
        header = buf[:HEADER_SIZE]
        ident = read_ident(header)
        if ident is None:
            what = "truncated" if len(buf) < HEADER_SIZE else "corrupt (bad class or byte order)"
            raise PycontainError(
                f"{final}: {what} ELF header, cannot be executed", EXIT_CANNOT_INVOKE
            )
        if ident.e_type not in (ET_EXEC, ET_DYN):
            raise PycontainError(
                f"{final}: ELF file is not an executable (e_type {ident.e_type})",
                EXIT_CANNOT_INVOKE,
            )
        return Resolved(chain, host, header, ident, scripts)
