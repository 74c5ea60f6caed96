"""FLOP and parameter counting: fvcore's ``FlopCountAnalysis`` with one table of op handles.

Unit: fvcore counts one multiply-add as one FLOP, as the papers do (so these are really
MACs). Every op a registered model runs either has a handle below or is zero on purpose:

- ``aten::scaled_dot_product_attention`` counts its two products, QKᵀ and A·V
  (``B·h·N_q·N_k·(d_qk + d_v)`` multiply-adds), with or without a mask; fvcore alone
  leaves it out, which is why DeiT-S reads 4.25G instead of its published 4.6G;
- ``aten::baddbmm`` / ``aten::addbmm`` count as the batched product they contain;
- ``aten::fft_rfft2`` / ``aten::fft_irfft2`` (GFNet's global filter) count ``C·N·⌈log₂ N⌉``
  per image, N the transformed input's size (H·W for rfft2, H·(W//2+1) for irfft2), as
  GFNet's authors count them (raoyongming/DynamicViT ``calc_flops.py``, ``rfft_flop_jit``,
  the counter of their GFNet figures); the filter's complex product is element-wise, zero;
- element-wise ops (GELU, add, mul, softmax, sigmoid, ...), reductions used as pooling,
  ``roll``, padding, slicing and indexing count zero on purpose (``set_op_handle(name,
  None)``), as fvcore already does for the ops it knows, so the totals compare with the
  published figures. fvcore's own handles for convolutions, matmuls and the norms stay.

No global flag is touched: what is counted depends only on the handle table here.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import Tensor, nn

UNIT = "FLOPs are multiply-adds (fvcore counts one multiply-add as one FLOP, as the papers do)"

#: ops that cost nothing on purpose: element-wise arithmetic and activations, reductions used
#: as pooling, shape and memory movement (roll, pad, slicing, indexing, concatenation).
ZERO_OPS: tuple[str, ...] = (
    # element-wise arithmetic and activations
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::sub_",
    "aten::rsub",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::neg",
    "aten::abs",
    "aten::exp",
    "aten::log",
    "aten::sqrt",
    "aten::rsqrt",
    "aten::pow",
    "aten::reciprocal",
    "aten::clamp_min",
    "aten::clamp_max",
    "aten::gelu",
    "aten::gelu_",
    "aten::relu",
    "aten::relu_",
    "aten::sigmoid",
    "aten::sigmoid_",
    "aten::tanh",
    "aten::silu",
    "aten::hardtanh",
    "aten::softmax",
    "aten::_softmax",
    "aten::log_softmax",
    "aten::dropout",
    "aten::dropout_",
    "aten::bernoulli_",
    "aten::where",
    "aten::masked_fill",
    "aten::masked_fill_",
    "aten::lerp",
    "aten::addcmul",
    "aten::fill_",
    "aten::zero_",
    "aten::ne",
    "aten::lt",
    "aten::le",
    "aten::eq",
    "aten::ge",
    "aten::gt",
    "aten::logical_and",
    "aten::logical_not",
    "aten::type_as",
    "aten::ones_like",
    "aten::zeros_like",
    "aten::new_zeros",
    "aten::new_ones",
    "aten::new_empty",
    "aten::new_full",
    "aten::empty_like",
    "aten::full_like",
    "aten::ones",
    "aten::linspace",
    "aten::eye",
    # reductions used as pooling or statistics
    "aten::mean",
    "aten::sum",
    "aten::amax",
    "aten::max",
    "aten::var",
    "aten::std",
    "aten::norm",
    "aten::avg_pool2d",
    "aten::adaptive_avg_pool1d",
    # memory movement: roll, padding, slicing, indexing, concatenation, layout
    "aten::roll",
    "aten::pad",
    "aten::constant_pad_nd",
    "aten::reflection_pad1d",
    "aten::reflection_pad2d",
    "aten::replication_pad1d",
    "aten::replication_pad2d",
    "aten::circular_pad2d",
    "aten::_pad_circular",
    "aten::slice",
    "aten::narrow",
    "aten::select",
    "aten::index",
    "aten::index_select",
    "aten::index_add",
    "aten::index_add_",
    "aten::index_put",
    "aten::index_put_",
    "aten::index_copy",
    "aten::scatter",
    "aten::scatter_add",
    "aten::gather",
    "aten::take_along_dim",
    "aten::copy_",
    "aten::clone",
    "aten::cat",
    "aten::stack",
    "aten::repeat",
    "aten::repeat_interleave",
    "aten::expand",
    "aten::expand_as",
    "aten::flip",
    "aten::tile",
    "aten::unfold",
    "aten::unflatten",
    "aten::movedim",
    "aten::swapaxes",
    "aten::pixel_shuffle",
    "aten::pixel_unshuffle",
    "aten::im2col",
    "aten::col2im",
    "aten::diag_embed",
    "aten::diagonal",
    "aten::tril",
    "aten::triu",
    "aten::meshgrid",
    "aten::view_as",
    "aten::reshape_as",
    "aten::contiguous",
    "aten::chunk",
    "aten::split",
    "aten::unsafe_split",
    "aten::unsafe_chunk",
    "aten::alias",
    "aten::view_as_complex",
    "aten::view_as_real",
    "aten::lift_fresh",
    "aten::empty_strided",
    "aten::as_strided",
    "aten::numel",
    "aten::size",
    "aten::dim",
    "aten::channel_shuffle",
    "aten::native_channel_shuffle",
)


def _shape(value: Any) -> list[int] | None:
    from fvcore.nn.jit_handles import get_shape

    return get_shape(value)


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``scaled_dot_product_attention``: QKᵀ (N_q·N_k·d) plus A·V (N_q·N_k·d_v) per head.

    A mask (additive bias or boolean) adds element-wise work only, which counts zero.
    """
    q, k = _shape(inputs[0]), _shape(inputs[1])
    out = _shape(outputs[0])
    assert q is not None and k is not None and out is not None
    n_k, d_qk, d_v = k[-2], q[-1], out[-1]
    return prod(out[:-1]) * n_k * (d_qk + d_v)


