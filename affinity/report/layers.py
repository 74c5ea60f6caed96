"""One layer of a model, as data for ``affinity show``: its mixer's receptive fields and tiles.

Models come from a registered name, a YAML config or a training checkpoint; the mixer is a
``ContextAggregation`` found by ``named_modules``; each affinity's inputs are captured with a
forward hook during one pass of a seeded random image, so the maps are computed on the grid
(and, for attention, the input) the affinity really sees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from affinity.errors import ConfigError
from affinity.ops.base import Affinity
from affinity.report.fields import (
    MATERIALIZE_MAX_TOKENS,
    Field,
    Tiles,
    affinity_field,
    channel_groups,
    parse_query,
    query_maps,
    query_row,
)

__all__ = [
    "LayerFields",
    "capture_affinity_inputs",
    "find_mixers",
    "layer_fields",
    "learned_tiles",
    "load_model",
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
        skipped: affinities with no spatial map (a token MLP's layer into hidden units).
    """

    layer: str
    hw: tuple[int, int]
    fields: list[Field] = field(default_factory=list)
    tiles: list[Tiles] = field(default_factory=list)
    note: str = ""
    skipped: list[str] = field(default_factory=list)


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


def _hidden_sides(mixer: nn.Module, affinity: Affinity) -> tuple[bool, bool]:
    """Whether the affinity reads from / writes to hidden units rather than tokens.

    MLP-Mixer's token MLP is two ``token_mlp`` branches, N -> D_S -> N, whose configs set
    ``out_tokens`` (first) and ``in_tokens`` (second); D_S may equal N, so shapes cannot tell.
    """
    from affinity.ops.mixer import ContextAggregation

    if not isinstance(mixer, ContextAggregation):
        return False, False
    for cfg, aff in zip(mixer.cfg.branches, mixer.branch_affinities()):
        if aff is affinity:
            return "in_tokens" in cfg.params, "out_tokens" in cfg.params
    return False, False


def learned_tiles(
    name: str, affinity: Affinity, hw: tuple[int, int], *, in_hidden: bool = False
) -> list[Tiles]:
    """Learned weights of a static affinity drawn as tiles (MLP-Mixer, figure 10).

    A weight over tokens (a 2-D parameter with an ``N = H·W`` side) gives one ``H×W`` tile per
    hidden unit: the row of a token-MLP's first layer (``D_S × N``: what each hidden unit reads),
    the column of its second (``N × D_S``: where each hidden unit writes), the row of ResMLP's
    ``N × N``. A depthwise kernel (``C × 1 × k × k``) gives one ``k×k`` tile per channel.
    Parameter-free (shifts) and dynamic (attention) affinities give none.

    Args:
        name: the affinity's module name, for titles.
        affinity: the affinity.
        hw: the token grid.
        in_hidden: the affinity reads hidden units (Mixer's second layer): its columns are
            the tiles even when D_S = N.
    """
    if affinity.dynamic:
        return []
    h, w = hw
    n = h * w
    out: list[Tiles] = []
    for pname, p in affinity.named_parameters():
        if "bias" in pname.split(".")[-1]:  # offsets and position biases are not weights over tokens
            continue
        weight = p.detach().to(torch.float64).cpu()
        where = f"{name}.{pname}" if name else pname
        if weight.dim() == 2:
            weight = weight.unsqueeze(0)  # (S, N_out, N_in): S matrices (heads / share sets)
        shape = tuple(weight.shape)
        if len(shape) == 3 and shape[2] == n and not (in_hidden and shape[1] == n):
            tiles = weight.reshape(-1, h, w)
            note = f"row i of {pname} {shape} as {h}×{w}: what unit i reads from each token"
        elif len(shape) == 3 and shape[1] == n:
            tiles = weight.transpose(1, 2).reshape(-1, h, w)
            note = f"column i of {pname} {shape} as {h}×{w}: what hidden unit i writes to each token"
        elif len(shape) == 4 and shape[1] == 1 and shape[-1] > 1:
            tiles = weight[:, 0]
            note = f"depthwise kernel of each channel, {shape[-2]}×{shape[-1]}"
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
    seq = _sequence_grid(hw, prefix=int(bool(getattr(getattr(model, "cfg", None), "class_token", False))))
    if seq is None:
        q = query if isinstance(query, tuple) else parse_query(query, hw)
    else:  # a token sequence (DeiT, PAM): the query is on the patch grid, the maps go back to it
        prefix, side = seq
        q_grid = query if isinstance(query, tuple) else parse_query(query, (side, side))
        q = (0, prefix + q_grid[0] * side + q_grid[1])
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
        in_hidden, out_hidden = _hidden_sides(mixer, aff)
        spatial = not (in_hidden or out_hidden) and tuple(v.shape[-2:]) == hw and aff.out_hw(*hw) == hw
        if spatial:  # a layer into or out of hidden units (Mixer's N -> D_S -> N) has no map
            data.fields.append(
                affinity_field(aff, x, q, title=title, max_groups=max_groups, dim=v.shape[1], method="auto")
            )
        else:
            direction = "from hidden units to tokens" if in_hidden else "from tokens to hidden units"
            data.skipped.append(f"{title}: maps {direction}, no token map (its weights are the tiles)")
        data.tiles.extend(learned_tiles(aff_name, aff, hw, in_hidden=in_hidden))
    combined = combined_field(mixer, inputs, q, hw, max_groups=max_groups)
    if combined is not None:
        data.fields.append(combined)
    if seq is not None:
        prefix, side = seq
        data.hw = (side, side)
        data.fields = [_field_on_grid(f, prefix, side, q_grid) for f in data.fields]
        data.tiles = [_tiles_on_grid(t, prefix, side) for t in data.tiles]
        if prefix:
            data.note += "; the class token's weight is in each panel's label"
    return data


