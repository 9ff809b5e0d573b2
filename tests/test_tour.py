"""docs/tour.md runs: every command in it exits the way the tour says.

The format the tour follows (stated in the tour itself): commands are the
lines starting with ``$ `` inside fenced blocks opened with ```` ```sh ````;
the other lines of such a block are example output.  A trailing
``# exit N`` declares the status the command is meant to end with (the
deliberate failures, e.g. ``--emulation=off``); without it, 0.

Each command runs as the reader would run it: in bash, from the repository
root, minus its leading ``sudo`` (the suite already runs as root), with
``pipefail`` so that a failing pycontain is not hidden behind a ``| grep``.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from pchelpers import REPO, busybox_rootfs, requires_root

TOUR = REPO / "docs" / "tour.md"

_EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")


class TourCommand:
    __slots__ = ("command", "expected", "line")

    def __init__(self, line: int, command: str, expected: int) -> None:
        self.line = line
        self.command = command
        self.expected = expected

    def __repr__(self) -> str:
        return f"tour.md:{self.line}: {self.command}"


def extract(text: str) -> list[TourCommand]:
    """Every ``$ `` command of the ```sh blocks, with its expected status."""
    found: list[TourCommand] = []
    in_sh = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_sh = not in_sh and stripped[3:].strip() == "sh"
            continue
        if not in_sh or not line.startswith("$ "):
            continue
        command = line[2:].strip()
        expected = 0
        m = _EXIT.search(command)
        if m:
            expected = int(m.group(1))
            command = command[: m.start()].rstrip()
        command = command.removeprefix("sudo ")
        found.append(TourCommand(number, command, expected))
    return found


COMMANDS = extract(TOUR.read_text())


def test_the_tour_has_commands() -> None:
    """The extraction itself: a tour whose fences changed would test nothing."""
    assert len(COMMANDS) >= 15
    assert any(c.expected == 126 and "--emulation=off" in c.command for c in COMMANDS)
    assert any("bench-emulation" in c.command for c in COMMANDS)
    assert not any(c.command.startswith("sudo") for c in COMMANDS)


def test_extract_format() -> None:
    text = ("```sh\n$ sudo echo a  # exit 3\noutput\n$ true\n```\n"
            "```text\n$ not-a-command\n```\n$ outside\n```sh\n$ false # exit 1\n```\n")
    got = [(c.command, c.expected) for c in extract(text)]
    assert got == [("echo a", 3), ("true", 0), ("false", 1)]


@pytest.fixture(scope="module")
def rootfs_ready() -> None:
    busybox_rootfs("amd64")
    busybox_rootfs("arm64")


@requires_root
@pytest.mark.skipif(os.uname().machine != "x86_64",
                    reason="the tour's commands name build/rootfs/amd64 as native and arm64 "
                    "as foreign, which holds on x86_64 hosts only")
@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"line{c.line}" for c in COMMANDS])
def test_tour_command(cmd: TourCommand, rootfs_ready: None) -> None:
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd.command], cwd=REPO,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                         check=False)
    assert "internal error" not in res.stderr, res.stderr
    assert res.returncode == cmd.expected, (
        f"{cmd!r} exited {res.returncode}, the tour says {cmd.expected}\n"
        f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}")
