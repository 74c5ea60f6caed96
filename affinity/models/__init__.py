"""Published backbones rebuilt from affinities: configs, the model table, ``create_model``.

>>> from affinity.models import create_model, list_models
>>> model = create_model("as_mlp_t", num_classes=10, img_size=32, in_chans=1, depths=(1, 1, 1, 1))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affinity.checkpoints.io import RawCheckpoint, is_checkpoint_path, read_checkpoint
from affinity.errors import ConfigError, UnknownNameError, closest
from affinity.models.config import (
    ModelCfg,
    StageCfg,
    apply_overrides,
    check_model,
    load_model_config,
    save_model_config,
)
from affinity.models.network import AffinityNet, Block, Stage
from affinity.models.pretrained import PretrainedCfg
from affinity.models.zoo import MODELS, ModelEntry, Reference


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell pattern (``as_mlp*``)."""
    return MODELS.names(pattern)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (config and references); UnknownNameError lists the closest."""
    if name not in MODELS:
        near = closest(name, MODELS.names())
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise UnknownNameError(f"unknown model {name!r}{hint} (`affinity models` lists all {len(MODELS)})")
    return MODELS.get(name)


def get_reference(name: str, img_size: int | None = None) -> Reference | None:
    """The published reference of a registered model (at ``img_size`` when given).

    Args:
        name: a registered model name.
        img_size: the input size; None gives the main (224) reference.
    """
    entry = get_entry(name)
    return entry.reference if img_size is None else entry.reference_at(img_size)


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or Path(spec).is_file()


def resolve_model_config(spec: str) -> ModelCfg:
    """A registered name or a model-config YAML path -> ``ModelCfg``.

    Raises:
        UnknownNameError: an unknown name (the message lists the closest registered names).
        ConfigError: a YAML file that is missing or invalid.
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"model={spec!r} is not allowed: a registered name or a YAML path")
    if spec in MODELS:
        return MODELS.get(spec).cfg
    if _looks_like_path(spec):
        return load_model_config(spec)
    return get_entry(spec).cfg  # raises UnknownNameError with the closest names


def create_model(
    name_or_cfg: str | Path | ModelCfg | None = None,
    *,
    num_classes: int | None = None,
    img_size: int | None = None,
    in_chans: int | None = None,
    checkpoint_path: str | Path | RawCheckpoint | None = None,
    strict: bool = True,
    pretrained: bool = False,
    drop_rate: float = 0.0,
    global_pool: str | None = None,
    **overrides: Any,
) -> AffinityNet:
    """Build a model from a registered name, a YAML path, a ``ModelCfg`` or a checkpoint (timm-like).

    Args:
        name_or_cfg: a name from ``list_models()``, a model-config YAML path, a config, or a
            checkpoint file written by affinity (which carries its config).
        num_classes: classifier outputs (0: features only); default the checkpoint's, else
            the registered model's (1000). A checkpoint with another class count loads all
            but its classifier (fine-tuning).
        img_size: input side; default the checkpoint's, else the model's (224). It must suit
            the model (divisible by its total stride; windowed attention must tile every
            stage map) and, with weights tied to a token count, the checkpoint.
        in_chans: input channels; default the checkpoint's, else 3.
        checkpoint_path: weights to load (``.pth``/``.pt``/``.bin`` or ``.safetensors``):
            affinity's own, timm's for the timm-backed variants, or the authors' released
            checkpoints (``affinity.checkpoints.FORMATS`` lists the layouts; the layout is
            detected from the keys).
        strict: every tensor must load and every model tensor be loaded (``ConfigError``
            naming the keys otherwise); False loads what fits (``model.load_report`` says what).
        pretrained: timm's keyword; affinity downloads nothing, so True is an error.
        drop_rate: dropout before the classifier (timm's ``drop_rate``).
        global_pool: ``avg`` or ``token`` (timm's keyword for the pooling).
        **overrides: architecture fields to change (``depths=(1, 1, 1, 1)``,
            ``shift_size=7``, ``heads=4``, ``channel_mlp_ratio=2``, ``drop_path_rate=0.1``, ...;
            see ``affinity.models.config.apply_overrides``).

    Raises:
        UnknownNameError: unknown model name.
        ConfigError: an unknown or invalid field, an input size the model cannot take, or a
            checkpoint that does not fit (the message names the keys).
        DataError: a checkpoint file that is missing or unreadable.
    """
    if pretrained:
        raise ConfigError(
            "pretrained=True is not allowed: affinity downloads no weights; pass checkpoint_path=FILE "
            "(a timm, authors' or affinity checkpoint, .pth or .safetensors)"
        )
    if global_pool is not None:
        overrides["pool"] = global_pool
    if is_checkpoint_path(name_or_cfg) and not isinstance(name_or_cfg, ModelCfg):
        if checkpoint_path is not None:
            raise ConfigError(
                f"checkpoint_path={str(checkpoint_path)!r} is not allowed beside a checkpoint model"
            )
        checkpoint_path, name_or_cfg = name_or_cfg, None
    raw: RawCheckpoint | None = None
    if isinstance(checkpoint_path, RawCheckpoint):
        raw = checkpoint_path
    elif checkpoint_path is not None:
        raw = read_checkpoint(checkpoint_path)
    cfg, name, recipe = _base(name_or_cfg, raw)
    if raw is None:
        cfg = apply_overrides(cfg, **overrides)
        num_classes = recipe.num_classes if num_classes is None else num_classes
        model = AffinityNet(
            cfg,
            num_classes=num_classes,
            img_size=recipe.input_size[1] if img_size is None else img_size,
            in_chans=recipe.input_size[0] if in_chans is None else in_chans,
            drop_rate=drop_rate,
        )
        model.name = name
        model.pretrained_cfg = recipe.for_model(
            num_classes=model.num_classes, img_size=model.img_size, in_chans=model.in_chans
        )
        return model
    return _from_checkpoint(
        raw, cfg, name, recipe, num_classes, img_size, in_chans, strict, drop_rate, overrides
    )


