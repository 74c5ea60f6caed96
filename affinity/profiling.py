"""``profile()``: a model's params, FLOPs, activations, latency and cost breakdown, beside the
paper's figures. Compute returns a ``ProfileResult``; rendering (rich table, JSON, CSV) is
separate (``render_table``, ``to_json``, ``to_csv``).

FLOPs are fvcore's multiply-adds (one multiply-add = one FLOP, as the papers count), counted
once on a single image with ``affinity.flops.count_flops``; per-image figures do not depend
on the batch size, latency and throughput do.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from affinity.device import resolve_device
from affinity.errors import check_int
from affinity.flops import UNIT, count_flops, count_params


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


def profile(
    model_or_name: str | nn.Module,
    *,
    img_size: int = 224,
    batch_size: int = 1,
    device: str = "cpu",
    timing: bool = True,
    in_chans: int = 3,
    num_classes: int = 1000,
    warmup: int = 1,
    max_runs: int = 10,
    max_seconds: float = 5.0,
) -> ProfileResult:
    """Profile a registered model, a model-config YAML, or a built model.

    Args:
        model_or_name: a registered name, a YAML path, or an ``nn.Module`` (then the build
            arguments below describe its input and are not used to build it).
        img_size: input side.
        batch_size: images per timed forward.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (see ``affinity.device``).
        timing: measure latency (median of at least 3 runs after ``warmup``).
        in_chans: input channels.
        num_classes: classifier outputs.
        warmup: untimed forwards before timing; the FLOP-count pass (a full forward on one
            image) counts as the first when ``batch_size`` is 1.
        max_runs: at most this many timed forwards ...
        max_seconds: ... and no more once this much time has been spent timing (3 at least).

    Raises:
        UnknownNameError: an unknown model name (with the closest names).
        ConfigError: a bad argument, or an input size the model cannot take.
    """
    from affinity.models import MODELS, AffinityNet, create_model

    start = time.perf_counter()
    check_int("batch_size", batch_size, 1)
    check_int("img_size", img_size, 1)
    check_int("in_chans", in_chans, 1)
    device = str(resolve_device(device))
    if isinstance(model_or_name, nn.Module):
        model = model_or_name
        label = str(getattr(model, "name", "custom"))
        num_classes = int(getattr(model, "num_classes", num_classes))
    else:
        label = model_or_name
        model = create_model(model_or_name, num_classes=num_classes, img_size=img_size, in_chans=in_chans)
    model = model.to(device).eval()

    x = torch.randn(1, in_chans, img_size, img_size, device=device)
    acts, hooks = _activation_hooks(model)
    try:
        report = count_flops(model, x)
    finally:
        for h in hooks:
            h.remove()

    head_paths = (
        ("head",) if isinstance(model, AffinityNet) and not isinstance(model.head, nn.Identity) else ()
    )
    params = count_params(model)
    params_excl = count_params(model, exclude=head_paths)
    by_module = report.by_module
    stages = _stage_costs(model, by_module, report.total)
    by_component = _components(model, by_module, report.total)
    by_affinity = _affinity_costs(model, by_module, report.dense_nxn_by_affinity)
    layers = _layer_costs(model, by_module)

    runs: list[float] = []
    if timing:
        batch = torch.randn(batch_size, in_chans, img_size, img_size, device=device)
        extra = warmup - 1 if batch_size == 1 else warmup
        runs = _time_forward(model, batch, warmup=extra, max_runs=max_runs, max_seconds=max_seconds)
    latency = statistics.median(runs) if runs else None

    ref_dict: dict[str, Any] | None = None
    params_diff = flops_diff = None
    if label in MODELS:
        ref = MODELS.get(label).reference_at(img_size)
        if ref is not None:
            ref_dict = dataclasses.asdict(ref)
            if ref.params_m:
                mine = params_excl if ref.params_exclude_head else params
                params_diff = 100.0 * (mine / 1e6 - ref.params_m) / ref.params_m
            if ref.gflops:
                flops_diff = 100.0 * (report.total / 1e9 - ref.gflops) / ref.gflops
    return ProfileResult(
        model=label,
        img_size=img_size,
        batch_size=batch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        device=device,
        params=params,
        params_excl_head=params_excl,
        flops=report.total,
        activations=int(acts["total"]),
        stages=stages,
        by_component=by_component,
        by_affinity=by_affinity,
        dense_nxn_flops=sum(report.dense_nxn.values()),
        layers=layers,
        latency_ms=latency,
        latency_runs=runs,
        throughput=None if latency is None else batch_size / (latency / 1000.0),
        reference=ref_dict,
        params_diff_pct=params_diff,
        flops_diff_pct=flops_diff,
        seconds=time.perf_counter() - start,
    )


# --- measurement helpers ---------------------------------------------------------------------
def _activation_hooks(model: nn.Module) -> tuple[Counter[str], list[Any]]:
    """Count output elements of convs, linears and affinities (fvcore's activation convention,
    extended to the affinities) during the FLOP trace, so no second trace is needed."""
    from affinity.ops.base import Affinity

    acts: Counter[str] = Counter()
    hooks = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, Affinity)):

            def hook(mod: nn.Module, args: Any, out: Any) -> None:
                if isinstance(out, Tensor):
                    acts["total"] += out.numel()

            hooks.append(module.register_forward_hook(hook))
    return acts, hooks


def _time_forward(
    model: nn.Module, x: Tensor, *, warmup: int, max_runs: int, max_seconds: float
) -> list[float]:
    cuda = x.device.type == "cuda"
    runs: list[float] = []
    with torch.inference_mode():
        for _ in range(max(0, warmup)):
            model(x)
        if cuda:
            torch.cuda.synchronize()
        spent = 0.0
        while len(runs) < 3 or (len(runs) < max_runs and spent < max_seconds):
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            spent += dt
            runs.append(dt * 1000.0)
    return runs


def _params_of(module: nn.Module) -> int:
    return count_params(module)


def _stage_costs(model: nn.Module, by_module: dict[str, int], total: int) -> list[StageCost]:
    stages = getattr(model, "stages", None)
    out: list[StageCost] = []
    if stages is None:
        return [StageCost("model", _params_of(model), total, 100.0)]
    used = 0
    for i, stage in enumerate(stages):
        flops = by_module.get(f"stages.{i}", 0)
        used += flops
        blocks = getattr(stage, "blocks", None)
        dim = None
        if blocks is not None and len(blocks):
            dim = getattr(getattr(blocks[0], "mixer", None), "dim", None)
        out.append(
            StageCost(
                f"stages.{i}",
                _params_of(stage),
                flops,
                _pct(flops, total),
                tuple(stage.hw) if hasattr(stage, "hw") else None,
                dim,
            )
        )
    stage_params = sum(s.params for s in out)
    rest = total - used
    out.append(StageCost("head", _params_of(model) - stage_params, rest, _pct(rest, total)))
    return out


def _pct(part: int, total: int) -> float:
    return 100.0 * part / total if total else 0.0


def _components(model: nn.Module, by_module: dict[str, int], total: int) -> dict[str, int]:
    """FLOPs per component kind (leaf-most attribution; each FLOP counted once)."""
    from affinity.models.layers import ChannelMlp, ConvBnRelu, GlobalPerceptron, PatchEmbed, PatchMerging
    from affinity.ops.base import Affinity
    from affinity.ops.mixer import ContextAggregation

    comp: Counter[str] = Counter()
    for path, module in model.named_modules():
        flops = by_module.get(path, 0)
        if not flops:
            continue
        if isinstance(module, Affinity):
            comp["affinity"] += flops
        elif isinstance(module, ContextAggregation):
            inner = sum(
                by_module.get(f"{path}.branches.{k}.affinity", 0) for k in range(len(module.branches))
            )
            comp["mixer_projection"] += flops - inner
        elif isinstance(module, ChannelMlp):
            comp["channel_mlp"] += flops
        elif isinstance(module, (PatchEmbed, ConvBnRelu, PatchMerging)):
            comp["embedding"] += flops
        elif isinstance(module, GlobalPerceptron):
            comp["gate"] += flops
        elif path == "head":
            comp["head"] += flops
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)) and not _inside(path, model):
            comp["norm"] += flops
    comp["other"] = total - sum(comp.values())
    return {k: int(v) for k, v in comp.items() if v or k == "other"}


def _inside(path: str, model: nn.Module) -> bool:
    """Whether ``path`` lies inside a module already attributed as a whole (mixer, MLP, embed)."""
    from affinity.models.layers import ChannelMlp, ConvBnRelu, PatchEmbed, PatchMerging
    from affinity.ops.mixer import ContextAggregation

    parts = path.split(".")
    for i in range(1, len(parts)):
        parent = model.get_submodule(".".join(parts[:i]))
        if isinstance(parent, (ContextAggregation, ChannelMlp, PatchEmbed, ConvBnRelu, PatchMerging)):
            return True
    return False


def _affinity_costs(model: nn.Module, by_module: dict[str, int], dense: dict[str, int]) -> list[AffinityCost]:
    from affinity.ops.base import Affinity

    rows: dict[str, AffinityCost] = {}
    for path, module in model.named_modules():
        if isinstance(module, Affinity):
            row = rows.setdefault(module.name, AffinityCost(module.name, 0, 0, 0, 0))
            row.count += 1
            row.params += _params_of(module)
            row.flops += by_module.get(path, 0)
            row.dense_nxn_flops += dense.get(path, 0)
    return sorted(rows.values(), key=lambda r: (-r.flops, r.kind))


def _layer_costs(model: nn.Module, by_module: dict[str, int]) -> list[LayerCost]:
    stages = getattr(model, "stages", None)
    if stages is None:
        return []
    out = []
    for i, stage in enumerate(stages):
        for name in ("embed", "tokens"):
            sub = getattr(stage, name, None)
            if sub is not None:
                path = f"stages.{i}.{name}"
                out.append(LayerCost(path, type(sub).__name__, _params_of(sub), by_module.get(path, 0)))
        for j, block in enumerate(getattr(stage, "blocks", [])):
            path = f"stages.{i}.blocks.{j}"
            out.append(LayerCost(path, _block_kind(block), _params_of(block), by_module.get(path, 0)))
    return out


def _block_kind(block: nn.Module) -> str:
    mixer = getattr(block, "mixer", None)
    if mixer is None or not hasattr(mixer, "branches"):
        return type(block).__name__
    return "+".join(b.affinity.name for b in mixer.branches)


# --- rendering -------------------------------------------------------------------------------
def _fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}%"


def to_json(result: ProfileResult) -> str:
    """The result as JSON (keys documented in README.md, "affinity profile")."""
    return json.dumps(result.to_dict(), indent=2)


def to_csv(result: ProfileResult) -> str:
    """One CSV row per part (each stage, the head, and a ``total`` row)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["model", "img_size", "part", "params", "gflops", "flops_pct", "latency_ms", "throughput"]
    )
    for s in result.stages:
        writer.writerow(
            [
                result.model,
                result.img_size,
                s.name,
                s.params,
                f"{s.flops / 1e9:.4f}",
                f"{s.flops_pct:.2f}",
                "",
                "",
            ]
        )
    writer.writerow(
        [
            result.model,
            result.img_size,
            "total",
            result.params,
            f"{result.gflops:.4f}",
            "100.00",
            "" if result.latency_ms is None else f"{result.latency_ms:.2f}",
            "" if result.throughput is None else f"{result.throughput:.2f}",
        ]
    )
    return buf.getvalue()


