"""The training loop: AdamW, linear warm-up then cosine decay per step, label smoothing, gradient
clipping, an epoch or step budget, seeded and deterministic on the CPU, mixed precision on CUDA.

Batches are sliced from the in-memory splits (``affinity.data``), no DataLoader: on two CPU
cores the worker processes and collation would cost more than the small models train.
``on_epoch(epoch, val_acc)`` runs after every epoch; whatever it raises (``optuna.TrialPruned``
for the search) leaves ``train`` unchanged.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from affinity.data import DatasetSplits, TensorSplit
from affinity.data.augment import random_crop, random_flip
from affinity.device import resolve_device
from affinity.errors import ConfigError, DataError
from affinity.memory import keep_freed_memory
from affinity.train._flat import flat_adamw
from affinity.train._progress import progress_bar
from affinity.train.config import TrainConfig
from affinity.train.metrics import EpochRecord, TrainMetrics
from affinity.train.state import TrainState, capture_rng, restore_rng

__all__ = ["check_fits", "evaluate", "lr_at", "param_groups", "train"]


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


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: TensorSplit, *, batch_size: int = 1024, amp_dtype: torch.dtype | None = None
) -> tuple[float, float]:
    """Accuracy (fraction) and mean cross-entropy of ``model`` on ``split``, batched, in
    inference mode (no autograd, no version counters)."""
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
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: TrainState | None = None,
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
        on_step: called as ``on_step(step)`` after every optimiser step (1-based).
        should_stop: asked after every step; when it says True the run stops there (the
            current step finished) and returns metrics marked ``interrupted`` whose
            ``state`` lets ``resume`` continue it.
        resume: the state of an interrupted run of the same model, data and ``cfg``, whose
            weights ``model`` already holds; the run continues from it and ends as the
            uninterrupted run would (bit for bit on the CPU).
        progress: show progress on stderr: a rich bar on a terminal, else a timestamped line
            per epoch.

    Returns:
        The metrics of the run.

    Raises:
        ConfigError: the device is unavailable, the model does not fit the data, or
            ``resume`` comes from a run with another budget.
        DataError: the train split is empty.
    """
    cfg = cfg or TrainConfig()
    device = resolve_device(cfg.device)
    n = len(data.train)
    if n == 0 or len(data.val) == 0:
        raise DataError(f"{data.name}: {n} train / {len(data.val)} val images; expected both non-empty")
    amp_dtype = _amp_dtype(cfg, device)
    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the ragged last batch (a batch of 1 breaks BatchNorm)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    if resume is not None and resume.total_steps != total_steps:
        raise ConfigError(
            f"resume: the interrupted run had {resume.total_steps} steps in all, this one "
            f"{total_steps}; allowed: the same budget, batch size and dataset"
        )

    start_time = time.perf_counter()
    with _runtime(cfg, device):
        train_split = data.train.to(device)
        val_split = data.val.to(device)
        model.to(device)
        model.train()
        check_fits(model, in_chans=data.in_chans, img_size=data.img_size, num_classes=data.num_classes)
        # on the CPU the multi-tensor (foreach) kernels: the same arithmetic per tensor, bit for
        # bit, without a Python loop over the parameters every step (the tiny models of a
        # search have ~50 of them); fused kernels on CUDA
        foreach = True if device.type == "cpu" else None
        optimizer = torch.optim.AdamW(
            param_groups(model, cfg.weight_decay),
            lr=cfg.lr,
            betas=(0.9, 0.999),
            fused=device.type == "cuda",
            foreach=foreach,
        )
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        gen = torch.Generator()
        state = resume or _fresh_state(total_steps)
        if resume is None:
            gen.manual_seed(cfg.seed)
            torch.manual_seed(cfg.seed)  # dropout / drop-path inside the model
        else:
            optimizer.load_state_dict(resume.optimizer)
            scaler.load_state_dict(resume.scaler)
            restore_rng(gen, resume.rng)
        # on the CPU the parameters of a group in one buffer and one AdamW step over it (the
        # same numbers): the multi-tensor kernels loop over the ~50 tensors of a search model
        flat = flat_adamw(optimizer, list(model.parameters())) if device.type == "cpu" else None
        history = [EpochRecord(**h) for h in state.history]
        step, best, loss_mean = state.step, state.best, float("nan")
        elapsed = state.elapsed_s
        eval_s = 0.0  # of the wall time, evaluating the val split

        def validate() -> tuple[float, float]:
            nonlocal eval_s
            start = time.perf_counter()
            try:
                return evaluate(model, val_split, batch_size=cfg.eval_batch_size, amp_dtype=amp_dtype)
            finally:
                eval_s += time.perf_counter() - start

        def stop_here(epoch: int, batch: int, order: Tensor | None, loss_sum: Tensor) -> TrainMetrics:
            if flat is not None:
                flat.release()  # the per-parameter optimiser holds the state again
            snapshot = TrainState(
                epoch=epoch,
                batch=batch,
                step=step,
                total_steps=total_steps,
                order=None if order is None else order.cpu(),
                loss_sum=loss_sum.detach().cpu(),
                best=best,
                history=[asdict(h) for h in history],
                elapsed_s=elapsed + time.perf_counter() - start_time,
                optimizer=optimizer.state_dict(),
                scaler=scaler.state_dict(),
                rng=capture_rng(gen),
            )
            val_acc, val_loss = validate()
            train_loss = float(loss_sum) / batch if batch else loss_mean
            return _metrics(
                val_acc, val_loss, train_loss, best, history, step, snapshot.elapsed_s, eval_s, device,
                snapshot,
            )  # fmt: skip

        # however the run ends, the parameters own their storage again afterwards
        with progress_bar(progress, total_steps) as bar, flat or contextlib.nullcontext():
            bar(step, state.epoch, epochs, None)  # a resumed run starts part way
            for epoch in range(state.epoch, epochs + 1):
                first = state.batch if epoch == state.epoch else 0
                if first and state.order is not None:
                    order = state.order.to(device)
                    loss_sum = state.loss_sum.to(device)
                else:
                    order = torch.randperm(n, generator=gen).to(device)
                    loss_sum = torch.zeros((), device=device)
                epoch_steps = first
                for i in range(first, steps_per_epoch):
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
                    (flat or optimizer).zero_grad()  # set to None
                    scaler.scale(loss).backward()
                    if flat is not None and not flat.step(cfg.clip_grad):
                        flat.release()  # a parameter without a gradient: per-parameter steps
                        flat = None
                    if flat is None:
                        if cfg.clip_grad:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad, foreach=foreach)
                        scaler.step(optimizer)
                        scaler.update()
                    loss_sum += loss.detach()
                    step += 1
                    epoch_steps += 1
                    bar(1, epoch, epochs, None)
                    if on_step is not None:
                        on_step(step)
                    mid_epoch = i + 1 < steps_per_epoch and step < total_steps
                    if mid_epoch and should_stop is not None and should_stop():
                        return stop_here(epoch, i + 1, order, loss_sum)
                loss_mean = float(loss_sum) / max(1, epoch_steps)
                if not math.isfinite(loss_mean):
                    raise ConfigError(
                        f"lr={cfg.lr} is not allowed for this model: the train loss became {loss_mean} "
                        f"in epoch {epoch} (lower the learning rate)"
                    )
                val_acc, val_loss = validate()
                best = max(best, val_acc)
                history.append(
                    EpochRecord(
                        epoch=epoch,
                        train_loss=loss_mean,
                        val_acc=val_acc,
                        val_loss=val_loss,
                        lr=optimizer.param_groups[0]["lr"],
                        steps=step,
                        wall_s=elapsed + time.perf_counter() - start_time,
                    )
                )
                bar(0, epoch, epochs, val_acc)
                if on_epoch is not None:
                    on_epoch(epoch, val_acc)
                if epoch < epochs and should_stop is not None and should_stop():
                    return stop_here(epoch + 1, 0, None, torch.zeros(()))
    last = history[-1]
    wall_s = elapsed + time.perf_counter() - start_time
    return _metrics(
        last.val_acc, last.val_loss, last.train_loss, best, history, step, wall_s, eval_s, device, None
    )


