"""Output locations (issue 16.3): `search`, `report` and `show` refuse an --out they cannot
write before doing any work; a write failing after the work (disk full, read-only) still
prints the result, writes nothing partial, and ends with one line and exit code 2.

The tests run as root, for whom no permission bit makes a folder unwritable: the unwritable
--out is a path under a regular file, and a failing disk is ``atomic_write`` raising EROFS.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path

import optuna
import pandas as pd
import pytest

import affinity._io
from tests._cli import Ran, run_main
from tests.report.test_study_report import make_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = ["--space", "tiny.yaml", "--quiet", "--n-trials", "1", "--max-steps", "2", "--sampler", "random"]


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("worked although the output cannot be written")


def _read_only(path: object, write: object) -> None:
    raise OSError(errno.EROFS, "Read-only file system", str(path))


def _one_line(ran: Ran, text: str) -> None:
    assert ran.code == 2, ran
    assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("affinity: error: "), ran.stderr
    assert text in ran.stderr and "Traceback" not in ran.stderr


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the search's lock files."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.suffix != ".lock"
    )


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A regular file: any path under it cannot be created."""
    path = tmp_path / "file"
    path.write_text("a file, not a folder")
    return path


def test_search_refuses_an_unwritable_out_before_any_trial(blocked: Path, monkeypatch) -> None:
    import affinity.search.runner

    monkeypatch.setattr(affinity.search.runner, "run_search", _no_work)
    _one_line(
        run_main(["search", *TINY, "--out", str(blocked / "out")]), "out/tiny: not writable (Not a directory)"
    )
    _one_line(
        run_main(["search", *TINY, "--storage", str(blocked / "j.log")]),
        "file: not writable (File exists)",
    )
    assert _files(Path.cwd()) == ["file"]


def test_search_whose_leaderboard_cannot_be_written_prints_it(monkeypatch) -> None:
    import affinity.search.leaderboard

    def read_only(path: object, text: object) -> None:
        _read_only(path, text)

    # the disk fills up after the first trial: its leaderboard cannot be written
    with monkeypatch.context() as patch:
        patch.setattr(affinity.search.leaderboard, "atomic_write_text", read_only)
        ran = run_main(["search", *TINY])
    _one_line(
        ran, "results/tiny: could not write the results (Read-only file system); the result is printed above"
    )
    board = pd.read_csv(io.StringIO(ran.stdout))
    assert list(board["number"]) == [0] and board["val_acc"].between(0, 1).all()
    # the trial is in the study's storage (the journal and its lock); nothing else but the space's copy
    assert _files(Path("results")) == ["tiny/journal.log", "tiny/journal.log.flock", "tiny/space.yaml"]
    again = run_main(["leaderboard", "tiny", "--format", "csv"])
    assert again.stdout == ran.stdout


def test_report_refuses_an_unwritable_out_before_collecting(blocked: Path, monkeypatch) -> None:
    import affinity.report.study

    make_study()
    monkeypatch.setattr(affinity.report.study, "collect", _no_work)
    _one_line(
        run_main(["report", "toy", "--html", str(blocked / "r" / "report.html")]),
        "r: not writable (Not a directory)",
    )


def test_report_that_cannot_be_written_prints_its_leaderboard(monkeypatch) -> None:
    make_study()
    before = _files(Path("results"))
    monkeypatch.setattr(affinity._io, "atomic_write", _read_only)
    ran = run_main(["report", "toy"])
    _one_line(ran, "results/toy: could not write the report (Read-only file system)")
    assert len(pd.read_csv(io.StringIO(ran.stdout))) == 16
    assert _files(Path("results")) == before


def test_show_refuses_an_unwritable_out_before_drawing(blocked: Path, monkeypatch) -> None:
    import affinity.report.fields
    import affinity.report.layers

    monkeypatch.setattr(affinity.report.fields, "compare_fields", _no_work)
    monkeypatch.setattr(affinity.report.layers, "load_model", _no_work)
    _one_line(run_main(["show", "--compare", "dwconv", "--file", str(blocked / "c.png")]), "not writable")
    _one_line(run_main(["show", "as_mlp_t", "--file", str(blocked / "s.png")]), "not writable")


def test_show_that_cannot_be_written_prints_what_it_drew(monkeypatch) -> None:
    monkeypatch.setattr(affinity._io, "atomic_write", _read_only)
    ran = run_main(["show", "--compare", "dwconv,axial_shift", "--grid", "5"])
    _one_line(ran, "results/show/compare.png: could not write the picture (Read-only file system)")
    assert ran.stdout.startswith("results/show/compare.png: ") and "tokens" in ran.stdout
    assert _files(Path.cwd()) == []
