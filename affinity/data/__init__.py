"""Datasets: a registry of loaders that return in-memory train/val splits.

``load_dataset("digits")`` (the embedded default), ``"synthetic:classes=10,size=32"``,
``"cifar10:PATH"``, ``"cifar100:PATH"``, ``"imagefolder:PATH"``, ``"npz:PATH"``; see each
loader's module for its layout. Register a new one with ``@register_dataset("name")``.
"""

from __future__ import annotations

from affinity.data import cifar, digits, folders, synthetic  # noqa: F401  (registers the loaders)
from affinity.data.base import DATASETS, DatasetSplits, TensorSplit, load_dataset, register_dataset

__all__ = ["DATASETS", "DatasetSplits", "TensorSplit", "load_dataset", "register_dataset"]
