"""Worker processes are forked from a server that loaded their imports (``runner.preload_workers``,
started by the command before it validates its input): they see the environment of the run
that forks them, not the one a server left by an earlier command in this process started in."""

from __future__ import annotations

import optuna
import pytest
from click.testing import CliRunner

from affinity.cli import cli
from affinity.search.runner import preload_workers
from affinity.search.study import default_storage_path, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_workers_see_the_environment_of_their_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFFINITY_HOST", "before")
    preload_workers(2)  # as a command stopped by bad input leaves it
    monkeypatch.setenv("AFFINITY_HOST", "now")
    args = [
        "search",
        "--space",
        "tiny.yaml",
        "--n-trials",
        "2",
        "--n-jobs",
        "2",
        "--max-steps",
        "1",
        "--quiet",
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    storage = open_storage(None, default_storage_path("results", "tiny"), create=False)
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)
    assert trials and {t.user_attrs["host"] for t in trials} == {"now"}
    assert {t.user_attrs["worker"] for t in trials} <= {0, 1}
