"""The Vagrantfile parses and its provider settings are valid.

`vagrant up` cannot run here (no box downloads, no usable KVM), but
`vagrant validate` works offline: it loads the Vagrantfile, every machine in
it, and, with the vagrant-libvirt plugin, checks each libvirt setting by name.
VirtualBox settings are only checked where VirtualBox is installed, which is
not a Debian package, so that provider is validated with --ignore-provider.

Vagrant is installed with apt when missing; if that fails, the test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MACHINES = ("debian12", "ubuntu2404", "debian12-arm64")


@pytest.fixture(scope="module")
def vagrant() -> str:
    if shutil.which("vagrant") is None or not Path("/usr/share/doc/vagrant-libvirt").exists():
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600",
             "--no-install-recommends", "vagrant", "vagrant-libvirt"],
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, check=False)
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        assert proc.returncode == 0, f"apt-get install vagrant vagrant-libvirt failed: {last}"
    exe = shutil.which("vagrant")
    assert exe, "vagrant is not on PATH after apt-get install vagrant"
    return exe


def validate(vagrant: str, tmp_path: Path, *args: str,
             provider: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VAGRANT_CWD=str(REPO),
               # Keep Vagrant's per-project state out of the working tree.
               VAGRANT_DOTFILE_PATH=str(tmp_path / "dotvagrant"),
               VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_NO_COLOR="1")
    if provider:
        env["VAGRANT_DEFAULT_PROVIDER"] = provider
    return subprocess.run([vagrant, "validate", *args], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)


def test_vagrantfile_validates_without_provider_settings(vagrant: str, tmp_path: Path) -> None:
    proc = validate(vagrant, tmp_path, "--ignore-provider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for machine in MACHINES:
        assert f"{machine}: Ignoring provider config" in proc.stdout, proc.stdout
    assert "validated successfully" in proc.stdout


def test_vagrantfile_libvirt_settings_are_valid(vagrant: str, tmp_path: Path) -> None:
    proc = validate(vagrant, tmp_path, provider="libvirt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
