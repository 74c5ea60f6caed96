"""What each token mixer aggregates from, as arrays (compute here, draw in ``pictures``).

An affinity's row for output token ``i`` is the map of weights token ``i`` takes from every
input token (``out[i] = Σ_j A[i, j] · v[j]``); reshaped to the input grid it is the
receptive field of that query, one map per channel. Channels that share a row (the channels of
one shift group, of one attention head, or every channel of a shared affinity) are collapsed
into one *group*, so an AS-MLP axial shift with ``shift_size=5`` gives five maps, one per
shift. The union of the groups' supports is the receptive field drawn in AS-MLP's comparison
(seed 000, section 3.2.1): the cross for AS-MLP, the square for a convolution, the whole window
for Swin, the whole map for MLP-Mixer.

Nothing here draws; every function returns numpy arrays or dataclasses holding them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from affinity.errors import ConfigError
from affinity.ops.base import Affinity, create_affinity

__all__ = [
    "COMPARE_DEFAULTS",
    "Field",
    "Tiles",
    "affinity_field",
    "channel_groups",
    "compare_fields",
    "crop_fields",
    "parse_operator_spec",
    "parse_query",
    "query_maps",
    "support",
]

#: Representative operators for ``affinity show --compare``: name -> list of branches (the
#: affinity name and its parameters). AS-MLP's mixer is two branches (shift along W, shift
#: along H), so its receptive field is their union, the cross.
COMPARE_DEFAULTS: dict[str, tuple[str, tuple[tuple[str, dict[str, Any]], ...]]] = {
    "dwconv": ("depthwise conv 3×3", (("dwconv", {"kernel_size": 3}),)),
    "axial_shift": (
        "AS-MLP axial shift s=5",
        (("axial_shift", {"shift_size": 5, "axis": "w"}), ("axial_shift", {"shift_size": 5, "axis": "h"})),
    ),
    "spatial_shift": ("S²-MLP spatial shift", (("spatial_shift", {}),)),
    "attention": ("Swin window attention 7×7", (("attention", {"heads": 2, "window_size": 7}),)),
    "token_mlp": ("MLP-Mixer token MLP", (("token_mlp", {}),)),
    "identity": ("identity", (("identity", {}),)),
    "pooling": ("PoolFormer pooling 3×3 − identity", (("pooling", {"pool_size": 3}),)),
    "global_filter": ("GFNet global filter (circulant)", (("global_filter", {}),)),
    "cycle_shift": (
        "CycleMLP Cycle FC 1×3 and 3×1",
        (("cycle_shift", {"kernel_size": 3, "axis": "w"}), ("cycle_shift", {"kernel_size": 3, "axis": "h"})),
    ),
}


#: ``affinity_field(method="auto")`` materializes the N×N matrix up to this many tokens and
#: takes only the query's row from the fast path beyond.
MATERIALIZE_MAX_TOKENS = 1024


@dataclass
class Field:
    """The weights one output token aggregates, per channel group.

    Args:
        title: what the maps are (operator, layer, branch).
        query: the output token ``(row, col)``.
        maps: ``(G, H, W)`` weights over the input grid, one map per channel group.
        labels: one label per group (``"ch 0-19"``, ``"head 1"``).
        note: how the maps were obtained (for dynamic affinities: which input).
        origin: the grid position of ``maps[:, 0, 0]`` (nonzero after ``crop_fields``);
            ``query`` is always in grid coordinates.
    """

    title: str
    query: tuple[int, int]
    maps: np.ndarray
    labels: list[str]
    note: str = ""
    origin: tuple[int, int] = (0, 0)

    @property
    def support(self) -> np.ndarray:
        """``(H, W)`` bool: input tokens with a nonzero weight in any group."""
        return support(self.maps)

    @property
    def union(self) -> np.ndarray:
        """``(H, W)``: the largest |weight| any group gives each input token."""
        return np.abs(self.maps).max(axis=0)


@dataclass
class Tiles:
    """Learned static weights drawn as tiles (MLP-Mixer, figure 10 of its paper).

    Args:
        title: which weights (layer, affinity).
        tiles: ``(K, h, w)``: for a token MLP, each hidden unit's weights over the token grid;
            for a depthwise conv, each channel's kernel.
        labels: one label per tile.
        note: what a tile is.
    """

    title: str
    tiles: np.ndarray
    labels: list[str]
    note: str = ""


def crop_fields(fields: Sequence[Field], *, margin: int = 2, min_size: int = 11) -> list[Field]:
    """The same fields cut to one window around everything they read, so that a 3×3 pattern
    on a 56×56 map is visible. Nothing nonzero is cut; a field that reads most of the map is
    left whole (then all are).

    Args:
        fields: fields on one grid.
        margin: tokens kept around the union of the supports and the query.
        min_size: the window's smallest side (centred on the query where the map allows).
    """
    if not fields:
        return []
    h, w = fields[0].maps.shape[-2:]
    mask = np.zeros((h, w), bool)
    for f in fields:
        mask |= f.support
        mask[f.query] = True
    rows, cols = np.nonzero(mask)

    def span(lo: int, hi: int, centre: int, size: int) -> tuple[int, int]:
        lo, hi = max(0, lo - margin), min(size, hi + margin + 1)
        if hi - lo < min_size:
            lo = max(0, min(centre - min_size // 2, size - min_size))
            hi = min(size, lo + min_size)
        return lo, hi

    q = fields[0].query
    r0, r1 = span(int(rows.min()), int(rows.max()), q[0], h)
    c0, c1 = span(int(cols.min()), int(cols.max()), q[1], w)
    if (r1 - r0) * (c1 - c0) > 0.5 * h * w:
        return list(fields)
    return [Field(f.title, f.query, f.maps[:, r0:r1, c0:c1], f.labels, f.note, (r0, c0)) for f in fields]


def parse_query(text: str | None, hw: tuple[int, int]) -> tuple[int, int]:
    """``"ROW,COL"`` -> a query position on an ``hw`` grid; None -> the centre.

    Negative indices count from the end, as in Python. Raises ``ConfigError`` naming
    ``--query`` when the text is malformed or outside the grid.
    """
    h, w = hw
    if text is None:
        return h // 2, w // 2
    parts = text.replace(" ", "").split(",")
    try:
        row, col = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--query={text!r} is not allowed: ROW,COL as two integers, e.g. 3,4") from None
    if not (-h <= row < h and -w <= col < w):
        raise ConfigError(f"--query={text!r} is not allowed: ROW in [0, {h}), COL in [0, {w}) on this map")
    return row % h, col % w


def query_maps(
    matrix: Tensor,
    in_hw: tuple[int, int],
    query: tuple[int, int],
    *,
    out_w: int | None = None,
    batch: int = 0,
) -> np.ndarray:
    """Row ``query`` of an affinity matrix, reshaped to the input grid.

    Args:
        matrix: ``(B|1, C|1, N_out, N_in)`` from ``Affinity.materialize``.
        in_hw: the input grid ``(H, W)``, ``H·W = N_in``.
        query: the output token ``(row, col)``.
        out_w: width of the output grid (defaults to the input width).
        batch: which sample of a batched (dynamic) matrix.

    Returns:
        ``(C|1, H, W)`` float64.
    """
    h, w = in_hw
    if matrix.dim() != 4 or matrix.shape[-1] != h * w:
        raise ValueError(f"expected (B, C, N_out, {h * w}) from materialize, got {tuple(matrix.shape)}")
    row = query[0] * (w if out_w is None else out_w) + query[1]
    maps = matrix[min(batch, matrix.shape[0] - 1), :, row, :]  # (C, N_in)
    return maps.detach().to(torch.float64).cpu().numpy().reshape(-1, h, w)


def query_row(
    affinity: Callable[[Tensor, Tensor], Tensor], x: Tensor, query: tuple[int, int], *, dim: int | None = None
) -> np.ndarray:
    """Row ``query`` of the affinity's matrix from its fast path, without building N×N.

    The protocol makes ``forward`` linear in the values channel by channel
    (``out[b, c, i] = Σ_j A[b, c, i, j] · v[b, c, j] + offset``), with a dynamic ``A`` fixed
    by ``x``. So the gradient of ``Σ_c out[0, c, query]`` with respect to ``v`` is exactly
    ``A[0, c, query, :]`` for every channel: one backward pass, O(C·N) memory, where
    ``materialize`` needs O(C·N²). Tested equal to ``query_maps(materialize(x))``.

    Args:
        affinity: any affinity, or any ``fn(v, x)`` linear in ``v`` channel by channel (a
            linear mixer's aggregation).
        x: ``(B, C_x, H, W)`` block input; only its first sample is used.
        query: output token ``(row, col)``.
        dim: channels of the values (default ``x``'s).

    Returns:
        ``(C, H, W)`` float64.
    """
    x = x[:1].detach()
    v = torch.zeros(1, dim or x.shape[1], *x.shape[-2:], dtype=x.dtype, device=x.device, requires_grad=True)
    with torch.enable_grad():
        out = affinity(v, x)  # (1, C, H_out, W_out)
        (grad,) = torch.autograd.grad(out[0, :, query[0], query[1]].sum(), v)  # leaves .grad alone
    return grad[0].to(torch.float64).cpu().numpy()


def channel_groups(maps: np.ndarray, *, atol: float = 0.0) -> tuple[np.ndarray, list[list[int]]]:
    """Collapse runs of consecutive channels whose maps are equal into one group.

    Args:
        maps: ``(C, H, W)``.
        atol: tolerance for "equal".

    Returns:
        ``(G, H, W)`` the groups' maps, and the channel indices of each group.
    """
    groups: list[np.ndarray] = []
    members: list[list[int]] = []
    for c in range(maps.shape[0]):
        if groups and np.allclose(maps[c], groups[-1], rtol=0.0, atol=atol):
            members[-1].append(c)
        else:
            groups.append(maps[c])
            members.append([c])
    return np.stack(groups), members


def support(maps: np.ndarray, *, atol: float = 0.0) -> np.ndarray:
    """``(H, W)`` bool: where any map of ``maps`` (``(G, H, W)`` or ``(H, W)``) is nonzero."""
    arr = np.abs(np.asarray(maps))
    if arr.ndim == 3:
        arr = arr.max(axis=0)
    return arr > atol


def _channel_label(idx: list[int], heads: int | None, channels: int) -> str:
    if len(idx) == channels:  # a shared matrix (materialize broadcasts it as one channel)
        return "all channels"
    if heads and channels % heads == 0 and len(idx) == channels // heads and idx[0] % len(idx) == 0:
        return f"head {idx[0] // len(idx)}"
    return f"ch {idx[0]}" if len(idx) == 1 else f"ch {idx[0]}-{idx[-1]}"


def affinity_field(
    affinity: Affinity,
    x: Tensor,
    query: tuple[int, int],
    *,
    title: str | None = None,
    note: str = "",
    max_groups: int | None = None,
    method: str = "auto",
    dim: int | None = None,
) -> Field:
    """The receptive field of ``query`` under ``affinity`` for block input ``x``.

    Args:
        affinity: any registered affinity.
        x: ``(B, C, H, W)``: supplies the grid (and, for a dynamic affinity, the data).
        query: output token ``(row, col)``.
        title: defaults to the affinity's name.
        note: appended to the field's note (dynamic affinities always state their input).
        max_groups: keep at most this many groups (the rest are dropped, said in the note).
        method: ``materialize`` (the N×N matrix, then its row), ``row`` (only the row, by
            ``query_row``), or ``auto`` (materialize up to ``MATERIALIZE_MAX_TOKENS`` tokens).
        dim: channels of the values when they differ from ``x``'s (``row`` only).
    """
    h, w = x.shape[-2:]
    out_h, out_w = affinity.out_hw(h, w)
    if not (0 <= query[0] < out_h and 0 <= query[1] < out_w):
        raise ConfigError(f"--query={query[0]},{query[1]} is not allowed: the output map is {out_h}×{out_w}")
    if method == "auto":
        method = "materialize" if h * w <= MATERIALIZE_MAX_TOKENS else "row"
    k = affinity.channel_block
    if k > 1:  # channels coupled in blocks (Permute-MLP): say how the maps are reduced
        note = "; ".join(
            n
            for n in (note, f"each source channel's weights summed over the {k} outputs of its segment")
            if n
        )
    if method == "materialize":
        with torch.no_grad():
            matrix = affinity.materialize(x)
        if k > 1:  # (B, G, k·N, k·N) -> per source channel, summed over the block's outputs
            n = h * w
            row = query[0] * out_w + query[1]
            blocks = matrix.reshape(matrix.shape[0], matrix.shape[1], k, n, k, n)
            per_source = blocks[0, :, :, row].sum(1)  # (G|1, k, N): summed over the block's outputs
            segments = (dim or x.shape[1]) // k
            maps = (
                per_source.expand(segments, k, n).reshape(-1, h, w).detach().to(torch.float64).cpu().numpy()
            )
        else:
            maps = query_maps(matrix, (h, w), query, out_w=out_w)
    elif method == "row":
        maps = query_row(affinity, x, query, dim=dim)
    else:
        raise ValueError(f"method={method!r}: auto, materialize or row")
    groups, members = channel_groups(maps)
    heads = getattr(affinity, "heads", None)
    labels = [_channel_label(m, heads if isinstance(heads, int) else None, maps.shape[0]) for m in members]
    for i, g in enumerate(groups):  # a one-hot row (a shift) reads one token: say which
        nz = np.argwhere(g != 0)
        if len(nz) == 1:
            labels[i] += f" ← ({nz[0][0] - query[0]:+d}, {nz[0][1] - query[1]:+d})"
    notes = [note] if note else []
    if max_groups is not None and len(groups) > max_groups:
        notes.append(f"first {max_groups} of {len(groups)} channel groups")
        groups, labels = groups[:max_groups], labels[:max_groups]
    return Field(title or affinity.name, query, groups, labels, "; ".join(notes))


def parse_operator_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"axial_shift:dilation=2:padding=circular"`` -> (name, parameter overrides).

    Values are read as YAML scalars (``2`` is an int, ``circular`` a string).
    """
    import yaml

    name, *pairs = spec.strip().split(":")
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--compare item {spec!r} is not allowed: NAME[:KEY=VALUE...], e.g. axial_shift:dilation=2"
            )
        params[key] = yaml.safe_load(value)
    return name, params


def compare_fields(
    specs: Iterable[str],
    *,
    hw: tuple[int, int] = (14, 14),
    query: tuple[int, int] | None = None,
    dim: int = 20,
    seed: int = 0,
) -> list[Field]:
    """Receptive fields of several operators at one query, for a side-by-side picture.

    Each spec is an affinity name (with optional ``:key=value`` overrides). Names in
    ``COMPARE_DEFAULTS`` get a representative configuration (AS-MLP: both shift axes;
    Swin: 7×7 windows); other registered affinities are built with their defaults. Dynamic
    affinities see a seeded random input, which the field's note states.

    Args:
        specs: operator specs, in drawing order.
        hw: the token grid.
        query: the output token; default the centre.
        dim: channels of the representative mixers.
        seed: seed of the random input and of randomly initialised weights.

    Returns:
        One ``Field`` per spec; its ``maps`` hold one map per branch and channel group.
    """
    query = (hw[0] // 2, hw[1] // 2) if query is None else query
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, dim, *hw, generator=gen, dtype=torch.float64)
    fields = []
    for spec in specs:
        name, overrides = parse_operator_spec(spec)
        title, branches = COMPARE_DEFAULTS.get(name, (name, ((name, {}),)))
        if overrides:
            title = f"{name} " + ", ".join(f"{k}={v}" for k, v in overrides.items())
        maps: list[np.ndarray] = []
        labels: list[str] = []
        notes: list[str] = []
        for aff_name, params in branches:
            kwargs = {**params, **overrides}
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                aff = create_affinity(aff_name, dim=dim, hw=hw, **kwargs).to(torch.float64).eval()
            note = f"random input (seed {seed})" if aff.dynamic else ""
            f = affinity_field(aff, x, query, note=note)
            axis = kwargs.get("axis")
            maps.extend(f.maps)
            labels.extend(f"{axis}: {lab}" if axis else lab for lab in f.labels)
            if f.note and f.note not in notes:
                notes.append(f.note)
        fields.append(Field(title, query, np.stack(maps), labels, "; ".join(notes)))
    return fields
