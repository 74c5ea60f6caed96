"""``--sampler ehvi``: the hypervolume improvement it ranks by, distinct proposals, what it
learns from an additive objective, enqueued and refused configurations, and the refusal of a
space it cannot list."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from affinity.cli import cli
from affinity.data.base import load_dataset
from affinity.search.ehvi import STOPPED_WEIGHT, EhviSampler, _stopped_finals, hypervolume_improvements
from affinity.search.hypervolume import hypervolume
from affinity.search.objective import model_accepts
from affinity.search.space import load_space
from affinity.search.study import distinct_configurations
from tests._cli import refusal

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: a 4 x 4 x 2 grid; accuracy additive in a and b (b = 3 best), cost a product of a and c
GRID = [{"a": a, "b": b, "c": c} for a, b, c in itertools.product(range(4), range(4), ["x", "y"])]


def _hash(p: dict[str, Any]) -> str:
    return f"{p['a']}{p['b']}{p['c']}"


def _acc(p: dict[str, Any]) -> float:
    return 0.5 + 0.1 * p["a"] + 0.05 * p["b"]


def _cost(p: dict[str, Any]) -> float:
    return (p["a"] + 1) * (2.0 if p["c"] == "y" else 1.0)


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    p = {
        "a": trial.suggest_categorical("a", list(range(4))),
        "b": trial.suggest_categorical("b", list(range(4))),
        "c": trial.suggest_categorical("c", ["x", "y"]),
    }
    trial.set_user_attr("config_hash", _hash(p))
    trial.set_user_attr("gflops", _cost(p))
    return _acc(p), _cost(p)


def _study(sampler: Any, directions: list[str] | None = None) -> optuna.Study:
    return optuna.create_study(directions=directions or ["maximize", "minimize"], sampler=sampler)


def test_improvement_is_the_hypervolume_a_point_adds() -> None:
    rng = random.Random(0)
    for _ in range(50):
        front = [(rng.random(), rng.uniform(0, 10)) for _ in range(rng.randrange(0, 6))]
        cands = [(rng.random(), rng.uniform(0, 12)) for _ in range(20)]
        got = hypervolume_improvements(
            np.array([a for a, _ in cands]), np.array([g for _, g in cands]), front, 11.0
        )
        base = hypervolume(front, 11.0)
        want = [hypervolume([*front, c], 11.0) - base for c in cands]
        assert got == pytest.approx(want, abs=1e-12)


def test_proposals_are_distinct_and_the_additive_front_is_found() -> None:
    front = {_hash(p) for p in GRID if p["b"] == 3 and p["c"] == "x"}  # the true Pareto set: one per a
    for seed in range(3):
        study = _study(EhviSampler({_hash(p): p for p in GRID}, seed=seed))
        study.optimize(_objective, n_trials=12)
        hashes = [t.user_attrs["config_hash"] for t in study.trials]
        assert len(set(hashes)) == 12  # never a configuration twice
        assert front <= set(hashes), seed  # 4 startup draws, then every front point within 8
        # the same seed proposes the same configurations
        again = _study(EhviSampler({_hash(p): p for p in GRID}, seed=seed))
        again.optimize(_objective, n_trials=12)
        assert [t.user_attrs["config_hash"] for t in again.trials] == hashes


def test_random_sampling_misses_the_front_at_that_budget() -> None:
    # what the test above asks of ehvi is not what 12 uniform draws do (checks the test can fail)
    front = {_hash(p) for p in GRID if p["b"] == 3 and p["c"] == "x"}
    found = 0
    for seed in range(3):
        study = _study(optuna.samplers.RandomSampler(seed=seed))
        study.optimize(_objective, n_trials=12)
        found += front <= {t.user_attrs["config_hash"] for t in study.trials}
    assert found == 0


def test_single_objective_finds_the_best() -> None:
    for seed in range(3):
        study = _study(EhviSampler({_hash(p): p for p in GRID}, seed=seed), ["maximize"])
        study.optimize(lambda t: _objective(t)[0], n_trials=10)
        assert study.best_value == pytest.approx(_acc({"a": 3, "b": 3})), seed


def test_refused_configurations_are_never_proposed() -> None:
    refused = {_hash(p) for p in GRID if p["b"] == 3 and p["a"] >= 2}  # two of them on the front
    asked: list[str] = []

    def accepts(p: dict[str, Any]) -> bool:
        asked.append(_hash(p))
        return _hash(p) not in refused

    study = _study(EhviSampler({_hash(p): p for p in GRID}, seed=0, accepts=accepts))
    study.optimize(_objective, n_trials=28)
    hashes = [t.user_attrs["config_hash"] for t in study.trials]
    assert not refused & set(hashes) and len(set(hashes)) == 28  # every accepted one, once
    assert len(asked) == len(set(asked))  # a refused configuration is checked once


def test_enqueued_parameters_are_kept_and_the_rest_filled_from_the_list() -> None:
    study = _study(EhviSampler({_hash(p): p for p in GRID}, seed=0))
    study.enqueue_trial({"a": 2})
    study.optimize(_objective, n_trials=1)
    params = study.trials[0].params
    assert params["a"] == 2 and params in GRID


def _within(limit: float, single: bool) -> Any:
    """``_objective`` with the search's ``max_gflops``: costed, then pruned if over ``limit``."""

    def objective(trial: optuna.Trial) -> Any:
        acc, cost = _objective(trial)
        if cost > limit:
            raise optuna.TrialPruned
        return acc if single else (acc, cost)

    return objective


