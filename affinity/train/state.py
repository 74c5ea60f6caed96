"""Where an interrupted training run stands, so that resuming it gives the same numbers.

A run stopped between two optimiser steps is continued bit for bit on the CPU when the
weights, the optimiser and grad-scaler states, the position in the schedule, the epoch's
batch order, the partial epoch loss and every random stream (the trainer's generator, torch's
global one for dropout / drop-path, CUDA's, numpy's and Python's) are restored. ``TrainState``
holds all of that but the weights (the checkpoint holds those) as plain data and tensors, so
that ``torch.load(weights_only=True)`` reads it back.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["TrainState", "capture_rng", "restore_rng"]


@dataclass
class TrainState:
    """A training run between two steps.

    Attributes:
        epoch: the epoch to continue (1-based).
        batch: batches of that epoch already trained (0: the epoch has not started and its
            batch order is drawn on resume).
        step: optimiser steps taken in all.
        total_steps: the run's step budget (a resume with another budget is refused).
        order: the epoch's batch order (None when ``batch`` is 0).
        loss_sum: the epoch's summed train loss so far.
        best: the best val accuracy after an epoch so far.
        history: the finished epochs (``EpochRecord`` as dicts).
        elapsed_s: seconds trained before the interruption.
        optimizer: the optimiser's ``state_dict``.
        scaler: the grad scaler's ``state_dict``.
        rng: every random stream's state (``capture_rng``).
    """

    epoch: int
    batch: int
    step: int
    total_steps: int
    order: Tensor | None
    loss_sum: Tensor
    best: float
    history: list[dict[str, Any]]
    elapsed_s: float
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data and tensors (what the checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """Inverse of ``to_dict``."""
        return cls(**data)


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """The state of the trainer's ``generator`` and of torch's, CUDA's, numpy's and Python's
    global random streams."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "python": [version, list(mt), gauss_next],
    }


def restore_rng(generator: torch.Generator, rng: dict[str, Any]) -> None:
    """Put back what ``capture_rng`` took."""
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, mt, gauss_next = rng["python"]
    random.setstate((version, tuple(mt), gauss_next))
