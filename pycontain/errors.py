"""Errors as values with context, turned into one readable line at the CLI.

Every failure a user can cause (a missing rootfs, a hostile tarball, a
command that is not found) is raised as a :class:`PycontainError`.  The CLI
catches it at the top, prints ``pycontain: <message>`` on stderr and exits
with the error's code.  Anything else is a bug, and is still printed as one
line (plus a hint to re-run with ``PYCONTAIN_DEBUG=1`` for the traceback).

Exit codes follow docker's conventions.
"""

from __future__ import annotations

#: The runtime itself failed (bad input, a failed mount, a missing QEMU ...).
EXIT_RUNTIME = 125
#: The command exists but cannot be invoked (not executable, exec format error).
EXIT_CANNOT_INVOKE = 126
#: The command was not found inside the container.
EXIT_NOT_FOUND = 127


class PycontainError(Exception):
    """A failure meant for the person at the terminal: one line, with context.

    ``message`` should say what failed, on which path, and why, e.g.
    ``"rootfs /srv/alpine: no such file or directory"``.
    """

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def strerror(errno_value: int) -> str:
    """``os.strerror`` in lower case, the way it reads best after a colon."""
    import os

    text = os.strerror(errno_value)
    return text[:1].lower() + text[1:]
