"""The trainer: AdamW, linear warm-up then cosine decay per step, label smoothing, gradient
clipping, an epoch or step budget, seeded and deterministic on the CPU, mixed precision on CUDA.

Batches are sliced from the in-memory splits (``affinity.data``), no DataLoader: on two CPU
cores the worker processes and collation would cost more than the small models train.
``on_epoch(epoch, val_acc)`` runs after every epoch; whatever it raises (``optuna.TrialPruned``
for the search) leaves ``train`` unchanged.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from affinity._io import atomic_write
from affinity.data import DatasetSplits, TensorSplit
from affinity.data.augment import random_crop, random_flip
from affinity.device import ALLOWED as DEVICE_NAMES
from affinity.device import is_device_name, resolve_device
from affinity.errors import ConfigError, DataError, check

CHECKPOINT_FORMAT = "affinity-checkpoint"
CHECKPOINT_VERSION = 1


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
        device: where it ran.
        history: one record per epoch.
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (history as a list of dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainMetrics:
        """Inverse of ``to_dict``."""
        hist = [EpochRecord(**h) for h in data.get("history", [])]
        return cls(**{**data, "history": hist})


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate before optimiser step ``step`` (0-based) of ``total``: warm-up, then cosine."""
    warmup = int(total * cfg.warmup_fraction)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels only (not on norms, biases, scalars)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@torch.no_grad()
