"""``TrainConfig``: how to train (everything but the model and the data)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from affinity.device import ALLOWED as DEVICE_NAMES
from affinity.device import is_device_name
from affinity.errors import check

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train (everything but the model and the data).

    Attributes:
        epochs: passes over the train split (ignored when ``max_steps`` is set).
        max_steps: optimiser steps in all (a step budget instead of epochs); None: epochs.
        batch_size: images per step.
        lr: peak learning rate of AdamW, reached after the warm-up.
        weight_decay: AdamW's decoupled weight decay (not applied to norms and biases).
        warmup_fraction: share of all steps spent warming up linearly from 0 to ``lr``.
        min_lr_ratio: the cosine decays to ``lr * min_lr_ratio``.
        label_smoothing: cross-entropy label smoothing.
        clip_grad: largest gradient norm; 0 or None disables clipping.
        seed: seeds the batch order, augmentation and any stochastic layer.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        threads: torch CPU threads while training; None leaves torch's setting.
        amp: mixed precision; None means on for CUDA, off on the CPU.
        augment: the dataset's light augmentation (random crop, flips where sensible).
        eval_batch_size: images per forward pass when evaluating.
        deterministic: deterministic algorithms while training (cheap on the CPU).
    """

    epochs: int = 30
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    clip_grad: float | None = 1.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    amp: bool | None = None
    augment: bool = True
    eval_batch_size: int = 1024
    deterministic: bool = True

    def __post_init__(self) -> None:
        check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        check(
            self.max_steps is None or (isinstance(self.max_steps, int) and self.max_steps >= 1),
            "max_steps",
            self.max_steps,
            "None or an integer >= 1",
        )
        check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "batch_size",
            self.batch_size,
            "an integer >= 1",
        )
        check(self.lr > 0 and math.isfinite(self.lr), "lr", self.lr, "a positive finite number")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        check(0 <= self.warmup_fraction < 1, "warmup_fraction", self.warmup_fraction, "0 <= x < 1")
        check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", self.min_lr_ratio, "0 <= x <= 1")
        check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "0 <= x < 1")
        check(
            self.clip_grad is None or self.clip_grad >= 0,
            "clip_grad",
            self.clip_grad,
            "None or a number >= 0",
        )
        check(is_device_name(self.device), "device", self.device, DEVICE_NAMES)
        check(
            self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
            "threads",
            self.threads,
            "None or an integer >= 1",
        )
        check(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, "an integer >= 1")
