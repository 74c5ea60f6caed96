"""Where a trial's time goes: the phase clock, the shares the summary prints, the times a
search records; and that the speed-ups behind them change no number (same seed, same
accuracies and weights)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from affinity.data import load_dataset
from affinity.search import timing
from affinity.search.leaderboard import build_leaderboard
from affinity.search.objective import seeded_model
from affinity.search.runner import RunSpec, run_search
from affinity.search.space import load_space, with_overrides
from affinity.search.study import create_or_resume, default_storage_path, open_storage
from affinity.train import train


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_phase_clock_splits_wall_time(monkeypatch) -> None:
    fake = FakeTime()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    clock = timing.PhaseClock()
    clock.add("leaderboard", 0.5)
    clock.start("ask")
    fake.now += 1.0
    clock.start("train")
    fake.now += 3.0
    clock.start("train")  # the running phase continues
    fake.now += 2.0
    clock.move("train", "eval", 1.5)  # of the 5 s so far, 1.5 s were the val evaluation
    fake.now += 4.0
    clock.move("train", "eval", 100.0)  # never more than the phase holds
    clock.start("tell")
    fake.now += 0.25
    clock.stop()
    fake.now += 7.0  # stopped: counts nowhere
    record = clock.record()
    assert list(record) == list(timing.PHASES)
    assert record == {**dict.fromkeys(timing.PHASES, 0.0), "leaderboard": 0.5, "ask": 1.0, "train": 0.0,
                      "eval": 9.0, "tell": 0.25}  # fmt: skip


def test_shares_from_the_board() -> None:
    board = pd.DataFrame(
        [{"time_train": 6.0, "time_flops": 3.0, "time_tell": 1.0}, {"time_train": 2.0, "time_flops": 0.0},
         {"time_train": None}],  # a running trial: not timed
    )  # fmt: skip
    assert timing.phase_shares(board) == {"train": 8 / 12, "flops": 3 / 12, "tell": 1 / 12}
    assert (
        timing.shares_line(board)
        == "time per trial (mean 6.00 s over 2 trials): train 67%, flops 25%, tell 8%"
    )
    assert timing.shares_line(board.iloc[2:]) is None


def test_a_search_records_every_phase_of_its_trials(tmp_path: Path) -> None:
    space = load_space("tiny.yaml")
    settings = with_overrides(space.settings, max_steps=2, n_trials=3)
    store = open_storage(None, default_storage_path(tmp_path, "t"), create=True)
    create_or_resume("t", store, space, settings)
    spec = RunSpec(space, settings, "t", tmp_path / "t", None, 3, ("cpu",), 1)
    study, board, _ = run_search(spec, n_jobs=1, progress=False)
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get("status") == "ok"]
    assert trained
    for t in trials:
        times = t.user_attrs[timing.ATTR]
        assert list(times) == list(timing.PHASES) and all(s >= 0 for s in times.values())
        assert times["ask"] > 0 and times["tell"] > 0
        assert (times["leaderboard"] > 0) == (t.number > 0)  # the rewrite after the previous trial
    for t in trained:
        times = t.user_attrs[timing.ATTR]
        assert all(times[p] > 0 for p in ("sample", "build", "flops", "train", "eval", "latency"))
    csv = pd.read_csv(tmp_path / "t" / "leaderboard.csv")
    for frame in (board, csv):
        for t in trials:
            row = frame[frame["number"] == t.number].iloc[0]
            assert [row[c] for c in timing.COLUMNS] == pytest.approx(list(t.user_attrs[timing.ATTR].values()))
    assert timing.shares_line(build_leaderboard(study)).startswith("time per trial (mean ")


def test_the_trainers_foreach_kernels_change_no_number(monkeypatch) -> None:
    """A seeded search trial trains to the same weights and accuracies with the multi-tensor
    (foreach) optimiser and clipping the trainer uses on the CPU as with the per-tensor ones."""
    space = load_space("tiny.yaml")
    params = {"model.mixer.kind": "axial_shift", "model.mixer.shift_size": 3, "model.mixer.padding": "zero"}
    cfg = space.sample(optuna.trial.FixedTrial(params), img_size=space.settings.img_size)
    data = load_dataset("digits", img_size=space.settings.img_size, seed=0)
    budget = dataclasses.replace(space.settings.budget, epochs=2, seed=11, device="cpu", threads=1)

    def run() -> tuple[list[float], list[torch.Tensor]]:
        model = seeded_model(cfg, data, seed=11)
        metrics = train(model, data, budget)
        return [h.val_acc for h in metrics.history] + [metrics.val_loss], list(model.state_dict().values())

    accs, weights = run()
    adamw, clip = torch.optim.AdamW, torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **k: adamw(*a, **{**k, "foreach": False}))
    monkeypatch.setattr(
        torch.nn.utils, "clip_grad_norm_", lambda *a, **k: clip(*a, **{**k, "foreach": False})
    )
    single_accs, single_weights = run()
    assert accs == single_accs
    assert all(torch.equal(a, b) for a, b in zip(weights, single_weights, strict=True))