def _base(name_or_cfg: str | Path | ModelCfg | None, raw: Any) -> tuple[ModelCfg, str, PretrainedCfg]:
    """The architecture, the model's name and its input recipe before any override."""
    if isinstance(name_or_cfg, ModelCfg):
        check_model(name_or_cfg)
        return name_or_cfg, "custom", PretrainedCfg()
    if name_or_cfg is not None:
        spec = str(name_or_cfg)
        cfg = resolve_model_config(spec)
        recipe = MODELS.get(spec).pretrained if spec in MODELS else PretrainedCfg()
        return cfg, spec, recipe
    if raw is None:
        raise ConfigError(
            "create_model needs a model: a registered name, a YAML path, a ModelCfg or a checkpoint"
        )
    meta = raw.meta
    if not isinstance(meta.get("model_cfg"), dict):
        raise ConfigError(
            f"{raw.path} carries no model config (not written by affinity): give the model too, "
            f"e.g. create_model('deit_s', checkpoint_path=...) or `--checkpoint` beside a model name"
        )
    cfg = ModelCfg.from_dict(meta["model_cfg"], f"{raw.path}: model_cfg")
    name = str(meta.get("name") or (meta.get("extra") or {}).get("model") or Path(raw.path).stem)
    if name.endswith((".yaml", ".yml")):
        name = Path(name).stem
    recipe = MODELS.get(name).pretrained if name in MODELS else PretrainedCfg()
    return cfg, name, recipe


def _from_checkpoint(
    raw: Any,
    cfg: ModelCfg,
    name: str,
    recipe: PretrainedCfg,
    num_classes: int | None,
    img_size: int | None,
    in_chans: int | None,
    strict: bool,
    drop_rate: float,
    overrides: dict[str, Any],
) -> AffinityNet:
    """Build the architecture the checkpoint was trained with, then load it."""
    from affinity.checkpoints.load import adapt_overrides, detect_format, load_into, source_num_classes

    fmt = detect_format(raw)
    meta = raw.meta
    # at the top level (safetensors) or in an `affinity train` checkpoint's extra
    stored = meta.get("pretrained_cfg") or (meta.get("extra") or {}).get("pretrained_cfg")
    if isinstance(stored, dict):
        recipe = PretrainedCfg.from_dict(stored, f"{raw.path}: pretrained_cfg")
    cfg = apply_overrides(cfg, **overrides)
    implied = {k: v for k, v in adapt_overrides(fmt, cfg, raw).items() if k not in overrides}
    cfg = apply_overrides(cfg, **implied)
    source_classes = source_num_classes(fmt, raw)
    if num_classes is None:
        num_classes = source_classes if source_classes is not None else recipe.num_classes
    size = img_size if img_size is not None else int(meta.get("img_size") or recipe.input_size[1])
    chans = in_chans if in_chans is not None else int(meta.get("in_chans") or recipe.input_size[0])
    model = AffinityNet(cfg, num_classes=num_classes, img_size=size, in_chans=chans, drop_rate=drop_rate)
    model.name = name
    reset_head = source_classes is not None and source_classes != num_classes
    report = load_into(model, raw, fmt, strict=strict, reset_head=reset_head)
    model.load_report = report
    model.pretrained_cfg = recipe.for_model(num_classes=num_classes, img_size=size, in_chans=chans).replace(
        source=f"{raw.path} ({fmt.name})"
    )
    return model


__all__ = [
    "MODELS",
    "AffinityNet",
    "Block",
    "ModelCfg",
    "PretrainedCfg",
    "Reference",
    "Stage",
    "StageCfg",
    "create_model",
    "get_entry",
    "get_reference",
    "list_models",
    "load_model_config",
    "resolve_model_config",
    "save_model_config",
]
