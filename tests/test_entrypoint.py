"""Finding the entrypoint inside a rootfs: $PATH, symlinks, #! chains, errors.

Most cases build a small rootfs in tmp_path whose binary is a real static
busybox (arm64: any architecture will do, only its header is read; a
synthesized header if none can be had).  Where we claim to agree with the
kernel, ``test_agrees_with_the_kernel`` runs the same case through a real
``chroot`` + execve with the native (i386) busybox and compares exit codes.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pycontain.arch import all_targets
from pycontain.entrypoint import MAX_INTERPRETERS, find_command, resolve
from pycontain.errors import PycontainError

REPO = Path(__file__).resolve().parent.parent


def _busybox(arch: str) -> Path | None:
    """A static busybox for ``arch`` if one is built or can be built, else None."""
    dest = REPO / "build" / "rootfs" / arch
    if not (dest / "bin" / "busybox").is_file():
        script = REPO / "rootfs-scripts" / "busybox.sh"
        if script.is_file():
            subprocess.run(["bash", str(script), arch, str(dest)], check=False,
                           capture_output=True)
    if (dest / "bin" / "busybox").is_file():
        return dest / "bin" / "busybox"
    cache = REPO / "build" / "cache" / "elf-tests" / arch / "x" / "bin" / "busybox"
    return cache if cache.is_file() else None


def _install_binary(root: Path, rel: str, src: Path | None) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if src is not None:
        shutil.copyfile(src, p)
    else:  # a synthesized aarch64 header is all resolve() reads
        p.write_bytes(all_targets()[3].sample_header() + bytes(4096))
    p.chmod(0o755)


def _link(root: Path, rel: str, target: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, p)


def _script(root: Path, rel: str, text: str, mode: int = 0o755) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    _install_binary(root, "bin/busybox", _busybox("arm64"))
    _link(root, "bin/sh", "/bin/busybox")  # absolute, as in real images
    _link(root, "bin/ls", "busybox")  # relative, same directory
    _link(root, "usr/bin/env", "../../bin/busybox")  # relative, climbing
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    return root


def err(root: Path, argv0: str, path: str | None = None) -> PycontainError:
    with pytest.raises(PycontainError) as e:
        resolve(str(root), argv0, path)
    assert "\n" not in e.value.message
    return e.value


def test_path_lookup(rootfs: Path) -> None:
    path = "/usr/local/bin:/usr/bin:/bin"
    assert find_command(str(rootfs), "ls", path) == "/bin/ls"
    assert find_command(str(rootfs), "env", path) == "/usr/bin/env"
    assert find_command(str(rootfs), "nope", path) is None
    assert find_command(str(rootfs), "ls", None) == "/bin/ls"  # docker's default PATH
    # Not executable, or a directory: skipped like execvp does.
    _script(rootfs, "usr/local/bin/ls", "#!/bin/sh\n", mode=0o644)
    (rootfs / "usr/bin/ls").mkdir()
    assert find_command(str(rootfs), "ls", path) == "/bin/ls"
    # A dangling symlink earlier in PATH is "not here", too.
    _link(rootfs, "usr/sbin/env", "/nowhere")
    assert find_command(str(rootfs), "env", "/usr/sbin:" + path) == "/usr/bin/env"
    # Slash in the name: no search, only a check.
    assert find_command(str(rootfs), "/bin/ls", "") == "/bin/ls"
    assert find_command(str(rootfs), "bin/ls", "") == "/bin/ls"
    assert find_command(str(rootfs), "/usr/bin/ls", path) is None


def test_not_found_is_127(rootfs: Path) -> None:
    e = err(rootfs, "nope", "/bin")
    assert e.exit_code == 127
    assert e.message == "executable file not found in $PATH: nope"
    assert err(rootfs, "/bin/nope").exit_code == 127
    # Present but only as a non-executable file: permission denied, 126.
    _script(rootfs, "bin/noexec", "#!/bin/sh\n", mode=0o644)
    e = err(rootfs, "noexec", "/bin")
    assert e.exit_code == 126 and "permission denied" in e.message


def test_absolute_symlink_resolved_in_rootfs_not_host(rootfs: Path, tmp_path: Path) -> None:
    # The link names an absolute path that exists on the host as a decoy (a
    # script); inside the rootfs the same path is the real binary.
    decoy_dir = tmp_path / "decoy"
    decoy_dir.mkdir()
    _script(decoy_dir, "tool", "#!/bin/false\n")
    inside = str(decoy_dir / "tool").lstrip("/")
    _install_binary(rootfs, inside, _busybox("arm64"))
    _link(rootfs, "bin/tool", str(decoy_dir / "tool"))
    r = resolve(str(rootfs), "tool", "/bin")
    assert r.chain == ["/bin/tool", str(decoy_dir / "tool")]
    assert r.host_path == str(rootfs) + str(decoy_dir / "tool")
    assert r.scripts == [] and r.ident is not None and r.ident.machine == 183

    r = resolve(str(rootfs), "sh", "/bin")
    assert r.chain == ["/bin/sh", "/bin/busybox"]
    assert r.final == "/bin/busybox"
    assert r.host_path == str(rootfs / "bin/busybox")
    assert len(r.header) == 64


def test_relative_symlinks(rootfs: Path) -> None:
    assert resolve(str(rootfs), "ls", "/bin").chain == ["/bin/ls", "/bin/busybox"]
    assert resolve(str(rootfs), "env", "/usr/bin").chain == ["/usr/bin/env", "/bin/busybox"]
    # A symlinked directory on the way (merged /usr style).
    _link(rootfs, "sbin", "usr/sbin")
    _link(rootfs, "usr/sbin/init", "../../bin/busybox")
    r = resolve(str(rootfs), "/sbin/init", None)
    assert r.chain == ["/sbin/init", "/bin/busybox"]


def test_symlink_loop_is_126(rootfs: Path) -> None:
    _link(rootfs, "bin/a", "b")
    _link(rootfs, "bin/b", "/bin/a")
    e = err(rootfs, "a", "/bin")
    assert e.exit_code == 126 and "loop" in e.message


def test_symlink_out_of_rootfs_is_126(rootfs: Path) -> None:
    _link(rootfs, "bin/escape", "../../../../../bin/sh")
    e = err(rootfs, "/bin/escape")
    assert e.exit_code == 126 and "above its root" in e.message and "/bin/escape" in e.message


def test_dangling_symlink_is_126(rootfs: Path) -> None:
    _link(rootfs, "bin/dangling", "/opt/gone")
    e = err(rootfs, "/bin/dangling")
    assert e.exit_code == 126 and "dangling" in e.message


def test_shebang_chain(rootfs: Path) -> None:
    _script(rootfs, "usr/local/bin/app", "#!/bin/sh -e\necho hi\n")
    r = resolve(str(rootfs), "app", "/usr/local/bin:/bin")
    assert r.chain == ["/usr/local/bin/app", "/bin/sh", "/bin/busybox"]
    assert r.scripts == [("/usr/local/bin/app", "/bin/sh", "-e")]
    assert r.final == "/bin/busybox" and r.ident is not None
    # Interpreter found via a script that itself has a #! line (tabs allowed).
    _script(rootfs, "usr/local/bin/wrapper", "#!\t/usr/local/bin/app\n")
    r = resolve(str(rootfs), "wrapper", "/usr/local/bin")
    assert r.chain == ["/usr/local/bin/wrapper", "/usr/local/bin/app", "/bin/sh", "/bin/busybox"]
    assert r.depth == 2


def test_shebang_depth_limit(rootfs: Path) -> None:
    prev = "/bin/sh"
    for i in range(MAX_INTERPRETERS + 1):
        _script(rootfs, f"bin/s{i}", f"#!{prev}\n")
        prev = f"/bin/s{i}"
    assert resolve(str(rootfs), f"s{MAX_INTERPRETERS - 1}", "/bin").depth == MAX_INTERPRETERS
    e = err(rootfs, f"s{MAX_INTERPRETERS}", "/bin")
    assert e.exit_code == 126 and "interpreters" in e.message


def test_bad_files_are_126(rootfs: Path) -> None:
    cases = {
        "text": (b"just text\n", "exec format error"),
        "empty": (b"", "exec format error"),
        "truncated": (all_targets()[3].sample_header()[:30], "truncated ELF"),
        "object": (all_targets()[3].sample_header(1), "not an executable"),
        "noint": (b"#!\n", "no interpreter"),
    }
    for name, (data, words) in cases.items():
        (rootfs / "bin" / name).write_bytes(data)
        (rootfs / "bin" / name).chmod(0o755)
        e = err(rootfs, name, "/bin")
        assert e.exit_code == 126, name
        assert words in e.message, (name, e.message)
    _script(rootfs, "bin/missingint", "#!/usr/bin/python9\n")
    e = err(rootfs, "missingint", "/bin")  # execve: ENOENT, so 127 like docker
    assert e.exit_code == 127 and "/usr/bin/python9 does not exist" in e.message
    e = err(rootfs, "/bin")
    assert e.exit_code == 126 and "directory" in e.message
    os.mkfifo(rootfs / "bin/fifo", 0o755)  # must not block
    assert err(rootfs, "/bin/fifo").exit_code == 126


# -- what the kernel does with the same files ----------------------------------


def _kernel_exit(root: Path, argv0: str) -> int:
    """Exit status of chroot(2) + a $PATH search with execve(2) of ``argv0``.

    Python's os.execvpe searches PATH like execvp but, unlike glibc, does not
    retry an ENOEXEC file with /bin/sh, so what we see is the kernel's answer.
    126 if the file cannot be run, 127 if it is not found (docker's codes).
    """
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            devnull = os.open("/dev/null", os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chroot(str(root))
            os.chdir("/")
            os.execvpe(argv0, [argv0, "true"], {"PATH": "/bin"})
        except OSError as e:
            code = 127 if e.errno == errno.ENOENT else 126
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _our_exit(root: Path, argv0: str) -> int:
    try:
        resolve(str(root), argv0, "/bin")
    except PycontainError as e:
        return e.exit_code
    return 0


def test_agrees_with_the_kernel(tmp_path: Path) -> None:
    native = _busybox("i386") if os.uname().machine == "x86_64" else None
    if native is None:
        pytest.skip("needs the i386 busybox on an x86_64 host (a native static binary)")
    root = tmp_path / "native"
    _install_binary(root, "bin/busybox", native)
    _link(root, "bin/true", "busybox")
    _link(root, "bin/sh", "/bin/busybox")
    _link(root, "bin/loop", "loop2")
    _link(root, "bin/loop2", "/bin/loop")
    _script(root, "bin/text", "no magic here\n")
    _script(root, "bin/noexec", "#!/bin/sh\n", mode=0o644)
    _script(root, "bin/script", "#!/bin/sh\nexit 0\n")
    _script(root, "bin/missingint", "#!/usr/bin/python9\n")
    (root / "bin/trunc").write_bytes(native.read_bytes()[:30])
    (root / "bin/trunc").chmod(0o755)
    prev = "/bin/sh"
    for i in range(MAX_INTERPRETERS + 1):
        _script(root, f"bin/s{i}", f"#!{prev}\n")
        prev = f"/bin/s{i}"
    cases = ["true", "/bin/true", "nothere", "/bin/nothere", "loop", "text", "noexec",
             "script", "missingint", "trunc", f"s{MAX_INTERPRETERS - 1}", f"s{MAX_INTERPRETERS}"]
    got = {c: (_our_exit(root, c), _kernel_exit(root, c)) for c in cases}
    assert all(ours == kernel for ours, kernel in got.values()), got
    assert got["true"] == (0, 0) and got[f"s{MAX_INTERPRETERS}"] == (126, 126)
