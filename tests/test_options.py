"""docker-style run options, observed from inside the container."""

from __future__ import annotations

from pchelpers import requires_root

pytestmark = requires_root


def test_env_defaults_and_overrides(pycontain, rootfs):
    out = pycontain.run("-e", "FOO=bar", "-e", "PATH=/bin:/usr/bin", rootfs, "/bin/sh", "-c",
                        "echo $FOO; echo $PATH; echo $HOME")
    assert out.stdout.split("\n")[:3] == ["bar", "/bin:/usr/bin", "/root"]


def test_workdir_is_created_and_used(pycontain, rootfs_copy):
    out = pycontain.run("-w", "/srv/app", rootfs_copy, "pwd")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "/srv/app\n"


def test_user_by_name_and_by_number(pycontain, rootfs):
    out = pycontain.run("-u", "nobody", rootfs, "/bin/sh", "-c", "id -u; id -g")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["65534", "65534"]
    out = pycontain.run("-u", "1234:4321", rootfs, "/bin/sh", "-c", "id -u; id -g")
    assert out.stdout.split() == ["1234", "4321"]


def test_unknown_user_is_an_error(pycontain, rootfs):
    out = pycontain.run("-u", "no-such-user", rootfs, "/bin/true")
    assert out.returncode == 125
    assert "no-such-user" in out.stderr


def test_volumes_rw_and_ro(pycontain, rootfs, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "in.txt").write_text("from host\n")
    out = pycontain.run("-v", f"{src}:/data", rootfs, "/bin/sh", "-c",
                        "cat /data/in.txt; echo from container > /data/out.txt")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "from host\n"
    assert (src / "out.txt").read_text() == "from container\n"
    out = pycontain.run("-v", f"{src}:/data:ro", rootfs, "/bin/sh", "-c",
                        "touch /data/x 2>/dev/null; echo $?")
    assert out.stdout == "1\n"
    assert not (src / "x").exists()


def test_bundled_short_flags(pycontain, rootfs):
    out = pycontain.run("-i", "-eA=1", rootfs, "/bin/sh", "-c", "echo $A; cat", input="in\n")
    assert out.stdout == "1\nin\n"


def test_dry_run_prints_the_plan(pycontain, rootfs):
    out = pycontain.run("--dry-run", rootfs, "/bin/true")
    assert out.returncode == 0, out.stderr
    assert "pivot_root" in out.stdout
    assert "CLONE_NEWPID" in out.stdout
    assert "'proc'" in out.stdout


def test_trace_goes_to_stderr_and_shows_the_steps(pycontain, rootfs):
    out = pycontain.run("--trace", rootfs, "/bin/echo", "clean")
    assert out.stdout == "clean\n"
    for needle in ("clone3(", "CLONE_NEWNS", "mount('proc'", "pivot_root", "execve('/bin/echo'",
                   "capset(", "seccomp: keyctl -> EPERM", "SECCOMP_SET_MODE_FILTER"):
        assert needle in out.stderr, needle


def test_a_volume_can_provide_the_command(pycontain, rootfs_copy, tmp_path):
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho from-the-volume\n")
    tool.chmod(0o755)
    # Twice: the first run leaves an empty bind target at /opt/tool in the
    # rootfs (as docker does); that file must not be mistaken for the command.
    for _ in range(2):
        out = pycontain.run("-v", f"{tool}:/opt/tool:ro", rootfs_copy, "/opt/tool")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "from-the-volume\n"
