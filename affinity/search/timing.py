"""Where a trial's seconds go: the phases of a trial, a clock that splits a trial's wall time
among them, and the shares a search's summary prints.

A worker's loop over one trial runs, in order:

- ``ask``: the study's ask lock, reaping dead workers' trials, ``study.ask``;
- ``sample``: the sampler's proposal, the configuration and its hash, the duplicate lookup
  (with several workers, the wait while another one trains the same configuration);
- ``build``: the model, its weights seeded;
- ``flops``: fvcore's count and the parameters, the budget constraints;
- ``train``: the optimiser steps (of every training seed);
- ``eval``: the val split's evaluation after every epoch (inside training; its seconds come
  from the training loop's own clock, ``TrainMetrics.eval_s``);
- ``latency``: the CPU latency at batch 1;
- ``tell``: writing the results to the storage (all but the last write: the seconds
  themselves and the trial's state);
- ``leaderboard``: rewriting ``leaderboard.csv`` and the front, done after the trial is told,
  so its seconds are recorded on the worker's *next* trial (0 on a worker's first trial, and
  in spawned workers, whose leaderboard the parent process writes while they train).

A trial records them in one user attribute, ``time_s`` (phase -> seconds: one storage write,
not nine), and the leaderboard shows them as ``time_<phase>`` columns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ATTR",
    "COLUMNS",
    "PHASES",
    "PhaseClock",
    "phase_shares",
    "phases_hooked",
    "row_times",
    "shares_line",
]

#: the timed phases of a trial, in the order they run (see the module docstring)
PHASES = ("ask", "sample", "build", "flops", "train", "eval", "latency", "tell", "leaderboard")
#: the leaderboard's columns of phase seconds
COLUMNS = tuple(f"time_{p}" for p in PHASES)
#: the user attribute that holds a trial's ``{phase: seconds}``
ATTR = "time_s"


class PhaseClock:
    """Splits wall time among phases: ``start(name)`` ends the running phase and starts
    ``name`` (starting the running one again continues it); ``stop()`` ends it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._phase: str | None = None
        self._since = 0.0

    def start(self, phase: str) -> None:
        if phase == self._phase:
            return
        self.stop()
        self._phase, self._since = phase, time.perf_counter()

    def stop(self) -> None:
        if self._phase is not None:
            self.add(self._phase, time.perf_counter() - self._since)
        self._phase = None

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def move(self, source: str, target: str, seconds: float) -> None:
        """Count ``seconds`` spent in ``source`` (the running phase included) as ``target``'s
        (the evaluation inside training)."""
        if self._phase is not None:  # what the running phase has spent so far
            now = time.perf_counter()
            self.add(self._phase, now - self._since)
            self._since = now
        seconds = min(seconds, self.seconds.get(source, 0.0))
        self.add(source, -seconds)
        self.add(target, seconds)

    def record(self) -> dict[str, float]:
        """The seconds per phase, every phase present (0.0 where it did not run)."""
        return {p: round(self.seconds.get(p, 0.0), 6) for p in PHASES}


def phases_hooked() -> tuple[str, ...]:
    """The phases a worker's ``on_phase`` hook is called at: all but ``eval``, which runs
    inside training, between its epochs."""
    return tuple(p for p in PHASES if p != "eval")


def row_times(attrs: Mapping[str, Any]) -> dict[str, float | None]:
    """A trial's ``time_<phase>`` leaderboard cells from its user attributes (None when it
    recorded none: a running trial, or one from before phases were timed)."""
    times = attrs.get(ATTR)
    if not isinstance(times, dict):
        return dict.fromkeys(COLUMNS)
    return {f"time_{p}": times.get(p) for p in PHASES}


def phase_shares(board: pd.DataFrame) -> dict[str, float]:
    """Each phase's share of the seconds the board's timed trials spent, largest first."""
    cols = [c for c in COLUMNS if c in board.columns]
    totals = board[cols].sum(skipna=True)
    whole = float(totals.sum())
    if whole <= 0:
        return {}
    shares = {c.removeprefix("time_"): float(totals[c]) / whole for c in cols}
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def shares_line(board: pd.DataFrame) -> str | None:
    """``time per trial (mean 4.1 s over 12 trials): train 61%, flops 14%, ...``; None when
    no trial was timed."""
    cols = [c for c in COLUMNS if c in board.columns]
    timed = board[cols].notna().any(axis=1)
    shares = phase_shares(board[timed])
    if not shares:
        return None
    mean = float(board.loc[timed, cols].sum(axis=1).mean())
    parts = ", ".join(f"{p} {100 * s:.0f}%" for p, s in shares.items() if round(100 * s) > 0)
    return f"time per trial (mean {mean:.2f} s over {int(timed.sum())} trials): {parts}"
