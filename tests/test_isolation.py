"""What a container shares with the host (the kernel) and what it does not."""

from __future__ import annotations

import os
import socket
import subprocess
import tarfile

import pytest
from pchelpers import leftovers, requires_root

pytestmark = requires_root

NS = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


def test_command_runs_under_a_pid1_of_its_own(pycontain, rootfs):
    out = pycontain.run(rootfs, "/bin/sh", "-c",
                        "echo $$; cat /proc/1/comm; ps -o pid,comm")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    # The command is PID 2: PID 1 is pycontain's init, which reaps and forwards.
    assert lines[0] == "2"
    assert lines[1] == "pycontain-init"
    pids = [int(line.split()[0]) for line in lines[3:] if line.strip()]
    # ps sees only the container: init, sh, ps.  None of the host's processes.
    assert 1 in pids and 2 in pids
    assert len(pids) <= 4, out.stdout
    assert os.getpid() not in pids or os.getpid() < 10


def test_uname_r_is_the_hosts_kernel(pycontain, rootfs):
    out = pycontain.run(rootfs, "uname", "-r")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == os.uname().release


def test_hostname_change_is_invisible_on_the_host(pycontain, rootfs):
    before = socket.gethostname()
    # Changing the hostname needs CAP_SYS_ADMIN, which a default container
    # does not have (as in docker); grant it for this test.
    out = pycontain.run("--cap-add", "SYS_ADMIN", rootfs, "/bin/sh", "-c",
                        "hostname changed-inside && hostname")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "changed-inside"
    assert socket.gethostname() == before


def test_hostname_option_and_etc_hostname(pycontain, rootfs):
    out = pycontain.run("--hostname", "box1", rootfs, "/bin/sh", "-c",
                        "hostname; cat /etc/hostname; echo $HOSTNAME")
    assert out.stdout.split() == ["box1", "box1", "box1"], out


def test_every_namespace_differs_from_the_hosts(pycontain, rootfs):
    script = "; ".join(f"stat -L -c '{ns} %i' /proc/self/ns/{ns}" for ns in NS)
    out = pycontain.run(rootfs, "/bin/sh", "-c", script)
    assert out.returncode == 0, out.stderr
    inside = dict(line.split() for line in out.stdout.splitlines())
    for ns in NS:
        host = os.stat(f"/proc/self/ns/{ns}").st_ino
        assert int(inside[ns]) != host, f"{ns} namespace is the host's"


def test_network_none_has_only_lo_up(pycontain, rootfs):
    out = pycontain.run(rootfs, "/bin/sh", "-c", "ls /sys/class/net; ip -o link show lo")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "lo"
    assert "UP" in lines[1]


def test_network_host_shares_the_hosts_namespace(pycontain, rootfs):
    out = pycontain.run("--network", "host", rootfs, "stat", "-L", "-c", "%i",
                        "/proc/self/ns/net")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == os.stat("/proc/self/ns/net").st_ino


def test_host_mounts_are_invisible_and_old_root_unreachable(pycontain, rootfs, tmp_path):
    marker = tmp_path / "host-only-marker"
    marker.write_text("host")
    out = pycontain.run(rootfs, "/bin/sh", "-c",
                        "cut -d' ' -f5 /proc/self/mountinfo; echo ---; "
                        f"test -e {marker} && echo marker-visible; "
                        "ls -a /")
    assert out.returncode == 0, out.stderr
    mounts, rest = out.stdout.split("---\n")
    allowed = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
               "/sys/fs/cgroup", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    # The host's device nodes, each bind-mounted (see rootfs.dev_steps).
    allowed |= {f"/dev/{d}" for d in ("null", "zero", "full", "random", "urandom", "tty")}
    # Masked and read-only kernel paths are mounts too (see security.py).
    from pycontain.security import MASKED_PATHS, READONLY_PATHS

    allowed |= set(MASKED_PATHS) | set(READONLY_PATHS)
    assert set(mounts.split()) <= allowed, mounts
    assert "marker-visible" not in rest
    # The root is the rootfs: the host's root is gone from this namespace.
    assert set(rest.split()) - {".", ".."} == set(os.listdir(rootfs))


def test_directory_rootfs_is_used_in_place(pycontain, rootfs_copy):
    out = pycontain.run(rootfs_copy, "/bin/sh", "-c", "echo kept > /written-inside")
    assert out.returncode == 0, out.stderr
    assert (rootfs_copy / "written-inside").read_text() == "kept\n"


def test_read_only_rootfs(pycontain, rootfs_copy):
    out = pycontain.run("--read-only", rootfs_copy, "/bin/sh", "-c",
                        "touch /nope; echo rc=$?; touch /dev/shm/ok && echo shm-ok")
    assert "rc=1" in out.stdout, out
    assert "shm-ok" in out.stdout
    assert not (rootfs_copy / "nope").exists()


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"),
                                         (".tar.xz", "w:xz")])
def test_tarball_rootfs_writes_do_not_survive(pycontain, rootfs, tmp_path, suffix, mode):
    archive = tmp_path / f"rootfs{suffix}"
    with tarfile.open(archive, mode) as tar:
        tar.add(rootfs, arcname=".")
    first = pycontain.run(archive, "/bin/sh", "-c", "echo x > /inside; cat /inside")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "x\n"
    second = pycontain.run(archive, "/bin/sh", "-c", "test -e /inside; echo $?")
    assert second.stdout == "1\n", second
    assert leftovers() == []


def test_tar_zst_rootfs(pycontain, rootfs, tmp_path):
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(rootfs, arcname=".")
    subprocess.run(["zstd", "-q", "--rm", str(tar)], check=True)
    out = pycontain.run(tmp_path / "rootfs.tar.zst", "/bin/echo", "zst ok")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "zst ok\n"


def test_no_pivot_fallback_still_isolates(pycontain, rootfs):
    out = pycontain.run("--no-pivot", rootfs, "/bin/sh", "-c", "echo $$; ls /bin/busybox")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "2"
