"""`pycontain explain`: the host's kernel, and namespaces that differ."""

from __future__ import annotations

import json
import os

from pchelpers import busybox_rootfs, requires_root

pytestmark = requires_root


def test_explain_json_shows_shared_kernel_and_separate_namespaces(pycontain, rootfs):
    out = pycontain("explain", rootfs, "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["host"]["release"] == os.uname().release
    assert d["container"]["release"] == os.uname().release
    assert d["kernel_shared"] is True
    for ns in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
        assert d["namespaces"][ns]["shared"] is False, ns
        assert d["namespaces"][ns]["host"] == os.stat(f"/proc/self/ns/{ns}").st_ino


def test_explain_text_has_the_closing_paragraph(pycontain, rootfs):
    out = pycontain("explain", rootfs)
    assert out.returncode == 0, out.stderr
    assert os.uname().release in out.stdout
    assert "What is shared" in out.stdout and "What is isolated" in out.stdout


def test_explain_foreign_rootfs_names_the_emulator(pycontain):
    out = pycontain("explain", busybox_rootfs("arm64"), "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["container"]["machine"] == "aarch64"
    assert d["host"]["machine"] == os.uname().machine
    assert d["emulation"]["needed"] is True
