"""A study records, once, what produced it; the leaderboard's JSON and the report show it."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import optuna
import torch
from click.testing import CliRunner

from affinity.cli import cli
from affinity.search.provenance import git_commit
from affinity.search.study import default_storage_path, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _search(*args: str) -> str:
    res = CliRunner().invoke(cli, ["search", "--space", "tiny.yaml", "--max-steps", "1", "--n-trials", "1",
                                   "--study", "prov", *args], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    return res.output


def test_recorded_once_shown_by_the_leaderboard_and_the_report() -> None:
    _search("--quiet")
    res = CliRunner().invoke(cli, ["leaderboard", "prov", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    prov = doc["provenance"]
    assert doc["study"] == "prov" and len(doc["trials"]) == 1
    assert prov["torch"] == torch.__version__ and prov["optuna"] == optuna.__version__
    assert prov["python"] == platform.python_version() and prov["device"] == "cpu"
    assert prov["affinity"] and prov["fvcore"] and prov["platform"] == platform.platform()

    storage = open_storage(None, default_storage_path("results", "prov"), create=False)
    study = optuna.load_study(study_name="prov", storage=storage)
    study.set_user_attr("provenance", {**prov, "torch": "0.0.1"})  # as if an older torch made it
    out = _search()  # a resume: told, and the record kept as it was
    assert f"torch: 0.0.1 -> {torch.__version__}" in out
    assert optuna.load_study(study_name="prov", storage=storage).user_attrs["provenance"]["torch"] == "0.0.1"

    res = CliRunner().invoke(cli, ["report", "prov"])
    assert res.exit_code == 0, res.output
    page = (Path("results") / "prov" / "report.html").read_text()
    assert "<h2>Provenance</h2>" in page and "0.0.1" in page and platform.python_version() in page


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_git_commit_of_a_checkout_dirty_or_not_and_none_outside_one(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert git_commit(repo / "pkg") == head
    (repo / "pkg" / "__init__.py").write_text("x = 2\n")
    assert git_commit(repo / "pkg") == f"{head}+dirty"
    # a package installed in a venv inside some repository is not that repository's code
    (repo / ".venv" / "pkg").mkdir(parents=True)
    (repo / ".venv" / "pkg" / "__init__.py").write_text("x = 1\n")
    assert git_commit(repo / ".venv" / "pkg") is None
    assert git_commit(tmp_path / "nowhere" / "pkg") is None
