"""The checkpoint file ``affinity train`` writes: weights, the model config, the input
geometry and the metrics, read back without running any code (``weights_only``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from affinity._io import atomic_write
from affinity.errors import ConfigError, DataError
from affinity.train.metrics import TrainMetrics
from affinity.train.state import TrainState

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "affinity-checkpoint"
CHECKPOINT_VERSION = 1


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
        train_state: where an interrupted run stands (``affinity train --resume``); None
            for a finished run.
    """

    model_cfg: dict[str, Any]
    num_classes: int
    img_size: int
    in_chans: int
    state_dict: dict[str, Tensor]
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    train_state: TrainState | None = None

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
    state: TrainState | None = None,
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
        state: an interrupted run's state (``TrainMetrics.state``), to resume it from.

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
        "train_state": None if state is None else state.to_dict(),
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
        train_state=TrainState.from_dict(state) if (state := payload.get("train_state")) else None,
    )
