"""``-t``: relay between the user's terminal and the container's pty.

The pty itself is created inside the container, from its own devpts
instance (see PC_OP_CONSOLE in csrc/shim.c), and its master end arrives
here over a unix socket, as with runc's ``--console-socket``.  We put our
own terminal in raw mode, so that ^C, ^Z and friends travel to the
container's line discipline instead of acting on pycontain, and copy our
window size to the pty now and on every SIGWINCH.
"""

from __future__ import annotations

import os
import sys

from .errors import PycontainError


def console_channel(console_socket: str | None) -> tuple[int, int]:
    """(our end or -1, the container's end) of the socket the pty master
    travels over: an OCI caller's ``--console-socket``, which then owns the
    terminal, or a socketpair whose other end pycontain relays itself."""
    import socket

    if console_socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(console_socket)
        except OSError as e:
            s.close()
            raise PycontainError(f"--console-socket {console_socket}: "
                                 f"{os.strerror(e.errno or 0).lower()}") from None
        return -1, s.detach()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def accept(sock_fd: int) -> int:
    """Take the pty master the container sent (SCM_RIGHTS), give it our
    window size, and answer, so the command starts with the right size.
    Returns -1 if the container died before sending it (its setup failed:
    the error arrives in its reports)."""
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        _, fds, _, _ = socket.recv_fds(s, 1, 1)
        if not fds:
            return -1
        master = fds[0]
        os.set_inheritable(master, False)
        copy_winsize(master)
        try:
            s.send(b"\x01")
        except OSError:
            pass
        return master
    finally:
        s.close()


def copy_winsize(master: int) -> None:
    import fcntl
    import termios

    for fd in (0, 1):
        try:
            size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        return


class Relay:
    def __init__(self, master: int) -> None:
        self.master = master
        self.saved = None
        self.stdin = sys.stdin.fileno() if sys.stdin else -1
        self.stdout = sys.stdout.fileno()

    def copy_winsize(self) -> None:
        copy_winsize(self.master)

    def raw(self) -> None:
        import termios
        import tty

        if self.stdin >= 0 and os.isatty(self.stdin):
            self.saved = termios.tcgetattr(self.stdin)
            tty.setraw(self.stdin)

    def restore(self) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.stdin, termios.TCSADRAIN, self.saved)
            self.saved = None

    def loop(self, interactive: bool) -> None:
        import select

        watch = [self.master]
        if interactive and self.stdin >= 0:
            watch.append(self.stdin)
        while True:
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:  # pragma: no cover - PEP 475
                continue
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: every slave end is closed
                    data = b""
                if not data:
                    return
                _write_all(self.stdout, data)
            if self.stdin in ready:
                data = os.read(self.stdin, 65536)
                if not data:
                    watch.remove(self.stdin)
                    _write_all(self.master, b"\x04")  # EOF on our side: ^D there
                else:
                    _write_all(self.master, data)

    def finish(self) -> None:
        self.restore()
        try:
            os.close(self.master)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def relay(master: int, interactive: bool = True) -> Relay:
    """Run the relay until the container's terminal closes."""
    import _signal

    r = Relay(master)
    _signal.signal(28, lambda sig, frame: r.copy_winsize())  # SIGWINCH
    r.raw()
    try:
        r.loop(interactive)
    finally:
        r.restore()
    return r
