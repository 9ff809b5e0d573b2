"""binfmt_misc with the real kernel: the host table (refcounted) and a userns one.

These tests change the HOST's binfmt_misc table, so every one of them runs
inside the ``host_table`` fixture, which records the table (and whether
binfmt_misc was mounted at all) first and puts it back afterwards: our
entries are removed, entries the test created for "someone else" are
removed, and binfmt_misc is unmounted again if it was not mounted before.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontain import binfmt
from pycontain.arch import target_by_name
from pycontain.binfmt import BINFMT_MISC, PREFIX, HostTable, find_static_qemu, register_line
from pycontain.errors import PycontainError

REPO = Path(__file__).resolve().parent.parent
#: Entries a test registers as a stand-in for "some other tool's entry".
FOREIGN_PREFIX = "elftest-other-"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binfmt_misc needs root")


def busybox_for(arch: str) -> Path:
    """The static busybox for Debian ``arch`` (rootfs-scripts, else apt-get)."""
    dest = REPO / "build" / "rootfs" / arch
    if (dest / "bin" / "busybox").is_file():
        return dest / "bin" / "busybox"
    script = REPO / "rootfs-scripts" / "busybox.sh"
    if script.is_file():
        subprocess.run(["bash", str(script), arch, str(dest)], check=False, capture_output=True)
        if (dest / "bin" / "busybox").is_file():
            return dest / "bin" / "busybox"
    cache = REPO / "build" / "cache" / "elf-tests" / arch
    extracted = cache / "x" / "bin" / "busybox"
    if not extracted.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", f"busybox-static:{arch}"], cwd=cache,
                       check=False, capture_output=True)
        debs = sorted(cache.glob("busybox-static_*.deb"))
        if not debs:
            pytest.skip(f"no busybox-static:{arch} (dpkg --add-architecture {arch}; apt-get update)")
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(cache / "x")], check=True)
    return extracted


def qemu_for(target: str) -> str:
    try:
        return find_static_qemu(target, None)
    except PycontainError as e:
        pytest.skip(e.message)


def snapshot() -> dict[str, str] | None:
    """The host table as {entry name: kernel's text}, or None if not mounted."""
    if not os.path.exists(f"{BINFMT_MISC}/register"):
        return None
    out = {}
    for name in sorted(os.listdir(BINFMT_MISC)):
        if name == "register":  # write-only
            continue
        with open(f"{BINFMT_MISC}/{name}") as f:
            out[name] = f.read()
    return out


def _remove(name: str) -> None:
    try:
        with open(f"{BINFMT_MISC}/{name}", "w") as f:
            f.write("-1")
    except FileNotFoundError:
        pass


def _umount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), 0) != 0:
        raise OSError(ctypes.get_errno(), f"umount {path}")


@pytest.fixture
def host_table() -> Iterator[HostTable]:
    before = snapshot()
    table = HostTable()
    try:
        yield table
    finally:
        for name in os.listdir(BINFMT_MISC) if snapshot() is not None else []:
            if name.startswith(FOREIGN_PREFIX) or (
                name.startswith(PREFIX) and before is not None and name not in before
            ) or (name.startswith(PREFIX) and before is None):
                _remove(name)
        if before is None and snapshot() is not None and not any(
            n not in ("register", "status") for n in os.listdir(BINFMT_MISC)
        ):
            _umount(BINFMT_MISC)
    assert snapshot() == before, "the host binfmt_misc table was not restored"


def uname_m(busybox: Path) -> str:
    """Run the foreign busybox BY PATH: the kernel must pick our entry."""
    try:
        r = subprocess.run([str(busybox), "uname", "-m"], capture_output=True, text=True,
                           check=False)
    except OSError as e:  # ENOEXEC: no entry matched
        return f"failed: {e.strerror}"
    return r.stdout.strip() if r.returncode == 0 else f"failed: {r.returncode} {r.stderr.strip()}"


def skip_if_host_handles(table: HostTable, target_name: str) -> None:
    t = target_by_name(target_name)
    for e in table.entries():
        if not e.name.startswith(PREFIX) and e.handles(t):
            pytest.skip(f"the host already has entry {e.name} for {target_name}")


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"])


