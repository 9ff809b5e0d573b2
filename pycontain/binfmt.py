"""binfmt_misc: teaching the kernel to hand foreign binaries to QEMU.

A binfmt_misc entry says "a file whose first bytes, masked, equal this magic
is run by this interpreter".  It is registered with a single write of
``:name:M:offset:magic:mask:interpreter:flags`` to ``<mount>/register``
(Documentation/admin-guide/binfmt-misc.rst).  pycontain registers one entry
per foreign QEMU target, always with the **F** flag: the kernel opens the
(static) QEMU binary at registration and keeps that file, so it still works
after pivot_root has hidden the host's /usr/bin.  Where QEMU understands it,
**P** as well, so that argv[0] reaches the program (see :func:`preferred_flags`).

Two places to register:

* **sandboxed** (Linux >= 6.7): the container's user namespace mounts its
  own binfmt_misc instance and the C shim writes :func:`sandbox_register_lines`
  there.  Nothing on the host changes.
* **host** (older kernels, or on request): the host's own table, shared with
  everything else on the machine.  :class:`HostTable` adds entries under
  names of our own (``pycontain-<target>``), reference-counted across
  concurrent pycontain processes, never replaces or removes an entry it did
  not create, and reuses a suitable one that is already there.

Host-mode bookkeeping lives in ``/run/pycontain/binfmt/``: a ``lock`` file
(flock) serialises every change, and ``<target>/<pid>`` holder files say who
is using our entry.  A holder records its process's start time, so a holder
left behind by a crash (or a recycled pid) is recognised as stale; whoever
comes next prunes it, and the last holder out removes the entry by writing
``-1`` to it (never to ``status``, which would wipe the whole host table).
"""

from __future__ import annotations

import os

from .elf import host_machine, is_native, is_static_elf, read_ident
from .errors import EXIT_RUNTIME, PycontainError
from .state import start_time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .arch import Target
    from .elf import Ident

BINFMT_MISC = "/proc/sys/fs/binfmt_misc"
STATE_DIR = "/run/pycontain/binfmt"
VERSION_CACHE = "/run/pycontain/qemu-version-cache"
#: Prefix of every entry we create.  Transient (reference-counted) entries
#: are ``pycontain-<target>``; ``pycontain binfmt install`` makes
#: ``pycontain-<target>-persistent``, which only ``uninstall`` removes.
PREFIX = "pycontain-"
PERSISTENT_SUFFIX = "-persistent"
#: The kernel rejects a register write longer than this (MAX_REGISTER_LENGTH).
MAX_REGISTER_LENGTH = 1920
#: offset + magic length must fit the bytes the kernel reads (since 5.1).
BINPRM_BUF_SIZE = 256
#: QEMU_CPU for aarch64 on QEMU >= 8: the default "max" CPU emulates pointer
#: authentication with the QARMA5 cipher, which made a trixie
#: ``python3 -c print`` 3.5x slower (NOTES.md section 4).  The implementation-
#: defined algorithm keeps the feature at a fraction of the cost.
AARCH64_QEMU_CPU = "max,pauth-impdef=on"

_FLAG_LETTERS = "POCF"


# -- the register line ------------------------------------------------------


def _escape(data: bytes) -> str:
    # Every byte as \xHH: NUL cannot be written raw, and an escaped ':'
    # cannot end the field early (the kernel splits on ':' before unescaping).
    return "".join(f"\\x{b:02x}" for b in data)


def register_line(name: str, target: Target, interpreter: str, flags: str = "F") -> bytes:
    """The exact bytes to write to ``register`` for ``target``.

    Validated the way the kernel will judge it, so that a mistake is our
    one-line error rather than a bare EINVAL from the write.
    """
    if (
        not name
        or name in (".", "..", "register", "status")
        or any(c in name for c in "/:\n\0")
        or not name.isprintable()
        or len(name) > 255
    ):
        raise PycontainError(f"binfmt_misc: invalid entry name {name!r}")
    if not interpreter.startswith("/") or any(c in interpreter for c in ":\n\0"):
        raise PycontainError(
            f"binfmt_misc: interpreter path {interpreter!r} must be absolute and "
            "contain no ':' or newline"
        )
    if any(c not in _FLAG_LETTERS for c in flags) or len(set(flags)) != len(flags):
        raise PycontainError(f"binfmt_misc: invalid flags {flags!r} (allowed: {_FLAG_LETTERS})")
    magic, mask = target.magic_mask()
    if len(magic) != len(mask) or not magic or len(magic) > BINPRM_BUF_SIZE:
        raise PycontainError(
            f"binfmt_misc: {target.name}: magic and mask must have the same length, "
            f"1..{BINPRM_BUF_SIZE} bytes"
        )
    line = f":{name}:M:0:{_escape(magic)}:{_escape(mask)}:{interpreter}:{flags}"
    data = os.fsencode(line)
    if len(data) > MAX_REGISTER_LENGTH:
        raise PycontainError(
            f"binfmt_misc: entry {name} is {len(data)} bytes, the kernel accepts "
            f"{MAX_REGISTER_LENGTH}"
        )
    return data


