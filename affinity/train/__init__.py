"""Training: ``train(model, data, TrainConfig(...))`` and the checkpoint format.

The package splits on its seams: ``config`` (the settings, each declared once with its
default, rule and meaning), ``loop`` (the trainer and evaluation), ``metrics`` (what a run
returns), ``checkpoint`` (the file ``affinity train`` writes). The public names are
re-exported here and import their module on first use, so reading ``TrainConfig``'s
declaration (``affinity train --help``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from affinity import lazy_attributes

if TYPE_CHECKING:
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

#: public name -> the module defining it
_HOME = {
    "CHECKPOINT_FORMAT": "checkpoint",
    "CHECKPOINT_VERSION": "checkpoint",
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "TrainConfig": "config",
    "check_fits": "loop",
    "evaluate": "loop",
    "lr_at": "loop",
    "param_groups": "loop",
    "train": "loop",
    "EpochRecord": "metrics",
    "TrainMetrics": "metrics",
}

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


__getattr__ = lazy_attributes(__name__, _HOME)
