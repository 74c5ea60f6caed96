"""One meaning of ``--out`` for every command: the results root (a study in OUT/STUDY/, other
outputs in OUT/<command>/), with ``--file`` / ``--html`` / ``--run-dir`` for one output."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from affinity.cli import COMMANDS, _load
from affinity.models import create_model, save_model_config
from tests._cli import run_main


def _options(command: click.Command) -> dict[str, click.Option]:
    return {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}


#: the commands that write no file, so take no --out
WRITE_NOTHING = {"profile", "models", "affinities"}


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - WRITE_NOTHING))
def test_every_out_is_the_results_root(name: str) -> None:
    out = _options(_load(name))["--out"]
    assert out.default == "results" and (out.help or "").startswith("Results root"), out.help


@pytest.mark.parametrize("name", sorted(WRITE_NOTHING))
def test_commands_that_write_nothing_take_no_out(name: str) -> None:
    assert "--out" not in _options(_load(name))


def test_search_then_report_leaderboard_elsewhere(tmp_path: Path) -> None:
    ran = run_main(["search", "--space", "tiny.yaml", "--n-trials", "1", "--out", "elsewhere", "--quiet"])
    assert ran.code == 0, ran.stderr
    assert (tmp_path / "elsewhere" / "tiny" / "leaderboard.csv").is_file()
    ran = run_main(["report", "tiny", "--out", "elsewhere/", "--quiet"])
    assert ran.code == 0, ran.stderr
    assert (tmp_path / "elsewhere" / "tiny" / "report.html").is_file()
    ran = run_main(["leaderboard", "tiny", "--out", "elsewhere/", "--format", "csv"])
    assert ran.code == 0 and ran.stdout.startswith("number,"), ran.stderr
    assert not (tmp_path / "results").exists()


def _tiny_model(tmp_path: Path) -> Path:
    net = create_model("as_mlp_t", num_classes=3, img_size=32, dims=(8, 8, 8, 8), depths=(1, 1, 1, 1))
    return save_model_config(net.cfg, tmp_path / "m.yaml")


def test_export_out_is_the_root_and_file_is_the_file(tmp_path: Path) -> None:
    cfg = str(_tiny_model(tmp_path))
    ran = run_main(["export", cfg, "--format", "torchscript", "--out", "root"])
    assert ran.code == 0, ran.stderr
    assert (tmp_path / "root" / "export" / "m.torchscript.pt").stat().st_size > 0
    ran = run_main(["export", cfg, "--format", "torchscript", "--file", "one.pt"])
    assert ran.code == 0 and (tmp_path / "one.pt").is_file(), ran.stderr
    assert ran.stderr == ""


def test_export_out_file_still_works_with_a_deprecation_line(tmp_path: Path) -> None:
    cfg = str(_tiny_model(tmp_path))
    for _ in range(2):  # the second time the file exists
        ran = run_main(["export", cfg, "--format", "torchscript", "--out", "old.pt"])
        assert ran.code == 0, ran.stderr
        assert ran.stderr == (
            "affinity export: --out FILE is deprecated: use --file old.pt (--out is the results root)\n"
        )
        assert (tmp_path / "old.pt").is_file() and not (tmp_path / "results").exists()
    ran = run_main(["export", cfg, "--format", "torchscript", "--out", "old.pt", "--file", "x.pt"])
    assert ran.code == 2 and ran.stderr.count("\n") == 1 and "--out 'old.pt' with --file" in ran.stderr


def test_train_out_is_the_root_and_run_dir_the_run(tmp_path: Path) -> None:
    cfg = str(_tiny_model(tmp_path))
    common = ["train", cfg, "--epochs", "1", "--quiet", "--dataset", "synthetic", "--img-size", "32"]
    ran = run_main([*common, "--out", "root"])
    assert ran.code == 0, ran.stderr
    assert {p.name for p in (tmp_path / "root" / "train" / "m").iterdir()} == {
        "metrics.json",
        "checkpoint.pt",
    }
    ran = run_main([*common, "--run-dir", "here"])
    assert ran.code == 0, ran.stderr
    assert (tmp_path / "here" / "metrics.json").is_file()
    assert not (tmp_path / "results").exists()
