"""Unpack a rootfs tarball without ever writing outside the target directory.

``ROOTFS`` may be a tarball (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.xz``,
``.tar.bz2``, ``.tar.zst``).  The compression is recognised by its magic
bytes first and by the file name only as a fallback.  zstd is streamed
through the ``zstd -dc`` program, because Python's tarfile (before 3.14)
cannot read it.

A tarball is untrusted input, and we unpack it as root.  Python's tarfile
``data_filter`` only checks names lexically and is missing from early 3.10
and 3.11 patch releases, so this module does not use ``extractall`` at all.
It walks the archive itself and creates every entry with ``*at()`` system
calls relative to directory file descriptors.

Policy (one rule for each way an archive can attack the host):

* **Paths.**  An entry or hardlink target with an absolute path or a ``..``
  component is *refused*.  ``tar`` never writes such names unless it is
  asked to, so one of them means the archive is hostile or broken.  Empty
  and ``.`` components are dropped, so ``./a/./b`` is ``a/b`` and ``./``
  is the root.  The root entry may only be a directory, and its mode,
  owner and mtime apply to ``dest``.
* **Symlinks are kept as links, whatever they point at.**  A rootfs is
  full of absolute links (``bin/sh -> /bin/busybox``).  They are correct
  because the container resolves them against its own root after
  pivot_root.  The danger is that *pycontain* follows such a link on the
  host while unpacking.  So we never follow one.  Each parent directory is
  opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to the previous one,
  starting at ``dest``.  If a parent is a symlink, the entry is *refused*
  ("refusing to write through it"): a real ``tar c`` never stores
  ``a/passwd`` after a symlink ``a``.  Leaves are created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW``.  Ownership and times are set with the
  ``AT_SYMLINK_NOFOLLOW`` variants or on the open fd.  Without ``..`` and
  without following links, no path we touch can leave ``dest``.  This
  holds whatever the link targets are.
* **Hardlinks** must name an earlier entry.  The target path is checked by
  the same rules and walked the same way, and ``linkat`` is called without
  ``AT_SYMLINK_FOLLOW``.  So a hardlink can only share an inode that this
  unpack created inside ``dest``.  An absolute target, a ``..`` target, or
  a target reached through a symlink is *refused*, and so is a target that
  does not exist yet.  A hardlink to a device entry we skipped is skipped
  too, with a warning.
* **Duplicate entries**: the last entry wins, as with GNU tar.  The old
  name is unlinked first and never opened for writing, because it might be
  a hardlink shared with another name.  A directory entry over an existing
  directory only updates its metadata.  A directory entry over a symlink
  removes the link, never its target.  Replacing a non-empty directory with
  a non-directory is *refused*.
* **Device nodes** (char and block) are *neutralised*: they are skipped,
  and ``warn`` names the entry.  Tarballs made by debootstrap and by
  buildroot carry a few nodes in ``dev/``.  A container gets its own
  ``/dev``, and a device node from an untrusted archive would be a door to
  host hardware.  FIFOs are created.  Any other entry type is *refused*.
* **Mode bits**: setuid is removed from everything, and setgid from
  everything but directories.  That is *neutralised*, and ``warn`` names
  the entry.  The result is that su or passwd inside the container are not
  setuid any more; that is the price of a host that never holds a setuid
  file from an untrusted archive.  Setgid directories (``var/mail`` on
  Debian) and sticky bits are kept.  Extended attributes, and so file
  capabilities, are not restored.
* **Ownership**: numeric uid/gid is kept when we run as root (a rootfs
  needs root-owned files), and user/group *names* are ignored.  Without
  root, files are owned by the caller.
* **Long names** come in through pax or GNU headers.  We walk one
  component at a time, so PATH_MAX never applies.  A component longer than
  NAME_MAX fails with a message naming the entry.
* **Corruption**: a damaged header, truncated member data, or a bad
  compressed stream (checked up to its trailer) raises ``PycontainError``.
  A stream cut exactly at a 512-byte header boundary is accepted, as GNU
  tar and Python's tarfile do.

Speed: this module imports only ``os`` and ``stat`` at the top, so
``is_tarball`` costs almost nothing.  tarfile and the decompressors are
imported inside :func:`unpack`.
"""

