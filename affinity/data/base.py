"""What every dataset loader returns, the dataset registry and the spec parser.

A dataset spec is ``NAME`` or ``NAME:ARG``: ``digits``, ``synthetic:classes=10,size=32``,
``cifar10:PATH``, ``imagefolder:PATH``, ``npz:PATH``. Every split lives in memory as one
tensor, so the trainer slices batches out of it instead of running a DataLoader (digits is
~1,800 images; CIFAR-10 as uint8 is 150 MB).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from affinity.errors import ConfigError, DataError
from affinity.registry import Registry

#: Largest side a dataset may be resized to (a typo like 2240 would fill the memory).
MAX_IMG_SIZE = 1024


class TensorSplit:
    """One split held as tensors: images ``x`` (N, C, H, W) and labels ``y`` (N,).

    ``x`` keeps its storage dtype (uint8 for 8-bit sources, float32 otherwise) and is scaled
    to [0, 1] by ``scale``; ``batch`` returns normalised float images.

    Args:
        x: images, (N, C, H, W), uint8 or float32.
        y: integer labels, (N,).
        scale: multiplier that maps ``x`` to [0, 1] (1/255 for uint8).
    """

    def __init__(self, x: Tensor, y: Tensor, scale: float = 1.0) -> None:
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"bad split shapes x={tuple(x.shape)} y={tuple(y.shape)}")
        self.x = x
        self.y = y.long()
        self.scale = scale
        self.mean = torch.zeros(x.shape[1])
        self.std = torch.ones(x.shape[1])

    def __len__(self) -> int:
        return len(self.y)

    def normalise(self, x: Tensor) -> Tensor:
        """Storage-dtype images -> float32, scaled to [0, 1], then (x - mean) / std."""
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        return (x.float() * self.scale - mean) / std

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised images and labels at ``index`` (on the device the split lives on)."""
        return self.normalise(self.x[index]), self.y[index]

    def to(self, device: torch.device | str) -> TensorSplit:
        """A copy on ``device`` (the whole split moves once; batches then slice on device)."""
        out = TensorSplit(self.x.to(device), self.y.to(device), self.scale)
        out.mean, out.std = self.mean, self.std
        return out


@dataclass
class DatasetSplits:
    """A dataset ready to train on: two in-memory splits and what the model must adapt to.

    Attributes:
        train: the training split.
        val: the validation split (accuracy is measured on it).
        num_classes: labels are ``0 .. num_classes - 1``.
        in_chans: image channels.
        img_size: square side of every image.
        name: the spec it was loaded from.
        mean: per-channel mean of the train split (after scaling to [0, 1]).
        std: per-channel standard deviation of the train split.
        class_names: label names when the source has them.
        flip: horizontal flips are a valid augmentation (False for digits, text, arrangements).
        crop_pad: padding of the random-crop augmentation (0 disables it).
    """

    train: TensorSplit
    val: TensorSplit
    num_classes: int
    in_chans: int
    img_size: int
    name: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    class_names: list[str] | None = None
    flip: bool = False
    crop_pad: int = 0

    def summary(self) -> str:
        """One line: name, sizes, classes."""
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val images, "
            f"{self.in_chans}×{self.img_size}×{self.img_size}, {self.num_classes} classes"
        )


class Loader(Protocol):
    """A registered dataset: ``loader(arg, *, img_size, seed, val_fraction) -> DatasetSplits``.

    ``arg`` is the text after ``NAME:`` in the spec (a path, or ``k=v`` options), or None.
    ``img_size`` None means the loader's own default size.
    """

    def __call__(
        self, arg: str | None, *, img_size: int | None, seed: int, val_fraction: float
    ) -> DatasetSplits: ...


DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Function decorator: register a dataset loader under ``name``."""
    return DATASETS.decorator(name)


def load_dataset(
    spec: str = "digits",
    *,
    img_size: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    quiet: bool = False,
) -> DatasetSplits:
    """Load a dataset from its spec (``NAME`` or ``NAME:ARG``) into memory.

    Args:
        spec: ``digits`` (default), ``synthetic[:k=v,...]``, ``cifar10[:PATH]``,
            ``cifar100[:PATH]`` (no path: the official archive, downloaded once into
            ``$AFFINITY_DATA``), ``imagefolder:PATH`` or ``npz:PATH``.
        img_size: square side every image is resized to; None keeps the dataset's default
            (32 for digits, synthetic and image folders, the stored size otherwise).
        seed: seeds the train/val split (and the synthetic generator).
        val_fraction: share held out for validation where the source has no split of its own.
        quiet: no download progress (``cifar10`` / ``cifar100`` fetch their archive once).

    Returns:
        The splits, normalised with statistics of the train split.

    Raises:
        UnknownNameError: the name is not a registered dataset.
        DataError: a path is missing or a file is not in the expected layout.
        ConfigError: ``img_size`` or ``val_fraction`` is out of range.
    """
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    loader = DATASETS.get(name)
    if img_size is not None and not (isinstance(img_size, int) and 4 <= img_size <= MAX_IMG_SIZE):
        raise ConfigError(f"img_size={img_size!r} is not allowed: an integer from 4 to {MAX_IMG_SIZE}")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(
            f"val_fraction={val_fraction!r} is not allowed: a fraction strictly between 0 and 1"
        )
    from affinity.data.download import quiet as no_progress

    with no_progress(quiet):
        data = loader(arg or None, img_size=img_size, seed=seed, val_fraction=val_fraction)
    data.name = spec
    return finalize(data)


def finalize(data: DatasetSplits) -> DatasetSplits:
    """Compute normalisation statistics from the train split and attach them to both splits."""
    x = data.train.x
    c = x.shape[1]
    # float64 sums over chunks: exact enough and no full float copy of a large uint8 split
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(x), 4096):
        chunk = x[start : start + 4096].double() * data.train.scale
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += (chunk * chunk).sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    for split in (data.train, data.val):
        split.mean, split.std = mean.float(), std.float()
    data.mean = tuple(float(m) for m in mean)
    data.std = tuple(float(s) for s in std)
    return data


# -- helpers shared by the loaders ------------------------------------------------------------


def require_path(arg: str | None, dataset: str, what: str) -> Path:
    """The path after ``NAME:``; DataError when it is absent or does not exist."""
    if not arg:
        raise DataError(f"dataset {dataset!r} needs a path: use '{dataset}:PATH' ({what})")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or directory (dataset {dataset}: {what})")
    return path


def check_labels(y: np.ndarray, source: str, num_classes: int | None = None) -> np.ndarray:
    """Integer labels in ``0 .. num_classes - 1`` (num_classes None: any non-negative)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: labels have shape {y.shape}; expected one integer label per image")
    whole = np.issubdtype(y.dtype, np.floating) and bool(np.all(np.mod(y, 1) == 0))
    if y.size and not np.issubdtype(y.dtype, np.integer) and not whole:
        raise DataError(f"{source}: labels have dtype {y.dtype}; expected integer class indices")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{source}: label {int(y.min())} is out of range; expected labels >= 0")
    if num_classes is not None and y.size and y.max() >= num_classes:
        raise DataError(
            f"{source}: label {int(y.max())} is out of range; expected 0 .. {num_classes - 1} "
            f"({num_classes} classes)"
        )
    return y


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices, each class split in the same proportion, fixed by ``seed``.

    Every class with at least two images keeps one in each split.
    """
    rng = np.random.default_rng(seed)
    train_idx: list[np.ndarray] = []
    val_idx: list[np.ndarray] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_val = round(len(idx) * val_fraction)
        n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) >= 2 else 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    train = np.sort(np.concatenate(train_idx))
    val = np.sort(np.concatenate(val_idx))
    return train, val


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of (N, C, H, W) to ``size``×``size``, keeping the dtype (uint8 rounds)."""
    if x.shape[-2:] == (size, size):
        return x
    out = []
    for start in range(0, len(x), 2048):  # bounded float memory for large uint8 sets
        chunk = x[start : start + 2048].float()
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(chunk.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else chunk)
    return torch.cat(out) if out else x.new_zeros((0, x.shape[1], size, size))


def to_nchw(x: np.ndarray, source: str) -> Tensor:
    """(N, H, W) or (N, H, W, C) array -> (N, C, H, W) tensor (uint8 stays uint8)."""
    if x.ndim == 3:
        x = x[:, :, :, None]
    if x.ndim != 4:
        raise DataError(f"{source}: images have shape {x.shape}; expected (N, H, W) or (N, H, W, C)")
    if x.shape[-1] not in (1, 3, 4) and x.shape[1] in (1, 3, 4):
        raise DataError(
            f"{source}: images have shape {x.shape}, which looks channels-first; expected (N, H, W[, C])"
        )
    if x.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        raise DataError(f"{source}: images have dtype {x.dtype}; expected numbers (uint8 or float)")
    return t.permute(0, 3, 1, 2).contiguous()


def splits_from_arrays(
    x: Tensor,
    y: np.ndarray,
    *,
    scale: float,
    num_classes: int,
    img_size: int,
    seed: int,
    val_fraction: float,
    name: str,
    **kwargs: Any,
) -> DatasetSplits:
    """Stratified split of one set of (already resized) images into DatasetSplits."""
    train_idx, val_idx = stratified_split(y, val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(
            f"{name}: {len(y)} images are too few to split into train and val; "
            "expected at least two images of some class"
        )
    yt = torch.from_numpy(y)
    ti, vi = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return DatasetSplits(
        train=TensorSplit(x[ti], yt[ti], scale),
        val=TensorSplit(x[vi], yt[vi], scale),
        num_classes=num_classes,
        in_chans=x.shape[1],
        img_size=img_size,
        name=name,
        **kwargs,
    )
