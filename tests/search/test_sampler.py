"""The sampler's side of a search on tiny.yaml: n_trials counts distinct evaluations (a
duplicate proposal is recorded but does not count), the guard for a space smaller than
n_trials, and budgets recorded as Optuna constraints."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from affinity.cli import cli
from affinity.errors import SpaceError
from affinity.search.hypervolume import hypervolume, study_hypervolume
from affinity.search.space import config_hash, load_space, parse_space, resolve_space_path
from affinity.search.study import configurations, default_storage_path, distinct_configurations, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _search(*args: str) -> str:
    result = CliRunner().invoke(cli, ["search", "--space", "tiny.yaml", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _study(name: str) -> optuna.Study:
    storage = open_storage(None, default_storage_path("results", name), create=False)
    return optuna.load_study(study_name=name, storage=storage)


def test_tiny_space_holds_four_distinct_configurations() -> None:
    # kind x shift_size x padding = 8 grid points; equivalent ones are merged by the
    # canonical config hash, so fewer configurations than points
    space = load_space("tiny.yaml")
    n = distinct_configurations(space, space.settings.img_size, limit=100)
    assert n is not None and 2 <= n < 8
    assert distinct_configurations(space, space.settings.img_size, limit=2) == 2
    # listed: each one a trial's parameters that re-sample to its own configuration
    listed = configurations(space, space.settings.img_size)
    assert listed is not None and len(listed) == n
    hashes = {config_hash(space.sample(optuna.trial.FixedTrial(p), img_size=8)) for p in listed}
    assert len(hashes) == n
    shuffled = configurations(space, space.settings.img_size, seed=1)
    assert shuffled == configurations(space, space.settings.img_size, seed=1)
    assert shuffled is not None and sorted(map(str, shuffled)) == sorted(map(str, listed))


def test_small_space_stops_at_its_distinct_configurations_and_says_so() -> None:
    space = load_space("tiny.yaml")
    n = distinct_configurations(space, space.settings.img_size, limit=100)
    assert n is not None
    out = _search("--n-trials", "20", "--sampler", "random", "--study", "small")
    assert f"holds {n} distinct configurations" in out and f"n_trials 20 -> {n}" in out
    board = pd.read_csv(Path("results") / "small" / "leaderboard.csv")
    evaluated = board[board["status"] != "duplicate"]
    assert len(evaluated) == n
    assert evaluated["config_hash"].nunique() == n
    dups = board[board["status"] == "duplicate"]
    assert f"{len(dups)} duplicate proposals" in out
    # every duplicate reuses an evaluated configuration's result
    assert set(dups["config_hash"]) <= set(evaluated["config_hash"])


def test_n_trials_counts_distinct_configurations() -> None:
    _search("--n-trials", "3", "--sampler", "tpe", "--study", "three", "--quiet")
    study = _study("three")
    evaluated = [t for t in study.trials if t.user_attrs.get("status") != "duplicate"]
    assert len(evaluated) == 3
    assert len({t.user_attrs["config_hash"] for t in evaluated}) == 3


def test_budget_is_an_optuna_constraint() -> None:
    _search("--n-trials", "2", "--max-gflops", "1e-9", "--study", "budget", "--quiet")
    trials = _study("budget").trials
    assert trials
    for t in trials:
        assert t.constraints["max_gflops"] == t.user_attrs["gflops"] - 1e-9 > 0
    _search("--n-trials", "1", "--max-gflops", "1e6", "--study", "roomy", "--quiet")
    (t,) = _study("roomy").trials
    assert t.user_attrs["status"] == "ok" and t.constraints["max_gflops"] <= 0


def test_hypervolume_of_hand_computed_points() -> None:
    # (acc, gflops): a front of (0.5, 1) and (0.8, 3), a dominated (0.4, 2), an infeasible
    # one past the reference; reference (0, 4): 0.5*(3-1) + 0.8*(4-3) = 1.8
    points = [(0.5, 1.0), (0.8, 3.0), (0.4, 2.0), (0.9, 5.0)]
    assert hypervolume(points, 4.0) == pytest.approx(1.8)
    assert hypervolume([], 4.0) == 0.0
    assert hypervolume([(0.5, 1.0)], 4.0) == pytest.approx(1.5)


def test_metric_names_hypervolume_in_summary_and_leaderboard() -> None:
    out = _search("--n-trials", "2", "--study", "hv", "--max-steps", "2")
    study = _study("hv")
    assert study.metric_names == ["val_acc", "gflops"]
    import warnings

    from optuna.visualization.matplotlib import plot_pareto_front

    with warnings.catch_warnings():  # Optuna marks its matplotlib backend experimental
        warnings.simplefilter("ignore")
        ax = plot_pareto_front(study)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("val_acc", "gflops")  # Optuna's plot labels the axes
    board = pd.read_csv(Path("results") / "hv" / "leaderboard.csv")
    hv, ref = study_hypervolume(board)
    assert ref == pytest.approx(1.1 * board["gflops"].max())
    done = board[board["state"] == "COMPLETE"]
    assert hv == pytest.approx(hypervolume(zip(done["val_acc"], done["gflops"]), ref))
    assert f"hypervolume {hv:.5g}" in out
    res = CliRunner().invoke(cli, ["leaderboard", "hv", "--format", "json", "--hv-ref-gflops", "1"])
    doc = json.loads(res.output)
    assert doc["hypervolume"]["reference"] == {"val_acc": 0.0, "gflops": 1.0}
    assert doc["hypervolume"]["value"] == pytest.approx(study_hypervolume(board, 1.0)[0])
    res = CliRunner().invoke(cli, ["leaderboard", "hv"])
    assert f"hypervolume {hv:.5g}" in " ".join(res.output.split())  # the legend wraps
    _search("--n-trials", "1", "--study", "one", "--objective", "accuracy", "--max-steps", "2", "--quiet")
    assert _study("one").metric_names == ["val_acc"]


def _tiny_with(enqueue: object) -> dict:
    doc = yaml.safe_load(resolve_space_path("tiny.yaml").read_text())
    doc["search"]["enqueue"] = enqueue
    return doc


@pytest.mark.parametrize(
    ("enqueue", "message"),
    [
        (5, "search.enqueue: 5 is not allowed; allowed: a list of mappings"),
        ([3], "search.enqueue[0]: 3 is not allowed"),
        ([{"model.mixer.shift": 3}], "search.enqueue[0].model.mixer.shift: unknown key"),
        ([{"model.mixer.kind": "spatial_shift"}, {"model.mixer.shift_size": 5}],
         "search.enqueue[1].model.mixer.shift_size: 5 is not allowed; allowed: one of 1, 3"),
    ],
)  # fmt: skip
def test_enqueue_is_validated_with_the_key_path(enqueue: object, message: str) -> None:
    with pytest.raises(SpaceError) as exc:
        parse_space(_tiny_with(enqueue))
    assert str(exc.value).startswith(message)


def test_enqueued_designs_are_evaluated_first() -> None:
    seeds = [
        {"model.mixer.kind": "axial_shift", "model.mixer.shift_size": 3, "model.mixer.padding": "circular"},
        {"model.mixer.kind": "spatial_shift"},
    ]
    Path("seeded.yaml").write_text(yaml.safe_dump({**_tiny_with(seeds), "name": "seeded"}))
    result = CliRunner().invoke(
        cli, ["search", "--space", "seeded.yaml", "--n-trials", "3", "--max-steps", "2", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    trials = _study("seeded").trials
    assert trials[0].params == seeds[0]
    assert trials[1].params["model.mixer.kind"] == "spatial_shift"
    assert trials[0].user_attrs["enqueued"] and trials[1].user_attrs["enqueued"]
    assert "enqueued" not in trials[2].user_attrs
    # the shipped spaces seed the published designs they hold
    shifts = load_space("shifts.yaml").settings.enqueue
    assert {"model.mixer.kind": "axial_shift", "model.mixer.shift_size": 5}.items() <= shifts[0].items()
    assert shifts[1]["model.mixer.kind"] == "spatial_shift"