@pytest.mark.parametrize("single", [False, True])
def test_over_budget_configurations_come_after_every_one_within_the_limit(single: bool) -> None:
    limit = 4.5  # 24 of GRID's 32 configurations cost at most 4
    directions = ["maximize"] if single else None
    for seed in range(3):
        sampler = EhviSampler({_hash(p): p for p in GRID}, seed=seed, limits={"gflops": limit})
        study = _study(sampler, directions)
        study.optimize(_within(limit, single), n_trials=24)
        over = [t.number for t in study.trials if t.user_attrs["gflops"] > limit]
        assert all(n < 4 for n in over), (seed, over)  # only startup draws, before 4 were costed
        assert len({t.user_attrs["config_hash"] for t in study.trials}) == 24
    # without the limit the same sampler proposes over-budget ones later on (the test can fail)
    study = _study(EhviSampler({_hash(p): p for p in GRID}, seed=0), directions)
    study.optimize(_within(limit, single), n_trials=24)
    assert any(t.number >= 4 and t.user_attrs["gflops"] > limit for t in study.trials)


def test_model_accepts_is_what_a_trial_would_reject() -> None:
    space = load_space("shifts.yaml")
    data = load_dataset("digits", img_size=16, seed=0, quiet=True)
    base = {"model.dims": "[16, 32]", "model.channel_mlp_ratio": 1, "model.mixer.kind": "axial_shift"}
    wide = {"model.mixer.shift_size": 5, "model.mixer.dilation": 2, "model.mixer.connection": "parallel"}
    state = torch.random.get_rng_state()
    # reflect padding of 4 on stage 2's 4x4 map is refused; replicate is not
    assert not model_accepts(space, data, {**base, **wide, "model.mixer.padding": "reflect"})
    assert model_accepts(space, data, {**base, **wide, "model.mixer.padding": "replicate"})
    assert torch.equal(torch.random.get_rng_state(), state)


def test_ehvi_on_a_continuous_space_is_one_line_exit_2() -> None:
    line = refusal(["search", "--space", "container.yaml", "--sampler", "ehvi", "--quiet"])
    assert line.startswith("--sampler ehvi: ") and "container.yaml" in line and "use tpe" in line, line
    assert not Path("results").exists()


