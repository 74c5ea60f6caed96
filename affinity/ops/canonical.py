"""Canonical mixers: parameters that cannot change the computation, reduced away.

Two configurations that compute the same function should be one configuration: the search
hashes the canonical form (``affinity.search.space.config_hash``), so an equivalent proposal
is a duplicate and is not trained again. What is inert is declared where it is known: each
affinity's ``inert`` rules (``Affinity.inert``: an axial shift of size 1 has no dilation or
padding; a 1x1 depthwise kernel neither) and, for the context aggregation itself,
``MIXER_INERT`` below. Inert branch parameters are dropped from ``BranchCfg.params``; inert
mixer fields take their ``MixerCfg`` default. A configuration no rule applies to is left as
it is, so its hash is the one it always had. Each rule has a test that builds both forms with
the same weights and gets the same output (tests/ops/test_canonical.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from affinity.ops.base import AFFINITIES
from affinity.ops.config import BranchCfg, MixerCfg
from affinity.ops.params import Inert

__all__ = ["MIXER_INERT", "canonical_branch", "canonical_mixer"]

#: Mixer fields that cannot change a ``ContextAggregation``'s output, and when. The
#: predicate reads the ``MixerCfg`` fields plus ``branches`` (how many), ``dynamic`` and
#: ``static`` (whether some branch is).
MIXER_INERT: tuple[Inert, ...] = (
    Inert(("connection",), lambda m: m["branches"] == 1, "one branch: parallel and serial are the same"),
    Inert(("alpha", "beta"), lambda m: m["coefficients"] == "sum", "sum weights every branch by 1"),
    Inert(
        ("alpha", "beta"),
        lambda m: m["coefficients"] == "convex",
        "convex learns alpha = sigmoid(w), beta = 1 - alpha from w = 0",
    ),
    Inert(("alpha",), lambda m: not m["dynamic"], "no dynamic branch for alpha to weight"),
    Inert(("beta",), lambda m: not m["static"], "no static branch for beta to weight"),
)


def canonical_branch(branch: BranchCfg) -> BranchCfg:
    """``branch`` without the parameters its affinity declares inert for its other values."""
    cls = AFFINITIES.get(branch.affinity)
    values = {**{p.name: p.default for p in cls.params}, **branch.params}
    inert = {name for rule in cls.inert if rule.when(values) for name in rule.params}
    if not inert & set(branch.params):
        return branch
    return dataclasses.replace(branch, params={k: v for k, v in branch.params.items() if k not in inert})


def canonical_mixer(mixer: MixerCfg) -> MixerCfg:
    """``mixer`` in canonical form: canonical branches, inert fields at their defaults, and
    ``fixed`` coefficients that are all 1 written as ``sum`` (the same products)."""
    branches = tuple(canonical_branch(b) for b in mixer.branches)
    kinds = [AFFINITIES.get(b.affinity).dynamic for b in branches]
    values: dict[str, Any] = {f.name: getattr(mixer, f.name) for f in dataclasses.fields(mixer)}
    facts: Mapping[str, Any] = {
        **values,
        "branches": len(branches),
        "dynamic": any(kinds),
        "static": not all(kinds),
    }
    if (
        mixer.coefficients == "fixed"
        and (mixer.alpha == 1 or not facts["dynamic"])
        and (mixer.beta == 1 or not facts["static"])
    ):
        values["coefficients"] = "sum"  # y·1.0 is y: fixed ones are the plain sum
        facts = {**facts, "coefficients": "sum"}
    defaults = {f.name: f.default for f in dataclasses.fields(MixerCfg) if f.name != "branches"}
    for rule in MIXER_INERT:
        if rule.when(facts):
            values.update({name: defaults[name] for name in rule.params})
    values["branches"] = branches
    return MixerCfg(**values)
