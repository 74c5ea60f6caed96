"""The conversion engine: a source format is a table of key renames and tensor transforms.

A ``Format`` names the keys that identify it (``signature``: each regex must match some key;
``absent``: none may) and a list of ``Rule``s. A rule's ``pattern`` is a regex that must match
a whole source key; each of its ``targets`` is a key template and the name of a transform
from ``TRANSFORMS``. Templates take the match groups as ``{g1}``, and ``{g1+1}`` / ``{g1-1}``
where the source counts stages differently (Swin's downsampling at the end of stage i is our
embedding of stage i + 1). A rule with no targets drops its keys on purpose (buffers the model
recomputes, such as Swin's attention mask). The first matching rule wins; a source key no
rule matches is reported as unexpected.

Transforms are functions of the tensor and the shape the model expects there, never of the
key, so every layout difference is written once: a fused ``qkv`` split into our Q,K
projection and V, Swin's 2×2 patch-merge channel order into ``pixel_unshuffle``'s, a
``(1, 1+N, C)`` position embedding into our ``(1, C, 1, 1+N)`` map, a ``Linear`` into a 1×1 conv.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from affinity.errors import ConfigError

Shape = tuple[int, ...]


def _reshape(t: Tensor, shape: Shape) -> Tensor:
    """Same values, the model's shape (a Linear as a 1×1 conv, a (1, 1, C) affine as (C,), ...)."""
    if t.numel() != _numel(shape):
        raise _ShapeError(tuple(t.shape), shape)
    return t.reshape(shape)


def _qk(t: Tensor, shape: Shape) -> Tensor:
    """Rows [0, 2C) of a fused (3C, ...) q,k,v projection: our attention's Q,K projection."""
    return _reshape(t[: 2 * _third(t, shape)], shape)


def _v(t: Tensor, shape: Shape) -> Tensor:
    """Rows [2C, 3C) of a fused q,k,v projection: our mixer's V projection (a 1×1 conv)."""
    return _reshape(t[2 * _third(t, shape) :], shape)


def _third(t: Tensor, shape: Shape) -> int:
    if t.shape[0] % 3:
        raise _ShapeError(tuple(t.shape), shape)
    return t.shape[0] // 3


def _merge_order(t: Tensor, shape: Shape) -> Tensor:
    """Swin / AS-MLP patch merging concatenates ``x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
    x[1::2, 1::2]``: input channel ``k·C + c`` with ``k = dh + 2·dw``. Our ``pixel_unshuffle``
    orders them ``c·4 + 2·dh + dw``. Applies to the input channels: the norm's (4C,) weight,
    the reduction's columns (a Linear's (2C, 4C) or a 1×1 conv's (2C, 4C, 1, 1))."""
    flat = t.reshape(t.shape[0], -1) if t.dim() > 2 else t  # a 1×1 conv's (out, 4C, 1, 1)
    four_c = flat.shape[-1]
    if four_c % 4:
        raise _ShapeError(tuple(t.shape), shape)
    c = four_c // 4
    ours = torch.arange(four_c)
    ch, dh, dw = ours // 4, (ours // 2) % 2, ours % 2
    theirs = (dh + 2 * dw) * c + ch  # the source channel each of ours reads
    return _reshape(flat[..., theirs], shape)


def _tokens_last(t: Tensor, shape: Shape) -> Tensor:
    """A (1, N, C) token parameter (ViT's position embedding, class token) as our
    (1, C, 1, N) map: token n, channel c lands at [0, c, 0, n]."""
    if t.dim() != 3:
        raise _ShapeError(tuple(t.shape), shape)
    return _reshape(t.transpose(1, 2).unsqueeze(2), shape)


#: transform name -> f(source tensor, model shape) -> tensor of the model's shape
TRANSFORMS: dict[str, Callable[[Tensor, Shape], Tensor]] = {
    "copy": lambda t, shape: t,
    "reshape": _reshape,
    "qk": _qk,
    "v": _v,
    "merge_order": _merge_order,
    "tokens_last": _tokens_last,
}


@dataclass(frozen=True)
class Rule:
    """Source keys matching ``pattern`` become ``targets`` (template, transform) pairs; no
    targets drops them on purpose."""

    pattern: str
    targets: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for _, transform in self.targets:
            if transform not in TRANSFORMS:
                raise ValueError(f"unknown transform {transform!r}")  # a bug in a table, not input


def rule(pattern: str, target: str | None, transform: str = "copy") -> Rule:
    """One rename (``target=None``: drop on purpose)."""
    return Rule(pattern, () if target is None else ((target, transform),))


