"""--repeats K: K distinct derived seeds per configuration, val_acc their mean (the objective
and the Pareto ranking), the sample std beside it, and each seed's accuracy reproducible."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from affinity.cli import cli, main
from affinity.data import load_dataset
from affinity.models.config import ModelCfg
from affinity.search.leaderboard import pareto_ranks
from affinity.search.objective import seeded_model, trial_seed
from affinity.search.space import load_space, resolve_space_path
from affinity.search.study import default_storage_path, open_storage
from affinity.train import train

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def study() -> optuna.Study:
    res = CliRunner().invoke(cli, ["search", "--space", "tiny.yaml", "--quiet", "--n-trials", "4",
                                   "--repeats", "3", "--study", "rep"], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    storage = open_storage(None, default_storage_path("results", "rep"), create=False)
    return optuna.load_study(study_name="rep", storage=storage)


def test_three_seeds_their_mean_and_std_and_the_ranking_on_the_mean(study: optuna.Study) -> None:
    trained = [t for t in study.trials if t.user_attrs["status"] == "ok"]
    assert trained
    for t in trained:
        a = t.user_attrs
        assert a["seeds"] == [trial_seed(0, a["config_hash"], k) for k in range(3)]
        assert len(set(a["seeds"])) == 3 and a["n_seeds"] == 3 and a["seed"] == a["seeds"][0]
        assert len(a["seed_val_acc"]) == 3
        assert a["val_acc"] == statistics.fmean(a["seed_val_acc"])
        assert a["val_acc_std"] == pytest.approx(statistics.stdev(a["seed_val_acc"]), abs=1e-12)
        assert t.values[0] == a["val_acc"]  # the objective is the mean
    # the seeds disagree somewhere, so a ranking on the first seed would differ from the mean's
    assert any(len(set(t.user_attrs["seed_val_acc"])) > 1 for t in trained)

    board = pd.read_csv(Path("results") / "rep" / "leaderboard.csv")
    done = board[board["state"] == "COMPLETE"]
    by_number = {t.number: t for t in study.trials}
    for row in done.itertuples():
        attrs = by_number[row.number].user_attrs
        assert row.val_acc == row.val_acc_mean == attrs["val_acc"]
        assert row.val_acc_std == pytest.approx(attrs["val_acc_std"])
        assert row.n_seeds == 3
    ranks, _ = pareto_ranks(done["val_acc_mean"].tolist(), done["gflops"].tolist())
    assert ranks == done["pareto_rank"].tolist()


def test_each_seed_of_a_repeat_is_the_run_that_seed_gives_alone(study: optuna.Study) -> None:
    t = next(t for t in study.trials if t.user_attrs["status"] == "ok")
    space = load_space("tiny.yaml")
    data = load_dataset("digits", img_size=space.settings.img_size, seed=space.settings.seed)
    seed = t.user_attrs["seeds"][2]
    model = seeded_model(ModelCfg.from_dict(t.user_attrs["config"]), data, seed)
    cfg = dataclasses.replace(space.settings.budget, seed=seed, device="cpu", threads=1)
    metrics = train(model, data, cfg)
    assert metrics.val_acc == t.user_attrs["seed_val_acc"][2]


def test_repeats_in_the_space_file_and_its_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load(resolve_space_path("tiny.yaml").read_text())
    doc["search"]["repeats"] = 2
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert load_space(str(path)).settings.repeats == 2
    assert load_space("tiny.yaml").settings.repeats == 1  # the default: today's cost
    doc["search"]["repeats"] = 0
    path.write_text(yaml.safe_dump(doc))
    for args, message in (
        (["--space", str(path), "--check"], "affinity: error: search.repeats: 0 is not allowed"),
        (["--space", "tiny.yaml", "--repeats", "-1"], "affinity: error: --repeats: -1 is not allowed"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["search", *args, "--quiet"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and len(err.strip().splitlines()) == 1
