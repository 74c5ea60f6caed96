"""One layer of a model, as data for ``affinity show``: its mixer's receptive fields and tiles.

Models come from a registered name, a YAML config or a training checkpoint; the mixer is a
``ContextAggregation`` found by ``named_modules``; each affinity's inputs are captured with a
forward hook during one pass of a seeded random image, so the maps are computed on the grid
(and, for attention, the input) the affinity really sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from affinity.errors import ConfigError
from affinity.ops.base import Affinity
from affinity.report.fields import Field, Tiles, affinity_field, parse_query

__all__ = [
    "LayerFields",
    "capture_affinity_inputs",
    "find_mixers",
    "layer_fields",
    "learned_tiles",
    "select_mixer",
]


@dataclass
class LayerFields:
    """Everything ``affinity show`` draws for one layer of a model.

    Args:
        layer: the mixer's module name.
        hw: its token grid.
        fields: one ``Field`` per affinity of the mixer.
        tiles: learned static weights of the mixer's affinities (token MLP, dwconv kernels).
        note: the input the maps were computed for.
    """

    layer: str
    hw: tuple[int, int]
    fields: list[Field] = field(default_factory=list)
    tiles: list[Tiles] = field(default_factory=list)
    note: str = ""


def find_mixers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every ``ContextAggregation`` of ``model``, in model order."""
    from affinity.ops.mixer import ContextAggregation

    return [(n, m) for n, m in model.named_modules() if isinstance(m, ContextAggregation)]


def select_mixer(mixers: Sequence[tuple[str, nn.Module]], layer: str | int | None) -> tuple[str, nn.Module]:
    """The mixer named ``layer``, or at index ``layer`` (negative counts from the end)."""
    if not mixers:
        raise ConfigError("this model has no ContextAggregation mixer to show")
    if layer is None:
        return mixers[0]
    names = [n for n, _ in mixers]
    text = str(layer)
    if text.lstrip("-").isdigit():
        i = int(text)
        if not -len(mixers) <= i < len(mixers):
            raise ConfigError(
                f"--layer={layer} is not allowed: an index in [0, {len(mixers)}) or a mixer name"
            )
        return mixers[i]
    if text in names:
        return mixers[names.index(text)]
    raise ConfigError(
        f"--layer={layer!r} is not allowed: an index in [0, {len(mixers)}) or one of {', '.join(names[:6])}"
        + (", ..." if len(names) > 6 else "")
    )


def capture_affinity_inputs(
    model: nn.Module, mixer: nn.Module, image: Tensor
) -> dict[str, tuple[Tensor, Tensor]]:
    """Run ``image`` through ``model``; return each affinity of ``mixer``'s ``(v, x)`` inputs.

    The maps must be computed on what each affinity really sees (its grid, and for attention
    its input), so this hooks the affinities rather than guessing their inputs.
    """
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []
    for name, mod in mixer.named_modules():
        if isinstance(mod, Affinity):

            def hook(
                m: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any, name: str = name
            ) -> None:
                v = args[0] if args else kwargs["v"]
                x = args[1] if len(args) > 1 else kwargs.get("x")
                seen.setdefault(name, (v.detach(), (v if x is None else x).detach()))

            handles.append(mod.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(image)
    finally:
        for h in handles:
            h.remove()
    return seen


def learned_tiles(name: str, affinity: Affinity, hw: tuple[int, int]) -> list[Tiles]:
    """Learned weights of a static affinity drawn as tiles (MLP-Mixer, figure 10).

    A weight over tokens (a 2-D parameter with an ``N = H·W`` side) gives one ``H×W`` tile per
    hidden unit: the row of a token-MLP's first layer (``D_S × N``: what each hidden unit reads),
    the column of its second (``N × D_S``: where each hidden unit writes), the row of ResMLP's
    ``N × N``. A depthwise kernel (``C × 1 × k × k``) gives one ``k×k`` tile per channel.
    Parameter-free (shifts) and dynamic (attention) affinities give none.
    """
    if affinity.dynamic:
        return []
    h, w = hw
    n = h * w
    out: list[Tiles] = []
    for pname, p in affinity.named_parameters():
        weight = p.detach().to(torch.float64).cpu()
        where = f"{name}.{pname}" if name else pname
        if weight.dim() == 2 and weight.shape[1] == n:
            tiles = weight.reshape(-1, h, w)
            note = f"row i of {pname} ({weight.shape[0]}×{n}) as {h}×{w}: what unit i reads from each token"
        elif weight.dim() == 2 and weight.shape[0] == n:
            tiles = weight.T.reshape(-1, h, w)
            note = f"column i of {pname} ({n}×{weight.shape[1]}) reshaped to {h}×{w}: where unit i writes"
        elif weight.dim() == 4 and weight.shape[1] == 1 and weight.shape[-1] > 1:
            tiles = weight[:, 0]
            note = f"depthwise kernel of each channel, {weight.shape[-2]}×{weight.shape[-1]}"
        else:
            continue
        labels = [str(i) for i in range(tiles.shape[0])]
        out.append(Tiles(where, tiles.numpy(), labels, note))
    return out


def layer_fields(
    model: nn.Module,
    *,
    layer: str | int | None,
    img_size: int,
    in_chans: int,
    query: str | tuple[int, int] | None,
    seed: int = 0,
    max_groups: int = 8,
) -> LayerFields:
    """Receptive fields and learned tiles of one mixer of ``model``.

    Args:
        model: a network whose token mixers are ``ContextAggregation`` modules.
        layer: which mixer (index or module name; default the first).
        img_size: side of the seeded random input image.
        in_chans: its channels.
        query: ``"ROW,COL"`` (or a tuple) on the mixer's token grid; default the centre.
        seed: seed of the random image (dynamic affinities depend on it).
        max_groups: panels per affinity at most.
    """
    name, mixer = select_mixer(find_mixers(model), layer)
    gen = torch.Generator().manual_seed(seed)
    param = next(model.parameters(), None)
    image = torch.randn(1, in_chans, img_size, img_size, generator=gen)
    if param is not None:
        image = image.to(device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        inputs = capture_affinity_inputs(model, mixer, image)
    finally:
        model.train(was_training)
    if not inputs:
        raise ConfigError(f"--layer={layer}: mixer {name} ran no affinity on this input")
    first_v = next(iter(inputs.values()))[0]
    hw = (int(first_v.shape[-2]), int(first_v.shape[-1]))
    q = query if isinstance(query, tuple) else parse_query(query, hw)
    dynamic = any(getattr(mixer.get_submodule(n), "dynamic", False) for n in inputs)
    note = (
        f"random N(0,1) input image, seed {seed}"
        if dynamic
        else "static affinities: the maps do not depend on the input"
    )
    data = LayerFields(layer=name, hw=hw, note=note)
    for aff_name, (v, x) in inputs.items():
        aff = mixer.get_submodule(aff_name)
        assert isinstance(aff, Affinity)
        title = f"{aff_name or 'affinity'} ({aff.name})"
        data.fields.append(
            affinity_field(aff, x, q, title=title, max_groups=max_groups, dim=v.shape[1], method="auto")
        )
        data.tiles.extend(learned_tiles(aff_name, aff, hw))
    return data
