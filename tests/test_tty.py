"""-t: a pty created inside the container, raw mode, window size passed through."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import time

from pchelpers import pycontain_cmd, requires_root

pytestmark = requires_root


def test_tty_inside_and_window_size(rootfs):
    pid, master = pty.fork()
    if pid == 0:  # the child: our "terminal user" running pycontain -t
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        cmd = pycontain_cmd()
        os.execv(cmd[0], [*cmd, "run", "-t", str(rootfs), "/bin/sh", "-c",
                          "tty; stty size; test -t 0 && echo stdin-is-a-tty"])
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "/dev/pts/0" in text
    assert "33 111" in text
    assert "stdin-is-a-tty" in text
