"""The MO-ASHA rung rule on synthetic rungs whose promotions are worked out by hand, and
``affinity search --fidelity asha``: trials stopped at rungs, a front of full-budget trials,
every decision redone from the storage, bad options refused."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState

from affinity.cli import cli
from affinity.search.fidelity import RUNG_ATTR, Stopped, continues, crowding_distance, promoted, rung_check
from affinity.search.settings import Settings, with_overrides
from affinity.search.space import resolve_space_path
from affinity.search.study import default_storage_path, open_storage
from tests._cli import refusal
from tests.search.spaces import wide_tiny


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


# --- the asynchronous rule and the search (--fidelity asha) ---------------------------------


def test_continues_keeps_the_best_ceil_n_over_eta() -> None:
    # the first trial at a rung is the best 1 of 1: it always continues
    assert continues([0.1], [9.0], eta=3)
    # 2 at the rung, eta 3: ceil(2/3) = 1 continues. The newcomer (last) dominates the first:
    # it continues; dominated by it, it stops
    assert continues([0.5, 0.6], [2.0, 1.0], eta=3)
    assert not continues([0.6, 0.5], [1.0, 2.0], eta=3)
    # 4 at the rung, eta 2: 2 continue. One front of 4 (acc and gflops rise together): the
    # extremes (infinite crowding distance) are indices 0 and 3; the newcomer is index 3
    assert continues([0.4, 0.5, 0.6, 0.9], [1.0, 2.0, 3.0, 9.0], eta=2)
    # the same four with the newcomer an interior point (index 3, gflops 2.5): it stops
    assert not continues([0.4, 0.6, 0.9, 0.55], [1.0, 3.0, 9.0, 2.5], eta=2)
    with pytest.raises(ValueError, match="eta=1"):
        continues([0.5], [1.0], eta=1)


@pytest.mark.parametrize(
    ("epochs", "eta", "rungs", "expected"),
    [
        (9, 3, (), (1, 3, 9)),
        (8, 3, (), (3, 8)),
        (9, 3, (1, 3), (1, 3, 9)),
        (4, 2, (1, 4), (1, 4)),
        (27, 3, (), (1, 3, 9, 27)),
    ],
)
def test_rung_epochs_end_at_the_full_budget(
    epochs: int, eta: int, rungs: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    settings = with_overrides(
        Settings(), fidelity="asha", epochs=epochs, eta=eta, rungs=",".join(map(str, rungs)) or None
    )
    assert settings.rung_epochs() == expected
    assert Settings().rung_epochs() == ()


def test_asha_search_stops_trials_early_and_keeps_the_front_whole() -> None:
    wide_tiny()
    result = CliRunner().invoke(
        cli,
        ["search", "--space", "wide.yaml", "--fidelity", "asha", "--rungs", "1,2", "--epochs", "3",
         "--n-trials", "8"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    study = optuna.load_study(
        study_name="tiny", storage=open_storage(None, default_storage_path("results", "tiny"), create=False)
    )
    trials = [t for t in study.get_trials() if t.user_attrs.get("status") in ("ok", "stopped")]
    stopped = [t for t in trials if t.user_attrs["status"] == "stopped"]
    full = [t for t in trials if t.user_attrs["status"] == "ok"]
    assert stopped and full
    for t in stopped:  # trained to its rung only, recorded with its accuracy there
        rung = t.user_attrs["rung"]
        assert t.state == TrialState.PRUNED and rung in (1, 2)
        assert len(t.user_attrs["epoch_acc"]) == rung
        assert t.user_attrs["val_acc"] == t.user_attrs["epoch_acc"][-1] == t.user_attrs[RUNG_ATTR][str(rung)]
    for t in full:
        assert t.state == TrialState.COMPLETE and len(t.user_attrs["epoch_acc"]) == 3
    # one worker: trials reach each rung in number order, so every decision can be redone
    # from the records of the trials before it
    for rung in (1, 2):
        at = sorted(
            (t for t in trials if str(rung) in t.user_attrs.get(RUNG_ATTR, {})), key=lambda t: t.number
        )
        for k, t in enumerate(at):
            acc = [u.user_attrs[RUNG_ATTR][str(rung)] for u in at[: k + 1]]
            gflops = [u.user_attrs["gflops"] for u in at[: k + 1]]
            went_on = t.user_attrs["status"] == "ok" or t.user_attrs["rung"] > rung
            assert continues(acc, gflops, eta=3) == went_on, (rung, t.number)
    board = pd.read_csv(Path("results") / "tiny" / "leaderboard.csv")
    front = board[board["pareto_rank"] == 1]
    assert len(front) and set(front["status"]) <= {"ok", "duplicate"}
    assert board.loc[board["status"] == "stopped", "pareto_rank"].isna().all()
    assert sorted(board.loc[board["status"] == "stopped", "rung"]) == sorted(
        t.user_attrs["rung"] for t in stopped
    )
    assert f"{len(stopped)} trials stopped early" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (
            ["--fidelity", "asha", "--rungs", "0,2"],
            '--rungs: "0,2" is not allowed; allowed: increasing epochs',
        ),
        (["--fidelity", "asha", "--rungs", "3,2"], '--rungs: "3,2" is not allowed'),
        (["--fidelity", "asha", "--rungs", "one"], '--rungs: "one" is not allowed'),
        (
            ["--fidelity", "asha", "--rungs", "1,5", "--epochs", "3"],
            "--rungs: rung 5 is beyond the budget's 3 epochs",
        ),
        (
            ["--fidelity", "asha", "--eta", "1", "--epochs", "3"],
            "--eta: 1 is not allowed; allowed: an integer >= 2",
        ),
        (["--fidelity", "asha"], "--fidelity: asha needs a rung below the budget's 1 epochs"),
        (["--rungs", "1,2"], "--rungs: rungs are allowed only with fidelity asha"),
        (
            ["--fidelity", "asha", "--epochs", "3", "--objective", "accuracy"],
            "--fidelity: asha is allowed only with objective pareto",
        ),
        (["--fidelity", "asha", "--epochs", "3", "--max-steps", "4"], "--fidelity: asha counts epochs"),
    ],
)
def test_bad_fidelity_options_are_one_line_exit_2(args: list[str], start: str) -> None:
    assert refusal(["search", "--space", "tiny.yaml", "--quiet", *args]).startswith(start)
    assert not Path("results").exists()


def test_bad_rungs_in_the_space_file_name_the_key(tmp_path: Path) -> None:
    doc = yaml.safe_load(resolve_space_path("tiny.yaml").read_text())
    doc["search"].update(fidelity="asha", rungs=[1, 9])
    doc["budget"]["epochs"] = 3
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    message = refusal(["search", "--space", str(tmp_path / "s.yaml"), "--quiet"])
    assert message.startswith("search.rungs: rung 9 is beyond the budget's 3 epochs")


def test_the_rung_decision_reads_every_worker_s_records_from_the_storage(tmp_path: Path) -> None:
    """Trials of other workers (running ones too) count at a rung; duplicates and failed
    trials do not; a trial continues only in the best ceil(n / eta)."""
    storage = open_storage(None, tmp_path / "journal.log", create=True)
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    settings = with_overrides(Settings(), fidelity="asha", rungs="1", epochs=3)

    def record(acc: float, gflops: float, status: str | None = None) -> optuna.Trial:
        trial = study.ask()
        trial.set_user_attr("gflops", gflops)
        trial.set_user_attr(RUNG_ATTR, {"1": acc})
        if status is not None:
            trial.set_user_attr("status", status)
        return trial

    for acc, gflops in ((0.8, 1.0), (0.7, 0.5), (0.9, 2.0)):  # three running trials of other workers
        record(acc, gflops)
    record(0.99, 0.1, "duplicate")  # repeats another trial's record: not counted
    failed = record(0.99, 0.1)
    study.tell(failed, state=TrialState.FAIL)  # interrupted: it runs again, then counts
    # a newcomer dominated by all three: 4 at the rung, ceil(4/3) = 2 continue; it stops
    slow = study.ask()
    slow.set_user_attr("gflops", 3.0)
    with pytest.raises(Stopped, match="not in the best 2 of the 4 trials at that rung"):
        rung_check(study, slow, settings)(1, 0.5)
    # its record stays for the next: one on the front, the cheapest of all, continues (5 at
    # the rung: 2 continue; the front is {0.9@2, 0.8@1, 0.7@0.5, 0.6@0.2}: the newcomer and
    # the most accurate have infinite crowding distance)
    cheap = study.ask()
    cheap.set_user_attr("gflops", 0.2)
    rung_check(study, cheap, settings)(1, 0.6)
    assert study.get_trials()[-1].user_attrs[RUNG_ATTR] == {"1": 0.6}
    # epochs that are not rungs (2) and the full budget (3) are not judged
    rung_check(study, slow, settings)(2, 0.0)
    rung_check(study, slow, settings)(3, 0.0)


def test_timeout_starts_no_trial_after_the_deadline() -> None:
    # a deadline already past when the first worker asks: nothing runs, and the search says why
    result = CliRunner().invoke(
        cli, ["search", "--space", "tiny.yaml", "--timeout", "1e-9"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    study = optuna.load_study(
        study_name="tiny", storage=open_storage(None, default_storage_path("results", "tiny"), create=False)
    )
    assert study.get_trials() == []
    assert "stopped early: --timeout 1e-09 s reached" in result.output
    assert refusal(["search", "--space", "tiny.yaml", "--timeout", "0"]).startswith(
        "--timeout: 0.0 is not allowed; allowed: null or a number > 0"
    )
