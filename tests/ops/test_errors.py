"""Impossible hyperparameters raise an AffinityError naming the parameter, at construction."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from affinity.errors import AffinityError, ConfigError
from affinity.ops import create_affinity

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("axial_shift", {"shift_size": 4}, "shift_size"),
    ("axial_shift", {"shift_size": 0}, "shift_size"),
    ("axial_shift", {"shift_size": -3}, "shift_size"),
    ("axial_shift", {"dilation": 0}, "dilation"),
    ("axial_shift", {"padding": "mirror"}, "padding"),
    ("axial_shift", {"axis": "c"}, "axis"),
    ("axial_shift", {"shift_size": 9, "padding": "reflect", "hw": (4, 4)}, "shift_size"),
    ("dwconv", {"kernel_size": 4}, "kernel_size"),
    ("dwconv", {"kernel_size": 0}, "kernel_size"),
    ("dwconv", {"dilation": 0}, "dilation"),
    ("dwconv", {"padding": "same"}, "padding"),
    ("dwconv", {"share": 4}, "share"),
    ("dwconv", {"share_layout": "random"}, "share_layout"),
    ("dwconv", {"kernel_size": 9, "padding": "reflect", "hw": (3, 3)}, "kernel_size"),
    ("token_mlp", {"hw": (2, 3), "heads": 4}, "heads"),
    ("token_mlp", {"hw": (2, 3), "out_tokens": 0}, "out_tokens"),
    ("token_mlp", {"hw": (0, 3)}, "hw"),
    ("token_mlp", {}, "hw"),
    ("attention", {"heads": 4}, "heads"),
    ("attention", {"heads": 0}, "heads"),
    ("attention", {"window_size": 8, "hw": (4, 8)}, "window_size"),
    ("attention", {"window_size": 3, "hw": (6, 8)}, "window_size"),
    ("attention", {"window_size": 4, "shift_size": 4}, "shift_size"),
    ("attention", {"shift_size": 1}, "shift_size"),
    ("attention", {"rel_pos_bias": True}, "rel_pos_bias"),
    ("identity", {"dim": 0}, "dim"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "param"), BAD, ids=[f"{n}-{p}-{i}" for i, (n, _, p) in enumerate(BAD)]
)
def test_impossible_hyperparameters(name: str, kwargs: dict[str, Any], param: str) -> None:
    kwargs = {"dim": 6, **kwargs}
    with pytest.raises(ConfigError, match=param) as info:
        create_affinity(name, **kwargs)
    assert isinstance(info.value, AffinityError)
    assert "allowed" in str(info.value) or "not allowed" in str(info.value)


def test_map_errors_at_forward_when_hw_was_not_given() -> None:
    with pytest.raises(ConfigError, match="window_size"):
        create_affinity("attention", dim=4, window_size=4)(torch.randn(1, 4, 6, 6))
    with pytest.raises(ConfigError, match="reflect"):
        create_affinity("axial_shift", dim=4, shift_size=9, padding="reflect")(torch.randn(1, 4, 4, 4))
    with pytest.raises(ConfigError, match=r"\(B, 4, H, W\)"):
        create_affinity("spatial_shift", dim=4)(torch.randn(1, 5, 4, 4))
