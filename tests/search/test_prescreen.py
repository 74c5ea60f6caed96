"""``affinity search --prescreen K --proxy NAME``: each trained trial is the best of K proposals
by the proxy; the others are proxy_only (never trained, never on the front, not counted)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from affinity.cli import cli
from affinity.search.study import counted, default_storage_path, open_storage
from tests._cli import refusal
from tests.search.spaces import wide_tiny


def test_prescreen_trains_the_best_proposal_by_the_proxy() -> None:
    wide_tiny()
    args = ["search", "--space", "wide.yaml", "--prescreen", "3", "--proxy", "params", "--n-trials", "4"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(
        study_name="tiny", storage=open_storage(None, default_storage_path("results", "tiny"), create=False)
    )
    trials = {t.number: t for t in study.get_trials()}
    done, _ = counted(list(trials.values()))
    assert done == 4  # n_trials counts what was trained (and refused), not what was only scored
    winners = [t for t in trials.values() if "rivals" in t.user_attrs]
    only = [t for t in trials.values() if t.user_attrs.get("status") == "proxy_only"]
    assert winners and only
    assert sorted(n for w in winners for n in w.user_attrs["rivals"]) == sorted(t.number for t in only)
    compared = 0
    for w in winners:
        assert len(w.user_attrs["rivals"]) == 2 and w.user_attrs["status"] != "proxy_only"
        if w.user_attrs["status"] == "ok":  # the params proxy is the parameter count the search records
            assert w.user_attrs["proxy_score"] == pytest.approx(w.user_attrs["params_m"] * 1e6)
        for n in w.user_attrs["rivals"]:
            rival = trials[n]
            assert rival.state == TrialState.PRUNED and "val_acc" not in rival.user_attrs
            if "ranks below" in rival.user_attrs["reason"]:
                assert rival.user_attrs["proxy_score"] <= w.user_attrs["proxy_score"]
                compared += 1
    assert compared
    board = pd.read_csv(Path("results") / "tiny" / "leaderboard.csv")
    assert board.loc[board["status"] == "proxy_only", "pareto_rank"].isna().all()
    assert board["pareto_rank"].eq(1).any()
    line = " ".join(result.output.split())
    scored = len(winners) + len(only)
    assert f"prescreen (params, 3 proposals a trial): {scored} proposals scored in" in line
    assert f"{len(only)} proxy_only (not counted in n_trials)" in line


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (
            ["--prescreen", "3", "--proxy", "nope"],
            "--proxy: 'nope' is not a proxy; allowed: flops, grad_norm",
        ),
        (["--prescreen", "0"], "--prescreen: 0 is not allowed; allowed: an integer >= 1"),
    ],
)
def test_bad_prescreen_options_are_one_line_exit_2(args: list[str], start: str) -> None:
    assert refusal(["search", "--space", "tiny.yaml", "--quiet", *args]).startswith(start)
    assert not Path("results").exists()
