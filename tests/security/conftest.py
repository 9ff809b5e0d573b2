"""Fixtures for the escape battery: a static probe binary, built at test time.

The probe (probe.c) is compiled with ``gcc -static`` into a temporary
directory and bind-mounted read-only into the container, so it needs
nothing from the rootfs (busybox has no keyctl, ptrace or mount syscall
tools precise enough to tell EPERM from EROFS).  crun's tests use a small
static ``init`` helper the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory (mode 0755, path traversable by anyone) holding ``probe``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is missing: apt-get install gcc libc6-dev (the probe is built "
                    "static at test time)")
    out = tmp_path_factory.mktemp("probe")
    exe = out / "probe"
    res = subprocess.run([gcc, "-static", "-O1", "-Wall", "-o", str(exe), str(HERE / "probe.c")],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        if "cannot find -lc" in res.stderr:
            pytest.skip("no static libc to build the probe: apt-get install libc6-dev")
        raise AssertionError(f"building the probe failed:\n{res.stderr}")
    os.chmod(out, 0o755)
    return out
