"""What ``profile`` returns: plain dataclasses, rendered elsewhere (``affinity.profiling._render``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from affinity.flops import UNIT

__all__ = ["AffinityCost", "LayerCost", "ProfileResult", "StageCost"]


@dataclass
class StageCost:
    """Cost of one part of the network (``stem``/``stages.i``/``head``) for one image.

    Args:
        name: module path (``stages.0``) or ``head`` (final norm, pooling, classifier).
        params: parameters of the part.
        flops: FLOPs (multiply-adds) of the part.
        flops_pct: share of the model's FLOPs, in %.
        hw: the part's map size (H, W), when it has one.
        dim: its channels.
    """

    name: str
    params: int
    flops: int
    flops_pct: float
    hw: tuple[int, int] | None = None
    dim: int | None = None


@dataclass
class AffinityCost:
    """Cost of every affinity of one kind (``axial_shift``, ``attention``, ...) in the model.

    Args:
        kind: the registered affinity name.
        count: how many there are.
        params: their parameters (attention's Q, K projection included).
        flops: their FLOPs, one image.
        dense_nxn_flops: what they would cost as dense N×N affinities (``C·N_out·N_in`` each).
    """

    kind: str
    count: int
    params: int
    flops: int
    dense_nxn_flops: int


@dataclass
class LayerCost:
    """One module of the per-layer table (embeddings and blocks)."""

    path: str
    type: str
    params: int
    flops: int


@dataclass
class ProfileResult:
    """What ``profile`` measured (all FLOPs and activations per image).

    Args:
        model: name or YAML path profiled ("custom" for a module).
        img_size: input side; batch_size: images per timed forward; in_chans, num_classes:
            build arguments; device: where it ran.
        params: parameters (all).
        params_excl_head: parameters without the classifier.
        flops: FLOPs (multiply-adds) of one image.
        activations: elements written by every conv, linear and affinity for one image.
        stages: per-stage cost (``StageCost``), including the head.
        by_component: FLOPs per component kind: ``affinity``, ``mixer_projection``,
            ``channel_mlp``, ``embedding``, ``norm``, ``gate``, ``head``, ``other``.
        by_affinity: per affinity kind (``AffinityCost``).
        dense_nxn_flops: the model's token mixing as dense N×N affinities (sum over mixers).
        layers: per-layer costs (embeddings and blocks).
        latency_ms: median forward time of one batch after warm-up (None without timing).
        latency_runs: the timed runs, ms.
        throughput: images per second at that median.
        reference: the published reference (``Reference`` as a dict) for this input size.
        params_diff_pct, flops_diff_pct: computed vs published, in % of published (params
            compare with the head excluded when the paper excludes it).
        unit: what one FLOP means.
        seconds: wall time of the whole profile.
    """

    model: str
    img_size: int
    batch_size: int
    in_chans: int
    num_classes: int
    device: str
    params: int
    params_excl_head: int
    flops: int
    activations: int
    stages: list[StageCost]
    by_component: dict[str, int]
    by_affinity: list[AffinityCost]
    dense_nxn_flops: int
    layers: list[LayerCost] = field(default_factory=list)
    latency_ms: float | None = None
    latency_runs: list[float] = field(default_factory=list)
    throughput: float | None = None
    reference: dict[str, Any] | None = None
    params_diff_pct: float | None = None
    flops_diff_pct: float | None = None
    unit: str = UNIT
    seconds: float = 0.0

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["gflops"] = self.gflops
        out["params_m"] = self.params / 1e6
        return out