def fft2_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``rfft2`` / ``irfft2`` over the last two dims: ``B·C·N·⌈log₂ N⌉`` with N their product
    (the input's, as GFNet's authors count: H·W forward, H·(W//2+1) inverse)."""
    shape = _shape(inputs[0])
    assert shape is not None
    n = shape[-1] * shape[-2]
    return prod(shape[:-2]) * n * max(0, (n - 1).bit_length())


def baddbmm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``baddbmm(bias, a, b)`` / ``addbmm``: the product a·b (the add counts zero)."""
    a, b = _shape(inputs[1]), _shape(inputs[2])
    assert a is not None and b is not None
    return prod(a) * b[-1]


#: handles added to fvcore's defaults
HANDLES: dict[str, Callable[[list[Any], list[Any]], int]] = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::baddbmm": baddbmm_flop_jit,
    "aten::addbmm": baddbmm_flop_jit,
    "aten::fft_rfft2": fft2_flop_jit,
    "aten::fft_irfft2": fft2_flop_jit,
}


@dataclass
class FlopReport:
    """What ``count_flops`` found for one input.

    Args:
        total: all FLOPs (multiply-adds) of one forward pass on the given input.
        by_module: FLOPs per module path (``""`` is the whole model; every ancestor
            includes its descendants, as fvcore reports them).
        by_operator: FLOPs per operator kind (``conv``, ``linear``, ``matmul``, ...).
        unsupported: ops that ran with no handle and were not zero on purpose, with their
            call counts; empty for every registered model (a test checks).
        dense_nxn: per token mixer (module path of its ``ContextAggregation``), the cost its
            branches would have as dense N×N affinities, ``Σ_branches B·C·N_out·N_in``.
        dense_nxn_by_affinity: the same per affinity module path.
        batch_size: the input's batch size (the figures are for the whole batch).
        unit: what one FLOP means here.
    """

    total: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    unsupported: dict[str, int]
    dense_nxn: dict[str, int] = field(default_factory=dict)
    dense_nxn_by_affinity: dict[str, int] = field(default_factory=dict)
    batch_size: int = 1
    unit: str = UNIT

    @property
    def gflops(self) -> float:
        """Total in GFLOPs (10⁹ multiply-adds)."""
        return self.total / 1e9


def flop_analysis(model: nn.Module, inputs: Tensor | tuple[Tensor, ...]) -> Any:
    """An fvcore ``FlopCountAnalysis`` with affinity's handle table, its warnings off."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle(**HANDLES)
    analysis.set_op_handle(**dict.fromkeys(ZERO_OPS))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def count_flops(model: nn.Module, inputs: Tensor | tuple[Tensor, ...]) -> FlopReport:
    """Count the FLOPs of one forward pass of ``model`` on ``inputs`` (one trace).

    The model runs in eval mode for the count (BatchNorm, DropPath as at inference) and its
    mode is restored. Works on CPU, CUDA and the meta device: fvcore's JIT trace cannot run
    meta tensors (torch's meta convolution rejects traced shapes), so a model or input on
    the meta device is counted on an uninitialised CPU copy (``to_empty``: the counts depend
    on shapes only; the copy costs the model's size in memory, the model itself is left
    on the meta device).

    Args:
        model: any module; the registered models give an empty ``unsupported``.
        inputs: the input tensor (or tuple of tensors) for one forward pass.

    Returns:
        A ``FlopReport`` for the whole batch.
    """
    model, inputs = _off_meta(model, inputs)
    training = model.training
    model.eval()
    hooks, dense, dense_aff = _dense_hooks(model)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            analysis = flop_analysis(model, inputs)
            total = int(analysis.total())
            by_module = {k: int(v) for k, v in analysis.by_module().items()}
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            unsupported = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    finally:
        for h in hooks:
            h.remove()
        model.train(training)
    first = inputs[0] if isinstance(inputs, tuple) else inputs
    return FlopReport(
        total=total,
        by_module=by_module,
        by_operator=by_operator,
        unsupported=unsupported,
        dense_nxn=dict(dense),
        dense_nxn_by_affinity=dict(dense_aff),
        batch_size=int(first.shape[0]),
    )


def _off_meta(
    model: nn.Module, inputs: Tensor | tuple[Tensor, ...]
) -> tuple[nn.Module, Tensor | tuple[Tensor, ...]]:
    """``model`` and ``inputs`` as they are, or, when any is on the meta device, an
    uninitialised CPU copy of the model and zero CPU inputs of the same shapes."""
    tensors = inputs if isinstance(inputs, tuple) else (inputs,)
    on_meta = any(t.is_meta for t in (*model.parameters(), *model.buffers(), *tensors))
    if not on_meta:
        return model, inputs
    import copy

    cpu = copy.deepcopy(model).to_empty(device="cpu")
    zeros = tuple(torch.zeros(t.shape, dtype=t.dtype) for t in tensors)
    return cpu, zeros if isinstance(inputs, tuple) else zeros[0]


def _dense_hooks(model: nn.Module) -> tuple[list[Any], Counter[str], Counter[str]]:
    """Forward hooks on every affinity that add ``B·C·N_out·N_in`` to its mixer's entry."""
    from affinity.ops.base import Affinity

    dense: Counter[str] = Counter()
    by_affinity: Counter[str] = Counter()
    hooks = []
    paths = dict(model.named_modules())
    for path, module in paths.items():
        if not isinstance(module, Affinity):
            continue
        mixer = _mixer_path(path, paths)

        def hook(
            mod: nn.Module, args: tuple[Any, ...], out: Any, mixer: str = mixer, path: str = path
        ) -> None:
            v = args[0]
            if isinstance(v, Tensor) and isinstance(out, Tensor) and v.dim() == 4 and out.dim() == 4:
                n_in = v.shape[2] * v.shape[3]
                n_out = out.shape[2] * out.shape[3]
                cost = int(v.shape[0] * v.shape[1] * n_in * n_out)
                dense[mixer] += cost
                by_affinity[path] += cost

        hooks.append(module.register_forward_hook(hook))
    return hooks, dense, by_affinity


def _mixer_path(path: str, paths: dict[str, nn.Module]) -> str:
    """The path of the nearest enclosing ContextAggregation (else the affinity's own path)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, -1, -1):
        candidate = ".".join(parts[:i])
        if type(paths.get(candidate)).__name__ == "ContextAggregation":
            return candidate
    return path


def count_params(model: nn.Module, *, exclude: Iterable[str] = ()) -> int:
    """Number of parameters (each shared tensor once), optionally leaving out submodules.

    Args:
        model: any module (the meta device works).
        exclude: module paths whose parameters are not counted (e.g. ``("head",)`` for the
            "excluding the classifier" figures of S2-MLP and MLP-Mixer).
    """
    skip = {id(p) for name in exclude for p in model.get_submodule(name).parameters()}
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or id(p) in skip:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


__all__ = ["HANDLES", "UNIT", "ZERO_OPS", "FlopReport", "count_flops", "count_params", "flop_analysis"]
