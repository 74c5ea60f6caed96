"""Searches on tiny.yaml: the leaderboard's every column, Pareto ranks recomputed from the CSV,
front configs, resume, constraints, rejected combinations, grid, single objective, the
leaderboard command, two worker processes, and Ctrl-C."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from affinity.cli import cli, main
from affinity.models.config import load_model_config
from affinity.search.leaderboard import COLUMNS, pareto_ranks
from affinity.search.space import resolve_space_path
from affinity.search.study import counted, default_storage_path, open_storage
from tests.search.spaces import wide_tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)

PARAMS = ["model.mixer.kind", "model.mixer.shift_size", "model.mixer.padding"]


def _search(*args: str) -> None:
    result = CliRunner().invoke(
        cli, ["search", "--space", "tiny.yaml", "--quiet", *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output


def _study(name: str = "tiny", out: str = "results") -> optuna.Study:
    storage = open_storage(None, default_storage_path(out, name), create=False)
    return optuna.load_study(study_name=name, storage=storage)


def _board(name: str = "tiny") -> pd.DataFrame:
    return pd.read_csv(Path("results") / name / "leaderboard.csv")


def _evaluated(board: pd.DataFrame) -> int:
    """Rows that count towards n_trials (duplicate proposals do not)."""
    return int((board["status"] != "duplicate").sum())


def _dominates(a: pd.Series, b: pd.Series) -> bool:
    return a.val_acc >= b.val_acc and a.gflops <= b.gflops and (a.val_acc > b.val_acc or a.gflops < b.gflops)


def test_pareto_ranks_known_points() -> None:
    #        acc   gflops
    points = [(0.9, 2.0), (0.8, 1.0), (0.85, 3.0), (0.7, 1.5), (0.9, 2.0)]
    ranks, dominated = pareto_ranks([p[0] for p in points], [p[1] for p in points])
    assert ranks == [1, 1, 2, 2, 1]
    assert dominated == [0, 0, 2, 1, 0]


def test_tiny_search_leaderboard_front_and_resume() -> None:
    _search("--n-trials", "3", "--sampler", "random")
    board = _board()
    assert list(board.columns) == [*COLUMNS, *[p for p in PARAMS if p in board.columns]]
    assert "model.mixer.kind" in board.columns
    assert _evaluated(board) == 3  # n_trials counts distinct evaluations, not duplicates
    assert sorted(board["number"]) == list(range(len(board)))
    assert set(board["state"]) <= {"COMPLETE", "FAIL", "PRUNED"}
    done = board[board["state"] == "COMPLETE"]
    assert len(done) >= 1
    assert set(done["status"]) <= {"ok", "duplicate"}
    for col in ("val_acc", "gflops", "params_m", "latency_ms", "duration_s"):
        assert (done[col] > 0).all(), col
    assert (done["val_acc"] <= 1).all()
    assert done["config_hash"].str.fullmatch(r"[0-9a-f]{12}").all()
    # the conditional parameter exists exactly where the axial shift was chosen
    axial = board["model.mixer.kind"] == "axial_shift"
    assert board.loc[axial, "model.mixer.shift_size"].notna().all()
    assert board.loc[~axial, "model.mixer.shift_size"].isna().all()
    # duplicates reuse the earlier result of the same configuration
    for _, row in board[board["status"] == "duplicate"].iterrows():
        src = board[board["number"] == row.duplicate_of].iloc[0]
        assert src.config_hash == row.config_hash and src.val_acc == row.val_acc
    # Pareto ranks recomputed from the CSV's own values
    rows = [r for _, r in done.iterrows()]
    left = list(range(len(rows)))
    rank = 1
    expect: dict[int, int] = {}
    while left:
        front = [i for i in left if not any(_dominates(rows[j], rows[i]) for j in left if j != i)]
        for i in front:
            expect[int(rows[i].number)] = rank
        left = [i for i in left if i not in front]
        rank += 1
    for r in rows:
        assert r.pareto_rank == expect[int(r.number)]
        assert r.dominated_by == sum(_dominates(o, r) for o in rows)
    assert board.loc[board["state"] != "COMPLETE", "pareto_rank"].isna().all()
    # the front's configurations load as model configs (what profile and train read)
    front = done[(done["pareto_rank"] == 1) & (done["status"] != "duplicate")]
    files = sorted(p.name for p in (Path("results") / "tiny" / "front").glob("*.yaml"))
    assert files == sorted(f"trial_{n}.yaml" for n in front["number"])
    cfg = load_model_config(Path("results") / "tiny" / "front" / files[0])
    trial = _study().trials[int(front.iloc[0].number)]
    assert trial.user_attrs["config_hash"] == front.iloc[0].config_hash
    assert cfg.to_dict()["stages"][0]["dim"] == 8

    # the same command resumes: n_trials is the total, finished trials are kept
    before = _study().trials
    _search("--n-trials", "4", "--sampler", "random")
    after = _board()
    assert _evaluated(after) == 4 and sorted(after["number"]) == list(range(len(after)))
    for t in before:
        assert _study().trials[t.number].datetime_complete == t.datetime_complete
    # changing the training budget of an existing study is refused, nothing is lost
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", "tiny.yaml", "--epochs", "3", "--quiet"])
    assert exc.value.code == 2
    assert len(_board()) == len(after)

    # the leaderboard command rebuilds it from storage
    res = CliRunner().invoke(cli, ["leaderboard", "tiny", "--format", "csv"])
    assert res.exit_code == 0, res.output
    rebuilt = pd.read_csv(__import__("io").StringIO(res.output))
    pd.testing.assert_frame_equal(
        rebuilt.drop(columns=["duration_s"]), _board().drop(columns=["duration_s"]), check_dtype=False
    )
    res = CliRunner().invoke(
        cli, ["leaderboard", "tiny", "--format", "json", "--top", "2", "--sort", "gflops"]
    )
    rows_json = json.loads(res.output)["trials"]
    assert len(rows_json) == 2
    assert rows_json[0]["gflops"] is None or rows_json[0]["gflops"] <= (rows_json[1]["gflops"] or math.inf)
    res = CliRunner().invoke(cli, ["leaderboard", "tiny"])
    assert res.exit_code == 0 and "tiny" in res.output


def test_leaderboard_unknown_study_lists_found(capsys: pytest.CaptureFixture[str]) -> None:
    (Path("results") / "other").mkdir(parents=True)
    (Path("results") / "other" / "journal.log").write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other" in err and "nope" in err


def test_over_budget_is_costed_never_trained() -> None:
    _search("--n-trials", "2", "--max-gflops", "1e-9", "--study", "budget")
    board = _board("budget")
    assert len(board) == 2
    assert (board["state"] == "PRUNED").all()
    assert set(board["status"]) <= {"over_budget", "duplicate"}
    assert (board["gflops"] > 1e-9).all() and (board["params_m"] > 0).all()
    assert board["val_acc"].isna().all() and board["latency_ms"].isna().all()
    assert board["reason"].str.contains("max_gflops").all()
    for t in _study("budget").trials:
        assert "epoch_acc" not in t.user_attrs  # never trained


def test_rejected_combination_is_recorded_and_search_goes_on(tmp_path: Path) -> None:
    # reflect padding of a 5-shift needs a map wider than 2 (stage 1 is 2x2): that one
    # combination is rejected at build, the others train
    doc = yaml.safe_load(resolve_space_path("tiny.yaml").read_text())
    doc["model"]["mixer"] = {
        "kind": "axial_shift",
        "shift_size": {"choice": [1, 5]},
        "padding": {"choice": ["zero", "reflect"]},
    }
    doc["budget"] = {"max_steps": 2, "batch_size": 32}
    doc["name"] = "grid"
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(
        cli,
        ["search", "--space", str(tmp_path / "g.yaml"), "--sampler", "grid", "--n-trials", "10", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    board = _board("grid")
    # 4 grid points, 3 configurations: a 1-shift pads nothing, so its padding is inert and
    # the canonical config hash merges (1, zero) and (1, reflect); n_trials 10 -> 3
    assert _evaluated(board) == 3
    combos = set(zip(board["model.mixer.shift_size"], board["model.mixer.padding"]))
    assert {(5, "zero"), (5, "reflect")} <= combos
    assert combos <= {(1, "zero"), (1, "reflect"), (5, "zero"), (5, "reflect")}
    bad = board[(board["model.mixer.shift_size"] == 5) & (board["model.mixer.padding"] == "reflect")].iloc[0]
    assert bad.state == "FAIL" and bad.status == "rejected"
    assert "reflect" in bad.reason
    assert (board.loc[board["number"] != bad.number, "state"] == "COMPLETE").all()
    result = CliRunner().invoke(cli, ["search", "--space", str(tmp_path / "g.yaml"), "--n-trials", "10"])
    assert "holds 3 distinct configurations" in result.output


def test_single_objective_with_pruner() -> None:
    _search("--n-trials", "3", "--objective", "accuracy", "--pruner", "median", "--study", "acc",
            "--max-steps", "3")  # fmt: skip
    study = _study("acc")
    assert [d.name for d in study.directions] == ["MAXIMIZE"]
    board = _board("acc")
    assert _evaluated(board) == 3
    for t in study.trials:
        if t.state.name == "COMPLETE" and t.user_attrs["status"] == "ok":
            assert t.intermediate_values  # per-epoch accuracy reported to the pruner
            assert t.values == [t.user_attrs["val_acc"]]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from affinity.cli import main; main()", "search", "--space", "tiny.yaml",
            "--quiet", *args]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_two_worker_processes_finish_with_distinct_trials() -> None:
    out = subprocess.run(_cmd("--n-trials", "4", "--n-jobs", "2", "--max-steps", "2", "--study", "par"),
                         capture_output=True, text=True, env=_env(), timeout=240)  # fmt: skip
    assert out.returncode == 0, out.stderr
    study = _study("par")
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers)))
    assert all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in study.trials)
    assert {t.user_attrs["worker"] for t in study.trials} <= {0, 1}
    assert counted(study.trials) == (4, 0)
    assert _evaluated(_board("par")) == 4


def test_two_workers_with_ehvi_propose_the_same_configurations_every_run() -> None:
    """The order in which two workers' trials finish changes from run to run; the trials'
    configurations, by number, do not (ehvi's ``lag``)."""
    wide_tiny()
    runs, workers = [], []
    for name in ("det_a", "det_b"):
        args = ("--n-trials", "10", "--n-jobs", "2", "--max-steps", "2", "--sampler", "ehvi", "--study", name)
        out = subprocess.run(_cmd(*args, "--space", "wide.yaml"), capture_output=True, text=True, env=_env(),
                             timeout=240)  # fmt: skip
        assert out.returncode == 0, out.stderr
        trials = sorted(_study(name).trials, key=lambda t: t.number)
        workers.append({t.user_attrs["worker"] for t in trials})
        runs.append([t.user_attrs["config_hash"] for t in trials])
    assert len(runs[0]) == 10 and len(set(runs[0])) == 10
    assert runs[0] == runs[1]
    # both workers trained (a run on one worker would be reproducible anyway); a worker that
    # started late on a loaded machine may leave the other all trials of one run, not of two
    assert {0, 1} in workers


def test_ctrl_c_keeps_finished_trials_and_resumes() -> None:
    # the interrupt lands wherever the worker happens to be; every phase is interrupted on
    # purpose in test_workers_interrupt.py, this checks the real signal path end to end
    # tiny.yaml holds 4 distinct configurations (a study of 4 could end before the signal)
    wide_tiny()
    proc = subprocess.Popen(_cmd("--n-trials", "12", "--study", "intr", "--space", "wide.yaml"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    csv = Path("results") / "intr" / "leaderboard.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if csv.is_file() and len(pd.read_csv(csv)) >= 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no trials finished in time")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    board = pd.read_csv(csv)
    study = _study("intr")
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states
    assert sorted(board["number"]) == [t.number for t in study.trials]  # rewritten as it stopped
    finished = {t.number for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert finished
    interrupted = [t for t in study.trials if t.user_attrs.get("status") == "interrupted"]
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert len(interrupted) <= 1
    # an interrupted trial's configuration is queued to run again
    assert [t.user_attrs["retry_of"] for t in waiting] == [t.number for t in interrupted]
    # the same command resumes (with a total that is one trial more than what counts)
    done, _ = counted(study.trials)
    out = subprocess.run(_cmd("--n-trials", str(done + 1), "--study", "intr", "--space", "wide.yaml"),
                         capture_output=True, text=True, env=_env(), timeout=240)  # fmt: skip
    assert out.returncode == 0, out.stderr
    resumed = _study("intr")
    kept = {t.number: t.datetime_complete for t in study.trials if t.number in finished}
    assert all(resumed.trials[n].datetime_complete == when for n, when in kept.items())
    assert {t.state.name for t in resumed.trials} <= {"COMPLETE", "PRUNED", "FAIL"}
    assert counted(resumed.trials) == (done + 1, 0)
    for t in interrupted:  # evaluated again, as the one trial the resume ran
        (redo,) = [r for r in resumed.trials if r.user_attrs.get("retry_of") == t.number]
        assert t.params.items() <= redo.params.items()
    assert len(pd.read_csv(csv)) == len(resumed.trials)


def test_any_optuna_storage_url_and_objective_kept_on_resume(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{Path('s.db').resolve()}"
    _search("--n-trials", "2", "--storage", url, "--max-steps", "2", "--study", "sq")
    res = CliRunner().invoke(cli, ["leaderboard", "sq", "--storage", url, "--format", "json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)["trials"]) == 2
    assert (Path("results") / "sq" / "leaderboard.csv").is_file()
    # resuming with another objective would mix incomparable values: refused, one line
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", "tiny.yaml", "--storage", url, "--study", "sq", "--max-steps", "2",
              "--objective", "accuracy", "--quiet"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sq" in err and "accuracy" in err


def test_img_size_override_is_checked_against_the_space(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", "tiny.yaml", "--img-size", "6", "--quiet"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("affinity: error: model.stages[")
    assert not Path("results").exists()
