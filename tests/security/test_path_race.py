"""A rootfs that changes between planning and setup cannot redirect a mount.

pycontain resolves every path inside the rootfs when it plans (Python), and
the C shim walks each one again at setup time, one component at a time with
O_NOFOLLOW, acting on the resulting file descriptor.  Here the rootfs is
changed in between, the way a second container sharing a directory rootfs
could: a directory on the path becomes a symlink out of the rootfs.
"""

from __future__ import annotations

import subprocess
import sys

from pchelpers import REPO, host_mounts, leftovers, requires_root

pytestmark = requires_root

RACE = """
import os, sys
from pycontain import container
real = container.build_plan
def racing(spec, opts, **kw):
    plan = real(spec, opts, **kw)
    os.rmdir({srv!r})               # planned as a directory ...
    os.symlink({decoy!r}, {srv!r})  # ... now a symlink out of the rootfs
    return plan
container.build_plan = racing
from pycontain.cli import main
sys.exit(main(["run", "-v", {src!r} + ":/srv/vol", {root!r}, "/bin/true"]))
"""


def test_symlink_swapped_in_after_planning_is_refused(rootfs_copy, tmp_path):
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (rootfs_copy / "srv").mkdir(exist_ok=True)
    mounts = host_mounts()
    code = RACE.format(srv=str(rootfs_copy / "srv"), decoy=str(decoy), src=str(src),
                       root=str(rootfs_copy))
    python = str(REPO / ".venv" / "bin" / "python")
    out = subprocess.run([python if __import__("os").path.exists(python) else sys.executable,
                          "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 125, out.stderr
    assert "too many levels of symbolic links" in out.stderr, out.stderr
    assert list(decoy.iterdir()) == [], "setup wrote through the swapped-in symlink"
    assert host_mounts() == mounts
    assert leftovers() == []
