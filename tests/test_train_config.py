"""TrainConfig declared once: every field's rule and meaning, the `affinity train` options
generated from them, `--config FILE.yaml` for the rest, and the run-settings file format."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from affinity.cli import cli
from affinity.errors import ConfigError
from affinity.train import TrainConfig
from affinity.train.config import BUDGET_KEYS, RUNTIME_KEYS, check_value, meaning, rule
from affinity.train.runfile import load_run_config, save_run_config

#: a model small enough to train a few steps in well under a second (16×16 inputs)
TINY = {"dims": (8, 8, 8, 8), "depths": (1, 1, 1, 1), "patch_sizes": (2, 2, 2, 2)}
DATA = "synthetic:classes=4,n=64"

#: a value other than the default for every field, each allowed by its rule
OTHER = {
    "epochs": 3,
    "max_steps": 2,
    "batch_size": 16,
    "lr": 0.004,
    "weight_decay": 0.01,
    "warmup_fraction": 0.2,
    "min_lr_ratio": 0.1,
    "label_smoothing": 0.05,
    "clip_grad": 2.0,
    "seed": 7,
    "device": "cpu",
    "threads": 2,
    "amp": False,
    "augment": False,
    "eval_batch_size": 33,
    "deterministic": False,
}


@pytest.fixture(scope="module")
def tiny_cfg():
    from affinity.models import resolve_model_config
    from affinity.models.config import apply_overrides

    return apply_overrides(resolve_model_config("as_mlp_t"), **TINY)


def test_every_field_is_declared_with_a_rule_and_a_meaning() -> None:
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(OTHER) == sorted(fields)
    defaults = TrainConfig()
    for name in fields:
        assert meaning(name) and rule(name).allowed
        assert rule(name)(getattr(defaults, name)), name  # the default obeys the rule
        assert rule(name)(OTHER[name]) and OTHER[name] != getattr(defaults, name), name
    assert set(BUDGET_KEYS) | set(RUNTIME_KEYS) | {"seed"} == set(fields)
    assert RUNTIME_KEYS == ("device", "threads")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", float("inf"), "lr: inf is not allowed; allowed: a number > 0"),
        ("epochs", True, "epochs: True is not allowed; allowed: an integer >= 1"),
        ("warmup_fraction", 1, r"allowed: a number in \[0, 1\)"),
        ("amp", "yes", "allowed: null or true or false"),
        ("img_size", 2000, "allowed: an integer from 4 to 1024"),
        ("lrr", 0.1, r"lrr: unknown key \(did you mean lr\?\)"),
    ],
)
def test_one_rule_per_setting(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_value(key, value)


def test_int_for_a_float_setting_is_stored_as_float() -> None:
    cfg = TrainConfig(lr=1, clip_grad=0)
    assert isinstance(cfg.lr, float) and isinstance(cfg.clip_grad, float)


def test_help_shows_the_declared_defaults() -> None:
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for flag, name in [("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--threads", "threads")]:
        assert f"{flag} INTEGER {meaning(name)} [default: {getattr(TrainConfig(), name)}]" in text


def test_every_field_reachable_from_the_command_line(tmp_path: Path, tiny_cfg, monkeypatch) -> None:
    """Run settings in the model YAML, a --config file over them, flags over both."""
    import affinity.train.loop as loop
    from affinity.train import TrainMetrics

    used: list[TrainConfig] = []

    def train(model, data, cfg, **kwargs):  # the settings are the point here, not the training
        used.append(cfg)
        return TrainMetrics(0.5, 0.5, 1.0, 1.0, epochs_run=1, steps=2, wall_s=0.0, device="cpu")

    monkeypatch.setattr(loop, "train", train)
    model_file = save_run_config(
        tiny_cfg, {"dataset": DATA, "img_size": 16, "seed": 1, "lr": 0.5, "epochs": 9}, tmp_path / "m.yaml"
    )
    budget = {k: v for k, v in OTHER.items() if k in BUDGET_KEYS}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"seed": 5, "budget": budget}))
    argv = ["train", str(model_file), "--config", str(tmp_path / "run.yaml"), "--quiet"]
    argv += ["--seed", "7", "--device", "cpu", "--threads", "2", "--run-dir", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert used == [TrainConfig(**OTHER)]
    record = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert record["train_config"] == OTHER
    assert (record["dataset"], record["img_size"]) == (DATA, 16)


def test_bad_config_file_is_one_line(tmp_path: Path, tiny_cfg, capsys) -> None:
    from affinity.cli import main

    bad = tmp_path / "bad.yaml"
    model_file = save_run_config(tiny_cfg, {}, tmp_path / "m.yaml")
    for text, message in [
        ("budget: {lr: -2}", "bad.yaml: budget.lr: -2 is not allowed; allowed: a number > 0"),
        ("budget: {device: cpu}", "bad.yaml: budget.device: unknown key"),
        ("epochs: 3", "bad.yaml: epochs: unknown key"),
        ("budget: [1]", "bad.yaml: budget: [1] is not allowed"),
        ("budget: {lr: [", "bad.yaml: not valid YAML: line 1"),
    ]:
        bad.write_text(text)
        with pytest.raises(SystemExit) as exc:
            main(
                ["train", str(model_file), "--config", str(bad), "--quiet", "--run-dir", str(tmp_path / "o")]
            )
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_run_config_round_trip(tmp_path: Path, tiny_cfg) -> None:
    from affinity.models.config import load_model_config

    settings = {"dataset": "digits", "img_size": 16, "seed": 3, "epochs": 2, "batch_size": 64, "lr": 5e-3}
    path = save_run_config(tiny_cfg, settings, tmp_path / "t.yaml", header="trial 4 of study x")
    text = path.read_text()
    assert text.startswith("# trial 4 of study x\nmodel:\n")
    assert yaml.safe_load(text)["budget"] == {"epochs": 2, "batch_size": 64, "lr": 5e-3}
    run = load_run_config(path)
    assert run.model == tiny_cfg and run.settings == settings
    assert load_model_config(path) == tiny_cfg  # what profile, show and create_model read
    with pytest.raises(ConfigError, match=r"settings\.device: unknown key"):
        save_run_config(tiny_cfg, {"device": "cpu"}, tmp_path / "x.yaml")
    assert not (tmp_path / "x.yaml").exists()


# -- the search space's budget: the same declaration ------------------------------------------


def test_space_budget_takes_every_budget_field_with_trainconfigs_rules() -> None:
    from affinity.errors import SpaceError
    from affinity.search.settings import TRIAL_DEFAULTS, Settings, parse_settings, with_overrides

    budget = {k: v for k, v in OTHER.items() if k in BUDGET_KEYS}
    settings = parse_settings({"seed": 7, "budget": budget})
    assert settings.budget == TrainConfig(**budget, seed=7) and settings.seed == 7
    # the one place the search's defaults differ from TrainConfig's
    plain = Settings()
    assert plain.img_size == TRIAL_DEFAULTS["img_size"]
    assert {k: getattr(plain.budget, k) for k in ("epochs", "batch_size")} == {"epochs": 2, "batch_size": 64}
    differ = {
        f.name
        for f in dataclasses.fields(TrainConfig)
        if getattr(plain.budget, f.name) != getattr(TrainConfig(), f.name)
    }
    assert differ == set(TRIAL_DEFAULTS) - {"img_size"}
    assert set(plain.training()) == {"dataset", "img_size", "seed", *BUDGET_KEYS}
    for key, value in [("clip_grad", -1), ("warmup_fraction", 1.0), ("amp", "on"), ("max_steps", 0)]:
        with pytest.raises(
            SpaceError, match=rf"^budget\.{key}: .* is not allowed; allowed: {rule(key).allowed[:10]}"
        ):
            parse_settings({"budget": {key: value}})
    with pytest.raises(SpaceError, match=r"budget\.threads: unknown key"):
        parse_settings({"budget": {"threads": 2}})
    over = with_overrides(plain, epochs=5, lr=1, seed=3)
    assert (over.budget.epochs, over.budget.lr, over.seed, over.budget.batch_size) == (5, 1.0, 3, 64)


def test_a_study_recorded_before_a_budget_key_existed_resumes(tmp_path: Path) -> None:
    import optuna

    from affinity.search.space import load_space, resolve_space_path
    from affinity.search.study import create_or_resume

    space = load_space(resolve_space_path("tiny.yaml"))
    storage = f"sqlite:///{tmp_path / 's.db'}"
    old = {k: v for k, v in space.settings.training().items() if k != "min_lr_ratio"}
    study = optuna.create_study(study_name="old", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("affinity", {"objective": "pareto", "training": old, "space": space.name})
    assert create_or_resume("old", storage, space, space.settings).study_name == "old"


# -- a model config carrying its run settings (issue 9.2) -------------------------------------


def test_train_and_profile_read_the_run_settings_of_a_model_yaml(tmp_path: Path, tiny_cfg) -> None:
    from affinity.search.settings import parse_settings

    settings = parse_settings(
        {"dataset": DATA, "img_size": 16, "seed": 4, "budget": {"max_steps": 3, "lr": 0.002}}
    )
    path = save_run_config(tiny_cfg, settings.training(), tmp_path / "trial_3.yaml", header="trial 3")
    runner = CliRunner()
    result = runner.invoke(
        cli, ["train", str(path), "--quiet", "--run-dir", str(tmp_path / "o")]
    )  # no other flags
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert (record["dataset"], record["img_size"], record["metrics"]["steps"]) == (DATA, 16, 3)
    expected = dataclasses.replace(settings.budget, device="auto", threads=1).to_dict()
    assert record["train_config"] == expected  # the search's budget, batch 64 and all

    def profiled(*flags: str) -> dict:
        out = runner.invoke(cli, ["profile", str(path), "--no-timing", "--format", "json", *flags])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    got = profiled()
    assert (got["img_size"], got["in_chans"], got["num_classes"]) == (16, 1, 4)  # synthetic: 1 channel
    assert got["flops"] == record["flops"]  # the FLOPs train (and the search) counted
    got = profiled("--img-size", "32", "--num-classes", "7")
    assert (got["img_size"], got["in_chans"], got["num_classes"]) == (32, 1, 7)


def test_train_help_reads_the_declaration_without_importing_torch() -> None:
    import subprocess
    import sys

    code = (
        "import contextlib, sys\n"
        "from affinity.cli import main\n"
        "with contextlib.suppress(SystemExit): main(['train', '--help'])\n"
        "print('TORCH' if 'torch' in sys.modules else 'LIGHT')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--batch-size" in out and out.strip().endswith("LIGHT")
