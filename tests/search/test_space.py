"""Space files: parsing, conditional sampling, hashing, and a catalogue of malformed files."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
import yaml

from affinity.cli import main
from affinity.errors import SpaceError
from affinity.search.params import Choice, FloatRange, IntRange, parse_value
from affinity.search.space import config_hash, load_space, parse_space, resolve_space_path

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = {
    "name": "bad",
    "dataset": "digits",
    "img_size": 8,
    "budget": {"epochs": 1},
    "model": {
        "family": "hierarchical",
        "dims": [8, 16],
        "depths": [1, 1],
        "patch_size": 2,
        "mixer": {"kind": {"choice": ["axial_shift", "spatial_shift"]}, "shift_size": {"choice": [1, 3]}},
    },
}


def _with(path: str, value: object) -> dict:
    """BASE with the value at a dotted path replaced (``None`` deletes the key)."""
    doc = copy.deepcopy(BASE)
    keys = path.split(".")
    node = doc
    for k in keys[:-1]:
        node = node[k]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


def test_shipped_spaces_are_valid() -> None:
    for name in ("shifts.yaml", "container.yaml", "mixers.yaml", "tiny.yaml", "beyond.yaml"):
        space = load_space(name)
        assert space.searched(), name
    assert resolve_space_path("tiny").name == "tiny.yaml"


def test_param_forms() -> None:
    assert parse_value({"choice": [3, 5]}, "p") == Choice((3, 5))
    assert parse_value({"int": [1, 9], "step": 2}, "p") == IntRange(1, 9, 2)
    assert parse_value({"float": [0.1, 1.0], "log": True}, "p") == FloatRange(0.1, 1.0, None, True)
    assert parse_value(7, "p") == 7


def test_conditional_sampling_and_hash() -> None:
    space = parse_space(BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        cfg = space.sample(trial)
        kind = trial.params["model.mixer.kind"]
        seen.add(kind)
        # the shift size exists only where an axial shift was chosen
        assert ("model.mixer.shift_size" in trial.params) == (kind == "axial_shift")
        branches = cfg.stages[1].mixer.branches
        assert {b.affinity for b in branches} == {kind}
        if kind == "axial_shift":
            assert branches[0].params["shift_size"] == trial.params["model.mixer.shift_size"]
        assert config_hash(cfg) == config_hash(cfg.to_dict())
        study.tell(trial, 0.0)
    assert seen == {"axial_shift", "spatial_shift"}


def test_alpha_sampled_only_with_fixed_or_learnable_coefficients() -> None:
    doc = _with(
        "model.mixer",
        {
            "kind": "attention+dwconv",
            "heads": 2,
            "coefficients": {"choice": ["sum", "fixed"]},
            "alpha": {"float": [0.1, 1.0]},
        },
    )
    space = parse_space(doc)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        cfg = space.sample(trial)
        fixed = trial.params["model.mixer.coefficients"] == "fixed"
        assert ("model.mixer.alpha" in trial.params) == fixed
        if fixed:
            assert cfg.stages[0].mixer.alpha == trial.params["model.mixer.alpha"]
        study.tell(trial, 0.0)


def test_list_choice_dims_and_element_params() -> None:
    doc = _with("model.dims", {"choice": [[8, 16], [16, 32]]})
    space = parse_space(doc)
    trial = optuna.create_study().ask()
    cfg = space.sample(trial)
    assert [s.dim for s in cfg.stages] in ([8, 16], [16, 32])
    doc = _with("model.dims", [8, {"choice": [16, 32]}])
    space = parse_space(doc)
    trial = optuna.create_study().ask()
    cfg = space.sample(trial)
    assert cfg.stages[1].dim == trial.params["model.dims[1]"]


# -- the catalogue: (what, file text or document, key path the message must start with) ------
CATALOGUE = [
    ("yaml syntax", "name: x\nmodel: {family: [\n", "bad.yaml: line"),
    ("empty file", "", "bad.yaml: the file is empty"),
    ("not a mapping", "- 1\n- 2\n", "bad.yaml"),
    ("unknown top key", _with("modle", 1), "modle: unknown key"),
    ("unknown budget key", _with("budget", {"epoch": 2}), "budget.epoch: unknown key"),
    ("wrong type epochs", _with("budget", {"epochs": "two"}), "budget.epochs:"),
    ("unknown sampler", _with("search", {"sampler": "cmaes"}), "search.sampler:"),
    ("missing model", _with("model", None), "model: missing"),
    ("unknown family", _with("model.family", "pyramid"), "model.family:"),
    ("empty choice", _with("model.mixer.shift_size", {"choice": []}), "model.mixer.shift_size.choice:"),
    ("inverted range", _with("model.mixer.shift_size", {"int": [7, 3]}), "model.mixer.shift_size.int:"),
    (
        "log range from zero",
        _with("model.mixer.shift_size", {"int": [0, 3], "log": True}),
        "model.mixer.shift_size.int:",
    ),
    ("two forms", _with("model.mixer.shift_size", {"choice": [1], "int": [1, 3]}), "model.mixer.shift_size:"),
    ("even shift", _with("model.mixer.shift_size", {"choice": [1, 4]}), "model.mixer.shift_size: 4"),
    ("unknown affinity", _with("model.mixer.kind", "axial_shfit"), "model.mixer.kind:"),
    ("unknown mixer key", _with("model.mixer.shfit_size", 3), "model.mixer.shfit_size: unknown key"),
    (
        "conditional without its condition",
        _with("model.mixer", {"kind": "spatial_shift", "shift_size": 3}),
        "model.mixer.shift_size: only exists where",
    ),
    (
        "alpha without fixed/learnable coefficients",
        _with("model.mixer", {"kind": "attention+dwconv", "heads": 2, "alpha": 0.5}),
        "model.mixer.alpha: only exists when coefficients",
    ),
    (
        "impossible heads",
        _with("model.mixer", {"kind": "attention", "heads": {"choice": [2, 3]}}),
        "model.mixer.heads: 3",
    ),
    (
        "window larger than the map",
        _with("model.mixer", {"kind": "attention", "window_size": 6}),
        "model.mixer.window_size: 6",
    ),
    ("stage counts disagree", _with("model.depths", [1, 1, 1]), "model.dims: stage counts disagree"),
    ("negative dim", _with("model.dims", [8, -16]), "model.dims[1]:"),
    ("stride does not divide image", _with("model.patch_size", 3), "model.stages[0].patch_size:"),
    (
        "unknown stage key",
        _with("model.stages", [{"mixer": "dwconv"}, {"mixr": "dwconv"}]),
        "model.stages[1].mixr: unknown key",
    ),
    ("bad name", _with("name", "a/b"), "name:"),
    (
        "float range for an int parameter",
        _with("model.mixer.shift_size", {"float": [1, 3]}),
        "model.mixer.shift_size:",
    ),
]


@pytest.mark.parametrize(("what", "doc", "prefix"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_malformed_space_is_one_line_exit_2_nothing_written(
    what: str, doc: object, prefix: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", str(path), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    message = err.removeprefix("affinity: error: ")
    if prefix.startswith("bad.yaml"):
        assert message.startswith(str(path)), message
        assert prefix.removeprefix("bad.yaml") in message
    else:
        assert message.startswith(prefix), message
    assert not (tmp_path / "results").exists()


def test_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 15


def test_grid_needs_a_discrete_space(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = _with("model.mixer", {"kind": "attention+dwconv", "heads": 2, "coefficients": "fixed",
                                "alpha": {"float": [0.1, 1.0]}})  # fmt: skip
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", str(tmp_path / "s.yaml"), "--sampler", "grid", "--quiet"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("affinity: error: model.mixer.alpha:")
    assert not (tmp_path / "results").exists()


def test_cli_override_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", "tiny.yaml", "--epochs", "0", "--quiet"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("affinity: error: --epochs: 0")


def test_unknown_space_names_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SpaceError, match=r"shifts\.yaml"):
        resolve_space_path("shift.yaml")


def test_check_lists_parameters_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    main(["search", "--space", "shifts.yaml", "--check"])
    out = capsys.readouterr().out
    assert "model.mixer.shift_size: [1, 3, 5, 7]" in out
    assert "model.mixer.dilation: [1, 2]" in out
    assert not (tmp_path / "results").exists()