def sandbox_register_lines(
    targets: Iterable[Target], qemu_paths: Mapping[str, str], flags: str | None = None
) -> list[bytes]:
    """Register lines for a container's own binfmt_misc instance (>= 6.7).

    ``qemu_paths`` maps target name to the host path of its static QEMU.
    The shim writes each line, in one write(), to the instance it mounted
    inside the container's user namespace, *before* pivot_root: F opens the
    QEMU file right then, so the path only has to exist at that moment.
    ``flags`` defaults to :func:`preferred_flags` of each QEMU (PF or F).
    """
    lines = []
    for t in targets:
        if t.name not in qemu_paths:
            raise PycontainError(f"binfmt_misc: no QEMU given for {t.name}")
        qemu = qemu_paths[t.name]
        lines.append(register_line(PREFIX + t.name, t, qemu, flags or preferred_flags(qemu)))
    return lines


# -- which table ----------------------------------------------------------------

#: Linux >= 6.7 gives each user namespace its own binfmt_misc instance.
SANDBOX_MIN_KERNEL = (6, 7)


def kernel_version() -> tuple[int, int]:
    """(major, minor) of the running kernel, from uname's release string."""
    parts = []
    for piece in os.uname().release.split(".")[:2]:
        digits = ""
        for c in piece:
            if not c.isdigit():
                break
            digits += c
        parts.append(int(digits or 0))
    parts += [0] * (2 - len(parts))
    return parts[0], parts[1]


def sandbox_supported() -> bool:
    """Can a container register entries in a binfmt_misc of its own?"""
    return kernel_version() >= SANDBOX_MIN_KERNEL


def default_mode() -> str:
    """``sandbox`` where the kernel has per-userns binfmt_misc, else ``host``."""
    return "sandbox" if sandbox_supported() else "host"


# -- finding and tuning QEMU --------------------------------------------------


def _qemu_candidates(qemu: str, qemu_dir: str | None) -> list[str]:
    names = (f"qemu-{qemu}-static", f"qemu-{qemu}")
    out = []
    if qemu_dir:
        out += [os.path.join(qemu_dir, n) for n in names]
    for d in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        if d:
            out.append(os.path.join(d, names[0]))
    # Debian's qemu-user-static also ships <target>-binfmt-P links there;
    # we do not use those: QEMU recognises that name as "registered with P"
    # and would misread argv under our F-only entry.
    out += [os.path.join("/usr/libexec/qemu-binfmt", n) for n in names]
    return out


def find_static_qemu(target_name: str, qemu_dir: str | None = None) -> str:
    """The path of a statically linked ``qemu-<target>`` for binfmt_misc F.

    Looks in ``qemu_dir`` (``qemu-<t>-static`` then ``qemu-<t>``), then
    ``$PATH`` (``qemu-<t>-static``), then ``/usr/libexec/qemu-binfmt``.
    A dynamically linked QEMU is skipped: F pins the file, not the shared
    libraries it would look for inside the container.  Raises
    PycontainError (125) naming both platforms when nothing fits.
    """
    from .arch import host_platform, target_by_name

    t = target_by_name(target_name)
    dynamic: list[str] = []
    for path in _qemu_candidates(t.qemu, qemu_dir):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            if is_static_elf(path):
                return os.path.abspath(path)
            dynamic.append(path)
    hint = (
        f" ({', '.join(dynamic)} is dynamically linked, which binfmt_misc F cannot use)"
        if dynamic
        else ""
    )
    raise PycontainError(
        f"rootfs is {t.platform}, host is {host_platform()}, and no static "
        f"qemu-{t.qemu} was found{hint}; install qemu-user-static"
        + (f" or put qemu-{t.qemu}-static in {qemu_dir}" if qemu_dir else ""),
        EXIT_RUNTIME,
    )


