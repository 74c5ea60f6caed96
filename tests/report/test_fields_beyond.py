"""Receptive fields of the operators beyond the seeds: pooling's square, GFNet's whole map,
CycleMLP's pseudo-kernel, and Permute-MLP's coupled channels by both paths."""

from __future__ import annotations

import numpy as np
import torch

from affinity.ops import create_affinity
from affinity.report.fields import affinity_field, compare_fields
from tests.report.test_fields import points


def test_pooling_is_the_square_and_global_filter_the_whole_map() -> None:
    pool, gf = compare_fields(["pooling", "global_filter"], hw=(11, 11))
    assert points(pool.support, pool.query) == {(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)}
    # a 3×3 average minus the identity: 1/9 around, 1/9 − 1 at the centre
    (m,) = pool.maps
    assert m[5, 4] == np.float64(1 / 9) and m[5, 5] == np.float64(1 / 9 - 1)
    assert gf.support.all()


def test_cycle_fc_pseudo_kernel_is_a_staircase_per_channel() -> None:
    (f,) = compare_fields(["cycle_shift"], hw=(11, 11))
    assert points(f.support, f.query) == {(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)}
    # every channel reads one token, cycling over the channels: along W offsets 0, +1, −1 for
    # c mod 3 = 0, 1, 2 (neighbouring channels differ, so each of the 2×20 is its own group)
    assert len(f.maps) == 40
    w_points = [points(m, f.query) for m in f.maps[:20]]
    assert w_points == [[{(0, 0)}, {(0, 1)}, {(0, -1)}][c % 3] for c in range(20)]


def test_permute_mlp_field_is_the_same_by_matrix_and_by_row() -> None:
    aff = create_affinity("permute_mlp", dim=12, hw=(6, 6), axis="h", segment_dim=3).to(torch.float64)
    x = torch.randn(1, 12, 6, 6, dtype=torch.float64)
    by_matrix = affinity_field(aff, x, (2, 3), method="materialize")
    by_row = affinity_field(aff, x, (2, 3), method="row")
    np.testing.assert_allclose(by_matrix.maps, by_row.maps, atol=1e-12)
    assert "summed over the 4 outputs of its segment" in by_matrix.note
    # the height branch reads the query's column only
    assert all(c == 0 for _, c in points(by_matrix.support, (2, 3)))
