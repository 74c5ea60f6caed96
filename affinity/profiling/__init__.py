"""``profile()``: a model's params, FLOPs, activations, latency and cost breakdown, beside the
paper's figures. Compute returns a ``ProfileResult`` (``_measure``, ``_result``); rendering
(rich table, JSON, CSV) is separate (``_render``: ``render_table``, ``to_json``, ``to_csv``).

FLOPs are fvcore's multiply-adds (one multiply-add = one FLOP, as the papers count), counted
once on a single image with ``affinity.flops.count_flops``; per-image figures do not depend
on the batch size, latency and throughput do.
"""

from __future__ import annotations

from affinity.profiling._measure import profile
from affinity.profiling._render import render_table, to_csv, to_json
from affinity.profiling._result import AffinityCost, LayerCost, ProfileResult, StageCost

__all__ = [
    "AffinityCost",
    "LayerCost",
    "ProfileResult",
    "StageCost",
    "profile",
    "render_table",
    "to_csv",
    "to_json",
]
