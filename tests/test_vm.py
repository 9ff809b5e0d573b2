"""Boot the test VM and run the in-guest suite (tests/vm) there.

This host has hybrid cgroups, where cgroup v2 limits cannot be set, so the
limits are proven in a QEMU VM with Debian 12's kernel (vm/testvm.py).  The
first run builds the VM image (about a minute and a half, then cached in
.cache/vm/); each run boots it (a few seconds) and runs pytest inside.

It never skips: if QEMU cannot be installed, the image cannot be built or
the VM cannot boot, ``testvm.py`` says why in one line and this test fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTVM = REPO / "vm" / "testvm.py"


@pytest.mark.vm
def test_in_vm_suite_passes(tmp_path: Path) -> None:
    # testvm.py has its own timeouts (build steps, --timeout for the boot);
    # this one only guards against a wedged host process.
    proc = subprocess.run([sys.executable, str(TESTVM), "test", "--results", str(tmp_path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=2400, check=False)
    output = proc.stdout + proc.stderr
    tail = "\n".join(output.splitlines()[-60:])
    assert proc.returncode == 0, f"vm/testvm.py test exited {proc.returncode}:\n{tail}"
    summary = re.search(r"guest pytest: (.*) \(exit 0\)", proc.stderr)
    assert summary, f"no pytest result line from the guest:\n{tail}"
    assert re.search(r"\b\d+ passed\b", summary.group(1)), summary.group(1)
    assert (tmp_path / "vm-junit.xml").is_file(), "the guest wrote no JUnit report to /results"
