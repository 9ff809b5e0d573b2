"""podman drives pycontain as its OCI runtime (podman 4.3 + conmon 2.1).

Everything podman needs lives in a temporary directory: its storage (vfs
driver, --root/--runroot), its containers.conf (CONTAINERS_CONF) and the
image, imported from the busybox rootfs: there is no registry to pull from.

The containers.conf settings, and why:

* cgroupfs manager and file events: this machine has no systemd;
* ``netns = "none"``: a new, empty network namespace (only lo), so no
  bridge or firewall is touched;
* ``pids_limit = 0``: podman takes this hybrid host for cgroup v1 and asks
  for its default pids limit (2048); pycontain's containers live in cgroup
  v2, which has no pids controller here, and pycontain refuses a limit it
  cannot apply rather than ignore it;
* ``default_ulimits``: podman's defaults (nofile and nproc 1048576) are
  above this process's hard limits, and raising a hard limit needs
  CAP_SYS_RESOURCE, which this machine does not give; pycontain says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOTFS = ROOT / "build" / "rootfs" / "amd64"
PYCONTAIN = ROOT / ".venv" / "bin" / "pycontain"
IMAGE = "localhost/pcbusybox"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="podman drives a root runtime: needs root"),
    pytest.mark.skipif(shutil.which("podman") is None or shutil.which("conmon") is None,
                       reason="podman and conmon are not installed (apt-get install podman "
                              "conmon)"),
    pytest.mark.skipif(not (ROOTFS / "bin" / "busybox").exists(),
                       reason="no busybox rootfs: run 'make rootfs'"),
    pytest.mark.skipif(not PYCONTAIN.exists(), reason="pycontain is not installed: make setup"),
]

CONTAINERS_CONF = """\
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"

