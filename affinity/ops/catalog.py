"""What ``affinity affinities`` lists: each registered affinity as data (rendering is the CLI's)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from affinity.ops.base import AFFINITIES


@dataclass(frozen=True)
class AffinityInfo:
    """One registered affinity.

    Args:
        name: its registry name.
        kind: ``dynamic`` (A(X), computed from the input) or ``static`` (A).
        params: its own hyperparameters with defaults, ``name=default`` (``dim`` and ``hw``
            come from the mixer and are left out).
        paper: paper and equation.
    """

    name: str
    kind: str
    params: tuple[str, ...]
    paper: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "params": list(self.params), "paper": self.paper}


def describe_affinities(pattern: str | None = None) -> list[AffinityInfo]:
    """Every registered affinity (optionally those matching a shell ``pattern``), sorted by name."""
    out = []
    for name in AFFINITIES.names(pattern):
        cls = AFFINITIES.get(name)
        params = tuple(
            f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name not in ("self", "dim", "hw")
        )
        out.append(AffinityInfo(name, "dynamic" if cls.dynamic else "static", params, cls.paper))
    return out