def _sequence_grid(hw: tuple[int, int], prefix: int) -> tuple[int, int] | None:
    """``(prefix, side)`` when a ``1 × N`` map is ``prefix`` extra tokens then a square grid."""
    if hw[0] != 1:
        return None
    side = math.isqrt(hw[1] - prefix)
    return (prefix, side) if side > 1 and side * side == hw[1] - prefix else None


def _field_on_grid(f: Field, prefix: int, side: int, query: tuple[int, int]) -> Field:
    maps = f.maps[:, 0, prefix:].reshape(-1, side, side)
    labels = [lab + (f" · cls {f.maps[g, 0, 0]:.3g}" if prefix else "") for g, lab in enumerate(f.labels)]
    return Field(f.title, query, maps, labels, f.note)


def _tiles_on_grid(t: Tiles, prefix: int, side: int) -> Tiles:
    if t.tiles.shape[-2] != 1 or t.tiles.shape[-1] != prefix + side * side:
        return t
    note = t.note + ("; class-token weight left out" if prefix else "")
    return Tiles(t.title, t.tiles[:, 0, prefix:].reshape(-1, side, side), t.labels, note)


#: Input side for a registered model or a YAML config without one (the papers' ImageNet size).
DEFAULT_IMG_SIZE = 224


def load_model(
    target: str, img_size: int | None = None, checkpoint: str | None = None
) -> tuple[nn.Module, str, int, int]:
    """A model from a registered name, a model-config YAML or a checkpoint.

    Args:
        target: ``as_mlp_t``, ``front/trial_3.yaml`` or ``results/run/checkpoint.pt``.
        img_size: input side; a checkpoint's own by default (and a checkpoint that records
            one allows no other: its token MLPs are tied to it), else the YAML's
            ``img_size`` key or 224.
        checkpoint: weights for ``target`` (a timm, authors' or affinity checkpoint; see
            ``affinity.checkpoints``).

    Returns:
        ``(model in eval mode, a label for file names, img_size, in_chans)``.
    """
    from affinity.checkpoints import is_checkpoint_path, read_checkpoint
    from affinity.models import create_model, resolve_model_config

    path = Path(target)
    label = path.stem if path.suffix else target
    weights = checkpoint if checkpoint is not None else target if is_checkpoint_path(target) else None
    if weights is not None:
        raw = read_checkpoint(weights)
        trained_at = raw.meta.get("img_size")
        if img_size is not None and trained_at is not None and img_size != trained_at:
            raise ConfigError(
                f"--img-size={img_size} is not allowed for {weights}: the checkpoint was trained at "
                f"{trained_at} (leave --img-size out)"
            )
        name = None if weights == target else target
        model = create_model(name, checkpoint_path=raw, img_size=img_size).eval()
        return model, label, model.img_size, model.in_chans
    if img_size is None and path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, RecursionError):
            data = None  # resolve_model_config reports the YAML error with its path
        if isinstance(data, Mapping) and isinstance(data.get("img_size"), int):
            img_size = data["img_size"]
    size = DEFAULT_IMG_SIZE if img_size is None else img_size
    if size < 1:
        raise ConfigError(f"--img-size={size} is not allowed: a positive integer")
    cfg = resolve_model_config(target)
    return create_model(cfg, img_size=size).eval(), label, size, 3


def combined_field(
    mixer: nn.Module,
    inputs: Mapping[str, tuple[Tensor, Tensor]],
    query: tuple[int, int],
    hw: tuple[int, int],
    *,
    max_groups: int = 8,
) -> Field | None:
    """The whole aggregation's map, ``Σ_b c_b·A_b`` (parallel) or ``c_k A_k ⋯ c_1 A_1``
    (serial), for a mixer of several branches without branch norms, projections or
    activations (Container: ``α·A(X) + β·A``); else None (RepMLPNet's branch BNs: its
    reparameterized model's single FC is the combined map). Affinity offsets (biases) do not change it.

    Computed as one row of the mixer's aggregation between ``proj_in`` and ``proj_out``
    (``materialize`` on small maps), so the coefficients are the trained ones.
    """
    from affinity.ops.mixer import ContextAggregation

    if not isinstance(mixer, ContextAggregation) or len(mixer.branches) < 2:
        return None
    if any(b.proj or b.act is not None or b.norm is not None for b in mixer.cfg.branches):
        return None  # a norm, projection or activation inside a branch: no single token matrix
    v, x = next(iter(inputs.values()))
    if tuple(v.shape[-2:]) != hw:
        return None
    affinities = mixer.branch_affinities()  # each branch is its bare affinity here
    if hw[0] * hw[1] <= MATERIALIZE_MAX_TOKENS:
        with torch.no_grad():  # the mixer's matrix; affinity offsets (biases) do not enter it
            maps = query_maps(mixer.token_matrix(x[:1]), hw, query)
    else:
        maps = query_row(mixer.aggregate, x, query, dim=v.shape[1])
    groups, members = channel_groups(maps)
    labels = [f"ch {m[0]}-{m[-1]}" if len(m) > 1 else f"ch {m[0]}" for m in members][:max_groups]
    kinds = " + ".join(f"{'α' if a.dynamic else 'β'}·{a.name}" for a in affinities)
    note = f"first {max_groups} of {len(groups)} channel groups" if len(groups) > max_groups else ""
    return Field(f"whole mixer: {kinds}", query, groups[:max_groups], labels, note)
