"""``pycontain inspect ROOTFS [CMD]``: what would run, on which CPU, and how.

Everything the runtime decides about architectures, shown before anything
runs: the command's path inside the rootfs and the symlinks and ``#!``
interpreters that lead to the real binary, that binary's ELF facts, the
image's platform next to the host's, and whether (and through which QEMU,
registered where) it will be emulated.
"""

from __future__ import annotations

import os
import stat

from .elf import HEADER_SIZE, host_machine, is_native, read_ident
from .errors import PycontainError

#: Where a rootfs keeps the programs it may exec (scanned one level deep).
_BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/libexec")
#: Where dynamic loaders live (ld-linux-*.so*, ld64.so*, ld-musl-*.so*).
_LIB_DIRS = ("/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64")


def inspect(
    root: str,
    argv: list[str] | None = None,
    *,
    qemu_dir: str | None = None,
    mode: str = "auto",
    path_env: str | None = None,
) -> dict[str, object]:
    """Everything about how ``argv`` (default ``/bin/sh``) would run from ``root``.

    Raises PycontainError for what the runtime would also refuse (command
    not found, exec format error); a missing QEMU is reported in the result
    rather than raised, since inspecting is how one finds out.
    """
    from . import arch
    from .entrypoint import resolve

    if not os.path.isdir(root):
        raise PycontainError(f"rootfs {root}: no such directory")
    if mode not in ("auto", "sandbox", "host", "off"):
        raise PycontainError(f"unknown emulation mode {mode!r} (auto, sandbox, host or off)")
    argv = list(argv) if argv else ["/bin/sh"]
    res = resolve(root, argv[0], path_env)
    ident = res.ident
    assert ident is not None  # resolve() raises instead
    host = host_machine()
    target = arch.target_for(ident)

    elf_facts: dict[str, object]
    arm_arch = None
    try:
        from .elf import read_elf

        info = read_elf(res.host_path)
        arm_arch = info.arm_arch
        elf_facts = info.as_dict()
        elf_facts["path"] = res.final
    except PycontainError as e:
        elf_facts = {"error": e.message}
    except ImportError:
        elf_facts = {"error": "pyelftools is not installed"}
        elf_facts.update(ident.as_dict())

    native = is_native(ident, host)
    result: dict[str, object] = {
        "rootfs": os.path.abspath(root),
        "argv": argv,
        "resolved": res.as_dict(),
        "elf": elf_facts,
        "image_platform": arch.platform_of(ident, arm_arch),
        "debian_arch": arch.debian_arch_of(ident),
        "host_platform": arch.host_platform(),
        "host_machine": host,
        "kernel": os.uname().release,
        "native": native,
    }
    emu: dict[str, object] = {"needed": not native}
    if not native:
        if target is None:
            emu["error"] = f"no QEMU target runs {ident.describe()}"
        else:
            from .binfmt import default_mode, find_static_qemu, qemu_env, qemu_version

            emu["target"] = target.name
            emu["mode"] = default_mode() if mode == "auto" else mode
            emu["binfmt_matches"] = target.matches_header(res.header)
            if mode == "off":
                emu["error"] = (
                    f"emulation is off: a {target.platform} entrypoint will fail with "
                    "'exec format error' on this host"
                )
            if res.depth + 1 > 5:
                emu["warning"] = (
                    f"{res.depth} '#!' levels plus binfmt_misc's hand-over to QEMU exceed "
                    "the kernel's limit of 5 rewrites (ELOOP)"
                )
            try:
                qemu = find_static_qemu(target.name, qemu_dir)
            except PycontainError as e:
                emu["qemu"] = None
                emu["error"] = e.message
            else:
                v = qemu_version(qemu)
                emu["qemu"] = qemu
                emu["qemu_version"] = ".".join(map(str, v)) if v else None
                emu["env"] = qemu_env(target.name, qemu, {})
    result["emulation"] = emu
    result["foreign_targets"] = sorted(foreign_targets(root))
    return result


def _scan(dirpath: str, depth: int, out: list[str]) -> None:
    try:
        it = os.scandir(dirpath)
    except OSError:
        return
    with it:
        for ent in it:
            try:
                if ent.is_file(follow_symlinks=False):
                    out.append(ent.path)
                elif depth > 0 and ent.is_dir(follow_symlinks=False):
                    _scan(ent.path, depth - 1, out)
            except OSError:
                continue