from __future__ import annotations

import os
import stat

from .errors import PycontainError, strerror

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from tarfile import TarFile, TarInfo
    from typing import BinaryIO

#: File names we accept as tarballs even when the magic bytes say nothing
#: (old v7 tar headers carry no "ustar" magic).
_SUFFIXES = (
    ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz",
    ".tar.zst", ".tzst", ".tar.bz2", ".tbz2",
)  # fmt: skip

#: Parent directories: a symlink here fails (ELOOP/ENOTDIR) instead of
#: being followed.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
#: Kept from the decompressed stream so that the block where tarfile
#: stopped can be inspected.  tarfile reads at most 10 KiB ahead.
_TAIL = 64 * 1024


def _sniff(head: bytes) -> str | None:
    """The compression (or ``"tar"``) that the first 512 bytes show."""
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zst"
    if head.startswith(b"BZh"):
        return "bz2"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def is_tarball(path: str) -> bool:
    """True if ``path`` is a regular file that looks like a (compressed) tar.

    A directory is never a tarball.  Otherwise the name suffix or the magic
    bytes decide.  This is cheap: one stat, plus one 512-byte read only when
    the name does not already say so.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if path.lower().endswith(_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return _sniff(head) is not None


def _show(name: str) -> str:
    """An entry name for a one-line message: quoted, control characters
    escaped (a hostile name may contain a newline), and shortened."""
    text = repr(name)
    return text if len(text) <= 160 else text[:120] + "..." + text[-30:]


def _warn_stderr(message: str) -> None:
    import sys

    sys.stderr.write(f"pycontain: warning: {message}\n")


def unpack(archive: str, dest: str, *, warn: Callable[[str], None] | None = None) -> None:
    """Unpack the tarball ``archive`` into the existing, empty directory ``dest``.

    Hostile entries are refused with a :class:`PycontainError` (exit 125)
    that names the archive and the entry.  Neutralised entries (device
    nodes, setuid/setgid bits) are reported through ``warn``, which writes
    a line on stderr by default.  See the module docstring for the policy.

    If this raises, ``dest`` may hold part of the rootfs, including symlinks
    to host paths.  Removing ``dest`` is the caller's job, and it must be
    done without following symlinks (``shutil.rmtree`` is safe).  Nothing
    was ever written outside ``dest``.
    """
    where = f"tarball {archive}"
    try:
        root_fd = os.open(dest, _DIR_FLAGS)
    except OSError as e:
        raise PycontainError(
            f"{where}: cannot open destination {dest}: {strerror(e.errno or 0)}"
        ) from None
    try:
        if os.listdir(root_fd):
            raise PycontainError(f"{where}: destination {dest} is not empty")
        source = _Source(archive)
        ok = False
        try:
            tar = source.open()
            _Unpacker(where, root_fd, warn or _warn_stderr).run(tar, source)
            ok = True
        finally:
            source.close(ok)
    finally:
        os.close(root_fd)


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What a damaged archive raises from inside tarfile or a decompressor.

    OSError is on the list because gzip reports a bad CRC as
    BadGzipFile (an OSError).  Errors *writing* into dest are caught and
    turned into messages closer to the syscall, so they never reach here.
    """
    import tarfile
    import zlib

    errors: list[type[BaseException]] = [tarfile.TarError, EOFError, zlib.error, OSError]
    try:
        import lzma

        errors.append(lzma.LZMAError)
    except ImportError:  # a Python built without liblzma
        pass
    return tuple(errors)


class _Recorder:
    """A read-only stream wrapper that remembers the last bytes read.

    With it we can look at the block where tarfile stopped.  tarfile
    treats a garbage header or a truncated header after the first one as
    a quiet end of archive.  We want to call that corruption.
    """

    __slots__ = ("pos", "raw", "tail", "tail_start")

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.pos = 0  # bytes handed out so far
        self.tail = bytearray()
        self.tail_start = 0  # stream offset of tail[0]

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.pos += len(data)
        tail = self.tail
        tail += data
        if len(tail) > _TAIL:
            cut = len(tail) - _TAIL
            del tail[:cut]  # cheap: bytearray just moves its start
            self.tail_start += cut
        return data

    def block_at(self, offset: int) -> bytes | None:
        """The (up to) 512 bytes at ``offset``, or None if no longer held."""
        if offset < self.tail_start:
            return None
        start = offset - self.tail_start
        return bytes(self.tail[start : start + 512])