_version_memo: dict[tuple[str, int, int, int], tuple[int, int, int] | None] = {}


def qemu_version(qemu_binary: str) -> tuple[int, int, int] | None:
    """(major, minor, micro) of a QEMU binary, or None if it will not say.

    Running ``qemu-x -version`` costs a few milliseconds, so the answer is
    cached in ``/run/pycontain/qemu-version-cache`` keyed by the binary's
    path, inode, size and mtime: an upgrade of qemu-user-static changes the
    key, and /run starts empty at boot.
    """
    try:
        st = os.stat(qemu_binary)
    except OSError:
        return None
    key = (os.path.realpath(qemu_binary), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _version_memo:
        return _version_memo[key]
    tag = f"{key[1]} {key[2]} {key[3]} {key[0]}"
    try:
        with open(VERSION_CACHE, encoding="utf-8") as f:
            for line in f:
                ver, _, rest = line.rstrip("\n").partition(" ")
                if rest == tag:
                    v = tuple(int(x) for x in ver.split("."))
                    if len(v) == 3:
                        _version_memo[key] = v  # type: ignore[assignment]
                        return v  # type: ignore[return-value]
    except (OSError, ValueError):
        pass
    version = _run_version(qemu_binary)
    _version_memo[key] = version
    if version is not None:
        try:
            os.makedirs(os.path.dirname(VERSION_CACHE), exist_ok=True)
            # One short append: concurrent writers interleave whole lines.
            with open(VERSION_CACHE, "a", encoding="utf-8") as f:
                f.write(f"{'.'.join(map(str, version))} {tag}\n")
        except OSError:
            pass  # a cache we cannot write only costs time
    return version


def _run_version(qemu_binary: str) -> tuple[int, int, int] | None:
    import re
    import subprocess

    try:
        out = subprocess.run(
            [qemu_binary, "-version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def qemu_env(
    target_name: str, qemu_binary: str, user_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment variables to add for ``qemu-<target>`` (QEMU_CPU tuning).

    Only aarch64 on QEMU >= 8 gets ``QEMU_CPU=max,pauth-impdef=on``; every
    qemu-* binary reads QEMU_CPU, so it must never be set for another target.
    A QEMU_CPU in ``user_env`` wins: then nothing is returned for it.  The
    runtime merges as ``env = {**qemu_env(t, q, user_env), **user_env}``, so
    the user's environment overrides ours in every case.

    Two knobs in ``user_env``: ``PYCONTAIN_QEMU_CPU=<cpu>`` replaces our
    default value, ``PYCONTAIN_QEMU_CPU=`` (empty) turns the tuning off.
    Caveat: QEMU_CPU is inherited by the container's processes, so an
    aarch64 image that execs a 32-bit ARM binary hands it to qemu-arm too,
    which rejects the aarch64-only CPU; such images need the empty opt-out.
    """
    env = user_env or {}
    if target_name != "aarch64" or "QEMU_CPU" in env:
        return {}
    if env.get("PYCONTAIN_QEMU_CPU") == "":
        return {}
    version = qemu_version(qemu_binary)
    if version is None or version < (8, 0, 0):
        return {}
    return {"QEMU_CPU": env.get("PYCONTAIN_QEMU_CPU") or AARCH64_QEMU_CPU}


#: First QEMU verified here to honour AT_FLAGS_PRESERVE_ARGV0 (an older one
#: may too; an unaware one would treat the extra argv entry as the program).
P_FLAG_MIN_QEMU = (7, 2, 0)
#: The kernel tells the interpreter about P through AT_FLAGS since 5.12.
P_FLAG_MIN_KERNEL = (5, 12)


def preferred_flags(qemu_binary: str) -> str:
    """``PF`` where QEMU understands P, else ``F``.

    F alone loses the caller's argv[0]: the kernel hands QEMU the file name
    in its place, so ``exec -a ls /bin/busybox`` runs busybox as
    "/bin/busybox", and a multi-call binary run by its own name breaks
    (verified here: "applet not found").  With P the kernel passes argv[0]
    as well and sets AT_FLAGS_PRESERVE_ARGV0 so QEMU knows to use it.
    """
    version = qemu_version(qemu_binary)
    if kernel_version() >= P_FLAG_MIN_KERNEL and version is not None and version >= P_FLAG_MIN_QEMU:
        return "PF"
    return "F"


# -- the host table -----------------------------------------------------------


class Entry:
    """One entry of a binfmt_misc table, as the kernel prints it."""

    __slots__ = (
        "enabled",
        "extension",
        "flags",
        "interpreter",
        "magic",
        "mask",
        "name",
        "offset",
    )

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.enabled = False
        self.interpreter = ""
        self.flags = ""
        self.offset = 0
        self.magic: bytes | None = None
        self.mask: bytes | None = None
        self.extension: str | None = None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if line == "enabled":
                self.enabled = True
            elif key == "interpreter":
                self.interpreter = value
            elif key == "flags:":
                self.flags = value.strip()
            elif key == "offset":
                self.offset = int(value)
            elif key == "magic":
                self.magic = bytes.fromhex(value)
            elif key == "mask":
                self.mask = bytes.fromhex(value)
            elif key == "extension":
                self.extension = value

    @property
    def ours(self) -> bool:
        return self.name.startswith(PREFIX)

    @property
    def persistent(self) -> bool:
        return self.ours and self.name.endswith(PERSISTENT_SUFFIX)

    def matches(self, header: bytes) -> bool:
        """Would the kernel pick this entry for a file starting with ``header``?"""
        if not self.enabled or self.magic is None:
            return False
        chunk = header[self.offset : self.offset + len(self.magic)]
        if len(chunk) < len(self.magic):
            return False
        mask = self.mask or b"\xff" * len(self.magic)
        return all((c ^ m) & k == 0 for c, m, k in zip(chunk, self.magic, mask))

    def handles(self, target: Target) -> bool:
        """Does this entry catch both executables and PIEs of ``target``?"""
        return self.matches(target.sample_header(2)) and self.matches(target.sample_header(3))

    def suitable_for_containers(self, target: Target) -> bool:
        """Handles ``target`` in a way that still works after pivot_root.

        That needs F (the interpreter file is pinned at registration) and a
        static interpreter (its libraries would be looked up in the rootfs).
        """
        return self.handles(target) and "F" in self.flags and is_static_elf(self.interpreter)

    def targets(self) -> list[str]:
        """Names of the QEMU targets this entry handles (usually one)."""
        from .arch import all_targets

        return [t.name for t in all_targets() if self.handles(t)]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "interpreter": self.interpreter,
            "flags": self.flags,
            "offset": self.offset,
            "magic": self.magic.hex() if self.magic is not None else None,
            "mask": self.mask.hex() if self.mask is not None else None,
            "extension": self.extension,
            "owner": ("pycontain-persistent" if self.persistent
                      else "pycontain" if self.ours else "other"),
            "targets": self.targets(),
        }


def _write_once(path: str, data: bytes) -> None:
    """One write() call: binfmt_misc parses each write on its own."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        n = os.write(fd, data)
    finally:
        os.close(fd)
    if n != len(data):
        raise OSError(0, f"short write ({n} of {len(data)} bytes)")


class Acquired:
    """What :meth:`HostTable.acquire` did."""

    __slots__ = ("entry", "reused", "target")

    def __init__(self, target: str, entry: str, reused: bool) -> None:
        self.target = target
        #: The entry that will run the target's binaries.
        self.entry = entry
        #: True if that entry is not ours (or is our persistent one).
        self.reused = reused

    def __repr__(self) -> str:
        how = "reusing" if self.reused else "holding"
        return f"Acquired({self.target}: {how} {self.entry})"


class HostTable:
    """The host's binfmt_misc table, shared with the rest of the machine."""

    def __init__(self, mount: str = BINFMT_MISC, state_dir: str = STATE_DIR) -> None:
        self.mount = mount
        self.state_dir = state_dir

    # -- reading ---------------------------------------------------------------

    def mounted(self) -> bool:
        return os.path.exists(os.path.join(self.mount, "register"))

    def ensure_mounted(self) -> bool:
        """Mount binfmt_misc at ``self.mount`` if needed; True if we mounted it.

        A mount of ours is recorded, so that the last entry of ours to go
        takes it away again (:meth:`_unmount_if_ours_and_empty`)."""
        if self.mounted():
            return False
        if not os.path.isdir(self.mount):
            # The directory appears when the binfmt_misc module is loaded.
            import subprocess

            subprocess.run(["modprobe", "binfmt_misc"], check=False, capture_output=True)
        from . import plan, shim

        shim.mount("binfmt_misc", self.mount, "binfmt_misc",
                   plan.MS_NOSUID | plan.MS_NODEV | plan.MS_NOEXEC)
        os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
        with open(self._mounted_marker, "w") as f:
            f.write(self.mount + "\n")
        return True

    @property
    def _mounted_marker(self) -> str:
        return os.path.join(self.state_dir, "mounted-by-pycontain")

    def _unmount_if_ours_and_empty(self) -> None:
        """Leave the host as we found it: unmount binfmt_misc if pycontain
        mounted it and the table is empty again.  (Unmounting the last mount
        of an instance drops its entries, so never while it has any.)"""
        if not os.path.exists(self._mounted_marker) or self.entries():
            return
        from . import shim

        try:
            shim.umount(self.mount)
        except PycontainError:
            return  # busy or gone: the next release tries again
        os.unlink(self._mounted_marker)

    def entries(self) -> list[Entry]:
        """Every entry of the table (empty if binfmt_misc is not mounted)."""
        if not self.mounted():
            return []
        out = []
        for name in sorted(os.listdir(self.mount)):
            if name in ("register", "status"):
                continue
            try:
                with open(os.path.join(self.mount, name), encoding="utf-8",
                          errors="surrogateescape") as f:
                    out.append(Entry(name, f.read()))
            except (OSError, ValueError):
                continue  # removed while we listed, or unreadable: not ours to judge
        return out

    def entry(self, name: str) -> Entry | None:
        try:
            with open(os.path.join(self.mount, name), encoding="utf-8",
                      errors="surrogateescape") as f:
                return Entry(name, f.read())
        except (OSError, ValueError):
            return None

    # -- state -----------------------------------------------------------------

    def _lock(self) -> int:
        import fcntl

        os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd  # closing it releases the lock

    def _holder_dir(self, target: str) -> str:
        return os.path.join(self.state_dir, target)

    def holders(self, target: str, prune: bool = True) -> dict[int, int]:
        """Live holders of our entry for ``target``: pid -> count.

        Holders whose process is gone (or whose pid now names a different
        process: the start time differs) are deleted when ``prune``.
        """
        d = self._holder_dir(target)
        live: dict[int, int] = {}
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return live
        for name in names:
            if not name.isdigit():
                continue
            path = os.path.join(d, name)
            try:
                with open(path, encoding="utf-8") as f:
                    parts = f.read().split()  # "<start time> <pid> <count>"
            except OSError:
                parts = []
            pid = int(name)
            if len(parts) == 3 and start_time(pid) == parts[0]:
                live[pid] = max(int(parts[2]) if parts[2].isdigit() else 1, 1)
            elif prune:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return live

    def _set_holder(self, target: str, pid: int, count: int) -> None:
        d = self._holder_dir(target)
        path = os.path.join(d, str(pid))
        if count <= 0:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        started = start_time(pid)
        if started is None:
            raise PycontainError(f"binfmt_misc: holder pid {pid} does not exist")
        os.makedirs(d, mode=0o755, exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{started} {pid} {count}\n")
        os.replace(tmp, path)

    def _remove_entry(self, name: str) -> None:
        if not name.startswith(PREFIX):  # belt and braces: never touch others
            raise PycontainError(f"binfmt_misc: refusing to remove {name}, not ours")
        try:
            _write_once(os.path.join(self.mount, name), b"-1")
        except FileNotFoundError:
            pass  # already gone
        except OSError as e:
            raise PycontainError(
                f"binfmt_misc: cannot remove {self.mount}/{name}: {(e.strerror or str(e)).lower()}"
            ) from None

    def _register(self, name: str, target: Target, qemu: str) -> None:
        line = register_line(name, target, qemu, preferred_flags(qemu))
        try:
            _write_once(os.path.join(self.mount, "register"), line)
        except OSError as e:
            raise PycontainError(
                f"binfmt_misc: cannot register {name} ({qemu}) in {self.mount}: "
                f"{(e.strerror or str(e)).lower()}"
            ) from None

    # -- refcounted use (host mode) ---------------------------------------------

    def acquire(self, target: Target, qemu: str, pid: int | None = None) -> Acquired:
        """Make ``target``'s binaries run through ``qemu`` for process ``pid``.

        ``pid`` (default: this process) is whoever must outlive the use: the
        pycontain process supervising the container.  Order of preference:
        our transient entry if present (count one more holder), any other
        entry that already handles the target with F and a static
        interpreter (left alone, not counted), else a new entry of ours.  An
        entry of someone else's that handles the target but is unusable in a
        container (no F) is not touched: ours is registered after it and,
        entries added later being matched first, takes precedence until the
        last holder releases it.
        """
        if is_native(_ident_of(target), host_machine()):
            raise PycontainError(
                f"binfmt_misc: {target.name} is this host's own architecture; registering "
                "it would make QEMU match itself (exec fails with ELOOP)"
            )
        pid = os.getpid() if pid is None else pid
        if start_time(pid) is None:
            raise PycontainError(f"binfmt_misc: holder pid {pid} does not exist")
        name = PREFIX + target.name
        lock = self._lock()
        try:
            self.ensure_mounted()
            mine = self.entry(name)
            if mine is None:
                for e in self.entries():
                    if e.name != name and e.suitable_for_containers(target):
                        return Acquired(target.name, e.name, reused=True)
                if not is_static_elf(qemu):
                    raise PycontainError(
                        f"binfmt_misc: {qemu} is not a statically linked ELF; "
                        "the F flag needs a static QEMU (install qemu-user-static)"
                    )
                # A crash may have left holders of a removed entry: start fresh.
                self.holders(target.name)
                self._register(name, target, qemu)
            live = self.holders(target.name)
            self._set_holder(target.name, pid, live.get(pid, 0) + 1)
            return Acquired(target.name, name, reused=False)
        finally:
            os.close(lock)

    def release(self, target: Target, pid: int | None = None) -> bool:
        """Drop ``pid``'s hold; remove our entry if nobody holds it.  True if removed."""
        pid = os.getpid() if pid is None else pid
        name = PREFIX + target.name
        lock = self._lock()
        try:
            live = self.holders(target.name)
            left = live.pop(pid, 0) - 1
            self._set_holder(target.name, pid, left)
            if left > 0:
                live[pid] = left
            if not live and self.entry(name) is not None:
                self._remove_entry(name)
                self._unmount_if_ours_and_empty()
                return True
            return False
        finally:
            os.close(lock)

    def prune(self) -> list[str]:
        """Remove transient entries of ours that no live process holds."""
        removed = []
        lock = self._lock()
        try:
            for e in self.entries():
                if not e.ours or e.persistent:
                    continue
                target = e.name[len(PREFIX):]
                if not self.holders(target):
                    self._remove_entry(e.name)
                    removed.append(e.name)
            if removed:
                self._unmount_if_ours_and_empty()
            # Holder directories of entries that are gone: prune their files.
            try:
                for d in os.listdir(self.state_dir):
                    if os.path.isdir(os.path.join(self.state_dir, d)):
                        self.holders(d)
            except FileNotFoundError:
                pass
        finally:
            os.close(lock)
        return removed

    # -- persistent entries (pycontain binfmt install/uninstall) -----------------

    def status(self) -> list[dict[str, object]]:
        out = []
        for e in self.entries():
            d = e.as_dict()
            if e.ours and not e.persistent:
                d["holders"] = sorted(self.holders(e.name[len(PREFIX):], prune=False))
            out.append(d)
        return out

    def install(
        self, targets: Iterable[Target] | None = None, qemu_dir: str | None = None
    ) -> list[dict[str, str]]:
        """Register persistent entries; ``targets=None`` means every foreign one
        for which a static QEMU exists.  Targets already handled are skipped."""
        from .arch import all_targets

        explicit = targets is not None
        chosen = list(targets) if targets is not None else list(all_targets())
        report: list[dict[str, str]] = []
        lock = self._lock()
        try:
            self.ensure_mounted()
            for t in chosen:
                name = PREFIX + t.name + PERSISTENT_SUFFIX
                if is_native(_ident_of(t), host_machine()):
                    report.append({"target": t.name, "action": "skipped", "why": "native"})
                    continue
                existing = [e for e in self.entries() if e.suitable_for_containers(t)]
                if existing:
                    report.append({"target": t.name, "action": "skipped",
                                   "why": f"already handled by {existing[0].name}"})
                    continue
                try:
                    qemu = find_static_qemu(t.name, qemu_dir)
                except PycontainError as e:
                    if explicit:
                        raise
                    report.append({"target": t.name, "action": "skipped", "why": e.message})
                    continue
                self._register(name, t, qemu)
                report.append({"target": t.name, "action": "installed", "entry": name,
                               "interpreter": qemu})
        finally:
            os.close(lock)
        return report

    def uninstall(self, targets: Iterable[Target] | None = None) -> list[str]:
        """Remove our persistent entries (and idle transient ones) for ``targets``."""
        names = None if targets is None else {t.name for t in targets}
        removed = []
        lock = self._lock()
        try:
            for e in self.entries():
                if not e.ours:
                    continue
                target = e.name[len(PREFIX):]
                if e.persistent:
                    target = target[: -len(PERSISTENT_SUFFIX)]
                if names is not None and target not in names:
                    continue
                if e.persistent or not self.holders(target):
                    self._remove_entry(e.name)
                    removed.append(e.name)
        finally:
            os.close(lock)
        return removed


def _ident_of(target: Target) -> Ident:
    ident = read_ident(target.sample_header())
    assert ident is not None
    return ident


# Module-level shortcuts on the real host table.


def acquire(target: Target, qemu: str, pid: int | None = None) -> Acquired:
    return HostTable().acquire(target, qemu, pid)


def release(target: Target, pid: int | None = None) -> bool:
    return HostTable().release(target, pid)


def prune() -> list[str]:
    return HostTable().prune()


def status() -> list[dict[str, object]]:
    return HostTable().status()


def install(targets: Iterable[Target] | None = None, qemu_dir: str | None = None) -> list[dict[str, str]]:
    return HostTable().install(targets, qemu_dir)


def uninstall(targets: Iterable[Target] | None = None) -> list[str]:
    return HostTable().uninstall(targets)


# -- pycontain binfmt ... ---------------------------------------------------------


def _parse_targets(names: list[str]) -> list[Target] | None:
    from .arch import target_by_name

    if not names or names == ["all"]:
        return None
    return [target_by_name(n) for n in names]


def main_binfmt(argv: list[str]) -> int:
    """``pycontain binfmt status|install|uninstall|prune`` (host table only)."""
    import argparse
    import json

    p = argparse.ArgumentParser(
        prog="pycontain binfmt",
        description="Manage pycontain's entries in the host's binfmt_misc table. "
        "Entries that pycontain did not create are listed but never changed.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("status", help="list every entry of the host table")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    i = sub.add_parser("install", help="register persistent entries (default: all foreign)")
    i.add_argument("targets", nargs="*", metavar="ARCH", help="aarch64, arm64, linux/arm64 ... or all")
    i.add_argument("--qemu-dir", help="look for qemu-<arch>-static here first")
    u = sub.add_parser("uninstall", help="remove pycontain's entries (default: all)")
    u.add_argument("targets", nargs="*", metavar="ARCH")
    sub.add_parser("prune", help="remove pycontain entries that no running container holds")
    args = p.parse_args(argv)
    table = HostTable()

    if args.cmd == "status":
        rows = table.status()
        if args.json:
            print(json.dumps({"mounted": table.mounted(), "mount": table.mount,
                              "entries": rows}, indent=2))
            return 0
        if not table.mounted():
            print(f"binfmt_misc is not mounted at {table.mount}")
            return 0
        if not rows:
            print("no binfmt_misc entries")
            return 0
        for r in rows:
            state = "enabled" if r["enabled"] else "disabled"
            targets = ",".join(r["targets"]) or (r["extension"] or "-")  # type: ignore[arg-type]
            holders = f" holders={r['holders']}" if "holders" in r else ""
            print(f"{r['name']:<32} {state:<8} {r['owner']:<20} flags={r['flags'] or '-':<5} "
                  f"{targets:<12} {r['interpreter']}{holders}")
        return 0
    if args.cmd == "install":
        for r in table.install(_parse_targets(args.targets), args.qemu_dir):
            if r["action"] == "installed":
                print(f"{r['target']}: installed {r['entry']} -> {r['interpreter']}")
            else:
                print(f"{r['target']}: skipped ({r['why']})")
        return 0
    if args.cmd == "uninstall":
        removed = table.uninstall(_parse_targets(args.targets))
        print("\n".join(f"removed {n}" for n in removed) or "nothing to remove")
        return 0
    removed = table.prune()
    print("\n".join(f"removed {n}" for n in removed) or "nothing to prune")
    return 0
