"""Receptive fields as data: the patterns of AS-MLP's comparison figure, borders, and the
cheap row path against the materialized matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affinity.errors import ConfigError, UnknownNameError
from affinity.ops import create_affinity
from affinity.report.fields import affinity_field, channel_groups, compare_fields, parse_query

H = W = 11
C = 20  # not divisible by 3: the last chunk is short, as torch.chunk makes it


def points(mask: np.ndarray, centre: tuple[int, int] = (0, 0)) -> set[tuple[int, int]]:
    """Nonzero positions of a (H, W) mask, relative to ``centre``."""
    return {(int(r) - centre[0], int(c) - centre[1]) for r, c in zip(*np.nonzero(mask))}


def field_of(name: str, query: tuple[int, int], hw: tuple[int, int] = (H, W), **params: object):
    aff = create_affinity(name, dim=C, hw=hw, **params).to(torch.float64)
    x = torch.randn(1, C, *hw, dtype=torch.float64)
    return affinity_field(aff, x, query, method="materialize")


def cross(*offsets: int) -> set[tuple[int, int]]:
    return {(0, 0)} | {(o, 0) for o in offsets} | {(0, o) for o in offsets}


def test_as_mlp_shift5_is_the_nine_point_cross() -> None:
    (f,) = compare_fields(["axial_shift"], hw=(H, W))
    assert f.query == (5, 5)
    assert points(f.support, f.query) == cross(-2, -1, 1, 2)
    assert len(points(f.support)) == 9


def test_each_shift_group_reads_one_offset() -> None:
    # group g moves by (g - s//2)·d with torch.roll semantics: out[i] = in[i - (g - 2)·d]
    f = field_of("axial_shift", (5, 5), shift_size=5, dilation=1, axis="w")
    assert len(f.maps) == 5
    assert [points(m, (5, 5)) for m in f.maps] == [{(0, -(g - 2))} for g in range(5)]
    for m in f.maps:
        assert m.sum() == 1.0


def test_dilation_2_spreads_the_cross() -> None:
    (f,) = compare_fields(["axial_shift:dilation=2"], hw=(H, W))
    assert points(f.support, f.query) == cross(-4, -2, 2, 4)


def test_dwconv_3_is_the_square() -> None:
    (f,) = compare_fields(["dwconv"], hw=(H, W))
    assert points(f.support, f.query) == {(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


def test_spatial_shift_is_the_diamond_without_centre() -> None:
    (f,) = compare_fields(["spatial_shift"], hw=(H, W))
    assert points(f.support, f.query) == {(-1, 0), (1, 0), (0, -1), (0, 1)}


def test_window_attention_sees_its_window_and_token_mlp_everything() -> None:
    fields = compare_fields(["attention", "token_mlp"], hw=(14, 14), query=(8, 3))
    window = np.zeros((14, 14), bool)
    window[7:14, 0:7] = True  # the 7×7 window holding (8, 3)
    assert (fields[0].support == window).all()
    assert "random input" in fields[0].note
    assert fields[1].support.all()


@pytest.mark.parametrize(
    ("padding", "expected_rows"),
    [("zero", {0, 1, 2}), ("circular", {0, 1, 2, H - 2, H - 1})],
)
def test_border_zero_drops_and_circular_wraps(padding: str, expected_rows: set[int]) -> None:
    f = field_of("axial_shift", (0, 4), shift_size=5, axis="h", padding=padding)
    assert points(f.support) == {(r, 4) for r in expected_rows}


def test_border_spatial_shift_keeps_its_own_value() -> None:
    # S2-MLP: the border row/column keeps its value, so the corner reads itself
    f = field_of("spatial_shift", (0, 0))
    assert points(f.support) == {(0, 0), (1, 0), (0, 1)}


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("axial_shift", {"shift_size": 3, "dilation": 2, "padding": "reflect", "axis": "h"}),
        ("spatial_shift", {}),
        ("dwconv", {"kernel_size": 5, "padding": "circular"}),
        ("attention", {"heads": 4}),
        ("token_mlp", {}),
    ],
)
def test_row_path_equals_materialize(name: str, params: dict[str, object]) -> None:
    hw = (6, 7)
    aff = create_affinity(name, dim=8, hw=hw, **params).to(torch.float64)
    x = torch.randn(1, 8, *hw, dtype=torch.float64)
    for q in [(0, 0), (3, 4), (5, 6)]:
        a = affinity_field(aff, x, q, method="materialize")
        b = affinity_field(aff, x, q, method="row")
        assert a.labels == b.labels
        np.testing.assert_allclose(a.maps, b.maps, atol=1e-12)


def test_attention_groups_are_heads() -> None:
    f = field_of("attention", (2, 2), hw=(5, 5), heads=4)
    assert f.labels == ["head 0", "head 1", "head 2", "head 3"]
    np.testing.assert_allclose(f.maps.sum(axis=(1, 2)), 1.0)  # softmax rows


def test_channel_groups_collapse_runs_only() -> None:
    maps = np.array([[[1.0]], [[1.0]], [[2.0]], [[1.0]]])
    groups, members = channel_groups(maps)
    assert groups[:, 0, 0].tolist() == [1.0, 2.0, 1.0]
    assert members == [[0, 1], [2], [3]]


def test_parse_query() -> None:
    assert parse_query(None, (7, 8)) == (3, 4)
    assert parse_query("1, -1", (7, 8)) == (1, 7)
    for bad in ["1", "a,b", "7,0", "0,-9"]:
        with pytest.raises(ConfigError, match="--query"):
            parse_query(bad, (7, 8))


def test_compare_rejects_unknown_operator_and_bad_override() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        compare_fields(["axial_shift:dilation"])
    with pytest.raises(UnknownNameError, match="axial_shift"):
        compare_fields(["axial_shfit"])
