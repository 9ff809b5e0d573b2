"""--userns: container root as an unprivileged range of host ids.

All of these run real containers in real user namespaces and look at
what the kernel reports: /proc/self/uid_map inside, file ownership on the
host, permission errors.  The volume and the secret live under pytest's
tmp_path, whose parents are mode 0700: the container's root could not walk
them itself, which is why pycontain clones host mounts on the host and
sends them in (userns.py).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from pchelpers import BUILD_ROOTFS, leftovers, one_line_error, requires_root
from probehelpers import parse_probe

from pycontain import userns
from pycontain.state import owner_token

pytestmark = requires_root


def _map(text: str) -> tuple[int, int, int]:
    cid, hid, size = (int(x) for x in text.split())
    return cid, hid, size


def test_auto_maps_root_to_an_unprivileged_range(pycontain, rootfs):
    out = pycontain.run("--userns=auto", rootfs, "/bin/sh", "-c",
                        "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; "
                        "stat -L -c %i /proc/self/ns/user")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "0" and lines[1] == "0"
    uid_map, gid_map = _map(lines[2]), _map(lines[3])
    assert uid_map[0] == 0 and uid_map[1] >= userns.DEFAULT_BASE
    assert uid_map[2] == userns.DEFAULT_SIZE
    assert gid_map == uid_map
    # A user namespace of its own: its capabilities only count in there.
    assert int(lines[4]) != os.stat("/proc/self/ns/user").st_ino


def test_file_created_in_a_volume_belongs_to_the_range(pycontain, rootfs, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    vol.chmod(0o777)  # the container's root is nobody special on the host
    out = pycontain.run("--userns=auto", "-v", f"{vol}:/vol", rootfs, "/bin/sh", "-c",
                        "echo from-inside > /vol/made; ls -ln /vol/made; cat /proc/self/uid_map")
    assert out.returncode == 0, out.stderr
    host_start = _map(out.stdout.splitlines()[-1])[1]
    st = (vol / "made").stat()
    assert (st.st_uid, st.st_gid) == (host_start, host_start)
    assert st.st_uid >= userns.DEFAULT_BASE
    # ... and inside, the same file is root's.
    assert out.stdout.split()[2:4] == ["0", "0"]


def test_rootfs_is_idmapped_root_owned_inside_and_on_disk(pycontain, rootfs_copy):
    out = pycontain.run("--userns=auto", rootfs_copy, "/bin/sh", "-c",
                        "stat -c '%u:%g' /bin/busybox /etc/passwd /; "
                        "echo x > /written-inside && chmod 4755 /written-inside")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0:0", "0:0", "0:0"]
    # The idmapped mount shifts back on the way to disk: no chown happened,
    # the rootfs stays host root's (and the container could change it).
    made = (rootfs_copy / "written-inside").stat()
    assert (made.st_uid, made.st_gid) == (0, 0)
    assert (rootfs_copy / "bin" / "busybox").stat().st_uid == 0


def test_root_only_host_file_is_unreadable(pycontain, rootfs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host root only\n")
    secret.chmod(0o600)
    out = pycontain.run("--userns=auto", "-v", f"{secret}:/secret", rootfs, "/bin/sh", "-c",
                        "cat /secret; echo rc=$?; stat -c '%u' /secret")
    assert "host root only" not in out.stdout
    assert "Permission denied" in out.stderr
    assert "rc=1" in out.stdout
    assert out.stdout.split()[-1] == "65534"  # host root is nobody inside
    # Without a user namespace, container root can read it: the test can fail.
    plain = pycontain.run("-v", f"{secret}:/secret", rootfs, "cat", "/secret")
    assert plain.stdout == "host root only\n"


def test_explicit_map(pycontain, rootfs):
    out = pycontain.run("--userns=0:300000:65536", rootfs, "cat", "/proc/self/uid_map",
                        "/proc/self/gid_map")
    assert out.returncode == 0, out.stderr
    assert [_map(x) for x in out.stdout.splitlines()] == [(0, 300000, 65536)] * 2


def test_userns_host_keeps_the_hosts_user_namespace(pycontain, rootfs):
    out = pycontain.run("--userns=host", rootfs, "stat", "-L", "-c", "%i", "/proc/self/ns/user")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == os.stat("/proc/self/ns/user").st_ino


@pytest.mark.parametrize("value", ["1:100000:65536", "0:x:1", "0:100000:0", "sometimes"])
def test_bad_userns_values_are_one_line_errors(pycontain, rootfs, value):
    out = pycontain.run(f"--userns={value}", rootfs, "true")
    assert out.returncode == 125
    assert "--userns" in one_line_error(out)


def test_dry_run_shows_the_maps_and_the_idmapped_rootfs(pycontain, rootfs):
    out = pycontain.run("--dry-run", "--userns=auto", rootfs, "true")
    assert out.returncode == 0, out.stderr
    assert "maps:    uid_map '0 1" in out.stdout
    assert "idmapped through the container's user namespace" in out.stdout
    assert "setresuid(0, 0, 0)" in out.stdout


def test_concurrent_auto_containers_get_disjoint_ranges(pycontain, rootfs):
    procs = [pycontain.popen("run", "--userns=auto", rootfs, "/bin/sh", "-c",
                             "cat /proc/self/uid_map; sleep 1",
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    time.sleep(0.5)
    held = sorted(n for n in os.listdir(userns.LEASE_DIR) if n.isdigit())
    outs = [p.communicate(timeout=30) for p in procs]
    starts = []
    for (stdout, stderr), proc in zip(outs, procs):
        assert proc.returncode == 0, stderr
        starts.append(_map(stdout)[1])
    assert len(set(starts)) == 3, starts
    for a in starts:
        for b in starts:
            assert a == b or abs(a - b) >= userns.DEFAULT_SIZE
    assert len(held) >= 3  # the leases existed while they ran ...
    left = {int(n) for n in os.listdir(userns.LEASE_DIR) if n.isdigit()}
    assert not left & set(starts)  # ... and are gone once they exit


def test_leases_skip_live_owners_and_reclaim_dead_ones(tmp_path):
    d = str(tmp_path / "leases")
    first = userns.acquire(base=100000, size=65536, lease_dir=d)
    second = userns.acquire(base=100000, size=65536, lease_dir=d)
    assert (first.start, second.start) == (100000, 165536)
    # A lease whose owner has died (a pid with another start time) is free.
    with open(os.path.join(d, "231072"), "w") as f:
        f.write(f"65536 {os.getpid()} 1\n")
    third = userns.acquire(base=100000, size=65536, lease_dir=d)
    assert third.start == 231072
    first.release()
    assert userns.acquire(base=100000, size=65536, lease_dir=d).start == 100000
    with open(os.path.join(d, "165536")) as f:
        assert f.read().split(" ", 1)[1].strip() == owner_token()


def test_fallback_private_copy(pycontain, rootfs, tmp_path):
    """Without idmapped mounts: a chowned private copy, removed at exit."""
    vol = tmp_path / "vol"
    vol.mkdir()
    vol.chmod(0o777)
    before = leftovers()
    env = dict(os.environ, PYCONTAIN_USERNS_IDMAP="0")
    out = pycontain.run("--trace", "--userns=auto", "-v", f"{vol}:/vol", rootfs, "/bin/sh",
                        "-c", "stat -c '%u:%g' /bin/busybox; touch /vol/f; "
                        "cat /proc/self/uid_map", env=env)
    assert out.returncode == 0, out.stderr
    assert "no idmapped mount" in out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "0:0"
    assert (vol / "f").stat().st_uid == _map(lines[1])[1]
    assert leftovers() == before
    assert (rootfs / "bin" / "busybox").stat().st_uid == 0  # the original is untouched


def test_escape_attempts_still_fail_under_userns(pycontain, rootfs, probe_dir):
    out = pycontain.run("--userns=auto", "-v", f"{probe_dir}:/mnt:ro", rootfs, "/mnt/probe",
                        "--dev", "254:0", "mount_tmpfs", "mount_cgroup_v1", "bind_mount",
                        "proc_sys_writable", "core_pattern_w", "sys_writable",
                        "host_disk_read", "proc_keys", "timer_list", "sys_firmware",
                        "ptrace_init", "open_by_handle", "net_admin", "plain_read")
    assert out.returncode == 0, out.stderr
    results, status = parse_probe(out.stdout)
    assert results.pop("plain_read") == "ok"
    assert all(r != "ok" for r in results.values()), results
    assert int(status["CapEff"], 16) & (1 << 21) == 0  # no CAP_SYS_ADMIN, even in the ns


def test_foreign_rootfs_emulation_shares_the_user_namespace(pycontain):
    arm = BUILD_ROOTFS / "arm64"
    if not (arm / "bin" / "busybox").exists():
        pytest.skip("no arm64 rootfs in build/rootfs (rootfs-scripts/busybox.sh arm64)")
    probe = pycontain.run(arm, "uname", "-m")
    if probe.returncode != 0:
        pytest.skip(f"arm64 emulation does not work here: {probe.stderr.strip()}")
    out = pycontain.run("--userns=auto", arm, "/bin/sh", "-c",
                        "uname -m; cat /proc/self/uid_map; stat -c %u /bin/busybox")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "aarch64"
    # One user namespace: ours (the range), not sandbox emulation's identity map.
    assert _map(lines[1])[1] >= userns.DEFAULT_BASE
    assert lines[2] == "0"


def test_no_mount_or_lease_is_left_behind(pycontain, rootfs):
    def leases() -> set[str]:
        return {n for n in os.listdir(userns.LEASE_DIR) if n.isdigit()}

    with open("/proc/self/mountinfo") as f:
        before = f.read()
    held = leases() if os.path.isdir(userns.LEASE_DIR) else set()
    out = pycontain.run("--userns=auto", rootfs, "true")
    assert out.returncode == 0, out.stderr
    with open("/proc/self/mountinfo") as f:
        assert f.read() == before
    assert leases() <= held


def test_detached_container_keeps_its_range(pycontain, rootfs):
    """run -d: the lease passes to the container's init; exec joins its namespace."""
    name = f"userns-{os.getpid()}"
    out = pycontain.run("-d", "--name", name, "--userns=auto", rootfs, "sleep", "30")
    try:
        assert out.returncode == 0, out.stderr
        inside = pycontain("exec", name, "cat", "/proc/self/uid_map")
        assert inside.returncode == 0, inside.stderr
        start = _map(inside.stdout)[1]
        assert start >= userns.DEFAULT_BASE
        with open(os.path.join(userns.LEASE_DIR, str(start))) as f:
            owner_pid = int(f.read().split()[1])
        with open(f"/proc/{owner_pid}/comm") as f:
            assert f.read().strip() == "pycontain-init"
    finally:
        pycontain("rm", "-f", name)
