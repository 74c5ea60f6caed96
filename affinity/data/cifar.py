"""CIFAR-10 and CIFAR-100 from the standard python pickle batch folders.

``cifar10`` / ``cifar100`` without a path read the cache folder, downloading and checking
the official archive the first time (``affinity.data.download``).
``cifar10:PATH``: ``PATH`` holds ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
(and optionally ``batches.meta`` with the label names), as the ``cifar-10-python.tar.gz``
archive unpacks (``PATH`` may also be the folder that contains ``cifar-10-batches-py``).
``cifar100:PATH``: ``train`` and ``test`` with ``fine_labels`` (and optionally ``meta``).
Each batch is a dict with ``data`` (N, 3072) uint8, rows of 1024 red, green then blue pixels,
and the labels. The test batch is the validation split; ``val_fraction`` does not apply.

The pickles are read with an unpickler that admits only dicts, lists, strings, numbers and
numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affinity.data.base import (
    DatasetSplits,
    TensorSplit,
    check_labels,
    register_dataset,
    require_path,
    resize,
)
from affinity.data.download import fetch
from affinity.errors import DataError

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: Path) -> dict[str, Any]:
    """One pickle batch as a dict with str keys; DataError when it is not a CIFAR batch."""
    try:
        with path.open("rb") as fh:
            obj = _SafeUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a readable CIFAR pickle batch ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}; expected a dict with 'data' and labels")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def batch_arrays(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) of one batch file."""
    batch = read_batch(path)
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(
                f"{path}: no {key!r} entry (has {', '.join(sorted(batch)) or 'nothing'}); "
                f"expected 'data' (N, 3072) uint8 and {label_key!r}"
            )
    data = np.asarray(batch["data"])
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
    labels = check_labels(np.asarray(batch[label_key]), f"{path} {label_key!r}", num_classes)
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels; expected one label per image")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _names(path: Path, key: str) -> list[str] | None:
    if not path.is_file():
        return None
    try:
        meta = read_batch(path)
    except DataError:
        return None
    names = meta.get(key)
    if not isinstance(names, list):
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _load(
    arg: str | None,
    *,
    name: str,
    inner: str,
    train_files: list[str],
    test_file: str,
    label_key: str,
    meta: tuple[str, str],
    num_classes: int,
    img_size: int | None,
) -> DatasetSplits:
    def complete(folder: Path) -> bool:
        return all((folder / f).is_file() for f in [*train_files, test_file])

    if arg is None:  # the official archive, fetched once into the cache
        root = fetch(name, complete)
    else:
        root = require_path(arg, name, f"a folder with {', '.join([*train_files, test_file])}")
    if (root / inner).is_dir():
        root = root / inner
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; {name} expects the folder of python pickle batches")
    missing = [f for f in [*train_files, test_file] if not (root / f).is_file()]
    if missing:
        raise DataError(f"{root}: missing {', '.join(missing)} ({name} expects the python pickle batches)")
    parts = [batch_arrays(root / f, label_key, num_classes) for f in train_files]
    xt = np.concatenate([p[0] for p in parts])
    yt = np.concatenate([p[1] for p in parts])
    xv, yv = batch_arrays(root / test_file, label_key, num_classes)
    size = img_size or 32
    to_t = lambda x: resize(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous(), size)  # noqa: E731
    return DatasetSplits(
        train=TensorSplit(to_t(xt), torch.from_numpy(yt), 1 / 255),
        val=TensorSplit(to_t(xv), torch.from_numpy(yv), 1 / 255),
        num_classes=num_classes,
        in_chans=3,
        img_size=size,
        name=name,
        class_names=_names(root / meta[0], meta[1]),
        flip=True,
        crop_pad=max(1, size // 8),
    )


@register_dataset("cifar10")
def load_cifar10(arg: str | None, *, img_size: int | None, seed: int, val_fraction: float) -> DatasetSplits:
    """CIFAR-10 from ``PATH`` (data_batch_1..5 train, test_batch val), 10 classes.

    Args:
        arg: the folder.
        img_size: side to resize to (default: the stored 32).
        seed: unused (the split is the published one).
        val_fraction: unused (the split is the published one).
    """
    return _load(
        arg,
        name="cifar10",
        inner="cifar-10-batches-py",
        train_files=[f"data_batch_{i}" for i in range(1, 6)],
        test_file="test_batch",
        label_key="labels",
        meta=("batches.meta", "label_names"),
        num_classes=10,
        img_size=img_size,
    )


@register_dataset("cifar100")
def load_cifar100(arg: str | None, *, img_size: int | None, seed: int, val_fraction: float) -> DatasetSplits:
    """CIFAR-100 from ``PATH`` (train, test; fine labels), 100 classes.

    Args:
        arg: the folder.
        img_size: side to resize to (default: the stored 32).
        seed: unused (the split is the published one).
        val_fraction: unused (the split is the published one).
    """
    return _load(
        arg,
        name="cifar100",
        inner="cifar-100-python",
        train_files=["train"],
        test_file="test",
        label_key="fine_labels",
        meta=("meta", "fine_label_names"),
        num_classes=100,
        img_size=img_size,
    )
