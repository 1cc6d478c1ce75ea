"""The warm standby of a `cmd:` target: a spare process started ahead of the next restart."""

from __future__ import annotations

from .base import TargetError
from .process import Child, StderrTail


class WarmStandby:
    """After the first restart, a spare process is kept started ahead (idle on its stdin, its
    start-up done meanwhile), so a later restart costs one hello exchange rather than a process
    start. A target whose spare cannot answer hello while the running one lives (it holds a
    resource only one process may) is restarted without a spare from then on (`standby` False).

    For CommandTarget, before RestartPolicy in its bases: it starts a process with `_spawn`,
    makes one the running target with `_begin` and kills the running one with `_kill`.
    """

    standby = True
    _spare: tuple[Child, StderrTail] | None = None  # started ahead, hello not yet asked

    def _restart(self) -> None:
        """After a fault: the spare, if one is ready, else a new process; then a new spare."""
        spare, self._spare = self._spare, None
        if spare is None:
            self.start()
        else:
            self._kill()
            self._stderr = spare[1]
            try:
                self._begin(spare[0])
            except TargetError:
                # Started while the last process lived, the spare could not work: start one the
                # usual way now that none runs (an error of its own counts as a failed restart).
                self.standby = False
                self.start()
        self.failed_restarts = 0
        if self.standby:
            tail = StderrTail()
            try:
                self._spare = (self._spawn(tail), tail)
            except TargetError:
                self._spare = None

    def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare[0].kill()

    def _ensure_started(self) -> None:
        try:
            super()._ensure_started()
        except TargetError:
            self._drop_spare()  # given up: no process of ours is left behind
            raise
