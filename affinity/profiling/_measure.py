"""Measurement: build or take a model, count its FLOPs once, time it, attribute the cost to
stages, components, affinity kinds and layers. Returns a ``ProfileResult``; nothing here
renders."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import Counter
from typing import Any

import torch
from torch import Tensor, nn

from affinity.device import resolve_device
from affinity.errors import check_int
from affinity.flops import count_flops, count_params
from affinity.memory import keep_freed_memory
from affinity.profiling._result import AffinityCost, LayerCost, ProfileResult, StageCost

__all__ = ["profile"]


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
    if not cuda:
        keep_freed_memory()  # each forward reuses the last one's memory, not fresh pages
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


def _stage_dims(model: nn.Module) -> list[int | None]:
    """Channels of each stage, from the model's config (``AffinityNet.cfg``): a block's norm
    may have no weight (ResMLP's affine norm holds ``alpha``/``beta``), a config always says."""
    cfg_stages = getattr(getattr(model, "cfg", None), "stages", None)
    if cfg_stages is None:
        return []
    return [int(s.dim) for s in cfg_stages]


def _stage_costs(model: nn.Module, by_module: dict[str, int], total: int) -> list[StageCost]:
    stages = getattr(model, "stages", None)
    out: list[StageCost] = []
    if stages is None:
        return [StageCost("model", _params_of(model), total, 100.0)]
    dims = _stage_dims(model)
    used = 0
    for i, stage in enumerate(stages):
        flops = by_module.get(f"stages.{i}", 0)
        used += flops
        out.append(
            StageCost(
                f"stages.{i}",
                _params_of(stage),
                flops,
                _pct(flops, total),
                tuple(stage.hw) if hasattr(stage, "hw") else None,
                dims[i] if i < len(dims) else None,
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