def render_table(result: ProfileResult, *, per_layer: bool = False) -> list[Any]:
    """Rich renderables: the summary beside the published figures, per-stage and per-affinity
    tables, and (``per_layer``) one row per embedding and block."""
    from rich.table import Table

    ref = result.reference or {}
    summary = Table(
        title=f"{result.model} @ {result.img_size}×{result.img_size} ({result.device})", show_header=True
    )
    summary.add_column("")
    summary.add_column("computed", justify="right")
    summary.add_column("published", justify="right")
    summary.add_column("diff", justify="right")
    summary.add_row(
        "params (M)" + (" excl. head" if ref.get("params_exclude_head") else ""),
        f"{(result.params_excl_head if ref.get('params_exclude_head') else result.params) / 1e6:.2f}",
        "" if ref.get("params_m") is None else f"{ref['params_m']}",
        _fmt_pct(result.params_diff_pct),
    )
    summary.add_row(
        "GFLOPs (multiply-adds)",
        f"{result.gflops:.2f}",
        "" if ref.get("gflops") is None else f"{ref['gflops']}",
        _fmt_pct(result.flops_diff_pct),
    )
    summary.add_row("top-1 (%)", "", "" if ref.get("top1") is None else f"{ref['top1']}", "")
    summary.add_row("activations (M)", f"{result.activations / 1e6:.1f}", "", "")
    summary.add_row("dense N×N mixing GFLOPs", f"{result.dense_nxn_flops / 1e9:.2f}", "", "")
    if result.latency_ms is not None and result.throughput is not None:
        summary.add_row(f"latency (ms, batch {result.batch_size})", f"{result.latency_ms:.1f}", "", "")
        summary.add_row("throughput (img/s)", f"{result.throughput:.1f}", "", "")
    out: list[Any] = [summary]
    if ref.get("note"):
        out.append(f"[dim]note: {ref['note']}[/dim]")

    stages = Table(title="per stage")
    for col in ("part", "map", "dim", "params (M)", "GFLOPs", "% FLOPs"):
        stages.add_column(col, justify="left" if col == "part" else "right")
    for s in result.stages:
        stages.add_row(
            s.name,
            "" if s.hw is None else f"{s.hw[0]}×{s.hw[1]}",
            "" if s.dim is None else str(s.dim),
            f"{s.params / 1e6:.2f}",
            f"{s.flops / 1e9:.3f}",
            f"{s.flops_pct:.1f}",
        )
    out.append(stages)

    kinds = Table(title="per affinity kind")
    for col in ("affinity", "count", "params (M)", "GFLOPs", "as dense N×N"):
        kinds.add_column(col, justify="left" if col == "affinity" else "right")
    for a in result.by_affinity:
        kinds.add_row(
            a.kind,
            str(a.count),
            f"{a.params / 1e6:.2f}",
            f"{a.flops / 1e9:.3f}",
            f"{a.dense_nxn_flops / 1e9:.3f}",
        )
    out.append(kinds)

    comp = Table(title="per component")
    comp.add_column("component")
    comp.add_column("GFLOPs", justify="right")
    comp.add_column("%", justify="right")
    for k, v in sorted(result.by_component.items(), key=lambda kv: -kv[1]):
        comp.add_row(k, f"{v / 1e9:.3f}", f"{_pct(v, result.flops):.1f}")
    out.append(comp)

    if per_layer:
        layers = Table(title="per layer")
        for col in ("module", "kind", "params (M)", "GFLOPs"):
            layers.add_column(col, justify="left" if col in ("module", "kind") else "right")
        for row in result.layers:
            layers.add_row(row.path, row.type, f"{row.params / 1e6:.3f}", f"{row.flops / 1e9:.4f}")
        out.append(layers)
    out.append(f"[dim]{result.unit}. Profiled in {result.seconds:.1f} s.[/dim]")
    return out


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
