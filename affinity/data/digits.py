"""The embedded default: scikit-learn's bundled handwritten digits (no download).

1,797 grey 8×8 images of the digits 0-9 (UCI optical recognition set, values 0-16), resized
bilinearly to ``img_size`` (32 by default) so the models' patch stems and stage downsampling
have room. The train/val split is stratified and fixed by the seed. Flips are off: a mirrored
2 is not a 2.
"""

from __future__ import annotations

import numpy as np
import torch

from affinity.data.base import DatasetSplits, register_dataset, resize, splits_from_arrays
from affinity.errors import DataError

DEFAULT_SIZE = 32


@register_dataset("digits")
def load_digits(arg: str | None, *, img_size: int | None, seed: int, val_fraction: float) -> DatasetSplits:
    """scikit-learn's ``load_digits`` resized to ``img_size`` (default 32), 10 classes.

    Args:
        arg: must be None (digits takes no path or options).
        img_size: square side to resize to.
        seed: fixes the stratified split.
        val_fraction: share of each class held out for validation.
    """
    if arg:
        raise DataError(f"dataset 'digits' takes no argument, got 'digits:{arg}' (use plain 'digits')")
    images, target = _digits_arrays()
    size = img_size or DEFAULT_SIZE
    x = torch.from_numpy(np.asarray(images, dtype=np.float32)).unsqueeze(1)  # (N, 1, 8, 8)
    x = resize(x, size)
    y = np.asarray(target, dtype=np.int64)
    # a few pixels overshoot [0, 16] after bilinear+antialias resampling; clamp keeps the range
    x = x.clamp_(0, 16)
    return splits_from_arrays(
        x,
        y,
        scale=1 / 16,
        num_classes=10,
        img_size=size,
        seed=seed,
        val_fraction=val_fraction,
        name="digits",
        class_names=[str(d) for d in range(10)],
        flip=False,
        crop_pad=max(1, size // 16),
    )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 8, 8) and labels (N,) of scikit-learn's bundled ``digits.csv.gz``, read as
    its ``load_digits`` reads it, without importing scikit-learn (seconds of every search's
    start); through ``load_digits`` where the file is not where scikit-learn keeps it."""
    import gzip
    import importlib.util
    import io
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits as sk_load_digits

        bunch = sk_load_digits()
        return bunch.images, bunch.target
    with gzip.open(path) as raw:
        data = np.loadtxt(io.TextIOWrapper(raw, encoding="utf-8"), delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
