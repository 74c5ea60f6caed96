"""What a model's weights expect of their input, as timm's ``pretrained_cfg``: input size,
normalisation, resize interpolation, centre-crop fraction, classes and their names.

Every registered model carries one (its paper's ImageNet recipe) and every checkpoint
affinity writes carries its own; loading a checkpoint restores it on the model
(``model.pretrained_cfg``), so whoever feeds the model knows how to prepare images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affinity.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: MLP-Mixer's JAX-trained weights normalise to [-1, 1]
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class PretrainedCfg:
    """The input recipe of a model's weights (timm's ``pretrained_cfg`` keys).

    Args:
        input_size: (channels, height, width).
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel std divided by.
        interpolation: resize interpolation (``bicubic`` | ``bilinear`` | ``nearest``).
        crop_pct: centre-crop fraction at evaluation (resize to ``size / crop_pct``, crop ``size``).
        num_classes: classifier outputs.
        label_names: one name per class, when known.
        source: where the weights came from (a file and its layout), empty for untrained.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    num_classes: int = 1000
    label_names: tuple[str, ...] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("input_size", "mean", "std", "label_names"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if len(self.input_size) != 3 or not all(isinstance(s, int) and s > 0 for s in self.input_size):
            raise ConfigError(f"input_size={self.input_size!r} is not allowed: (channels, height, width)")
        if len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            raise ConfigError(
                f"mean={self.mean!r}, std={self.std!r} are not allowed: one value per input channel "
                f"({self.input_size[0]})"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation={self.interpolation!r} is not allowed: one of {INTERPOLATIONS}")
        if not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct={self.crop_pct!r} is not allowed: a fraction in (0, 1]")
        if self.label_names is not None and len(self.label_names) != self.num_classes:
            raise ConfigError(
                f"label_names has {len(self.label_names)} names for num_classes={self.num_classes}: "
                "one name per class"
            )

    def __getitem__(self, key: str) -> Any:
        """timm-style access: ``model.pretrained_cfg["mean"]``."""
        if key not in self.to_dict():
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples), what checkpoints store."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "pretrained_cfg") -> PretrainedCfg:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]} is not a known key: allowed {sorted(known)}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def replace(self, **changes: Any) -> PretrainedCfg:
        """A copy with fields changed (label names dropped when the class count changes)."""
        if "num_classes" in changes and changes["num_classes"] != self.num_classes:
            changes.setdefault("label_names", None)
        return dataclasses.replace(self, **changes)

    def for_model(self, *, num_classes: int, img_size: int, in_chans: int) -> PretrainedCfg:
        """This recipe for a model built with other geometry: input size and classes follow
        the model (mean/std are kept when the channel count is unchanged, else one value
        repeated per channel)."""
        mean, std = self.mean, self.std
        if in_chans != len(mean):
            mean = (sum(mean) / len(mean),) * in_chans
            std = (sum(std) / len(std),) * in_chans
        return self.replace(
            input_size=(in_chans, img_size, img_size), mean=mean, std=std, num_classes=num_classes
        )


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "PretrainedCfg"]
