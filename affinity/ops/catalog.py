"""What ``affinity affinities`` lists: each registered affinity as data (rendering is the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from affinity.ops.base import AFFINITIES


@dataclass(frozen=True)
class AffinityInfo:
    """One registered affinity, read from its class and its declared hyperparameters.

    Args:
        name: its registry name.
        kind: ``dynamic`` (A(X), computed from the input) or ``static`` (A).
        params: its own hyperparameters with defaults, ``name=default`` (``dim`` and ``hw``
            come from the mixer and are left out).
        paper: paper and equation.
        details: each declared hyperparameter as data (name, type, default, allowed, help).
    """

    name: str
    kind: str
    params: tuple[str, ...]
    paper: str
    details: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "params": list(self.params),
            "paper": self.paper,
            "parameters": list(self.details),
        }


def describe_affinities(pattern: str | None = None) -> list[AffinityInfo]:
    """Every registered affinity (optionally those matching a shell ``pattern``), sorted by name."""
    import affinity.ops  # noqa: F401  (registers every affinity)

    out = []
    for name in AFFINITIES.names(pattern):
        cls = AFFINITIES.get(name)
        params = tuple(f"{p.name}={p.default!r}" for p in cls.params)
        details = tuple(p.describe() for p in cls.params)
        out.append(AffinityInfo(name, "dynamic" if cls.dynamic else "static", params, cls.paper, details))
    return out