[containers]
netns = "none"
pids_limit = 0
default_ulimits = ["nofile=1024:4096", "nproc=4096:8192"]
"""


class Podman:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(base / "storage.conf"))
        self.prefix = ["podman", "--root", str(base / "graph"), "--runroot",
                       str(base / "runroot"), "--tmpdir", str(base / "tmp"),
                       "--storage-driver", "vfs", "--cgroup-manager=cgroupfs",
                       "--events-backend=file", "--runtime", str(PYCONTAIN)]

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 60,
                 check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.prefix, *args], env=self.env, input=input,
                           capture_output=True, timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {r.returncode}: "
                                 f"{r.stderr.decode(errors='replace')}")
        return r

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess:
        return self("run", "--rm", *args, **kw)  # type: ignore[arg-type]


def _unmount_under(path: Path) -> None:
    """podman mounts a tmpfs for each container's /dev/shm under its storage."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted(points, key=len, reverse=True):
        if point.startswith(str(path) + "/"):
            subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("podman")
    (base / "tmp").mkdir()
    (base / "containers.conf").write_text(CONTAINERS_CONF)
    (base / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{base}/runroot"\ngraphroot = "{base}/graph"\n')
    pm = Podman(base)
    tar = subprocess.Popen(["tar", "-C", str(ROOTFS), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    imported = subprocess.run([*pm.prefix, "import", "-", IMAGE], env=pm.env, stdin=tar.stdout,
                              capture_output=True, timeout=120, check=False)
    tar.stdout.close()
    tar.wait()
    assert imported.returncode == 0, imported.stderr.decode()
    try:
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time", "0")
        pm("rmi", "--all", "--force")
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        # Empty groups left by podman (v1, conmon's) and by cgroupsPath (v2).
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for group in ("libpod_parent/conmon", "libpod_parent"):
                try:
                    os.rmdir(hierarchy / group)
                except OSError:
                    pass


def _out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode(errors="replace")


def _err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode(errors="replace")


def test_echo_and_exit_code(podman: Podman) -> None:
    r = podman.run(IMAGE, "sh", "-c", "echo hi; exit 3")
    assert r.returncode == 3, _err(r)
    assert _out(r) == "hi\n"


def test_env_workdir_and_user(podman: Podman) -> None:
    r = podman.run("-e", "FOO=bar", "-w", "/etc", "--user", "1000:1001", IMAGE,
                   "sh", "-c", 'echo "$FOO"; pwd; id -u; id -g; grep CapEff /proc/self/status')
    assert r.returncode == 0, _err(r)
    lines = _out(r).splitlines()
    assert lines[:4] == ["bar", "/etc", "1000", "1001"]
    # podman gives a non-root user no effective capabilities.
    assert lines[4].split() == ["CapEff:", "0000000000000000"]


def test_tty(podman: Podman) -> None:
    r = podman.run("-t", IMAGE, "sh", "-c", "tty; test -t 0 && test -t 1 && echo both",
                   input=b"")
    assert r.returncode == 0, _err(r)
    # A terminal turns \n into \r\n: the output came through the pty.
    lines = _out(r).split("\r\n")
    assert lines[0].startswith("/dev/pts/"), _out(r)
    assert lines[1] == "both"


def test_read_only(podman: Podman) -> None:
    r = podman.run("--read-only", IMAGE, "sh", "-c",
                   "touch /x 2>/dev/null; echo root=$?; touch /tmp/y; echo tmp=$?; "
                   "grep ' / ' /proc/mounts")
    assert r.returncode == 0, _err(r)
    lines = _out(r).splitlines()
    assert lines[:2] == ["root=1", "tmp=0"]  # podman puts a tmpfs on /tmp
    assert "ro" in lines[2].split()[3].split(",")


def test_detach_then_stop(podman: Podman) -> None:
    r = podman("run", "-d", "--name", "pc-detached", IMAGE, "sh", "-c",
               'trap "exit 7" TERM; echo started; while :; do sleep 0.1; done', check=True)
    cid = _out(r).strip()
    try:
        deadline = time.monotonic() + 10
        while "started" not in _out(podman("logs", cid)):
            assert time.monotonic() < deadline, "the container never started"
            time.sleep(0.05)
        state = json.loads(_out(podman("inspect", cid)))[0]["State"]
        assert state["Status"] == "running"
        # The pid podman knows is the container's init, a real process.
        assert Path(f"/proc/{state['Pid']}").exists()
        t0 = time.monotonic()
        podman("stop", "--time", "20", cid, check=True)
        # SIGTERM reached the trap: no waiting for the 20 s SIGKILL.
        assert time.monotonic() - t0 < 10
        state = json.loads(_out(podman("inspect", cid)))[0]["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 7)
    finally:
        podman("rm", "--force", "--time", "0", cid)


def _oci_exec_routed() -> bool:
    """Whether `pycontain exec` takes the OCI form conmon uses (--pid-file,
    --process) rather than only docker's flags."""
    r = subprocess.run([str(PYCONTAIN), "exec", "--pid-file", "/nonexistent/p", "--process",
                        "/nonexistent/j", "--detach", "no-such-container"],
                       capture_output=True, timeout=30, check=False)
    return b"unknown option" not in r.stderr


def test_exec(podman: Podman) -> None:
    if not _oci_exec_routed():
        pytest.skip("pycontain's CLI sends 'exec' to the docker-style parser, which refuses "
                    "conmon's --pid-file/--process (lifecycle.cmd_exec must pass them to "
                    "oci.cmd_exec)")
    cid = _out(podman("run", "-d", IMAGE, "sleep", "1000", check=True)).strip()
    try:
        r = podman("exec", cid, "sh", "-c", "echo in; cat /proc/1/comm; exit 5")
        assert r.returncode == 5, _err(r)
        assert _out(r).splitlines() == ["in", "pycontain-init"]
        r = podman("exec", "-e", "X=1", "-w", "/etc", "--user", "1000", cid,
                   "sh", "-c", 'echo "$X"; pwd; id -u; grep Seccomp: /proc/self/status')
        assert r.returncode == 0, _err(r)
        assert _out(r).split() == ["1", "/etc", "1000", "Seccomp:", "2"]
    finally:
        podman("rm", "--force", "--time", "0", cid)


def test_seccomp_profile_is_loaded(podman: Podman) -> None:
    r = podman.run(IMAGE, "grep", "Seccomp:", "/proc/self/status")
    assert _out(r).split() == ["Seccomp:", "2"], _err(r)
    r = podman.run("--security-opt", "seccomp=unconfined", IMAGE,
                   "grep", "Seccomp:", "/proc/self/status")
    assert _out(r).split() == ["Seccomp:", "0"], _err(r)


def test_rlimits_umask_oom_score_and_sysctl(podman: Podman) -> None:
    r = podman.run("--ulimit", "nofile=512:1024", "--ulimit", "nproc=100:200",
                   "--umask", "0077", "--oom-score-adj", "100",
                   "--sysctl", "kernel.shmmax=12345678", IMAGE, "sh", "-c",
                   "ulimit -n; ulimit -Hn; ulimit -u; umask; cat /proc/self/oom_score_adj "
                   "/proc/sys/kernel/shmmax")
    assert r.returncode == 0, _err(r)
    assert _out(r).split() == ["512", "1024", "100", "0077", "100", "12345678"]


def test_joins_a_network_namespace_by_path(podman: Podman) -> None:
    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is not installed")
    name = f"pctest{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        path = f"/run/netns/{name}"
        r = podman.run("--network", f"ns:{path}", IMAGE, "readlink", "/proc/self/ns/net")
        assert r.returncode == 0, _err(r)
        assert _out(r).strip() == f"net:[{os.stat(path).st_ino}]"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_device_rules_are_refused_by_name(podman: Podman) -> None:
    r = podman.run("--device", "/dev/null:/dev/xnull", IMAGE, "true")
    assert r.returncode != 0
    assert "linux.devices" in _err(r)


# --- the pieces, without podman --------------------------------------------


def test_device_cgroup_accepts_only_deny_all() -> None:
    from pycontain.errors import PycontainError
    from pycontain.spec import _check_devices

    _check_devices([{"allow": False, "access": "rwm"}])  # podman's
    _check_devices([{"allow": False, "access": "rwm"},  # containerd's: the default nodes
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 136, "access": "rwm"}])
    with pytest.raises(PycontainError, match="allow c 10:200 rwm"):
        _check_devices([{"allow": False, "access": "rwm"},
                        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}])
    with pytest.raises(PycontainError, match="deny c 1:3 rwm"):
        _check_devices([{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])


def test_oci_seccomp_refuses_what_it_cannot_mean() -> None:
    from pycontain.errors import PycontainError
    from pycontain.security import _SECCOMP_ARCHES, oci_seccomp_rules

    arches = sorted(_SECCOMP_ARCHES[os.uname().machine])
    with pytest.raises(PycontainError, match="SCMP_ACT_KILL"):
        oci_seccomp_rules({"defaultAction": "SCMP_ACT_KILL", "architectures": arches})
    with pytest.raises(PycontainError, match="architectures"):
        oci_seccomp_rules({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches[:1]})
    with pytest.raises(PycontainError, match="listenerPath"):
        oci_seccomp_rules({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"})


def test_oci_seccomp_profile_in_the_kernel() -> None:
    """A profile compiled from runtime-spec JSON does what it says: errnoRet
    per rule, and argument conditions (loaded in a forked child)."""
    from pycontain._shim import lib

    from pycontain import seccomp
    from pycontain.security import _SECCOMP_ARCHES, oci_seccomp_rules

    rules, default = oci_seccomp_rules({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": sorted(_SECCOMP_ARCHES[os.uname().machine]),
        "syscalls": [
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 43,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ]})
    prog = seccomp.compile_filter(rules, default, cache_dir=None)
    getpgid = lib.pc_seccomp_syscall_number(b"getpgid")
    getpriority = lib.pc_seccomp_syscall_number(b"getpriority")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            lib.pc_set_no_new_privs()
            seccomp.load(prog)
            got = [lib.pc_raw_syscall(getpgid, 0, 0, 0, 0, 0, 0),
                   lib.pc_raw_syscall(getpriority, 1, 0, 0, 0, 0, 0),
                   lib.pc_raw_syscall(getpriority, 0, 0, 0, 0, 0, 0)]
            os.write(w, json.dumps(got).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        got = json.loads(f.read() or "null")
    os.waitpid(pid, 0)
    assert got is not None
    assert got[0] == -42
    assert got[1] == -43
    assert got[2] >= 0  # getpriority(PRIO_PROCESS, 0): the condition does not hold


# --- containerd (1.6) through its runc shim ----------------------------------

CONTAINERD_CONF = """\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
"""


@pytest.fixture(scope="module")
def ctr(podman: Podman, tmp_path_factory: pytest.TempPathFactory):
    """A private containerd, and a ctr function that talks to it; the
    image is podman's, saved as an OCI archive."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd is not installed (apt-get install containerd)")
    base = tmp_path_factory.mktemp("ctrd")
    (base / "config.toml").write_text(CONTAINERD_CONF.format(base=base))
    with open(base / "log", "wb") as log:  # the daemon keeps its own copy of the fd
        daemon = subprocess.Popen(["containerd", "--config", str(base / "config.toml")],
                                  stdout=log, stderr=log)
    prefix = ["ctr", "--address", str(base / "containerd.sock"), "-n", "pycontain-test"]

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, timeout=timeout,
                              check=False)

    try:
        deadline = time.monotonic() + 20
        while run("version").returncode != 0:
            assert daemon.poll() is None, (base / "log").read_text()
            assert time.monotonic() < deadline, "containerd did not come up"
            time.sleep(0.1)
        podman("save", "--format", "oci-archive", "-o", str(base / "image.tar"), IMAGE,
               check=True)
        r = run("images", "import", "--base-name", IMAGE, str(base / "image.tar"))
        assert r.returncode == 0, _err(r)
        yield run
    finally:
        for task in _out(run("task", "ls", "-q")).split():
            run("task", "kill", "-s", "9", task)
            run("task", "rm", "-f", task)
        for c in _out(run("containers", "ls", "-q")).split():
            run("containers", "rm", c)
        daemon.terminate()
        daemon.wait(timeout=20)
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        try:
            os.rmdir("/sys/fs/cgroup/unified/pycontain-test")  # cgroupsPath /<ns>/<id>
        except OSError:
            pass
        # The shim's --root for our namespace: pycontain's state directory.
        shutil.rmtree("/run/containerd/runc/pycontain-test", ignore_errors=True)


def test_containerd_run_echo_and_exit_code(ctr) -> None:
    r = ctr("run", "--rm", "--runc-binary", str(PYCONTAIN), IMAGE + ":latest", "c-echo",
            "sh", "-c", "echo hi; exit 3")
    assert r.returncode == 3, _err(r)
    assert _out(r) == "hi\n"


def test_containerd_detach_exec_and_kill(ctr) -> None:
    r = ctr("run", "-d", "--runc-binary", str(PYCONTAIN), IMAGE + ":latest", "c-det",
            "sleep", "1000")
    assert r.returncode == 0, _err(r)
    try:
        if _oci_exec_routed():
            r = ctr("task", "exec", "--exec-id", "e1", "c-det", "sh", "-c",
                    "cat /proc/1/comm; exit 4")
            assert r.returncode == 4, _err(r)
            assert _out(r) == "pycontain-init\n"
        r = ctr("task", "kill", "c-det")
        assert r.returncode == 0, _err(r)
        deadline = time.monotonic() + 10
        while "STOPPED" not in _out(ctr("task", "ls")):
            assert time.monotonic() < deadline, "SIGTERM did not stop the task"
            time.sleep(0.05)
    finally:
        ctr("task", "rm", "-f", "c-det")
        ctr("containers", "rm", "c-det")
