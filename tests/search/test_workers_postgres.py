"""Many workers on a real PostgreSQL server (started here with initdb/pg_ctl; no mocks):
exactly n_trials with workers on "two machines", a worker killed with SIGKILL mid-trial and
reaped by its heartbeat, a server restart under running workers, a joining worker with
another space refused, and passwords never shown.

Skipped with a message saying how to get the server binaries when they are missing; CI sets
``AFFINITY_REQUIRE_POSTGRES=1`` and fails instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner

from affinity.cli import cli, main
from affinity.search.space import resolve_space_path
from affinity.search.study import NOT_COUNTED, counted, reap_stale
from tests.search._freeze import kill_if
from tests.search.pg_server import HOW_TO_GET, PASSWORD, PostgresServer, find_bindir
from tests.search.spaces import wide_tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)

BUDGET = ("--max-steps", "1", "--heartbeat", "5")  # a 10 s grace: a loaded 2-core box delays beats


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    required = os.environ.get("AFFINITY_REQUIRE_POSTGRES") == "1"
    problem = None
    bindir = find_bindir()
    if bindir is None:
        problem = HOW_TO_GET
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            problem = "psycopg not installed: pip install '.[postgres]'"
    if problem is not None:
        if required:
            pytest.fail(f"AFFINITY_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    assert bindir is not None
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


def _cmd(*args: str) -> list[str]:
    space = wide_tiny()  # 28 configurations: n_trials counts distinct evaluations
    return [sys.executable, "-c", "from affinity.cli import main; main()", "search", "--space", str(space),
            "--quiet", *BUDGET, *args]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _finish(*procs: subprocess.Popen[str], timeout: float = 300) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err))
    return out


def _check_complete(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials(deepcopy=False)
    assert counted(trials) == (n, 0)
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    # n distinct configurations evaluated (duplicate proposals and cut-off trials do not count)
    counted_trials = [t for t in trials if t.user_attrs.get("status") not in NOT_COUNTED]
    assert len({t.number for t in counted_trials}) == n
    hashes = [t.user_attrs["config_hash"] for t in counted_trials if "config_hash" in t.user_attrs]
    assert len(set(hashes)) == len(hashes)  # none evaluated twice (a refused one has no hash)
    return trials


def test_three_workers_on_two_machines_finish_exactly_n_trials(pg_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    a = subprocess.Popen(_cmd("--n-trials", "12", "--n-jobs", "2", "--storage", pg_url, "--out", "a"),
                         env=_env(AFFINITY_HOST="machine-a"), stderr=subprocess.PIPE, text=True)  # fmt: skip
    b = subprocess.Popen(_cmd("--n-trials", "12", "--storage", pg_url, "--out", "b"),
                         env=_env(AFFINITY_HOST="machine-b"), stderr=subprocess.PIPE, text=True)  # fmt: skip
    for code, err in _finish(a, b):
        assert code == 0, err
        assert "Traceback" not in err
    trials = _check_complete(_study(pg_url, "tiny"), 12)
    cut = [
        (t.number, t.user_attrs.get("reason")) for t in trials if t.user_attrs.get("status") == "interrupted"
    ]
    assert not cut, cut  # nobody died: no trial was cut off and run again
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # duplicates included
    assert {t.user_attrs["host"] for t in trials} <= {"machine-a", "machine-b"}
    # the leaderboard, rebuilt from the database anywhere, is complete (every trial, repeats too)
    res = CliRunner().invoke(
        cli, ["leaderboard", "tiny", "--storage", pg_url, "--format", "json", "--with-duplicates"]
    )
    assert res.exit_code == 0, res.output
    assert sorted(row["number"] for row in json.loads(res.output)["trials"]) == list(range(len(trials)))
    print(f"\n3 workers / 12 trials on PostgreSQL: {time.monotonic() - started:.1f} s")


def test_sigkilled_worker_is_reaped_by_heartbeat_and_its_trial_rerun(pg_url: str) -> None:
    a = subprocess.Popen(_cmd("--n-trials", "12", "--n-jobs", "2", "--storage", pg_url, "--out", "a"),
                         env=_env(AFFINITY_HOST="machine-a"), stderr=subprocess.PIPE, text=True)  # fmt: skip
    b = subprocess.Popen(_cmd("--n-trials", "12", "--storage", pg_url, "--out", "b"),
                         env=_env(AFFINITY_HOST="machine-b"), stderr=subprocess.PIPE, text=True)  # fmt: skip

    def running_on_b() -> optuna.trial.FrozenTrial | None:
        try:
            study = _study(pg_url, "tiny")
            trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # not created yet
            return None
        # machine b's only worker, in the middle of a trial (past asking: its PID recorded, else
        # the next ask reaps it at once as "died while asking"): no worker is left on its
        # machine to see the PID gone, so only its heartbeat can tell
        mid_trial = [t for t in trials if t.user_attrs.get("host") == "machine-b" and "pid" in t.user_attrs]
        return next((t for t in mid_trial if t.number >= 2), None)

    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and b.poll() is None:
        if running_on_b() is not None:  # likely: now make sure, with b stopped
            victim = kill_if(b.pid, running_on_b)
        else:
            time.sleep(0.05)
    assert victim is not None, "machine b never seen in the middle of a trial"
    (code_a, err_a), (code_b, _) = _finish(a, b)
    assert code_a == 0 and "Traceback" not in err_a, err_a
    assert code_b == -signal.SIGKILL
    trials = _check_complete(_study(pg_url, "tiny"), 12)
    dead = trials[victim.number]
    assert dead.state.name == "FAIL" and dead.user_attrs["status"] == "interrupted"
    assert "heartbeat" in dead.user_attrs["reason"]
    # evaluated again (a retry that was itself cut off is retried in turn, same configuration)
    *cut, redo = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert all(t.user_attrs["status"] == "interrupted" for t in cut)
    assert redo.user_attrs["status"] != "interrupted"
    assert victim.params.items() <= redo.params.items()
    print(f"\nkill -9 (PostgreSQL): trials {len(trials)}, counted {counted(trials)[0]}, killed trial "
          f"{victim.number} redone as {redo.number}")  # fmt: skip


def test_heartbeat_reaps_a_silent_trial_of_another_machine(pg_url: str) -> None:
    from affinity.search._storage import first_beat
    from affinity.search.storages import open_storage

    storage = open_storage(pg_url, Path("unused"), create=True, heartbeat=1)
    study = optuna.create_study(study_name="hb", storage=storage, directions=["maximize"])
    trial = study.ask()
    trial.suggest_int("x", 0, 9)
    trial.set_user_attr("host", "elsewhere")  # not this machine: no PID to check
    trial.set_user_attr("pid", 1)
    first_beat(study, trial)
    assert reap_stale(study) == 0  # beating until just now: within the grace period
    time.sleep(2.5)  # the grace period is 2 x 1 s
    assert reap_stale(study) == 1
    frozen = study.get_trials(deepcopy=False)
    assert frozen[0].state.name == "FAIL" and frozen[0].user_attrs["status"] == "interrupted"
    assert frozen[1].state.name == "WAITING" and frozen[1].user_attrs["retry_of"] == 0
    assert frozen[1].system_attrs["fixed_params"] == {"x": frozen[0].params["x"]}
    assert reap_stale(study) == 0  # reaped once


def test_server_restart_under_running_workers(pg_url: str, pg_server: PostgresServer) -> None:
    a = subprocess.Popen(_cmd("--n-trials", "12", "--n-jobs", "2", "--storage", pg_url),
                         env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if counted(_study(pg_url, "tiny").get_trials(deepcopy=False))[0] >= 2:
                break
        except KeyError:
            pass
        time.sleep(0.1)
    pg_server.restart()
    ((code, err),) = _finish(a)
    assert "Traceback" not in err
    if code != 0:  # the workers may also give up: one clear line each, then a re-run completes
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and all(line.startswith("affinity: ") for line in lines), err
        assert PASSWORD not in err
        again = subprocess.run(_cmd("--n-trials", "12", "--n-jobs", "2", "--storage", pg_url),
                               env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
        assert again.returncode == 0, again.stderr
    _check_complete(_study(pg_url, "tiny"), 12)
    print(f"\nserver restart: first run exit {code}")


def test_wrong_password_is_one_masked_line(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = pg_url.replace(PASSWORD, "not-the-password")
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", "tiny.yaml", "--quiet", "--storage", wrong])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "not-the-password" not in err and PASSWORD not in err
    assert "***" in err and "password authentication failed" in err
    assert not Path("results").exists()  # nothing written


def test_url_from_environment_and_password_from_pgpassword(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AFFINITY_STORAGE", pg_url.replace(f":{PASSWORD}@", "@"))
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    main_ok(["search", "--space", "tiny.yaml", "--n-trials", "1", "--quiet", *BUDGET])
    assert counted(_study(pg_url, "tiny").get_trials(deepcopy=False)) == (1, 0)
    res = CliRunner().invoke(cli, ["leaderboard", "tiny", "--format", "csv"])
    assert res.exit_code == 0, res.output


def main_ok(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_joining_worker_with_another_space_is_refused(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_ok(["search", "--space", "tiny.yaml", "--n-trials", "1", "--quiet", "--storage", pg_url, *BUDGET])
    doc = yaml.safe_load(resolve_space_path("tiny.yaml").read_text())
    doc["model"]["mixer"]["shift_size"] = {"choice": [1, 5]}
    doc["model"]["dims"] = [8, 24]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(doc))
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", str(other), "--study", "tiny", "--quiet", "--storage", pg_url, *BUDGET,
              "--out", "machine2"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "model.mixer.shift_size.choice: [1, 3] -> [1, 5]" in err
    assert "model.dims: [8, 16] -> [8, 24]" in err
    assert not Path("machine2").exists()  # refused before anything was written
    assert len(_study(pg_url, "tiny").trials) == 1
