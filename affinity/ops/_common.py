"""Helpers shared by the affinities: hyperparameter checks, padding modes, channel groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor

from affinity.errors import ConfigError, check, is_int

#: Padding modes for shifts and convolutions, named as ``F.pad`` names them (``zero`` is
#: ``F.pad``'s ``constant`` with value 0).
PADDINGS = ("zero", "circular", "reflect", "replicate")


def check_choice(param: str, value: object, choices: tuple[str, ...]) -> str:
    check(value in choices, param, value, f"one of {', '.join(choices)}")
    return str(value)


def check_hw(hw: object, param: str = "hw") -> tuple[int, int] | None:
    """``None`` or a pair of positive ints (the map's H, W)."""
    if hw is None:
        return None
    ok = isinstance(hw, (tuple, list)) and len(hw) == 2 and all(is_int(s, 1) for s in hw)
    check(ok, param, hw, "a pair (H, W) of positive integers")
    return int(hw[0]), int(hw[1])  # type: ignore[index]


def check_map(v: Tensor, dim: int, name: str) -> None:
    """A (B, dim, H, W) tensor, else ConfigError naming the affinity and the shape."""
    if v.dim() != 4 or v.shape[1] != dim:
        raise ConfigError(f"{name}: input shape {tuple(v.shape)} is not allowed: expected (B, {dim}, H, W)")


def source_index(i: Tensor, shift: int, size: int, padding: str) -> Tensor:
    """Where output position ``i`` reads from for ``out[i] = in[i − shift]`` under ``padding``.

    Positions that fall outside ``[0, size)`` follow the padding mode (``zero`` gives -1,
    meaning "reads zero"; ``reflect`` mirrors without repeating the edge, as ``F.pad``;
    ``replicate`` clamps to the edge; ``circular`` wraps).
    """
    j = i - shift
    if padding == "zero":
        return torch.where((j >= 0) & (j < size), j, torch.full_like(j, -1))
    if padding == "circular":
        return j % size
    if padding == "replicate":
        return j.clamp(0, size - 1)
    # reflect, single bounce (valid for |shift| < size, which callers check)
    j = torch.where(j < 0, -j, j)
    return torch.where(j >= size, 2 * (size - 1) - j, j)


def shift_matrix(shift: int, size: int, padding: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The (size, size) one-hot matrix M with ``(M @ x)[i] = x_padded[i − shift]``."""
    i = torch.arange(size, device=device)
    src = source_index(i, shift, size, padding)
    m = torch.zeros(size, size, dtype=dtype, device=device)
    keep = src >= 0
    m[i[keep], src[keep]] = 1
    return m


#: one channel group of a grouped shift: its channels (a slice of dim 1), its shift (``out[i] =
#: in[i − shift]``) and its axis (2: H, 3: W)
Move = tuple[slice, int, int]


def shift_groups(v: Tensor, moves: Sequence[Move], padding: str) -> Tensor:
    """``v`` with each group of channels shifted along its axis (``moves`` cover every channel).

    One autograd node for all the groups (``_GroupShift``): its backward moves the gradient
    back with the same slice copies, where the slices' own nodes would each clone and zero a
    whole gradient. The numbers are those of slicing under autograd, bit for bit, gradients
    included (replicate borders sum in the same order). A trace (FLOP counting, ONNX export)
    records the slicing itself.
    """
    if torch.jit.is_tracing() or not (torch.is_grad_enabled() and v.requires_grad):
        return _shift_groups(v, moves, padding)
    return cast(Tensor, _GroupShift.apply(v, tuple(moves), padding))


class _GroupShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, v: Tensor, moves: tuple[Move, ...], padding: str) -> Tensor:
        ctx.moves, ctx.padding = moves, padding
        return _shift_groups(v, moves, padding)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        # contiguous, as the zero-filled gradients of the slices were (later kernels then pick
        # the same layout, hence the same summation order)
        out = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device)
        for channels, shift, axis in ctx.moves:
            _unshift_axis_into(_group(out, channels), _group(grad, channels), shift, axis, ctx.padding)
        return out, None, None


def _group(t: Tensor, channels: slice) -> Tensor:
    if channels.step in (None, 1):
        return t.narrow(1, channels.start, channels.stop - channels.start)
    return t[:, channels]


def _shift_groups(v: Tensor, moves: Sequence[Move], padding: str) -> Tensor:
    out = torch.empty_like(v)
    for channels, shift, axis in moves:
        shift_axis_into(_group(out, channels), _group(v, channels), shift, axis, padding)
    return out


def shift_axis_into(out: Tensor, v: Tensor, shift: int, axis: int, padding: str) -> None:
    """Write ``v`` shifted by ``shift`` along ``axis`` into ``out`` (same shape), no roll, no pad.

    The interior is one slice copy; the ``|shift|`` border positions take the padding mode's
    values through a small index (or zero).
    """
    size = v.shape[axis]
    if shift == 0:
        out.copy_(v)
        return
    t = min(abs(shift), size)  # border width
    if t < size:  # interior: out[i] = in[i - shift] for the positions whose source is inside
        if shift > 0:
            out.narrow(axis, t, size - t).copy_(v.narrow(axis, 0, size - t))
        else:
            out.narrow(axis, 0, size - t).copy_(v.narrow(axis, t, size - t))
    start = 0 if shift > 0 else size - t
    border = out.narrow(axis, start, t)
    if padding == "zero":
        border.zero_()
        return
    src = torch.tensor(_border_sources(start, t, shift, size, padding), device=v.device)
    border.copy_(v.index_select(axis, src))


def _unshift_axis_into(out: Tensor, grad: Tensor, shift: int, axis: int, padding: str) -> None:
    """The gradient of ``shift_axis_into`` w.r.t. ``v``: ``grad`` moved back, into ``out``.

    The sums are those autograd forms through the slices: the interior's gradient plus the
    border's, each border sum accumulated by ``index_add_`` in position order.
    """
    size = grad.shape[axis]
    if shift == 0:
        out.copy_(grad)
        return
    t = min(abs(shift), size)
    # the t positions of v that no interior position reads: zero (or only border sums)
    out.narrow(axis, size - t if shift > 0 else 0, t).zero_()
    if t < size:
        if shift > 0:
            out.narrow(axis, 0, size - t).copy_(grad.narrow(axis, t, size - t))
        else:
            out.narrow(axis, t, size - t).copy_(grad.narrow(axis, 0, size - t))
    if padding == "zero":
        return
    start = 0 if shift > 0 else size - t
    sources = _border_sources(start, t, shift, size, padding)
    read = sorted(set(sources))  # the positions of v the border reads
    slot = torch.tensor([read.index(j) for j in sources], device=grad.device)
    shape = list(grad.shape)
    shape[axis] = len(read)
    border = grad.new_zeros(shape).index_add_(axis, slot, grad.narrow(axis, start, t))
    out.index_add_(axis, torch.tensor(read, device=grad.device), border)


def _border_sources(start: int, count: int, shift: int, size: int, padding: str) -> list[int]:
    """``source_index`` for a few border positions, in plain ints (a constant when traced)."""
    out = []
    for i in range(start, start + count):
        j = i - shift
        if padding == "circular":
            j %= size
        elif padding == "replicate":
            j = min(max(j, 0), size - 1)
        else:  # reflect, single bounce
            j = -j if j < 0 else j
            j = 2 * (size - 1) - j if j >= size else j
        out.append(j)
    return out


def chunk_sizes(channels: int, groups: int) -> list[int]:
    """Channel counts of ``torch.chunk(v, groups, 1)`` (ceil(C/groups) each; maybe fewer groups)."""
    if channels == 0:
        return []
    per = -(-channels // groups)
    sizes = []
    left = channels
    while left > 0:
        sizes.append(min(per, left))
        left -= per
    return sizes
