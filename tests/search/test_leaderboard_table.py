"""The leaderboard as people read it: units that scale, 100 columns, short headers with a
legend, no markup taken from data, each configuration once unless --with-duplicates.

The study is written straight into a journal file (no search runs), so these tests are fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, IntDistribution
from rich.console import Console

from affinity.cli import cli
from affinity.search.leaderboard import build_leaderboard
from affinity.search.render import leaderboard_table, param_labels
from affinity.search.study import default_storage_path, open_storage

KIND = "model.stages.0.mixer.kind"
KIND1 = "model.stages.1.mixer.kind"
SHIFT = "model.stages.0.mixer.shift_size"
DISTS = {
    KIND: CategoricalDistribution(["axial_shift", "spatial_shift", "eq[c,i]"]),
    KIND1: CategoricalDistribution(["axial_shift", "spatial_shift"]),
    SHIFT: IntDistribution(1, 7),
}


def _trial(
    number: int, acc: float, gflops: float, kind: str, *, dup_of: int | None = None
) -> optuna.trial.FrozenTrial:
    attrs = {
        "val_acc": acc,
        "gflops": gflops,
        "params_m": gflops * 40,
        "latency_ms": 1.0,
        "status": "ok" if dup_of is None else "duplicate",
        "config_hash": f"{hash(kind) & 0xFFFFFF:012x}",
    }
    if dup_of is not None:
        attrs["duplicate_of"] = dup_of
    params = {KIND: kind, KIND1: "axial_shift", SHIFT: 3}
    return optuna.trial.create_trial(
        params=params, distributions=DISTS, values=[acc, gflops], user_attrs=attrs
    )


def _study(storage: object = None, name: str = "demo") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    study.add_trial(_trial(0, 0.95, 0.001003, "axial_shift"))
    study.add_trial(_trial(1, 0.81, 0.000191, "spatial_shift"))
    for _ in range(3):  # copies of trial 1, as a search records them
        study.add_trial(_trial(1, 0.81, 0.000191, "spatial_shift", dup_of=1))
    study.add_trial(_trial(5, 0.50, 0.000272, "eq[c,i]"))
    return study


def _render(renderable: object) -> str:
    console = Console(width=100, record=True)
    console.print(renderable)
    return console.export_text()


def test_table_units_headers_legend_and_no_markup() -> None:
    board = build_leaderboard(_study())
    text = _render(leaderboard_table(board, "demo [bold]title[/bold]"))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "demo [bold]title[/bold]" in text  # a title from data stays text
    assert "eq[c,i]" in text  # a value that looks like markup is printed as it is
    header = next(line for line in lines if line.lstrip().startswith("#"))
    assert "MFLOPs" in header and "acc%" in header
    row = next(line for line in lines if line.lstrip().startswith("0 "))
    assert " 95.0 " in row and " 1.00 " in row  # 0.001003 GFLOPs = 1.00 MFLOPs, not 0.00
    assert " 0.19 " in next(line for line in lines if line.lstrip().startswith("1 "))  # same unit
    words = " ".join(text.split())  # the legend, unwrapped
    assert "MFLOPs: FLOPs of one image in millions" in words
    assert "s0.kind = model.stages.0.mixer.kind" in words


def test_param_labels_last_key_then_stage() -> None:
    assert param_labels([KIND, KIND1, SHIFT, "model.dims"]) == {
        KIND: "s0.kind",
        KIND1: "s1.kind",
        SHIFT: "shift_size",
        "model.dims": "dims",
    }


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    _study(open_storage(None, default_storage_path(tmp_path / "res", "demo"), create=True))
    return tmp_path / "res"


def test_duplicates_shown_once_unless_asked(stored: Path) -> None:
    def run(*args: str) -> str:
        res = CliRunner().invoke(cli, ["leaderboard", "demo", "--out", str(stored), *args])
        assert res.exit_code == 0, res.output
        return res.output

    assert [r["number"] for r in json.loads(run("--format", "json"))["trials"]] == [0, 1, 5]
    assert [r["number"] for r in json.loads(run("--format", "json", "--with-duplicates"))["trials"]] == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]
    top = json.loads(run("--format", "json", "--top", "2", "--sort", "gflops"))["trials"]
    assert [r["number"] for r in top] == [1, 5]  # before: 1 and its copy 2
    csv = pd.read_csv(__import__("io").StringIO(run("--format", "csv")))
    assert list(csv["number"]) == [0, 1, 2, 3, 4, 5]  # the CSV keeps every trial
    table = run("--top", "5")
    assert "3 duplicate trials hidden" in " ".join(table.split())
    assert "demo: top 3 of 3 distinct configurations (6 trials)" in table


def test_many_parameters_continue_in_a_second_table_keyed_by_trial() -> None:
    """mixers.yaml's 14 per-stage parameters cannot sit beside the figures in 100 columns:
    they continue below, each table keyed by #, nothing cut."""
    names = [
        f"model.stages[{s}].mixer.{k}" for s in (0, 1) for k in ("kind", "shift_size", "kernel_size", "heads")
    ]
    row = {
        "number": 7,
        "val_acc": 0.5,
        "gflops": 0.001,
        "params_m": 0.02,
        "latency_ms": 1.0,
        **{n: "attention+axial_shift" if n.endswith("kind") else 3 for n in names},
    }
    board = pd.DataFrame([row] * 2)
    text = _render(
        leaderboard_table(board, "front", main=("number", "val_acc", "gflops", "params_m", "latency_ms"))
    )
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "(continued)" in text
    assert text.count("attention+axial_shift") == 4  # two rows x two stages, never cut
    assert "s1.kind = model.stages[1].mixer.kind" in " ".join(text.split())
