"""Canonical configurations: for each declared rule, both forms with the same weights give
the same output, and they share one canonical form (so the search treats them as one)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from affinity.ops import AFFINITIES, BranchCfg, ContextAggregation, MixerCfg
from affinity.ops.canonical import MIXER_INERT, canonical_mixer

H = W = 6
DIM = 8


def _mixer(branches: list[tuple[str, dict[str, Any]]], **fields: Any) -> MixerCfg:
    return MixerCfg(branches=tuple(BranchCfg(a, p) for a, p in branches), **fields)


SHIFT = ("axial_shift", {"shift_size": 1, "dilation": 1, "padding": "zero"})
SHIFT_B = ("axial_shift", {"shift_size": 1, "dilation": 2, "padding": "reflect"})
CONV = ("dwconv", {"kernel_size": 1, "dilation": 1, "padding": "zero", "bias": True})
CONV_B = ("dwconv", {"kernel_size": 1, "dilation": 3, "padding": "circular", "bias": True})
ATT = ("attention", {"heads": 2})

#: (the rule's reason, configuration a, configuration b, b's own parameters): a and b are
#: equivalent by that rule only; b keeps its own initial value of the named parameters (the
#: inert learnable coefficients), every other weight is a's
CASES: list[tuple[str, MixerCfg, MixerCfg, set[str]]] = [
    ("axial_shift: one group, shifted by 0", _mixer([SHIFT]), _mixer([SHIFT_B]), set()),
    ("dwconv: a 1x1 kernel reads its own token only", _mixer([CONV]), _mixer([CONV_B]), set()),
    (
        "one branch: parallel and serial are the same",
        _mixer([CONV], connection="parallel"),
        _mixer([CONV], connection="serial"),
        set(),
    ),
    (
        "sum weights every branch by 1",
        _mixer([ATT, CONV], coefficients="sum", alpha=1.0, beta=1.0),
        _mixer([ATT, CONV], coefficients="sum", alpha=0.3, beta=0.6),
        set(),
    ),
    (
        "convex learns alpha = sigmoid(w), beta = 1 - alpha from w = 0",
        _mixer([ATT, CONV], coefficients="convex", alpha=1.0, beta=1.0),
        _mixer([ATT, CONV], coefficients="convex", alpha=0.3, beta=0.6),
        set(),
    ),
    (
        "no dynamic branch for alpha to weight",
        _mixer([CONV, ("dwconv", {"kernel_size": 3})], coefficients="learnable", alpha=1.0, beta=0.5),
        _mixer([CONV, ("dwconv", {"kernel_size": 3})], coefficients="learnable", alpha=0.2, beta=0.5),
        {"alpha"},
    ),
    (
        "no static branch for beta to weight",
        _mixer([ATT], coefficients="fixed", alpha=0.5, beta=1.0),
        _mixer([ATT], coefficients="fixed", alpha=0.5, beta=0.25),
        set(),
    ),
    (
        "fixed coefficients of 1 are the sum",
        _mixer([ATT, CONV], coefficients="sum"),
        _mixer([ATT, CONV], coefficients="fixed", alpha=1.0, beta=1.0),
        set(),
    ),
]


def _declared_reasons() -> set[str]:
    reasons = {rule.reason for rule in MIXER_INERT} | {"fixed coefficients of 1 are the sum"}
    for name in AFFINITIES.names():
        reasons |= {f"{name}: {rule.reason}" for rule in AFFINITIES.get(name).inert}
    return reasons


def test_every_declared_rule_has_a_case() -> None:
    assert {case[0] for case in CASES} == _declared_reasons()


@pytest.mark.parametrize(("reason", "a", "b", "own"), CASES, ids=[c[0] for c in CASES])
def test_equivalent_forms_share_a_canonical_form_and_compute_the_same(
    reason: str, a: MixerCfg, b: MixerCfg, own: set[str]
) -> None:
    assert a != b
    assert canonical_mixer(a) == canonical_mixer(b)
    torch.manual_seed(0)
    ma = ContextAggregation.from_cfg(a, dim=DIM, hw=(H, W)).double().eval()
    mb = ContextAggregation.from_cfg(b, dim=DIM, hw=(H, W)).double().eval()
    shared = {k: v for k, v in ma.state_dict().items() if k not in own}
    missing, unexpected = mb.load_state_dict(shared, strict=False)
    assert not unexpected and set(missing) == own
    if own:
        assert not torch.equal(ma.state_dict()["alpha"], mb.state_dict()["alpha"])
    x = torch.randn(2, DIM, H, W, dtype=torch.float64)
    torch.testing.assert_close(mb(x), ma(x), rtol=0, atol=1e-12)


def test_a_parameter_that_matters_is_kept() -> None:
    a = _mixer([("axial_shift", {"shift_size": 3, "dilation": 1})])
    b = _mixer([("axial_shift", {"shift_size": 3, "dilation": 2})])
    assert canonical_mixer(a) != canonical_mixer(b)
    torch.manual_seed(0)
    ma = ContextAggregation.from_cfg(a, dim=DIM, hw=(H, W))
    mb = ContextAggregation.from_cfg(b, dim=DIM, hw=(H, W))
    mb.load_state_dict(ma.state_dict())
    x = torch.randn(1, DIM, H, W)
    assert not torch.allclose(ma(x), mb(x))
    assert canonical_mixer(a) == a  # nothing to reduce: unchanged, so is its hash


def _shift_trial(**changes: Any) -> Any:
    import optuna

    params = {
        "model.dims": "[16, 32]",
        "model.channel_mlp_ratio": 2,
        "model.mixer.kind": "axial_shift",
        "model.mixer.shift_size": 1,
        "model.mixer.dilation": 1,
        "model.mixer.padding": "zero",
        "model.mixer.connection": "parallel",
    }
    return optuna.trial.FixedTrial({**params, **{f"model.mixer.{k}": v for k, v in changes.items()}})


def test_config_hash_is_taken_on_the_canonical_form() -> None:
    from affinity.search.space import config_hash, load_space

    space = load_space("shifts.yaml")
    a = space.sample(_shift_trial())
    b = space.sample(_shift_trial(dilation=2, padding="reflect"))
    assert a != b and a.fingerprint() != b.fingerprint()
    assert config_hash(a) == config_hash(b) == config_hash(b.to_dict())
    c = space.sample(_shift_trial(shift_size=3))
    d = space.sample(_shift_trial(shift_size=3, dilation=2))
    assert config_hash(c) != config_hash(d)


def test_no_zoo_model_changes_its_hash() -> None:
    """A configuration no rule reduces keeps the hash it always had (studies stay comparable)."""
    from affinity.models import MODELS
    from affinity.search.space import config_hash

    for name in MODELS.names():
        cfg = MODELS.get(name).cfg
        assert config_hash(cfg) == cfg.fingerprint(), name
