"""``affinity search --check`` and ``--check --estimate``: the distinct configurations a space
holds (after canonicalisation), checked against an independent enumeration, and the run-time
estimate's arithmetic; nothing is written by either."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import optuna
import pytest
import yaml

from affinity.errors import AffinityError
from affinity.search import _dry, _estimate
from affinity.search._dry import census
from affinity.search._estimate import Estimate, Timed, _candidates
from affinity.search.space import config_hash, load_space, parse_space
from affinity.search.study import distinct_configurations
from tests._cli import run_main

# kind x shift_size x kernel_size x dilation x padding: 32 combinations. axial_shift takes
# shift_size, dilation, padding (8 parameter sets); dwconv takes kernel_size, dilation,
# padding (8). Shift 1 and kernel 1 make dilation and padding inert: per kind 1 + 2 x 2 = 5,
# so 10 distinct configurations after canonicalisation, 16 before.
HAND = """
name: hand
dataset: digits
img_size: 8
budget: {epochs: 1, batch_size: 64, lr: 0.004}
search: {n_trials: 4, sampler: tpe}
model:
  family: hierarchical
  dims: [8, 16]
  depths: [1, 1]
  patch_size: 2
  channel_mlp_ratio: 2
  mixer:
    kind: {choice: [axial_shift, dwconv]}
    shift_size: {choice: [1, 3]}
    kernel_size: {choice: [1, 3]}
    dilation: {choice: [1, 2]}
    padding: {choice: [zero, circular]}
"""


def _enumerated(space) -> tuple[set[str], set[str]]:
    """(fingerprints, canonical hashes) of every grid point, sampled with a FixedTrial: the
    whole product of every parameter's choices, whatever the kind takes."""
    grid = space.distributions()
    raw, canonical = set(), set()
    for combo in itertools.product(*grid.values()):
        try:
            cfg = space.sample(optuna.trial.FixedTrial(dict(zip(grid, combo))))
        except AffinityError:
            continue
        raw.add(cfg.fingerprint())
        canonical.add(config_hash(cfg))
    return raw, canonical


@pytest.mark.parametrize(
    ("space", "before", "after", "combinations"),
    [(load_space("tiny.yaml"), 5, 4, 8), (parse_space(yaml.safe_load(HAND)), 16, 10, 32)],
    ids=["tiny", "hand"],
)
def test_census_equals_an_independent_enumeration(space, before: int, after: int, combinations: int) -> None:
    found = census(space)
    raw, canonical = _enumerated(space)
    assert (found.before, len(found.configs), found.combinations) == (before, after, combinations)
    assert (len(raw), len(canonical)) == (before, after)
    assert set(found.configs) == canonical
    # the search's own cap on n_trials counts the product of the choices: the same number
    assert distinct_configurations(space, space.settings.img_size, limit=10**6) == after
    assert found.points == before and found.refused == 0 and not found.continuous
    # each configuration is kept with parameters that sample it again
    for digest, (params, _) in found.configs.items():
        assert config_hash(space.sample(optuna.trial.FixedTrial(params))) == digest


def test_census_stops_at_the_distinct_count_asked() -> None:
    found = census(parse_space(yaml.safe_load(HAND)), stop_at=3)
    assert len(found.configs) == 3 and found.points is not None and found.points < 16


def test_census_names_continuous_parameters_and_counts_their_ends_and_middle() -> None:
    text = HAND.replace("    shift_size: {choice: [1, 3]}\n", "").replace("[axial_shift, dwconv]", "[dwconv]")
    text += "    coefficients: fixed\n    beta: {float: [0.1, 1.0]}\n"
    found = census(parse_space(yaml.safe_load(text)))
    assert found.continuous == ["model.mixer.beta"] and found.combinations is None
    # dwconv kernel 1 (1 form) + kernel 3 (dilation x padding: 4), each with beta 0.1, 0.55, 1.0
    assert len(found.configs) == 5 * 3
    assert found.line().startswith("configurations: unbounded (model.mixer.beta continuous); with each at")


