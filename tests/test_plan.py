"""The plan as data: no root needed, no kernel claims made."""

from __future__ import annotations

from pycontain import plan as p
from pycontain.cli import parse_run
from pycontain.container import RunOptions, build_plan
from pycontain.rootfs import parse_options
from pycontain.spec import default_spec


def test_op_numbers_match_the_c_shim():
    from pycontain._shim import lib

    for name in ("MOUNT", "REMOUNT", "MKDIR", "MKFILE", "MKNOD", "SYMLINK", "SETHOSTNAME",
                 "PIVOT_ROOT", "MOVE_ROOT", "UNSHARE", "LOOPBACK_UP", "WRITE_FILE", "CHDIR",
                 "SETGROUPS", "SETGID", "SETUID", "UMOUNT", "SETSID_CTTY", "NO_NEW_PRIVS",
                 "CONSOLE", "MASK", "READONLY", "CAPBSET", "CAPSET", "SECCOMP",
                 "WAIT_START", "SETNS", "ATTACH_TREE", "UMASK"):
        assert getattr(p, name) == getattr(lib, f"PC_OP_{name}"), name


def test_mount_options_become_flags_and_data():
    flags, data = parse_options(["nosuid", "noexec", "mode=755", "ro", "size=1m"])
    assert flags == p.MS_NOSUID | p.MS_NOEXEC | p.MS_RDONLY
    assert data == "mode=755,size=1m"


def test_plan_order_private_bind_mounts_pivot(tmp_path):
    (tmp_path / "etc").mkdir()
    spec = default_spec(str(tmp_path), ["/bin/true"])
    plan = build_plan(spec, RunOptions(), etc_files={"/etc/hostname": "/x/hostname"})
    kinds = [s.kind for s in plan.setup]
    assert kinds.index(p.MOUNT) < kinds.index(p.PIVOT_ROOT)
    assert kinds[-1] == p.PIVOT_ROOT
    first_mount = next(s for s in plan.setup if s.kind == p.MOUNT)
    assert first_mount.flags == p.MS_REC | p.MS_PRIVATE and first_mount.b == "/"
    text = "\n".join(plan.lines())
    assert "CLONE_NEWPID" in text and "unshare(CLONE_NEWCGROUP)" in text


def test_symlinked_proc_in_rootfs_stays_inside(tmp_path):
    (tmp_path / "proc").symlink_to("/etc")
    spec = default_spec(str(tmp_path), ["/bin/true"])
    plan = build_plan(spec, RunOptions(), etc_files={})
    proc = next(s for s in plan.setup if s.kind == p.MOUNT and s.c == "proc")
    assert proc.b == str(tmp_path / "etc")  # the rootfs's /etc, never the host's


def test_parse_run_stops_at_rootfs():
    opts, rest = parse_run(["-it", "-e", "A=1", "--name=x", "/r", "sh", "-c", "-e"])
    assert opts["tty"] and opts["interactive"] and opts["env"] == ["A=1"]
    assert opts["name"] == "x"
    assert rest == ["/r", "sh", "-c", "-e"]


def test_propagation_options_become_a_second_mount_call(tmp_path):
    spec = default_spec(str(tmp_path), ["/bin/true"])
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(tmp_path),
                           "options": ["rbind", "rslave"]})
    plan = build_plan(spec, RunOptions(), etc_files={})
    steps = [s for s in plan.setup if s.kind == p.MOUNT and s.b == str(tmp_path / "data")]
    assert steps[0].flags == p.MS_BIND | p.MS_REC
    assert steps[1].flags == p.MS_SLAVE | p.MS_REC and steps[1].a is None
    flags, data = parse_options(["rprivate", "nosuid"])
    assert flags == p.MS_NOSUID and data == ""