def test_search_with_ehvi_trains_every_configuration_once() -> None:
    space = load_space("tiny.yaml")
    n = distinct_configurations(space, space.settings.img_size, limit=100)
    args = [
        "search",
        "--space",
        "tiny.yaml",
        "--sampler",
        "ehvi",
        "--n-trials",
        "20",
        "--study",
        "e",
        "--quiet",
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    board = pd.read_csv(Path("results") / "e" / "leaderboard.csv")
    assert n is not None and len(board) == n  # no duplicate proposal: n trials for n configurations
    assert board["config_hash"].nunique() == n and set(board["status"]) == {"ok"}


def test_a_stopped_trial_is_its_final_accuracy_predicted_by_the_line_through_full_ones() -> None:
    final = np.array([0.9, 0.7, 0.5])
    curves = [[0.5, 0.8, 0.9], [0.3, 0.6, 0.7], [0.1, 0.4, 0.5]]  # final = epoch 1 + 0.4, epoch 2 + 0.1
    stopped = [({}, 1, 0.45, 1.0), ({}, 2, 0.2, 1.0)]
    ys, ws = _stopped_finals(final, curves, stopped)
    assert ys == pytest.approx([0.85, 0.3])
    assert ws.tolist() == [STOPPED_WEIGHT, STOPPED_WEIGHT]
    ys, ws = _stopped_finals(final[:2], curves[:2], stopped)  # two full trials: no line, ignored
    assert ws.tolist() == [0.0, 0.0]


_GRID_DIST = {
    "a": CategoricalDistribution(list(range(4))),
    "b": CategoricalDistribution(list(range(4))),
    "c": CategoricalDistribution(["x", "y"]),
}


def _proposal_after(seed: int, rung_acc: float) -> dict[str, Any]:
    """The next proposal after 8 full trials with b < 3 (epoch 1 at final - 0.3) and one
    trial of b = 3 stopped at epoch 1 at ``rung_acc``."""
    study = _study(EhviSampler({_hash(p): p for p in GRID}, seed=seed))
    for p in [q for q in GRID if q["b"] < 3][::3][:8]:
        attrs = {"config_hash": _hash(p), "gflops": _cost(p), "epoch_acc": [_acc(p) - 0.3, _acc(p)]}
        study.add_trial(
            create_trial(params=p, distributions=_GRID_DIST, values=[_acc(p), _cost(p)], user_attrs=attrs)
        )
    p = {"a": 0, "b": 3, "c": "x"}
    attrs = {"config_hash": _hash(p), "gflops": _cost(p), "status": "stopped", "rung": 1, "val_acc": rung_acc}
    study.add_trial(
        create_trial(params=p, distributions=_GRID_DIST, state=TrialState.PRUNED, user_attrs=attrs)
    )
    trial = study.ask()
    return {k: trial.suggest_categorical(k, d.choices) for k, d in _GRID_DIST.items()}


def test_a_stopped_trials_rung_accuracy_moves_the_proposal() -> None:
    # b = 3 is seen only in the stopped trial: at epoch 1 it reached 0.9, a final accuracy of
    # 1.2 on the full trials' line, so b = 3 is the best value; at 0.2 (0.5) the worst
    for seed in range(5):
        assert _proposal_after(seed, 0.9)["b"] == 3
        assert _proposal_after(seed, 0.2)["b"] != 3


def _concurrent(lag: int, order_seed: int, *, n_trials: int = 16, workers: int = 2) -> list[str]:
    """A study of ``workers`` concurrent workers in one thread: each step either starts a
    trial (when a worker is free and ``settled`` lets it) or finishes one of the running
    trials, chosen by ``order_seed``: the order in which trials finish is what changes
    between runs of a parallel search. Returns the configurations by trial number."""
    from affinity.search._worker import settled

    study = _study(EhviSampler({_hash(p): p for p in GRID}, seed=0, lag=lag))
    rng = random.Random(order_seed)
    running: list[tuple[optuna.Trial, dict[str, Any]]] = []
    while len(study.trials) < n_trials or running:
        free = len(study.trials) < n_trials and len(running) < workers
        if free and settled(study.get_trials(deepcopy=False), lag) and (not running or rng.random() < 0.5):
            trial = study.ask()
            p = {k: trial.suggest_categorical(k, sorted({q[k] for q in GRID})) for k in ("a", "b", "c")}
            running.append((trial, p))
        else:  # a trial records its configuration as it ends: the running ones are known by CHOSEN
            trial, p = running.pop(rng.randrange(len(running)))
            trial.set_user_attr("config_hash", _hash(p))
            trial.set_user_attr("gflops", _cost(p))
            study.tell(trial, (_acc(p), _cost(p)))
    return [t.user_attrs["config_hash"] for t in study.trials]


def test_with_a_lag_proposals_do_not_depend_on_which_trials_finish_first() -> None:
    runs = [_concurrent(4, order) for order in range(6)]
    assert all(run == runs[0] for run in runs)
    assert len(set(runs[0])) == 16
    # without the lag they do (so the test can fail): the same six orders, other proposals
    free = [_concurrent(1, order) for order in range(6)]
    assert len({tuple(run) for run in free}) > 1


def test_settled_waits_for_the_trials_a_lag_below_the_next() -> None:
    from affinity.search._worker import settled

    def trials(states: str) -> list[Any]:
        kinds = {"c": TrialState.COMPLETE, "r": TrialState.RUNNING, "w": TrialState.WAITING}
        kinds["f"] = TrialState.FAIL
        return [create_trial(state=kinds[s], values=[0.5, 1.0] if s == "c" else None) for s in states]

    def numbered(states: str) -> list[Any]:
        out = trials(states)
        for number, t in enumerate(out):
            t.number = number
        return out

    assert not settled(numbered("ccrr"), 2)  # the next is 4: trials up to 4 - 2 must have finished
    assert settled(numbered("ccrr"), 3)
    assert not settled(numbered("crrr"), 3)
    assert settled(numbered("crrr"), 4)
    assert settled(numbered("rrrr"), 1)  # lag 1: a search of one worker never waits
    assert settled(numbered("ccfrr"), 3)  # a failed trial has finished
    assert not settled(numbered("rcwcc"), 2)  # the next is the waiting trial 2: trial 0 runs
    assert settled(numbered("crwrr"), 2)


@pytest.mark.parametrize(
    ("changes", "n_jobs", "lag"),
    [
        ({}, 2, 4),  # ehvi, two workers: reproducible, twice the workers
        ({}, 3, 6),
        ({}, 1, 1),  # one worker never waits
        ({"sampler": "tpe"}, 2, 1),  # other samplers run free
        ({"fidelity": "asha"}, 2, 1),  # ASHA judges a trial by whatever else has finished
        ({"prescreen": 3}, 2, 1),
    ],
)
def test_the_lag_is_twice_the_workers_where_proposals_can_be_reproduced(
    changes: dict[str, Any], n_jobs: int, lag: int
) -> None:
    import dataclasses

    from affinity.search._worker import proposal_lag

    settings = dataclasses.replace(load_space("shifts.yaml").settings, **changes)
    assert proposal_lag(settings, n_jobs) == lag