def test_acquire_runs_foreign_binary_then_release_restores(host_table: HostTable) -> None:
    busybox = busybox_for("arm64")
    t = target_by_name("aarch64")
    qemu = qemu_for("aarch64")
    skip_if_host_handles(host_table, "aarch64")
    before = snapshot()  # unmounted, or mounted by someone else
    host_table.ensure_mounted()
    assert uname_m(busybox).startswith("failed")  # no entry: exec format error
    got = host_table.acquire(t, qemu)
    assert (got.entry, got.reused) == ("pycontain-aarch64", False)
    entry = host_table.entry("pycontain-aarch64")
    assert entry is not None and entry.enabled and "F" in entry.flags
    assert entry.flags == binfmt.preferred_flags(qemu)
    assert entry.interpreter == qemu
    magic, mask = t.magic_mask()
    assert (entry.magic, entry.mask) == (magic, mask)  # the kernel kept our bytes
    assert uname_m(busybox) == "aarch64"
    if "P" in entry.flags:  # argv[0] reaches the program: busybox runs as "uname"
        r = subprocess.run(["uname", "-m"], executable=str(busybox), capture_output=True,
                           text=True, check=False)
        assert r.stdout == "aarch64\n", r.stderr
    assert host_table.release(t) is True
    assert host_table.entry("pycontain-aarch64") is None
    # Exactly as before, mount included: the last entry of ours took away
    # the binfmt_misc mount pycontain had made.
    assert snapshot() == before
    assert uname_m(busybox).startswith("failed")


def test_two_holders_share_one_entry(host_table: HostTable) -> None:
    busybox = busybox_for("arm64")
    t = target_by_name("aarch64")
    qemu = qemu_for("aarch64")
    skip_if_host_handles(host_table, "aarch64")
    a, b = sleeper(), sleeper()
    try:
        assert host_table.acquire(t, qemu, pid=a.pid).entry == "pycontain-aarch64"
        assert host_table.acquire(t, qemu, pid=b.pid).entry == "pycontain-aarch64"
        ours = [e.name for e in host_table.entries() if e.name.startswith(PREFIX)]
        assert ours == ["pycontain-aarch64"]
        assert sorted(host_table.holders("aarch64")) == sorted([a.pid, b.pid])
        assert host_table.release(t, pid=a.pid) is False
        assert uname_m(busybox) == "aarch64"  # b still holds it
        assert host_table.release(t, pid=b.pid) is True
        assert host_table.entry("pycontain-aarch64") is None
        # One process holding twice counts twice.
        host_table.acquire(t, qemu, pid=a.pid)
        host_table.acquire(t, qemu, pid=a.pid)
        assert host_table.release(t, pid=a.pid) is False
        assert host_table.release(t, pid=a.pid) is True
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


def test_table_identical_before_and_after_many_targets(host_table: HostTable) -> None:
    before = snapshot()
    names = ["aarch64", "arm", "s390x", "ppc64le", "mips64el"]
    targets = [target_by_name(n) for n in names]
    qemus = [qemu_for(n) for n in names]
    for n in names:
        skip_if_host_handles(host_table, n)
    for t, q in zip(targets, qemus):
        host_table.acquire(t, q)
    listed = {e.name for e in host_table.entries()}
    assert {PREFIX + n for n in names} <= listed
    for deb, n in (("armhf", "arm"), ("s390x", "s390x"), ("ppc64el", "ppc64le")):
        assert uname_m(busybox_for(deb)) in {"arm": ("armv7l",), "s390x": ("s390x",),
                                             "ppc64le": ("ppc64le",)}[n]
    for t in targets:
        assert host_table.release(t) is True
    # Identical, mount included: if pycontain mounted binfmt_misc, the last
    # release unmounted it again.
    assert snapshot() == before


