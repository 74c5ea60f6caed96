"""The MO-ASHA rung rule on synthetic rungs whose promotions are worked out by hand."""

from __future__ import annotations

import math

import pytest

from affinity.search.fidelity import crowding_distance, promoted


def test_crowding_distance_by_hand() -> None:
    # a front (acc up, gflops down together): acc 0.5, 0.6, 0.8, 0.9 (range 0.4) and gflops
    # 1, 2, 4, 5 (range 4); extremes infinite; point 1: (0.8 − 0.5)/0.4 + (4 − 1)/4 = 1.5;
    # point 2: (0.9 − 0.6)/0.4 + (5 − 2)/4 = 1.5
    d = crowding_distance([0.5, 0.6, 0.8, 0.9], [1.0, 2.0, 4.0, 5.0])
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx(1.5) and d[2] == pytest.approx(1.5)
    # equal gflops add nothing; acc alone: point 1 gets (0.9 − 0.5)/0.4 = 1
    assert crowding_distance([0.5, 0.7, 0.9], [1.0, 1.0, 1.0]) == [math.inf, pytest.approx(1.0), math.inf]


def test_whole_fronts_first_then_the_extremes_of_the_next() -> None:
    #        0     1     2     3     4     5     6     7     8     9
    acc = [0.90, 0.80, 0.60, 0.85, 0.70, 0.50, 0.55, 0.40, 0.30, 0.20]
    gflops = [3.0, 2.0, 1.0, 3.5, 2.5, 1.5, 3.0, 2.0, 1.0, 4.0]
    # front 1 = {0, 1, 2}: nothing is as accurate for as little. Without them, front 2 =
    # {3, 4, 5, 8}: 3 by 0, 4 by 1, 5 and 8 by 2 were dominated, and among the rest only 6
    # (by 4), 7 (by 5) and 9 are dominated. eta 3: 10 // 3 = 3 continue: front 1 whole
    assert promoted(acc, gflops, eta=3) == [0, 1, 2]
    # eta 2: 5 continue: front 1 and two of front 2, whose extremes on both objectives are
    # 3 (most accurate, dearest) and 8 (cheapest, least accurate): infinite crowding distance,
    # where the index order alone would have taken 3 and 4
    assert promoted(acc, gflops, eta=2) == [0, 1, 2, 3, 8]


def test_the_overflowing_front_is_cut_by_crowding_distance() -> None:
    # one front of 6 (acc and gflops rise together); ranges: acc 0.5, gflops 5. Interior
    # distances, (acc gap)/0.5 + (gflops gap)/5 between each point's two neighbours:
    # 1: 0.10/0.5 + 1.0/5 = 0.4; 2: 0.35/0.5 + 3.0/5 = 1.3; 3: 0.35/0.5 + 3.5/5 = 1.4;
    # 4: 0.10/0.5 + 1.5/5 = 0.5
    acc = [0.40, 0.45, 0.50, 0.80, 0.85, 0.90]
    gflops = [1.0, 1.5, 2.0, 4.5, 5.5, 6.0]
    assert crowding_distance(acc, gflops) == [
        math.inf,
        pytest.approx(0.4),
        pytest.approx(1.3),
        pytest.approx(1.4),
        pytest.approx(0.5),
        math.inf,
    ]
    # eta 2: 3 continue: both extremes and the most isolated interior point
    assert promoted(acc, gflops, eta=2) == [0, 3, 5]
    # eta 3: 2 continue: the extremes
    assert promoted(acc, gflops, eta=3) == [0, 5]


def test_fewer_than_eta_promote_none_and_eta_is_checked() -> None:
    assert promoted([0.9, 0.8], [1.0, 2.0], eta=3) == []
    assert promoted([], [], eta=3) == []
    with pytest.raises(ValueError, match="eta=1"):
        promoted([0.9], [1.0], eta=1)
