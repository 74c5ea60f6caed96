"""What a training run returns: per-epoch records and the run's metrics (JSON-ready)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from affinity.train.state import TrainState

__all__ = ["EpochRecord", "TrainMetrics"]


@dataclass
class EpochRecord:
    """One epoch of training: its mean train loss and the val accuracy after it."""

    epoch: int
    train_loss: float
    val_acc: float
    val_loss: float
    lr: float
    steps: int
    wall_s: float


@dataclass
class TrainMetrics:
    """What ``train`` returns.

    Attributes:
        val_acc: accuracy on the val split after the last epoch, a fraction in [0, 1].
        best_val_acc: the best val accuracy seen after any epoch.
        val_loss: cross-entropy (without smoothing) on the val split after the last epoch.
        train_loss: mean train loss (with smoothing) over the last epoch.
        epochs_run: epochs completed (the last may be partial under a step budget).
        steps: optimiser steps taken.
        wall_s: seconds spent in ``train`` (evaluation included).
        eval_s: the part of them spent evaluating the val split (in this call: a resumed run
            counts from where it resumed).
        device: where it ran.
        history: one record per epoch.
        interrupted: the run was stopped before its budget was spent (``should_stop``); the
            figures are those at the stop (val accuracy measured there).
        state: where an interrupted run stands, for ``train(..., resume=state)`` (not part
            of ``to_dict``).
    """

    val_acc: float
    best_val_acc: float
    val_loss: float
    train_loss: float
    epochs_run: int
    steps: int
    wall_s: float
    device: str
    history: list[EpochRecord] = field(default_factory=list)
    eval_s: float = 0.0
    interrupted: bool = False
    state: TrainState | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (history as a list of dicts; without ``state``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state"}
        return {**out, "history": [asdict(h) for h in self.history]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainMetrics:
        """Inverse of ``to_dict``."""
        hist = [EpochRecord(**h) for h in data.get("history", [])]
        return cls(**{**data, "history": hist})