def _is_loader(name: str) -> bool:
    return name.startswith(("ld-", "ld64.so", "ld.so")) and ".so" in name


def foreign_targets(root: str) -> set[str]:
    """QEMU targets of every foreign ELF the rootfs may exec.

    Reads only the first 64 bytes of the regular files in the usual bin
    directories (one level of subdirectories under /usr/libexec) and of
    the dynamic loaders in the lib directories (and their multiarch
    subdirectories).  Symlinks are skipped, the files they name are
    scanned where they live; a directory that is a symlink (merged /usr:
    ``/bin -> usr/bin``) is followed once, inside the rootfs.
    """
    from . import arch
    from .paths import resolve_in_root

    root = os.path.abspath(root)
    host = host_machine()
    seen_dirs: set[str] = set()
    files: list[str] = []
    for d in _BIN_DIRS:
        real = resolve_in_root(root, d)
        if real in seen_dirs or not os.path.isdir(real):
            continue
        seen_dirs.add(real)
        _scan(real, 1 if d == "/usr/libexec" else 0, files)
    for d in _LIB_DIRS:
        real = resolve_in_root(root, d)
        if real in seen_dirs or not os.path.isdir(real):
            continue
        seen_dirs.add(real)
        candidates: list[str] = []
        _scan(real, 1, candidates)
        files.extend(p for p in candidates if _is_loader(os.path.basename(p)))
    found: set[str] = set()
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            head = os.read(fd, HEADER_SIZE)
        except OSError:
            continue
        finally:
            os.close(fd)
        ident = read_ident(head)
        if ident is None or is_native(ident, host):
            continue
        t = arch.target_for(ident)
        if t is not None:
            found.add(t.name)
    return found


def format_inspect(d: dict[str, object]) -> str:
    """The human-readable form of :func:`inspect`'s result."""
    res = d["resolved"]
    elf = d["elf"]
    emu = d["emulation"]
    assert isinstance(res, dict) and isinstance(elf, dict) and isinstance(emu, dict)
    lines = [
        f"rootfs:      {d['rootfs']}",
        f"command:     {' '.join(map(str, d['argv']))}",  # type: ignore[call-overload]
        f"resolves to: {' -> '.join(res['chain'])}",
    ]
    for script, interp, arg in res["scripts"]:
        lines.append(f"  #! {script} runs {interp}" + (f" {arg}" if arg else ""))
    if "error" in elf:
        lines.append(f"ELF:         {elf['error']}")
    else:
        link = "static" if elf["static"] else f"dynamic, loader {elf['interpreter']}"
        lines.append(
            f"ELF:         {elf['class']}-bit {elf['endianness']}-endian {elf['type']}, "
            f"machine {elf['machine']}, flags {int(elf['flags']):#x}, osabi {elf['osabi']}, "
            f"{link}"
        )
    lines.append(f"platform:    image {d['image_platform']}"
                 + (f" (Debian {d['debian_arch']})" if d.get("debian_arch") else "")
                 + f", host {d['host_platform']} (kernel {d['kernel']})")
    if not emu["needed"]:
        lines.append("emulation:   none, runs natively")
    else:
        lines.append(f"emulation:   needed, QEMU target {emu.get('target', '?')}, "
                     f"binfmt_misc mode {emu.get('mode', '?')}")
        if emu.get("qemu"):
            ver = emu.get("qemu_version") or "unknown version"
            lines.append(f"qemu:        {emu['qemu']} ({ver})")
            env = emu.get("env") or {}
            for k, v in env.items():  # type: ignore[union-attr]
                lines.append(f"  env {k}={v}")
        if emu.get("binfmt_matches") is False:
            lines.append("  warning: QEMU's binfmt_misc magic does not match this header "
                         "(unusual OSABI/ABIVERSION); exec will fail with ENOEXEC")
        if emu.get("warning"):
            lines.append(f"  warning: {emu['warning']}")
        if emu.get("error"):
            lines.append(f"  error: {emu['error']}")
    ft = d.get("foreign_targets") or []
    lines.append("foreign:     " + (", ".join(ft) if ft else "none"))  # type: ignore[arg-type]
    return "\n".join(lines)

