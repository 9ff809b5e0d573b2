"""Fixtures for the host test suite; the helpers themselves live in pchelpers.py
(a module name of its own, so that tests/vm/conftest.py cannot shadow it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pchelpers import Runner, busybox_rootfs, host_debian_arch


@pytest.fixture(scope="session")
def rootfs() -> Path:
    return busybox_rootfs(host_debian_arch())


@pytest.fixture
def rootfs_copy(rootfs: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the busybox rootfs (symlinks kept)."""
    dest = tmp_path / "rootfs"
    shutil.copytree(rootfs, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def pycontain() -> Runner:
    return Runner()



@pytest.fixture
def bundle(rootfs: Path, tmp_path: Path, pycontain: Runner) -> Path:
    """An OCI bundle: a copy of the busybox rootfs and `pycontain spec`'s config.json."""
    b = tmp_path / "bundle"
    b.mkdir()
    shutil.copytree(rootfs, b / "rootfs", symlinks=True)
    out = pycontain("spec", "--bundle", b)
    assert out.returncode == 0, out.stderr
    return b