class _Source:
    """The archive file, its decompressor (a module or the zstd program),
    and the TarFile reading the decompressed stream."""

    __slots__ = ("archive", "file", "proc", "recorder", "stream", "where")

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.where = f"tarball {archive}"
        self.file: BinaryIO | None = None
        self.proc = None  # subprocess.Popen for zstd
        self.stream: BinaryIO | None = None
        self.recorder: _Recorder | None = None

    def open(self) -> TarFile:
        import tarfile

        try:
            self.file = open(self.archive, "rb")  # noqa: SIM115 (closed in close())
            head = self.file.read(512)
            self.file.seek(0)
        except OSError as e:
            raise PycontainError(f"{self.where}: {strerror(e.errno or 0)}") from None
        kind = _sniff(head) or "tar"
        # We decompress ourselves rather than letting tarfile do it ("r|gz"):
        # GzipFile, LZMAFile and BZ2File raise EOFError on a truncated
        # stream and check the trailer CRC when drained; tarfile's stream
        # mode stays silent about both.
        if kind == "gz":
            import gzip

            self.stream = gzip.GzipFile(fileobj=self.file, mode="rb")
        elif kind == "xz":
            try:
                import lzma
            except ImportError:
                raise PycontainError(
                    f"{self.where}: this Python has no lzma module, cannot read xz"
                ) from None
            self.stream = lzma.LZMAFile(self.file)  # noqa: SIM115 (closed in close())
        elif kind == "bz2":
            import bz2

            self.stream = bz2.BZ2File(self.file)
        elif kind == "zst":
            self.stream = self._start_zstd()
        else:
            self.stream = self.file
        self.recorder = _Recorder(self.stream)
        try:
            return tarfile.open(fileobj=self.recorder, mode="r|")  # type: ignore[call-overload]
        except _decode_errors() as e:
            raise self.corrupt(e) from None

    def _start_zstd(self) -> BinaryIO:
        import subprocess

        try:
            self.proc = subprocess.Popen(
                # By name, not as stdin: our buffered reader has already
                # moved the fd's offset past the magic bytes.
                ["zstd", "-dc", "--no-progress", "--", self.archive],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            raise PycontainError(
                f"{self.where}: cannot decompress zstd: the zstd program is not "
                "installed (apt-get install zstd)"
            ) from None
        except OSError as e:
            raise PycontainError(
                f"{self.where}: cannot run zstd: {strerror(e.errno or 0)}"
            ) from None
        return self.proc.stdout  # type: ignore[return-value]

    def corrupt(self, exc: BaseException) -> PycontainError:
        """A one-line error for a damaged archive.  zstd's own complaint
        wins when it has one, because tarfile only sees the stream end."""
        detail = self._zstd_failure() or str(exc) or type(exc).__name__
        detail = " ".join(detail.split())
        return PycontainError(f"{self.where}: corrupt or truncated archive ({detail})")

    def _zstd_failure(self) -> str | None:
        proc = self.proc
        if proc is None:
            return None
        # Closing our end first makes a zstd blocked on a full pipe exit
        # with EPIPE instead of hanging the wait.
        proc.stdout.close()
        code = proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()
        if code == 0 or code < 0:
            return None
        lines = err.splitlines()
        return f"zstd: {lines[-1]}" if lines else f"zstd exited with status {code}"

    def finish(self, tar: TarFile) -> None:
        """After the last member: check where tarfile stopped, then drain
        the decompressor so that it verifies the stream's trailer."""
        recorder = self.recorder
        assert recorder is not None
        block = recorder.block_at(tar.offset)
        if block is not None and block.strip(b"\0"):
            if len(block) < 512:
                raise PycontainError(
                    f"{self.where}: corrupt or truncated archive "
                    f"(header at byte {tar.offset} is cut short)"
                )
            raise PycontainError(
                f"{self.where}: corrupt or truncated archive (invalid header at byte {tar.offset})"
            )
        try:
            while recorder.read(_CHUNK):
                pass
        except _decode_errors() as e:
            raise self.corrupt(e) from None
        problem = self._zstd_failure()
        if problem:
            raise PycontainError(f"{self.where}: corrupt or truncated archive ({problem})")

    def close(self, ok: bool) -> None:
        proc = self.proc
        if proc is not None:
            if proc.returncode is None:
                if not ok:
                    proc.kill()
                proc.stdout.close()
                proc.wait()
            proc.stderr.close()
        if self.stream is not None and self.stream is not self.file:
            import contextlib

            # A damaged stream may fail again on close; we already reported it.
            with contextlib.suppress(Exception):
                self.stream.close()
        if self.file is not None:
            self.file.close()


class _Unpacker:
    """Creates the entries of one archive under ``root_fd``, by the policy
    in the module docstring."""

    __slots__ = (
        "as_root", "decode", "dirs", "root_fd", "skipped", "source", "tar", "warn", "where",
    )  # fmt: skip

    def __init__(self, where: str, root_fd: int, warn: Callable[[str], None]) -> None:
        self.where = where
        self.root_fd = root_fd
        self.warn = warn
        self.as_root = os.geteuid() == 0
        # Directory metadata is applied at the end: adding entries changes
        # a directory's mtime, and a read-only mode would block the entries
        # after it if we ever run without root.
        self.dirs: dict[tuple[str, ...], tuple[str, int, int, int, float]] = {}
        # Entries we skipped, so that a hardlink to one is skipped too.
        self.skipped: set[tuple[str, ...]] = set()
        self.decode: tuple[type[BaseException], ...] = ()

    # -- driving -------------------------------------------------------

    def run(self, tar: TarFile, source: _Source) -> None:
        self.tar = tar
        self.source = source
        self.decode = _decode_errors()
        members = iter(tar)
        while True:
            try:
                member = next(members)
            except StopIteration:
                break
            except self.decode as e:
                raise source.corrupt(e) from None
            self.entry(member)
        source.finish(tar)
        self.apply_dir_metadata()

    def refuse(self, name: str, why: str) -> PycontainError:
        return PycontainError(f"{self.where}: entry {_show(name)}: {why}")

    def failed(self, name: str, doing: str, exc: OSError) -> PycontainError:
        return self.refuse(name, f"cannot {doing}: {strerror(exc.errno or 0)}")

    def split(self, name: str, path: str, what: str) -> tuple[str, ...]:
        """``path`` as components below the root, or refuse the entry."""
        if path.startswith("/"):
            raise self.refuse(name, f"{what} is absolute")
        parts = []
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise self.refuse(name, f"{what} contains '..'")
            parts.append(part)
        return tuple(parts)

    # -- one entry -----------------------------------------------------

    def entry(self, m: TarInfo) -> None:
        name = m.name
        parts = self.split(name, name, "path")
        if m.ischr() or m.isblk():
            kind = "character" if m.ischr() else "block"
            self.warn(
                f"{self.where}: entry {_show(name)}: skipped {kind} device "
                f"{m.devmajor}:{m.devminor} (device nodes are never created from a tarball)"
            )
            self.skipped.add(parts)
            return
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            raise self.refuse(name, f"unsupported entry type {m.type!r}")
        if not (0 <= m.uid < 0xFFFFFFFF and 0 <= m.gid < 0xFFFFFFFF):
            raise self.refuse(name, f"owner {m.uid}:{m.gid} is out of range")
        if not parts:
            if not m.isdir():
                raise self.refuse(name, "the archive root must be a directory")
            self.dirs[parts] = (name, self.mode(m), m.uid, m.gid, m.mtime)
            return
        if m.islnk():
            self.hardlink(m, parts)
            return
        parent = self.open_dir(name, parts[:-1])
        try:
            leaf = parts[-1]
            existed_as_dir = self.clear(name, parts, parent, keep_dir=m.isdir())
            if m.isdir():
                if not existed_as_dir:
                    self.sys(name, "create directory", os.mkdir, leaf, 0o700, dir_fd=parent)
                self.dirs[parts] = (name, self.mode(m), m.uid, m.gid, m.mtime)
            elif m.isreg():
                self.regular(m, parent, leaf)
            elif m.issym():
                self.symlink(m, parent, leaf)
            else:
                self.fifo(m, parent, leaf)
        finally:
            os.close(parent)

    def sys(self, name: str, doing: str, func: Callable[..., object], *args, **kwargs) -> object:
        """Call ``func``, turning an OSError into a message naming the entry."""
        try:
            return func(*args, **kwargs)
        except OSError as e:
            raise self.failed(name, doing, e) from None

    def mode(self, m: TarInfo) -> int:
        """The permission bits we will set: setuid never, setgid only on
        directories (where it means "inherit the group", not "run as")."""
        mode = m.mode & 0o7777
        keep = 0o3777 if m.isdir() else 0o1777
        if mode & ~keep:
            self.warn(
                f"{self.where}: entry {_show(m.name)}: removed setuid/setgid bits "
                f"(mode {mode:04o} -> {mode & keep:04o})"
            )
        return mode & keep

    def open_dir(self, name: str, parts: tuple[str, ...], *, missing: str | None = None) -> int:
        """An fd for the directory ``parts`` below the root, walked one
        component at a time without following symlinks.  Missing
        directories are created (0755) unless ``missing`` gives the reason
        to refuse instead; tar archives often list a file before, or
        without, its directory."""
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if missing is not None:
                        raise self.refuse(name, missing) from None
                    self.sys(name, "create parent directory", os.mkdir, part, 0o755, dir_fd=fd)
                    nfd = self.sys(name, "open parent directory", os.open, part, _DIR_FLAGS,
                                   dir_fd=fd)  # fmt: skip
                    try:
                        os.fchmod(nfd, 0o755)  # whatever the umask says
                    except OSError as e:
                        os.close(nfd)
                        raise self.failed(name, "set mode of parent directory", e) from None
                except OSError as e:
                    raise self.not_a_dir(name, fd, parts[: i + 1], e) from None
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def not_a_dir(self, name: str, fd: int, parts: tuple[str, ...], exc: OSError) -> PycontainError:
        """Explain why a parent component could not be opened as a directory."""
        shown = _show("/".join(parts))
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except OSError:
            return self.failed(name, f"open directory {shown}", exc)
        if stat.S_ISLNK(st.st_mode):
            return self.refuse(
                name, f"path goes through symlink {shown}; refusing to write through a link"
            )
        if not stat.S_ISDIR(st.st_mode):
            return self.refuse(name, f"{shown} is not a directory")
        return self.failed(name, f"open directory {shown}", exc)

    def clear(self, name: str, parts: tuple[str, ...], parent: int, *, keep_dir: bool) -> bool:
        """Remove what an earlier entry left at this name, so that the new
        entry is created fresh (O_EXCL) and never written through an old
        symlink or hardlink.  Returns True if an existing directory was kept."""
        leaf = parts[-1]
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self.failed(name, "inspect existing entry", e) from None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            try:
                os.rmdir(leaf, dir_fd=parent)
            except OSError as e:
                raise self.refuse(
                    name, f"cannot replace an existing directory: {strerror(e.errno or 0)}"
                ) from None
            self.dirs.pop(parts, None)
        else:
            self.sys(name, "remove existing entry", os.unlink, leaf, dir_fd=parent)
        self.skipped.discard(parts)
        return False

    def regular(self, m: TarInfo, parent: int, leaf: str) -> None:
        name = m.name
        mode = self.mode(m)
        fd = self.sys(name, "create file", os.open, leaf, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            remaining = m.size
            # tarfile hands us a sparse member with its holes filled with
            # zeros.  Seeking over zero chunks instead of writing them keeps
            # a 50 GB lastlog from costing 50 GB of disk.
            sparse = m.issparse()
            size = 64 * 1024 if sparse else _CHUNK
            if remaining:
                src = self.tar.extractfile(m)
                assert src is not None
                while remaining:
                    try:
                        chunk = src.read(min(size, remaining))
                    except self.decode as e:
                        raise self.source.corrupt(e) from None
                    if not chunk:
                        raise PycontainError(
                            f"{self.where}: corrupt or truncated archive "
                            f"(data of entry {_show(name)} ends early)"
                        )
                    remaining -= len(chunk)
                    if sparse and not chunk.strip(b"\0"):
                        self.sys(name, "seek", os.lseek, fd, len(chunk), os.SEEK_CUR)
                        continue
                    view = memoryview(chunk)
                    while view:
                        n = self.sys(name, "write file", os.write, fd, view)
                        view = view[n:]
                if sparse:
                    self.sys(name, "set file size", os.ftruncate, fd, m.size)
            self.set_meta(name, fd, mode, m.uid, m.gid, m.mtime)
        finally:
            os.close(fd)

    def symlink(self, m: TarInfo, parent: int, leaf: str) -> None:
        # The target is stored as is (absolute or not); see the module
        # docstring.  Only the link itself is ever touched, never its target.
        name = m.name
        self.sys(name, "create symlink", os.symlink, m.linkname, leaf, dir_fd=parent)
        if self.as_root:
            self.sys(name, "set owner", os.chown, leaf, m.uid, m.gid,
                     dir_fd=parent, follow_symlinks=False)  # fmt: skip
        try:
            os.utime(leaf, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
        except (OSError, OverflowError, ValueError):
            pass  # a time out of range is not worth failing for

    def fifo(self, m: TarInfo, parent: int, leaf: str) -> None:
        name = m.name
        mode = self.mode(m)
        self.sys(name, "create fifo", os.mkfifo, leaf, 0o600, dir_fd=parent)
        # Open it (non-blocking, so no writer is needed) to set metadata on
        # the fd rather than by name.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = self.sys(name, "open fifo", os.open, leaf, flags, dir_fd=parent)
        try:
            self.set_meta(name, fd, mode, m.uid, m.gid, m.mtime)
        finally:
            os.close(fd)

    def hardlink(self, m: TarInfo, parts: tuple[str, ...]) -> None:
        name = m.name
        target = self.split(name, m.linkname, f"hardlink target {_show(m.linkname)}")
        if not target:
            raise self.refuse(name, "hardlink to the archive root")
        if target in self.skipped:
            self.warn(
                f"{self.where}: entry {_show(name)}: skipped hardlink to skipped "
                f"entry {_show(m.linkname)}"
            )
            self.skipped.add(parts)
            return
        if target == parts:
            return  # a link to itself: the file is already there
        missing = f"hardlink target {_show(m.linkname)} is not an earlier entry"
        tdir = self.open_dir(name, target[:-1], missing=missing)
        try:
            try:
                st = os.stat(target[-1], dir_fd=tdir, follow_symlinks=False)
            except FileNotFoundError:
                raise self.refuse(name, missing) from None
            except OSError as e:
                raise self.failed(name, "inspect hardlink target", e) from None
            if stat.S_ISDIR(st.st_mode):
                raise self.refuse(name, f"hardlink target {_show(m.linkname)} is a directory")
            parent = self.open_dir(name, parts[:-1])
            try:
                self.clear(name, parts, parent, keep_dir=False)
                # follow_symlinks=False: no AT_SYMLINK_FOLLOW, so a link to a
                # symlink links the symlink itself, never what it points at.
                self.sys(name, "create hardlink", os.link, target[-1], parts[-1],
                         src_dir_fd=tdir, dst_dir_fd=parent, follow_symlinks=False)  # fmt: skip
            finally:
                os.close(parent)
        finally:
            os.close(tdir)

    def set_meta(self, name: str, fd: int, mode: int, uid: int, gid: int, mtime: float) -> None:
        # chown before chmod: chown clears setuid/setgid, and we want the
        # mode we chose to be the last word.
        if self.as_root:
            self.sys(name, "set owner", os.fchown, fd, uid, gid)
        self.sys(name, "set mode", os.fchmod, fd, mode)
        try:
            os.utime(fd, (mtime, mtime))
        except (OSError, OverflowError, ValueError):
            pass

    def apply_dir_metadata(self) -> None:
        for parts, (name, mode, uid, gid, mtime) in self.dirs.items():
            try:
                fd = self.open_dir(name, parts, missing="gone")
            except PycontainError:
                continue  # replaced by a later entry; that entry won
            try:
                self.set_meta(name, fd, mode, uid, gid, mtime)
            finally:
                os.close(fd)
