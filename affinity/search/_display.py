"""The live display of a search: trial n of N, best accuracy, front size, elapsed and
remaining time (rich, on a terminal), and the summary it shows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from affinity._progress import Mode, log_line

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["Display", "Summary", "summarise"]


@dataclass
class Summary:
    """The live state the display shows (updated after each trial and epoch)."""

    target: int
    done_before: int
    done: int = 0
    running: int = 0
    best_acc: float | None = None
    front: int = 0
    duplicates: int = 0
    started: float = field(default_factory=time.monotonic)
    current: str = ""

    def remaining_s(self) -> float | None:
        new = self.done - self.done_before
        if new <= 0:
            return None
        return (time.monotonic() - self.started) / new * max(0, self.target - self.done)


def summarise(study: optuna.Study, summary: Summary, board: pd.DataFrame | None = None) -> None:
    """Update ``summary`` from ``study`` and its leaderboard (built here when not given)."""
    from affinity.search.leaderboard import build_leaderboard
    from affinity.search.study import counted, duplicates

    trials = study.get_trials(deepcopy=False)
    summary.done, summary.running = counted(trials)
    summary.duplicates = duplicates(trials)
    if board is None:
        board = build_leaderboard(study)
    accs = board.loc[board["state"] == "COMPLETE", "val_acc"].dropna()
    summary.best_acc = float(accs.max()) if len(accs) else None
    summary.front = int(((board["pareto_rank"] == 1) & (board["status"] != "duplicate")).sum())


class Display:
    """Trial n of N, best accuracy, front size, elapsed and remaining time: a live line on a
    terminal (``mode="live"``), one timestamped line per finished trial when piped
    (``"lines"``), nothing with --quiet (``"off"``); see ``affinity._progress``."""

    def __init__(self, summary: Summary, name: str, mode: Mode) -> None:
        self.summary = summary
        self.name = name
        self.mode = mode
        self.live: Any = None
        self._logged = summary.done

    def trial_finished(self) -> None:
        """Print the plain line for each trial finished since the last one (``lines`` mode)."""
        s = self.summary
        if self.mode != "lines" or s.done == self._logged:
            return
        self._logged = s.done
        rem = s.remaining_s()
        best = "-" if s.best_acc is None else f"{s.best_acc:.4f}"
        log_line(
            f"{self.name}: {min(s.done, s.target)}/{s.target} trials done · best acc {best} · "
            f"front {s.front} · elapsed {_hms(time.monotonic() - s.started)} · "
            f"remaining {'~' + _hms(rem) if rem is not None else '-'}"
        )

    def __enter__(self) -> Display:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self, console=Console(stderr=True), refresh_per_second=2, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __rich__(self) -> Any:
        from rich.text import Text

        s = self.summary
        elapsed = time.monotonic() - s.started
        rem = s.remaining_s()
        best = "-" if s.best_acc is None else f"{s.best_acc:.4f}"
        text = Text()
        text.append(f"{self.name}: ", style="bold")
        text.append(f"trial {min(s.done + 1, s.target)} of {s.target}")
        text.append(f" · best acc {best} · front {s.front} · duplicates {s.duplicates}")
        text.append(f" · elapsed {_hms(elapsed)}")
        text.append(f" · remaining {'~' + _hms(rem) if rem is not None else '-'}")
        if s.running > 1:
            text.append(f" · {s.running} running")
        if s.current:
            text.append(f"\n  {s.current}", style="dim")
        return text


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
