"""Training: ``train(model, data, TrainConfig(...))`` and the checkpoint format.

The package splits on its seams: ``config`` (what to train with), ``loop`` (the trainer and
evaluation), ``metrics`` (what a run returns), ``checkpoint`` (the file ``affinity train``
writes). The public names are re-exported here; import them from ``affinity.train``.
"""

from __future__ import annotations

from affinity.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from affinity.train.config import TrainConfig
from affinity.train.loop import check_fits, evaluate, lr_at, param_groups, train
from affinity.train.metrics import EpochRecord, TrainMetrics

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "EpochRecord",
    "TrainConfig",
    "TrainMetrics",
    "check_fits",
    "evaluate",
    "load_checkpoint",
    "lr_at",
    "param_groups",
    "save_checkpoint",
    "train",
]
