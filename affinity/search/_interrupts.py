"""Ctrl-C in a worker loop, raised only where the running trial can still be recorded.

A ``KeyboardInterrupt`` raised by Python's default handler can land anywhere, including the
few bytecodes between ``study.ask()`` returning and the ``try`` that would record the trial
as interrupted: that trial then stays RUNNING (issue 16). ``Interrupts`` replaces the
handler while a worker loop runs:

- outside ``held()`` blocks a SIGINT raises ``KeyboardInterrupt`` at once (training stops
  promptly);
- inside ``held()`` (asking, telling: the trial and the storage change together) it is kept
  and raised when the outermost block ends, so the caller always sees a trial that is
  either not asked yet, or asked and assigned, or told;
- once one has been raised, later ones are ignored: the loop is already stopping and is
  recording its trial (a second Ctrl-C must not cut that short).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

__all__ = ["Interrupts"]


class Interrupts:
    """The SIGINT handler of a worker loop (a no-op outside the main thread, where Python
    delivers no signals)."""

    def __init__(self) -> None:
        self.stopping = False  # a KeyboardInterrupt was raised: the loop is winding down
        self._pending = False  # a SIGINT arrived while held, not raised yet
        self._depth = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        if self._depth:
            self._pending = True
            return
        self.stopping = True
        raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        """A block no Ctrl-C cuts: one that arrives inside is raised when the block ends
        normally (when the block raises, ``raise_pending`` raises it later)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        self.raise_pending()

    def raise_pending(self) -> None:
        """Raise the Ctrl-C kept by a ``held()`` block, if any."""
        if self._pending and not self._depth:
            self._pending = False
            self.stopping = True
            raise KeyboardInterrupt
