"""Space files the search tests share."""

from __future__ import annotations

from pathlib import Path

import yaml

from affinity._io import atomic_write_text
from affinity.search.space import resolve_space_path


def wide_tiny(folder: Path = Path(".")) -> Path:
    """tiny.yaml with every shift size and padding and two channel-MLP ratios: 28 distinct
    configurations (tiny.yaml holds 4, and n_trials counts distinct evaluations, so a study
    of 12 needs more). Written as ``folder/wide.yaml``; its study is still named ``tiny``."""
    doc = yaml.safe_load(resolve_space_path("tiny.yaml").read_text())
    mixer = doc["model"]["mixer"]
    mixer["shift_size"] = {"choice": [1, 3, 5, 7]}
    mixer["padding"] = {"choice": ["zero", "circular", "replicate", "reflect"]}
    doc["model"]["channel_mlp_ratio"] = {"choice": [1, 2]}
    path, text = folder / "wide.yaml", yaml.safe_dump(doc)
    if not path.is_file() or path.read_text() != text:  # never rewritten under a running search
        atomic_write_text(path, text)
    return path