def test_prune_removes_entry_of_a_dead_holder(host_table: HostTable) -> None:
    qemu = qemu_for("aarch64")
    skip_if_host_handles(host_table, "aarch64")
    # A pycontain that acquires and then dies without releasing (a crash).
    code = textwrap.dedent(f"""
        import os
        from pycontain.arch import target_by_name
        from pycontain.binfmt import HostTable
        HostTable().acquire(target_by_name("aarch64"), {qemu!r})
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    assert host_table.entry("pycontain-aarch64") is not None  # left behind
    live = sleeper()
    try:
        # prune() keeps entries that a live process holds ...
        host_table.acquire(target_by_name("s390x"), qemu_for("s390x"), pid=live.pid)
        assert host_table.prune() == ["pycontain-aarch64"]
        assert host_table.entry("pycontain-aarch64") is None
        assert host_table.entry("pycontain-s390x") is not None
        assert os.listdir(os.path.join(host_table.state_dir, "aarch64")) == []
    finally:
        live.kill()
        live.wait()
    # ... until that process is gone too.
    assert host_table.prune() == ["pycontain-s390x"]


def _register_foreign(name: str, target: str, flags: str) -> None:
    line = register_line(name, target_by_name(target), qemu_for(target), flags)
    with open(f"{BINFMT_MISC}/register", "wb") as f:
        f.write(line)


def test_existing_foreign_entry_is_reused_and_never_removed(host_table: HostTable) -> None:
    busybox = busybox_for("arm64")
    t = target_by_name("aarch64")
    skip_if_host_handles(host_table, "aarch64")
    host_table.ensure_mounted()
    other = FOREIGN_PREFIX + "aarch64"
    _register_foreign(other, "aarch64", "F")
    got = host_table.acquire(t, qemu_for("aarch64"))
    assert (got.entry, got.reused) == (other, True)
    assert host_table.entry("pycontain-aarch64") is None  # nothing of ours added
    assert uname_m(busybox) == "aarch64"
    host_table.release(t)
    assert host_table.prune() == []
    assert host_table.uninstall(None) == []
    assert host_table.entry(other) is not None
    with pytest.raises(PycontainError):
        host_table._remove_entry(other)  # the guard itself
    _remove(other)


def test_unsuitable_foreign_entry_is_shadowed_not_replaced(host_table: HostTable) -> None:
    t = target_by_name("aarch64")
    skip_if_host_handles(host_table, "aarch64")
    host_table.ensure_mounted()
    other = FOREIGN_PREFIX + "aarch64-nofix"
    # Without F the interpreter is looked up at exec time, inside the
    # container: useless after pivot_root, so we add ours in front of it.
    _register_foreign(other, "aarch64", "")
    got = host_table.acquire(t, qemu_for("aarch64"))
    assert (got.entry, got.reused) == ("pycontain-aarch64", False)
    assert host_table.release(t) is True
    assert host_table.entry(other) is not None
    _remove(other)


def test_install_status_uninstall_cli(host_table: HostTable, capsys: pytest.CaptureFixture[str]) -> None:
    t = target_by_name("aarch64")
    skip_if_host_handles(host_table, "aarch64")
    qemu_for("aarch64")
    assert binfmt.main_binfmt(["install", "arm64"]) == 0
    assert "installed pycontain-aarch64-persistent" in capsys.readouterr().out
    # A persistent entry is reused by acquire, and outlives prune.
    got = host_table.acquire(t, qemu_for("aarch64"))
    assert (got.entry, got.reused) == ("pycontain-aarch64-persistent", True)
    assert host_table.prune() == []
    assert binfmt.main_binfmt(["install", "aarch64"]) == 0
    assert "already handled" in capsys.readouterr().out
    assert binfmt.main_binfmt(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in status["entries"]}
    assert rows["pycontain-aarch64-persistent"]["owner"] == "pycontain-persistent"
    assert rows["pycontain-aarch64-persistent"]["targets"] == ["aarch64"]
    assert binfmt.main_binfmt(["status"]) == 0
    assert "pycontain-aarch64-persistent" in capsys.readouterr().out
    assert binfmt.main_binfmt(["uninstall", "aarch64"]) == 0
    assert "removed pycontain-aarch64-persistent" in capsys.readouterr().out
    assert host_table.entry("pycontain-aarch64-persistent") is None


def test_host_architecture_is_refused(host_table: HostTable) -> None:
    with pytest.raises(PycontainError) as e:
        host_table.acquire(target_by_name("x86_64" if os.uname().machine == "x86_64"
                                          else os.uname().machine), "/bin/true")
    assert "ELOOP" in e.value.message


def _userns_run(line: bytes, busybox: Path) -> list[str]:
    """Mount a private binfmt_misc in a new user namespace, register ``line``,
    run the foreign busybox by path and as argv[0] "sh"; return stdout lines."""
    code = textwrap.dedent(f"""
        import ctypes, os, subprocess, sys
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mount(b"none", b"{BINFMT_MISC}", b"binfmt_misc", 0, None) == 0
        with open("{BINFMT_MISC}/register", "wb", buffering=0) as f:
            f.write({line!r})
        print(sorted(os.listdir("{BINFMT_MISC}")))
        sys.stdout.flush()
        subprocess.run(["{busybox}", "uname", "-m"], check=True)
        subprocess.run(["sh", "-c", 'echo "argv0=$0"'], executable="{busybox}")
    """)
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c",
                        code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_sandbox_register_lines_in_own_userns() -> None:
    """The lines the shim writes, written by hand in a user namespace (>= 6.7)."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    if release < (6, 7):
        pytest.skip("binfmt_misc per user namespace needs Linux 6.7")
    busybox = busybox_for("arm64")
    qemu = qemu_for("aarch64")
    before = snapshot()
    line = binfmt.sandbox_register_lines([target_by_name("aarch64")], {"aarch64": qemu})[0]
    out = _userns_run(line, busybox)
    assert out[:2] == ["['pycontain-aarch64', 'register', 'status']", "aarch64"]
    if binfmt.preferred_flags(qemu) == "PF":
        assert out[2] == "argv0=sh"  # P: argv[0] preserved
    # F alone: the kernel replaces argv[0] by the file name, so busybox
    # cannot tell it was asked to be "sh" (why preferred_flags adds P).
    line_f = binfmt.sandbox_register_lines([target_by_name("aarch64")], {"aarch64": qemu}, "F")[0]
    out = _userns_run(line_f, busybox)
    assert out[:2] == ["['pycontain-aarch64', 'register', 'status']", "aarch64"]
    assert "argv0=sh" not in out
    assert snapshot() == before  # the host table never saw any of it


def test_register_line_is_validated() -> None:
    t = target_by_name("aarch64")
    line = register_line("pycontain-aarch64", t, "/usr/bin/qemu-aarch64-static", "F")
    fields = line.split(b":")
    assert fields[:4] == [b"", b"pycontain-aarch64", b"M", b"0"]
    assert fields[6:] == [b"/usr/bin/qemu-aarch64-static", b"F"]
    assert b"\x00" not in line and len(line) <= 1920
    assert len(fields[4]) == len(fields[5]) == 4 * len(t.magic_mask()[0])
    for bad in (("a/b", "/q", "F"), ("x:y", "/q", "F"), ("status", "/q", "F"),
                ("ok", "relative/q", "F"), ("ok", "/q:x", "F"), ("ok", "/q", "FX"),
                ("ok", "/q", "FF"), ("", "/q", "F")):
        with pytest.raises(PycontainError):
            register_line(bad[0], t, bad[1], bad[2])


def test_qemu_env_only_for_aarch64_on_qemu_8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binfmt, "VERSION_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "qemu-aarch64-static"  # a stand-in that only answers -version
    fake.write_text("#!/bin/sh\necho 'qemu-aarch64 version 8.2.1 (Debian 1:8.2.1)'\n")
    fake.chmod(0o755)
    assert binfmt.qemu_version(str(fake)) == (8, 2, 1)
    assert (tmp_path / "cache").read_text().startswith("8.2.1 ")
    assert binfmt.qemu_env("aarch64", str(fake)) == {"QEMU_CPU": "max,pauth-impdef=on"}
    assert binfmt.qemu_env("aarch64", str(fake), {"QEMU_CPU": "cortex-a57"}) == {}
    assert binfmt.qemu_env("arm", str(fake)) == {}
    real = qemu_for("aarch64")
    v = binfmt.qemu_version(real)
    assert v is not None
    if v < (8, 0, 0):
        assert binfmt.qemu_env("aarch64", real) == {}


def test_find_static_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = qemu_for("aarch64")
    assert real.endswith("qemu-aarch64-static")
    # A dynamically linked qemu in qemu_dir is skipped in favour of a static one.
    (tmp_path / "qemu-aarch64-static").symlink_to(sys.executable)
    assert find_static_qemu("aarch64", str(tmp_path)) == real
    # Nothing anywhere (Debian's /usr/libexec/qemu-binfmt only has *-binfmt-P).
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    if os.path.exists("/usr/libexec/qemu-binfmt/qemu-aarch64-static"):
        pytest.skip("/usr/libexec/qemu-binfmt has a qemu-aarch64-static")
    with pytest.raises(PycontainError) as e:
        find_static_qemu("aarch64", str(tmp_path))
    msg = e.value.message
    assert e.value.exit_code == 125 and "\n" not in msg
    assert "rootfs is linux/arm64/v8" in msg and "install qemu-user-static" in msg
    assert "dynamically linked" in msg


def test_concurrent_holders_never_lose_the_entry(host_table: HostTable) -> None:
    """Processes racing acquire/exec/release: whoever holds the entry can exec."""
    busybox = busybox_for("arm64")
    qemu = qemu_for("aarch64")
    skip_if_host_handles(host_table, "aarch64")
    code = textwrap.dedent(f"""
        import subprocess
        from pycontain.arch import target_by_name
        from pycontain.binfmt import HostTable
        t, table = target_by_name("aarch64"), HostTable()
        for _ in range(5):
            table.acquire(t, {qemu!r})
            out = subprocess.run([{str(busybox)!r}, "uname", "-m"], capture_output=True,
                                 text=True).stdout
            table.release(t)
            assert out == "aarch64\\n", out
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE)
             for _ in range(6)]
    errors = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert host_table.entry("pycontain-aarch64") is None
    assert host_table.holders("aarch64") == {}