def evaluate(
    model: nn.Module, split: TensorSplit, *, batch_size: int = 1024, amp_dtype: torch.dtype | None = None
) -> tuple[float, float]:
    """Accuracy (fraction) and mean cross-entropy of ``model`` on ``split``, batched, no grad."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    n = len(split)
    device = split.x.device
    try:
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(n, start + batch_size), device=device)
            x, y = split.batch(index)
            with _autocast(device, amp_dtype):
                logits = model(x)
            logits = logits.float()
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    finally:
        model.train(was_training)
    return correct / max(1, n), loss_sum / max(1, n)


def train(
    model: nn.Module,
    data: DatasetSplits,
    cfg: TrainConfig | None = None,
    *,
    on_epoch: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> TrainMetrics:
    """Train ``model`` on ``data.train`` and measure it on ``data.val`` after every epoch.

    Args:
        model: a classifier taking (B, in_chans, img_size, img_size) and returning
            (B, num_classes) logits; trained in place (moved to the device).
        data: the in-memory splits (``affinity.data.load_dataset``).
        cfg: budget and hyperparameters; the defaults when None.
        on_epoch: called as ``on_epoch(epoch, val_acc)`` after every epoch (1-based); an
            exception it raises propagates out of ``train`` unchanged.
        progress: show a rich progress bar on stderr (only when stderr is a terminal).

    Returns:
        The metrics of the run.

    Raises:
        ConfigError: the device is unavailable or the model does not fit the data.
        DataError: the train split is empty.
    """
    cfg = cfg or TrainConfig()
    device = resolve_device(cfg.device)
    n = len(data.train)
    if n == 0 or len(data.val) == 0:
        raise DataError(f"{data.name}: {n} train / {len(data.val)} val images; expected both non-empty")
    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    amp_dtype: torch.dtype | None = None
    if use_amp:
        if device.type == "cuda":
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            amp_dtype = torch.bfloat16
    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the ragged last batch (a batch of 1 breaks BatchNorm)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)

    start_time = time.perf_counter()
    with _runtime(cfg, device):
        train_split = data.train.to(device)
        val_split = data.val.to(device)
        model.to(device)
        model.train()
        check_fits(model, in_chans=data.in_chans, img_size=data.img_size, num_classes=data.num_classes)
        optimizer = torch.optim.AdamW(
            param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999), fused=device.type == "cuda"
        )
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # dropout / drop-path inside the model
        history: list[EpochRecord] = []
        step, best, loss_mean = 0, 0.0, float("nan")
        val_acc, val_loss = 0.0, float("nan")
        with _progress_bar(progress, total_steps) as bar:
            for epoch in range(1, epochs + 1):
                order = torch.randperm(n, generator=gen).to(device)
                loss_sum = torch.zeros((), device=device)
                epoch_steps = 0
                for i in range(steps_per_epoch):
                    if step >= total_steps:
                        break
                    lr = lr_at(step, total_steps, cfg)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    x, y = train_split.batch(order[i * batch_size : (i + 1) * batch_size])
                    if cfg.augment:
                        x = random_crop(x, data.crop_pad, gen)
                        if data.flip:
                            x = random_flip(x, gen)
                    with _autocast(device, amp_dtype):
                        loss = criterion(model(x).float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.clip_grad:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    loss_sum += loss.detach()
                    step += 1
                    epoch_steps += 1
                    bar(1, epoch, epochs, None)
                loss_mean = float(loss_sum) / max(1, epoch_steps)
                if not math.isfinite(loss_mean):
                    raise ConfigError(
                        f"lr={cfg.lr} is not allowed for this model: the train loss became {loss_mean} "
                        f"in epoch {epoch} (lower the learning rate)"
                    )
                val_acc, val_loss = evaluate(
                    model, val_split, batch_size=cfg.eval_batch_size, amp_dtype=amp_dtype
                )
                best = max(best, val_acc)
                history.append(
                    EpochRecord(
                        epoch=epoch,
                        train_loss=loss_mean,
                        val_acc=val_acc,
                        val_loss=val_loss,
                        lr=optimizer.param_groups[0]["lr"],
                        steps=step,
                        wall_s=time.perf_counter() - start_time,
                    )
                )
                bar(0, epoch, epochs, val_acc)
                if on_epoch is not None:
                    on_epoch(epoch, val_acc)
    return TrainMetrics(
        val_acc=val_acc,
        best_val_acc=best,
        val_loss=val_loss,
        train_loss=loss_mean,
        epochs_run=len(history),
        steps=step,
        wall_s=time.perf_counter() - start_time,
        device=str(device),
        history=history,
    )


def check_fits(model: nn.Module, *, in_chans: int, img_size: int, num_classes: int) -> None:
    """One forward pass on two blank images; a model that cannot take them is a ConfigError.

    Args:
        model: the classifier (left in the mode it was in).
        in_chans: input channels of the data.
        img_size: square side of the data.
        num_classes: classes the output must have.
    """
    param = next(model.parameters(), None)
    x = torch.zeros(2, in_chans, img_size, img_size, device=param.device if param is not None else "cpu")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"img_size={img_size} (in_chans={in_chans}) is not allowed for this model: "
            f"its forward pass failed ({str(exc).splitlines()[0]})"
        ) from None
    finally:
        model.train(was)
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ConfigError(
            f"num_classes={num_classes} does not match the model's output shape {tuple(out.shape)}: "
            f"build the model with num_classes={num_classes}"
        )


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _runtime(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """Thread count and deterministic algorithms for the run, restored afterwards."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int, int, int, float | None], None]]:
    """A rich bar over all steps showing epoch and val accuracy; a no-op off a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda advance, epoch, epochs, acc: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("val acc {task.fields[acc]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        task = prog.add_task("train", total=total, epoch="1", acc="-")

        def update(advance: int, epoch: int, epochs: int, acc: float | None) -> None:
            fields: dict[str, Any] = {"epoch": f"{epoch}/{epochs}"}
            if acc is not None:
                fields["acc"] = f"{acc:.1%}"
            prog.update(task, advance=advance, **fields)

        yield update


# -- checkpoints ------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """A loaded checkpoint: enough to rebuild the model and know how it was trained.

    Attributes:
        model_cfg: the model's configuration as plain data (what ``create_model`` takes back).
        num_classes: classifier outputs.
        img_size: input side the model was built for.
        in_chans: input channels.
        state_dict: the weights.
        metrics: the training metrics (``TrainMetrics.to_dict``), if any.
        extra: anything else the writer stored (dataset spec, train config, ...).
    """

    model_cfg: dict[str, Any]
    num_classes: int
    img_size: int
    in_chans: int
    state_dict: dict[str, Tensor]
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> nn.Module:
        """The model rebuilt from ``model_cfg`` with the stored weights loaded (eval mode)."""
        from affinity.models import create_model
        from affinity.models.config import ModelCfg

        model = create_model(
            ModelCfg.from_dict(self.model_cfg),
            num_classes=self.num_classes,
            img_size=self.img_size,
            in_chans=self.in_chans,
        )
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_cfg: dict[str, Any],
    metrics: TrainMetrics | dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    *,
    num_classes: int | None = None,
    img_size: int | None = None,
    in_chans: int | None = None,
) -> Path:
    """Write ``model``'s weights with its config, input geometry and metrics to ``path``.

    The file is written beside the target and moved into place, so an interrupted save never
    leaves a truncated checkpoint over a good one.

    Args:
        path: the ``.pt`` file to write (parent folders are created).
        model: the trained model (weights are saved from the CPU).
        model_cfg: the model's configuration as plain data (str/int/float/bool/None, lists,
            tuples, dicts); it may carry ``num_classes``, ``img_size``, ``in_chans``.
        metrics: the training metrics.
        extra: anything else worth keeping (plain data).
        num_classes: classifier outputs, unless ``model_cfg`` has them.
        img_size: input side, unless ``model_cfg`` has it.
        in_chans: input channels, unless ``model_cfg`` has them.

    Returns:
        The path written.
    """
    geometry: dict[str, int] = {}
    for key, value in (("num_classes", num_classes), ("img_size", img_size), ("in_chans", in_chans)):
        found = value if value is not None else model_cfg.get(key, getattr(model, key, None))
        if not isinstance(found, int):
            raise ConfigError(f"save_checkpoint: {key} is unknown; pass {key}= (an integer)")
        geometry[key] = found
    if isinstance(metrics, TrainMetrics):
        metrics = metrics.to_dict()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_cfg": model_cfg,
        **geometry,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": metrics,
        "extra": extra or {},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (weights only: no code runs on load).

    Raises:
        DataError: the file is missing or is not an affinity checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not an affinity checkpoint (expected one written by `affinity train`)")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise DataError(
            f"{path}: checkpoint version {payload.get('version')} is newer than this affinity reads "
            f"({CHECKPOINT_VERSION}); upgrade affinity"
        )
    return Checkpoint(
        model_cfg=payload["model_cfg"],
        num_classes=payload["num_classes"],
        img_size=payload["img_size"],
        in_chans=payload["in_chans"],
        state_dict=payload["state_dict"],
        metrics=payload.get("metrics"),
        extra=payload.get("extra", {}),
    )
