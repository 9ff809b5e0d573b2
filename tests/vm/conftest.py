"""Fixtures for the tests that run INSIDE the test VM (vm/testvm.py test).

These tests need what the development host cannot give: a pure cgroup2
hierarchy at /sys/fs/cgroup with the memory, cpu, pids, cpuset and io
controllers.  The VM's stage-2 init (vm/guest_init.sh) leaves
/run/pycontain-vm/ behind as proof that we are in the guest.

On the host these tests are marked `vm` and skipped with a reason:
tests/test_vm.py boots the VM and runs them there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vmguest import GUEST_MARK, PycontainRun, in_guest, remove_cgroup

CGROUP_ROOT = Path("/sys/fs/cgroup")
REQUIRED_CONTROLLERS = ("memory", "cpu", "pids", "cpuset", "io")
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the in-guest tests `vm`; on the host, also skip them, saying why.

    With the mark, a host run with `-m 'not vm'` leaves them out entirely.
    """
    skip = pytest.mark.skip(reason="runs only inside the test VM: vm/testvm.py test "
                                   "(tests/test_vm.py does that)")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.vm)
            if not in_guest():
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def cgroup2_root() -> Path:
    """The guest's cgroup2 root, with every controller these tests need.

    Fails (rather than skips) when the guest is not what the VM promises:
    that is a broken VM, not a missing feature.
    """
    if not in_guest():
        pytest.skip("runs only inside the test VM")
    with open("/proc/self/mountinfo") as info:
        fstypes = {fields[4]: line.split(" - ")[1].split()[0]
                   for line in info for fields in [line.split()]}
    assert fstypes.get(str(CGROUP_ROOT)) == "cgroup2", (
        f"{CGROUP_ROOT} is not a cgroup2 mount (found {fstypes.get(str(CGROUP_ROOT))!r})")
    available = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
    missing = [c for c in REQUIRED_CONTROLLERS if c not in available]
    assert not missing, f"cgroup2 root lacks controllers {missing}; it has {available}"
    enabled = (CGROUP_ROOT / "cgroup.subtree_control").read_text().split()
    not_enabled = [c for c in REQUIRED_CONTROLLERS if c not in enabled]
    assert not not_enabled, (
        f"controllers {not_enabled} are not enabled in {CGROUP_ROOT}/cgroup.subtree_control "
        f"(vm/guest_init.sh enables them); enabled: {enabled}")
    return CGROUP_ROOT


@pytest.fixture
def make_cgroup(cgroup2_root: Path) -> Iterator[Callable[[str], Path]]:
    """Factory for child cgroups of the root, removed after the test."""
    made: list[Path] = []

    def make(name: str) -> Path:
        path = cgroup2_root / f"pycontain-test-{name}-{os.getpid()}"
        path.mkdir()
        made.append(path)
        return path

    yield make
    for path in reversed(made):
        remove_cgroup(path)


@pytest.fixture(scope="session")
def scratch_disk() -> tuple[str, Path]:
    """(device, mountpoint) of the VM's second virtio disk, ext4 at /mnt/scratch."""
    device = (GUEST_MARK / "scratch-disk").read_text().strip()
    mountpoint = Path("/mnt/scratch")
    assert os.path.ismount(mountpoint), f"the scratch disk {device} is not mounted at {mountpoint}"
    return device, mountpoint


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal rootfs for pycontain containers: Debian's static busybox.

    The guest has busybox-static installed; the host-built rootfs under
    /src/build is not used, so the guest tests need nothing from the host.
    """
    root = tmp_path_factory.mktemp("busybox-rootfs")
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is not installed in the VM image"
    for sub in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "scratch"):
        (root / sub).mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


@pytest.fixture
def pycontain_run() -> PycontainRun:
    return PycontainRun()

