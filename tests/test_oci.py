"""The OCI runtime CLI and docker-style detached containers, driven for real."""

from __future__ import annotations

import json
import os
import time

from pchelpers import leftovers, one_line_error, requires_root

pytestmark = requires_root


def _detached(pycontain, *args):
    """create and run -d leave the container holding our stdout (as with
    runc): do not wait for EOF on a pipe, send its output to a file."""
    import subprocess
    import tempfile

    with tempfile.TemporaryFile("w+") as err:
        out = subprocess.run([*pycontain.cmd, *map(str, args)], stdout=subprocess.DEVNULL,
                             stderr=err, text=True, timeout=60, check=False)
        err.seek(0)
        out.stderr = err.read()
    return out


def _config(bundle, args, **process):
    path = bundle / "config.json"
    spec = json.loads(path.read_text())
    spec["process"]["args"] = args
    spec["process"]["terminal"] = False
    spec["process"].update(process)
    path.write_text(json.dumps(spec))


def _state(pycontain, cid):
    out = pycontain("state", cid)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _wait_status(pycontain, cid, status, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(pycontain, cid)["status"] == status:
            return True
        time.sleep(0.02)
    return False


def test_spec_writes_a_valid_config(bundle):
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["ociVersion"].startswith("1.")
    assert spec["root"]["path"] == "rootfs"
    assert {"type": "pid"} in spec["linux"]["namespaces"]


def test_create_start_state_kill_delete(pycontain, bundle, tmp_path):
    _config(bundle, ["/bin/sh", "-c", "echo out > /tmp/started; sleep 30"])
    pid_file = tmp_path / "pid"
    out = _detached(pycontain, "create", "--bundle", bundle, "--pid-file", pid_file, "c-life")
    assert out.returncode == 0, out.stderr
    st = _state(pycontain, "c-life")
    assert st["status"] == "created"
    assert st["pid"] == int(pid_file.read_text())
    assert st["bundle"] == str(bundle)
    assert not (bundle / "rootfs" / "tmp" / "started").exists()  # not started yet
    assert pycontain("start", "c-life").returncode == 0
    assert _wait_status(pycontain, "c-life", "running")
    deadline = time.monotonic() + 5
    while not (bundle / "rootfs" / "tmp" / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (bundle / "rootfs" / "tmp" / "started").exists()
    # A second start is refused; delete without --force too.
    assert pycontain("start", "c-life").returncode != 0
    assert pycontain("delete", "c-life").returncode != 0
    assert pycontain("kill", "c-life", "TERM").returncode == 0
    assert _wait_status(pycontain, "c-life", "stopped")
    assert pycontain("delete", "c-life").returncode == 0
    assert pycontain("state", "c-life").returncode != 0
    assert leftovers() == []


def test_kill_takes_names_and_numbers_and_delete_force(pycontain, bundle):
    _config(bundle, ["sleep", "30"])
    assert _detached(pycontain, "run", "--bundle", bundle, "-d", "c-kill").returncode == 0
    assert _wait_status(pycontain, "c-kill", "running")
    assert pycontain("kill", "c-kill", "SIGUSR1").returncode == 0  # sleep dies of it
    assert _wait_status(pycontain, "c-kill", "stopped")
    assert pycontain("delete", "c-kill").returncode == 0
    assert _detached(pycontain, "run", "--bundle", bundle, "-d", "c-kill2").returncode == 0
    assert pycontain("kill", "c-kill2", "9").returncode == 0
    assert _wait_status(pycontain, "c-kill2", "stopped")
    assert pycontain("delete", "--force", "c-kill2").returncode == 0
    assert _detached(pycontain, "run", "--bundle", bundle, "-d", "c-kill3").returncode == 0
    assert pycontain("delete", "--force", "c-kill3").returncode == 0
    assert leftovers() == []


def test_oci_run_foreground_returns_the_status(pycontain, bundle):
    _config(bundle, ["/bin/sh", "-c", "echo hi; exit 3"])
    out = pycontain("run", "--bundle", bundle, "c-fg")
    assert out.returncode == 3
    assert out.stdout == "hi\n"
    assert leftovers() == []


def test_pause_resume_list_ps_exec(pycontain, bundle):
    _config(bundle, ["sleep", "30"])
    assert _detached(pycontain, "run", "--bundle", bundle, "-d", "c-misc").returncode == 0
    try:
        assert _wait_status(pycontain, "c-misc", "running")
        listed = json.loads(pycontain("list", "--format", "json").stdout)
        assert any(c["id"] == "c-misc" for c in listed)
        pids = json.loads(pycontain("ps", "--format", "json", "c-misc").stdout)
        assert len(pids) >= 2  # init and sleep
        assert pycontain("pause", "c-misc").returncode == 0
        assert _state(pycontain, "c-misc")["status"] == "paused"
        assert pycontain("resume", "c-misc").returncode == 0
        assert _state(pycontain, "c-misc")["status"] == "running"
        out = pycontain("exec", "c-misc", "/bin/sh", "-c", "echo $$; hostname; cat /proc/1/comm")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        assert int(lines[0]) > 2  # a new process in the container's PID namespace
        assert lines[2] == "pycontain-init"
        out = pycontain("exec", "c-misc", "sh", "-c", "exit 7")
        assert out.returncode == 7
    finally:
        pycontain("delete", "--force", "c-misc")
    assert leftovers() == []


def test_unsupported_config_field_is_named(pycontain, bundle):
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["rlimitsX"] = []
    (bundle / "config.json").write_text(json.dumps(spec))
    out = _detached(pycontain, "create", "--bundle", bundle, "c-bad")
    assert out.returncode != 0
    assert "process.rlimitsX" in one_line_error(out)
    assert leftovers() == []


def test_log_format_json_records_errors(pycontain, tmp_path):
    log = tmp_path / "log.json"
    out = pycontain("--log", log, "--log-format", "json", "state", "no-such-container")
    assert out.returncode != 0
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "no-such-container" in entry["msg"]


def test_docker_style_detached_lifecycle(pycontain, rootfs):
    name = "pc-test-web"
    pycontain("rm", "-f", name)
    script = "echo hello-log; trap 'echo got-term; exit 5' TERM; while true; do sleep 0.1; done"
    out = pycontain.run("-d", "--name", name, rootfs, "/bin/sh", "-c", script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == name
    try:
        ps = json.loads(pycontain("ps", "--json").stdout)
        assert any(c["id"] == name and c["status"] == "Up" for c in ps)
        ex = pycontain("exec", name, "hostname")
        assert ex.returncode == 0, ex.stderr
        assert pycontain("rm", name).returncode != 0  # running: refused
        assert pycontain("stop", name).returncode == 0
        ps = json.loads(pycontain("ps", "-a", "--json").stdout)
        assert any(c["id"] == name and c["status"] == "Exited (5)" for c in ps)
        logs = pycontain("logs", name).stdout
        assert "hello-log" in logs and "got-term" in logs
    finally:
        assert pycontain("rm", "-f", name).returncode == 0
    assert leftovers() == []
    assert not os.path.exists(f"/run/pycontain/logs/{name}.log")


def test_named_foreground_container_is_listed_and_enterable(pycontain, rootfs):
    import subprocess

    proc = subprocess.Popen([*pycontain.cmd, "run", "--name", "pc-fg", rootfs, "sleep", "3"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ps = json.loads(pycontain("ps", "--json").stdout)
            if any(c["id"] == "pc-fg" and c["status"] == "Up" for c in ps):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("pc-fg never showed up in pycontain ps")
        out = pycontain("exec", "pc-fg", "hostname")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "pc-fg" or out.stdout.strip()
        dup = pycontain.run("--name", "pc-fg", rootfs, "/bin/true")
        assert dup.returncode == 125 and "already exists" in dup.stderr
    finally:
        assert proc.wait(timeout=30) == 0
    assert leftovers() == []


def test_detached_host_mode_emulation_leaves_no_binfmt_entry(pycontain):
    from pchelpers import busybox_rootfs

    def entries() -> list[str]:
        d = "/proc/sys/fs/binfmt_misc"
        return sorted(n for n in os.listdir(d) if n.startswith("pycontain-")) \
            if os.path.exists(f"{d}/register") else []

    before = entries()
    out = pycontain.run("-d", "--name", "pc-emu-d", "--emulation", "host",
                        busybox_rootfs("arm64"), "sleep", "1")
    assert out.returncode == 0, out.stderr
    try:
        assert "pycontain-aarch64" in entries()  # held by the container's init
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ps = json.loads(pycontain("ps", "-a", "--json").stdout)
            if any(c["id"] == "pc-emu-d" and c["status"].startswith("Exited") for c in ps):
                break
            time.sleep(0.05)
    finally:
        assert pycontain("rm", "-f", "pc-emu-d").returncode == 0
    assert entries() == before
    assert leftovers() == []


def test_detached_bridge_is_refused_in_one_line(pycontain, rootfs):
    out = pycontain.run("-d", "--network", "bridge", rootfs, "sleep", "1")
    assert out.returncode == 125
    assert "not supported" in one_line_error(out)
    assert leftovers() == []
