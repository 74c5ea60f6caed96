"""Weights in: affinity's own checkpoints, timm's state dicts and the authors' released
checkpoints, each layout one table of key renames and tensor transforms.

>>> from affinity.models import create_model
>>> model = create_model("deit_s", checkpoint_path="deit_small_patch16_224.pth")  # doctest: +SKIP

``create_model(..., checkpoint_path=...)`` is the entry point; this package reads files
(``io``), holds the layouts (``formats``), converts (``convert``) and loads (``load``).
"""

from __future__ import annotations

from affinity.checkpoints.convert import TRANSFORMS, Converted, Format, Rule, convert
from affinity.checkpoints.formats import FORMATS
from affinity.checkpoints.io import (
    CHECKPOINT_SUFFIXES,
    RawCheckpoint,
    is_checkpoint_path,
    read_checkpoint,
    write_safetensors,
)
from affinity.checkpoints.load import LoadReport, detect_format, load_into

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "FORMATS",
    "TRANSFORMS",
    "Converted",
    "Format",
    "LoadReport",
    "RawCheckpoint",
    "Rule",
    "convert",
    "detect_format",
    "is_checkpoint_path",
    "load_into",
    "read_checkpoint",
    "write_safetensors",
]