def _metrics(
    val_acc: float,
    val_loss: float,
    train_loss: float,
    best: float,
    history: list[EpochRecord],
    step: int,
    wall_s: float,
    eval_s: float,
    device: torch.device,
    state: TrainState | None,
) -> TrainMetrics:
    return TrainMetrics(
        val_acc=val_acc,
        best_val_acc=best,
        val_loss=val_loss,
        train_loss=train_loss,
        epochs_run=len(history),
        steps=step,
        wall_s=wall_s,
        eval_s=eval_s,
        device=str(device),
        history=history,
        interrupted=state is not None,
        state=state,
    )


def _fresh_state(total_steps: int) -> TrainState:
    """Where a new run starts: epoch 1, nothing trained."""
    return TrainState(
        epoch=1,
        batch=0,
        step=0,
        total_steps=total_steps,
        order=None,
        loss_sum=torch.zeros(()),
        best=0.0,
        history=[],
        elapsed_s=0.0,
        optimizer={},
        scaler={},
    )


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 (float16 on a GPU without it) when mixed precision is on, else None."""
    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if not use_amp:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


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
    """Thread count and deterministic algorithms for the run, restored afterwards.

    With ``cfg.deterministic``: torch's deterministic algorithms (warn-only: an op without a
    deterministic kernel warns instead of failing); on CUDA also cuDNN's deterministic
    kernels without autotuning (``cudnn.deterministic``, not ``cudnn.benchmark``) and a fixed
    cuBLAS workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, read when the process first uses
    cuBLAS, so set before that unless the user set it). Fresh tensors are not filled first
    (torch's ``fill_uninitialized_memory``, on by default with deterministic algorithms,
    writes NaN into every ``empty`` tensor): the kernels overwrite what they allocate, so
    the fill only cost a pass over memory, some 30 whole activations per step of a search
    model. On the CPU, glibc's allocator is also told, once per process, to keep the memory
    a step frees for the next (``affinity.train._memory``): no page faults on every step.
    """
    if device.type == "cpu":
        keep_freed_memory()  # process-wide, once: a step reuses the memory the last one freed
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