@dataclass(frozen=True)
class Format:
    """A source checkpoint layout.

    Args:
        name: short name (``timm_vit``), shown in reports and ``--help``.
        source: where the layout comes from (repository and file).
        models: the registered variants it serves.
        signature: regexes each matching at least one key of such a checkpoint.
        absent: regexes matching no key of such a checkpoint (tells apart close layouts).
        rules: the renames, first match wins.
        adapt: the architecture the source implies, as ``create_model`` overrides computed
            from the registered config and the source weights (RepMLPNet's deployed FC,
            Container's released MLP ratios); None for none.
    """

    name: str
    source: str
    models: tuple[str, ...]
    signature: tuple[str, ...]
    rules: tuple[Rule, ...]
    absent: tuple[str, ...] = ()
    adapt: Callable[[Any, Mapping[str, Tensor]], dict[str, Any]] | None = None
    _compiled: list[tuple[re.Pattern[str], Rule]] = field(default_factory=list, compare=False, repr=False)

    def matches(self, keys: list[str]) -> bool:
        def found(p: str) -> bool:
            rx = re.compile(p)
            return any(rx.search(k) for k in keys)

        return all(found(p) for p in self.signature) and not any(found(p) for p in self.absent)

    def rename(self, key: str) -> tuple[Rule, re.Match[str]] | None:
        if not self._compiled:
            self._compiled.extend((re.compile(r.pattern), r) for r in self.rules)
        for rx, r in self._compiled:
            m = rx.fullmatch(key)
            if m is not None:
                return r, m
        return None


_GROUP = re.compile(r"\{g(\d)([+-]\d+)?\}")


def fill(template: str, m: re.Match[str]) -> str:
    """``template`` with ``{gN}`` (match group N) and ``{gN+k}`` (group N as an int, plus k)."""

    def sub(g: re.Match[str]) -> str:
        value = m.group(int(g.group(1)))
        return str(int(value) + int(g.group(2))) if g.group(2) else value

    return _GROUP.sub(sub, template)


class _ShapeError(Exception):
    def __init__(self, got: Shape, want: Shape) -> None:
        super().__init__(f"{got} -> {want}")
        self.got, self.want = got, want


@dataclass
class Converted:
    """A source state dict in the model's names.

    Attributes:
        state_dict: the converted tensors, by model key.
        unexpected: source keys no rule matched.
        dropped: source keys dropped on purpose (buffers the model recomputes).
        mismatched: ``model key: source shape -> model shape`` for tensors that do not fit.
        sources: model key -> the source key it came from (for messages).
    """

    state_dict: dict[str, Tensor]
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def _numel(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def convert(fmt: Format, source: Mapping[str, Tensor], shapes: Mapping[str, Shape]) -> Converted:
    """Rename and transform ``source`` into the model's keys.

    Args:
        fmt: the source layout.
        source: the checkpoint's state dict.
        shapes: the model's state-dict shapes (what each transform must produce).
    """
    out = Converted({})
    for key, tensor in source.items():
        found = fmt.rename(key)
        if found is None:
            out.unexpected.append(key)
            continue
        r, m = found
        if not r.targets:
            out.dropped.append(key)
            continue
        for template, transform in r.targets:
            target = fill(template, m)
            want = shapes.get(target)
            if want is None:  # the model has no such key: the loader reports it as unexpected
                out.state_dict[target] = tensor
                out.sources[target] = key
                continue
            try:
                value = TRANSFORMS[transform](tensor, want)
            except _ShapeError as exc:
                out.mismatched.append(f"{target} (from {key}): {exc.got} -> {exc.want}")
                continue
            if tuple(value.shape) != tuple(want):
                out.mismatched.append(f"{target} (from {key}): {tuple(value.shape)} -> {tuple(want)}")
                continue
            out.state_dict[target] = value.contiguous()
            out.sources[target] = key
    return out


def detect(formats: list[Format], keys: list[str], where: str) -> Format:
    """The one format whose signature ``keys`` match; ConfigError naming the known ones."""
    hits = [f for f in formats if f.matches(keys)]
    if len(hits) == 1:
        return hits[0]
    names = ", ".join(f.name for f in formats)
    if not hits:
        sample = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
        raise ConfigError(f"{where}: the state dict's keys ({sample}) match no known layout: {names}")
    raise ConfigError(f"{where}: the keys match several layouts ({', '.join(f.name for f in hits)})")
