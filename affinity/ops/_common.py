"""Helpers shared by the affinities: hyperparameter checks, padding modes, channel groups."""

from __future__ import annotations

import functools
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
#: ``Move``s in a hashable form, the slice as (start, stop, step)
_MovesKey = tuple[tuple[tuple[int, int, int], int, int], ...]


def shift_groups(v: Tensor, moves: Sequence[Move], padding: str) -> Tensor:
    """``v`` with each group of channels shifted along its axis (``moves`` cover every channel).

    Under autograd, on a contiguous or channels-last map, one autograd node for all the groups
    (``_GroupShift``) that moves the values, and the gradient back, by precomputed indices:
    one gather instead of a few slice copies per group, where the slices' own nodes would each
    clone and zero a whole gradient. The numbers are those of slicing under autograd, bit for
    bit, gradients included (replicate borders sum in the same order). Off the CPU the gather
    serves without autograd too: slicing launches a few kernels per group and copies each
    border's indices to the device (s2mlp_deep: 144 host-to-device copies a forward). A trace
    (FLOP counting, ONNX export) and a CPU run without autograd take the slicing itself.
    """
    grad = torch.is_grad_enabled() and v.requires_grad
    if torch.jit.is_tracing() or not (grad or v.device.type != "cpu") or not _dense(v):
        return _shift_groups(v, moves, padding)
    key = tuple(((c.start, c.stop, c.step), shift, axis) for c, shift, axis in moves)
    plan = _plan(key, padding, tuple(v.shape[1:]))
    return cast(Tensor, _GroupShift.apply(v, plan)) if grad else plan.forward(v)


def _dense(t: Tensor) -> bool:
    """A (B, C, H, W) map whose images are one block each, channels first or last."""
    return t.dim() == 4 and (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last))


class _ShiftPlan:
    """Where every number of a grouped shift of one (C, H, W) map goes, as indices into an
    image's N = C·H·W numbers (channel-major order), derived by running the slice copies
    (``_shift_groups``) on the numbers' own positions, so the plan is their copy by
    construction.

    Forward: output position ``i`` reads ``src[i]`` (-1: zero). Backward, as autograd sums
    through the slices: input position ``j`` takes the gradient of the interior position that
    read it (``reader[j]``, -1: none, zero), plus, where border positions read it (the
    padding's values), their sum started from zero in position order (rank ``r`` of ``j``:
    ``border[r][k]`` for ``j = border_read[k]``, -1 past ``j``'s last).
    """

    def __init__(self, moves: _MovesKey, padding: str, chw: tuple[int, ...]) -> None:
        c, h, w = chw
        self.n = n = c * h * w
        moves_ = [(slice(*ch), shift, axis) for ch, shift, axis in moves]
        pos = torch.arange(1, n + 1, dtype=torch.float64).view(1, c, h, w)  # exact in float64
        self.src = _shift_groups(pos, moves_, padding).view(-1).long() - 1
        interior = _shift_groups(pos, moves_, "zero").view(-1).long() - 1  # the slices' interiors
        at = torch.arange(n)
        self.reader = torch.full((n,), -1, dtype=torch.long)
        inside = interior >= 0
        self.reader[interior[inside]] = at[inside]
        # border positions (padding values read from inside the map), by source then position
        outside = (self.src >= 0) & ~inside
        j, i = self.src[outside], at[outside]
        order = torch.argsort(j * n + i)
        j, i = j[order], i[order]
        self.border_read, counts = torch.unique_consecutive(j, return_counts=True)
        starts = counts.cumsum(0) - counts
        self.border = [  # rank r: the r-th border position reading each j, -1 past its last
            torch.where(r < counts, i[(starts + r).clamp(max=len(i) - 1)], -1)
            for r in range(int(counts.max()) if len(counts) else 0)
        ]
        self.chw = chw
        self._layouts: dict[tuple[Any, ...], tuple[Tensor, ...]] = {}

    def offsets(self, t: Tensor) -> Tensor:
        """Memory offset within an image of ``t`` (dense) of every channel-major position."""
        _, h, w = self.chw
        sc, sh, sw = t.stride()[1:]
        at = torch.arange(self.n)
        return at // (h * w) * sc + at // w % h * sh + at % w * sw

    def forward(self, v: Tensor) -> Tensor:
        key = ("fwd", v.stride()[1:], v.device)
        if key not in self._layouts:
            off = self.offsets(v)
            by_position = off[self.src.clamp(min=0)]
            index = torch.empty_like(off)
            index[off] = by_position  # output memory order: the same layout as v
            zero = off[self.src < 0]
            self._layouts[key] = (index.to(v.device), zero.to(v.device))
        index, zero = self._layouts[key]
        b = v.shape[0]
        out = v.as_strided((b, self.n), (self.n, 1)).index_select(1, index)
        if len(zero):
            out.index_fill_(1, zero, 0)
        return out.as_strided(v.shape, v.stride())

    def backward(self, grad: Tensor) -> Tensor:
        if not _dense(grad):
            grad = grad.contiguous()
        key = ("bwd", grad.stride()[1:], grad.device)
        if key not in self._layouts:
            off = self.offsets(grad)
            parts = [off[self.reader.clamp(min=0)], torch.nonzero(self.reader < 0).view(-1), self.border_read]
            for r in self.border:
                parts += [off[r.clamp(min=0)], torch.nonzero(r < 0).view(-1)]
            self._layouts[key] = tuple(p.to(grad.device) for p in parts)
        index, unread, border_read, *ranks = self._layouts[key]
        b = grad.shape[0]
        flat = grad.as_strided((b, self.n), (self.n, 1))
        # channel-major, as the zero-filled gradients of the slices were (later kernels then
        # pick the same layout, hence the same summation order)
        out = flat.index_select(1, index)
        if len(unread):
            out.index_fill_(1, unread, 0)
        if len(border_read):
            total = grad.new_zeros((b, len(border_read)))
            for rank, missing in zip(ranks[::2], ranks[1::2]):
                term = flat.index_select(1, rank)
                if len(missing):
                    term.index_fill_(1, missing, 0)  # adding +0 to a sum started at +0 changes no bit
                total += term
            out.index_copy_(1, border_read, out.index_select(1, border_read).add_(total))
        return out.view(grad.shape)


@functools.lru_cache(maxsize=256)
def _plan(moves: _MovesKey, padding: str, chw: tuple[int, ...]) -> _ShiftPlan:
    return _ShiftPlan(moves, padding, chw)


class _GroupShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, v: Tensor, plan: _ShiftPlan) -> Tensor:
        ctx.plan = plan
        return plan.forward(v)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.plan.backward(grad), None


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
