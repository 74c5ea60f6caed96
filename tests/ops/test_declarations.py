"""Each affinity declares its hyperparameters once (``Affinity.params``); everything reads that.

The toy affinity below exists in this file only: registering it is enough for it to be
listed by ``affinity affinities``, searched by a space file and overridden in a model config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor

from affinity.cli import cli
from affinity.errors import ConfigError, SpaceError
from affinity.models import create_model
from affinity.models.config import apply_overrides
from affinity.ops import AFFINITIES, Affinity, BranchCfg, Param, create_affinity
from affinity.ops.params import at_least
from affinity.search.kinds import kinds_table
from affinity.search.space import parse_space

README = Path(__file__).resolve().parents[2] / "README.md"


class ToyGain(Affinity):
    """A toy static affinity, ``A = gain·I``, declared once and registered by the fixture."""

    name = "toy_gain"
    paper = "Toy gain (this test): A = gain·I"
    params = (Param("gain", 1, at_least(1), "how much every value is scaled"),)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gain: int = self.hparams["gain"]

    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        return v * self.gain

    def materialize(self, x: Tensor) -> Tensor:
        n = x.shape[2] * x.shape[3]
        return self.gain * torch.eye(n, dtype=x.dtype, device=x.device)[None, None]


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> type[ToyGain]:
    """Register ``ToyGain`` for one test (the registry has no removal: the entry is patched in)."""
    monkeypatch.setitem(AFFINITIES._entries, ToyGain.name, ToyGain)
    return ToyGain


def _space(mixer: dict[str, Any]) -> Any:
    return parse_space(
        {"model": {"family": "isotropic", "dims": [8], "depths": [1], "patch_size": 4, "mixer": mixer}}
    )


def test_a_registered_toy_affinity_is_listed_searchable_and_overridable(toy: type[ToyGain]) -> None:
    result = CliRunner().invoke(cli, ["affinities", "toy*", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["name"] == "toy_gain" and row["kind"] == "static" and row["params"] == ["gain=1"]
    assert row["parameters"] == [
        {
            "name": "gain",
            "type": "int",
            "default": 1,
            "allowed": "an integer >= 1",
            "help": "how much every value is scaled",
        }
    ]

    space = _space({"kind": "toy_gain", "gain": {"choice": [2, 3]}})
    assert space.distributions() == {"model.mixer.gain": [2, 3]}
    cfg = space.sample(optuna.trial.FixedTrial({"model.mixer.gain": 3}))
    assert cfg.stages[0].mixer.branches == (BranchCfg("toy_gain", {"gain": 3}),)
    with pytest.raises(SpaceError, match=r"model\.mixer\.gain: 0 is not allowed; allowed: an integer >= 1"):
        _space({"kind": "toy_gain", "gain": {"choice": [0, 2]}})

    overridden = apply_overrides(cfg, gain=5)
    assert overridden.stages[0].mixer.branches[0].params == {"gain": 5}
    model = create_model(overridden, num_classes=2, img_size=16, in_chans=1)
    (aff,) = [m for m in model.modules() if isinstance(m, ToyGain)]
    assert aff.gain == 5
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 2)
    with pytest.raises(ConfigError, match=r"gain=0 is not allowed: an integer >= 1"):
        create_model(cfg, num_classes=2, img_size=16, in_chans=1, gain=0)


def test_the_readme_kinds_table_is_the_declarations() -> None:
    assert kinds_table() in README.read_text(encoding="utf-8"), "run: python -m affinity.search.kinds"


@pytest.mark.parametrize("name", AFFINITIES.names())
def test_declared_defaults_build_and_each_rule_is_enforced(name: str) -> None:
    cls = AFFINITIES.get(name)
    aff = create_affinity(name, dim=8, hw=(8, 8))
    assert aff.hparams == {p.name: p.default for p in cls.params}
    for p in cls.params:
        assert p.ok(p.default), p.name
        bad = 12345 if p.rule.type == "str" else "not-a-value"
        assert not p.ok(bad)
        with pytest.raises(ConfigError, match=rf"^{p.name}="):
            create_affinity(name, dim=8, hw=(8, 8), **{p.name: bad})
    with pytest.raises(ConfigError, match=rf"not a parameter of affinity '{name}'"):
        create_affinity(name, dim=8, hw=(8, 8), undeclared=1)
