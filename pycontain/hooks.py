"""OCI lifecycle hooks (runtime-spec ``config.md#posix-platform-hooks``).

Each hook is ``{"path", "args", "env", "timeout"}``: pycontain execs
``path`` with ``args`` as its argv (``args[0]`` is argv[0], as with
execv), ``env`` as its environment, and the container's state JSON on its
stdin.  When they run, and where:

=================  ==========================================  =============
hook               when                                        namespaces
=================  ==========================================  =============
prestart           after the namespaces exist, before setup    the runtime's
createRuntime      (same moment; prestart is its old name)     the runtime's
createContainer    after createRuntime, before pivot_root      the container's mount ns
startContainer     at ``start``, before the command's execve   the container's
poststart          after ``start`` released the command        the runtime's
poststop           after ``delete`` removed the container      the runtime's
=================  ==========================================  =============

A failing hook before the command runs fails the create (or start); a
failing poststart or poststop hook is only a warning, as the spec says.
"""

from __future__ import annotations

import os
import sys
import time

from .errors import PycontainError

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer",
         "poststart", "poststop")
#: Hooks run inside the container's namespaces, entered with setns().
IN_CONTAINER = {"createContainer": ("mnt",),
                "startContainer": ("ipc", "uts", "net", "pid", "mnt")}
WARN_ONLY = {"poststart", "poststop"}


def validate(hooks: dict) -> None:
    for kind, entries in hooks.items():
        if kind not in KINDS:
            raise PycontainError(f"config.json: hooks.{kind} is not a hook pycontain knows")
        for i, h in enumerate(entries or []):
            if not isinstance(h, dict) or not str(h.get("path", "")).startswith("/"):
                raise PycontainError(f"config.json: hooks.{kind}[{i}].path must be absolute")
            extra = set(h) - {"path", "args", "env", "timeout"}
            if extra:
                raise PycontainError(f"config.json: hooks.{kind}[{i}].{min(extra)} "
                                     "is not supported by pycontain")
            if "timeout" in h and (not isinstance(h["timeout"], int) or h["timeout"] <= 0):
                raise PycontainError(f"config.json: hooks.{kind}[{i}].timeout must be > 0")


def run(spec: dict, kind: str, state: dict, *, pid: int = 0) -> None:
    """Run every hook of ``kind``; ``pid`` is the container's init (for
    the hooks that run in its namespaces)."""
    import json

    hooks = (spec.get("hooks") or {}).get(kind) or []
    payload = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        try:
            _run_one(hook, payload, IN_CONTAINER.get(kind, ()), pid)
        except PycontainError as e:
            message = f"hook {kind}[{i}] ({hook['path']}): {e.message}"
            if kind in WARN_ONLY:
                sys.stderr.write(f"pycontain: warning: {message}\n")
            else:
                raise PycontainError(message) from None


def _run_one(hook: dict, payload: bytes, namespaces: tuple[str, ...], pid: int) -> None:
    ns_fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
              for ns in namespaces] if pid else []
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(w)
            os.dup2(r, 0)
            if ns_fds:
                from . import shim

                for fd in ns_fds:
                    shim.setns(fd)
            args = hook.get("args") or [hook["path"]]
            env = dict(e.split("=", 1) for e in hook.get("env", []) if "=" in e)
            os.execve(hook["path"], args, env)
        except BaseException as e:  # noqa: BLE001 - report and leave the fork
            os.write(2, f"pycontain: hook {hook['path']}: {e}\n".encode())
        os._exit(127)
    os.close(r)
    for fd in ns_fds:
        os.close(fd)
    try:
        os.write(w, payload)
    except BrokenPipeError:
        pass
    os.close(w)
    deadline = time.monotonic() + hook["timeout"] if "timeout" in hook else None
    while True:
        done, status = os.waitpid(child, os.WNOHANG if deadline else 0)
        if done:
            break
        if time.monotonic() > deadline:  # type: ignore[operator]
            os.kill(child, 9)
            os.waitpid(child, 0)
            raise PycontainError(f"timed out after {hook['timeout']} s")
        time.sleep(0.01)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise PycontainError(f"exited with status {code}")
