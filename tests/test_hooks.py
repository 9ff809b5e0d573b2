"""OCI hooks run at their moments, with the state on stdin, in the right namespaces."""

from __future__ import annotations

import json
import os
import subprocess

from pchelpers import leftovers, requires_root

pytestmark = requires_root


def _hook_script(path, log):
    # Records its kind, the state's id and status, and which mount
    # namespace it ran in (the container's, or the host's).
    path.write_text("#!/bin/sh\n"
                    f"read -r state; echo \"$1 $(echo \"$state\" | tr -d ' ' | "
                    "sed -e 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/') "
                    f"$(stat -L -c %i /proc/self/ns/mnt)\" >> {log}\n")
    path.chmod(0o755)


def _configure(bundle, hooks, args):
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = args
    spec["process"]["terminal"] = False
    spec["hooks"] = hooks
    (bundle / "config.json").write_text(json.dumps(spec))


def test_every_hook_runs_in_order(pycontain, bundle, tmp_path):
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    _hook_script(script, log)
    # startContainer runs inside the container: its path is the container's.
    (bundle / "rootfs" / "start-hook").write_text(
        "#!/bin/sh\necho started-in-container > /start-hook-ran\n")
    (bundle / "rootfs" / "start-hook").chmod(0o755)
    hooks = {kind: [{"path": str(script), "args": ["hook.sh", kind]}]
             for kind in ("prestart", "createRuntime", "createContainer", "poststart",
                          "poststop")}
    hooks["startContainer"] = [{"path": "/start-hook"}]
    _configure(bundle, hooks, ["/bin/sh", "-c", "cat /start-hook-ran; exit 4"])
    out = subprocess.run([*pycontain.cmd, "run", "--bundle", str(bundle), "c-hooks"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 4, out.stderr
    assert out.stdout == "started-in-container\n"
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [line[0] for line in lines] == ["prestart", "createRuntime", "createContainer",
                                           "poststart", "poststop"]
    assert all(line[1] == "c-hooks" for line in lines)
    host_mnt = str(os.stat("/proc/self/ns/mnt").st_ino)
    by_kind = {line[0]: line[2] for line in lines}
    assert by_kind["createRuntime"] == host_mnt  # the runtime's namespace
    assert by_kind["createContainer"] != host_mnt  # the container's
    assert leftovers() == []


def test_a_failing_prestart_hook_fails_the_create(pycontain, bundle, tmp_path):
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    _configure(bundle, {"prestart": [{"path": str(failing)}]}, ["/bin/true"])
    with open(tmp_path / "err", "w+") as err:
        out = subprocess.run([*pycontain.cmd, "create", "--bundle", str(bundle), "c-hookfail"],
                             stdout=subprocess.DEVNULL, stderr=err, timeout=60, check=False)
        err.seek(0)
        message = err.read()
    assert out.returncode != 0
    assert "prestart" in message and "status 3" in message, message
    assert pycontain("state", "c-hookfail").returncode != 0
    assert leftovers() == []


def test_unknown_hook_and_timeout_are_checked(pycontain, bundle, tmp_path):
    _configure(bundle, {"preboot": [{"path": "/bin/true"}]}, ["/bin/true"])
    out = pycontain("run", "--bundle", bundle, "c-hookbad")
    assert out.returncode != 0 and "hooks.preboot" in out.stderr
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 10\n")
    slow.chmod(0o755)
    _configure(bundle, {"createRuntime": [{"path": str(slow), "timeout": 1}]}, ["/bin/true"])
    out = pycontain("run", "--bundle", bundle, "c-hookslow")
    assert out.returncode != 0 and "timed out" in out.stderr
    assert leftovers() == []
