"""Foreign-architecture entrypoints: decide, and arrange QEMU via binfmt_misc.

(Being wired up: detection lives in entrypoint.py/elf.py/arch.py, the
binfmt_misc rules in binfmt.py.)
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import plan as p
    from .container import RunOptions, Tracer


class Emulation:
    """What running a foreign entrypoint adds to the plan."""

    __slots__ = ("_release", "gid_map", "notes", "setup_steps", "uid_map")

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.setup_steps: list[p.Step] = []
        self.uid_map: str | None = None
        self.gid_map: str | None = None
        self._release = None

    def release(self, tracer: Tracer) -> None:
        if self._release is not None:
            self._release(tracer)
            self._release = None


def detect(spec: dict, opts: RunOptions, tracer: Tracer) -> Emulation | None:
    return None