def _nothing_written(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hand.yaml"]


def test_check_prints_the_distinct_count_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "hand.yaml").write_text(HAND)
    ran = run_main(["search", "--space", "hand.yaml", "--check", "--out", "res"])
    assert ran.code == 0, ran.stderr
    assert (
        "configurations: 10 distinct after canonicalisation, 16 before (16 parameter sets a trial can "
        "hold, 0 refused by the models; 32 combinations of the parameters' choices)"
    ) in ran.stdout
    _nothing_written(tmp_path)  # neither res/ nor results/


def test_estimate_needs_check(tmp_path: Path) -> None:
    (tmp_path / "hand.yaml").write_text(HAND)
    ran = run_main(["search", "--space", "hand.yaml", "--estimate"])
    assert ran.code == 2 and ran.stderr.count("\n") == 1 and "--estimate" in ran.stderr
    _nothing_written(tmp_path)


def test_estimate_bounds_are_n_trials_times_the_timed_trials(tmp_path: Path) -> None:
    (tmp_path / "hand.yaml").write_text(HAND)
    ran = run_main(["search", "--space", "hand.yaml", "--check", "--estimate", "--n-trials", "6", "--quiet"])
    assert ran.code == 0, ran.stderr
    costed = re.search(
        r"FLOPs costed for all 10 distinct configurations: "
        r"cheapest ([\d.]+) (\w?)FLOPs \(ok in ([\d.]+) s\), "
        r"dearest ([\d.]+) (\w?)FLOPs \(ok in ([\d.]+) s\)",
        ran.stdout,
    )
    assert costed, ran.stdout
    scale = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}
    cheap, dear = (float(costed[1]) * scale[costed[2]], float(costed[4]) * scale[costed[5]])
    assert 0 < cheap < dear  # the cheapest and the dearest of the ten, not one twice
    m = re.search(r"estimate: n_trials 6 x \(([\d.]+)\.\.([\d.]+)\) s per trial = ([\d.]+)\.\.([\d.]+) min "
                  r"with --n-jobs 1 \(load average [\d.]+;", ran.stdout)  # fmt: skip
    assert m, ran.stdout
    fast, slow, lo, hi = (float(g) for g in m.groups())
    assert sorted([float(costed[3]), float(costed[6])]) == [fast, slow]
    # printed to 3 significant figures: the bounds follow from the printed seconds within that
    assert lo == pytest.approx(6 * fast / 60, rel=5e-3) and hi == pytest.approx(6 * slow / 60, rel=5e-3)
    _nothing_written(tmp_path)


def _timed(seconds: float) -> Timed:
    return Timed({}, 1e-4, seconds, "ok")


def test_estimate_divides_by_the_workers_and_orders_the_bounds() -> None:
    est = Estimate(30, 4, 2, _timed(6.0), _timed(2.0), "all 4 distinct configurations", 3.0, 1.5)
    assert est.seconds() == (2.0, 6.0)
    assert est.minutes() == (30 * 2.0 / 2 / 60, 30 * 6.0 / 2 / 60)
    line = est.lines()[1]
    assert line.startswith(
        "estimate: n_trials 30 x (2..6) s per trial / 2 workers = 0.5..1.5 min with --n-jobs 4"
    )


def test_costed_configurations_are_all_a_sample_or_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    space = parse_space(yaml.safe_load(HAND))
    found = census(space)
    pool, what = _candidates(space, found, 8, 0)
    assert what == "all 10 distinct configurations" and len(pool) == 10
    monkeypatch.setattr(_estimate, "COSTED", 3)
    pool, what = _candidates(space, found, 8, 0)
    assert what == "a seeded random sample of 3 of the 10 distinct configurations"
    assert len({config_hash(cfg) for _, cfg in pool}) == 3
    assert _candidates(space, found, 8, 0)[0] == pool  # seeded
    monkeypatch.setattr(_dry, "CENSUS_LIMIT", 5)
    uncounted = census(space)
    assert uncounted.points is None
    assert uncounted.line() == "configurations: not counted (more than 5 parameter sets)"
    pool, what = _candidates(space, uncounted, 8, 0)
    assert what == "3 distinct configurations drawn at random (seeded)"
    for params, cfg in pool:  # real configurations of the space, with parameters that give them
        assert config_hash(cfg) in found.configs
        assert config_hash(space.sample(optuna.trial.FixedTrial(params))) == config_hash(cfg)
