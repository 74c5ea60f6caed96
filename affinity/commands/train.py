"""``affinity train MODEL|CONFIG.yaml``: train one model on a dataset, write metrics and a checkpoint.

The training options are generated from ``TrainConfig``'s declaration (default, rule and
meaning written once, in ``affinity.train.config``): a handful as flags, every field through
``--config FILE.yaml`` (the run-settings format of ``affinity.train.runfile``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from affinity.commands._options import quiet_option

F = TypeVar("F", bound=Callable[..., Any])

#: the TrainConfig fields offered as flags; every other one is set with --config FILE.yaml
FLAGS = ("epochs", "batch_size", "lr", "seed", "device", "threads")


def _train_flags(func: F) -> F:
    """One option per field of ``FLAGS``, typed, described and defaulted by its declaration.

    The options default to None (not given) so that a value from a file is overridden only
    by a flag the user typed; the help shows the declared default.
    """
    from affinity.train.config import TrainConfig, meaning, rule

    defaults = TrainConfig()
    for name in reversed(FLAGS):
        spec = rule(name)
        func = click.option(
            f"--{name.replace('_', '-')}",
            type=spec.kind if spec.kind in (int, float) else str,
            default=None,
            help=f"{meaning(name)}  [default: {getattr(defaults, name)}]",
        )(func)
    return func


@click.command("train", short_help="Train a model on a dataset and write its metrics.")
@click.argument("model", metavar="MODEL|CONFIG.yaml")
@click.option(
    "--dataset",
    default=None,
    help="digits (the default), synthetic[:k=v,...], cifar10:PATH, cifar100:PATH, "
    "imagefolder:PATH or npz:PATH.",
)
@click.option(
    "--img-size", type=int, default=None, help="Image side (default: the dataset's own, 32 for digits)."
)
@_train_flags
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML of run settings: dataset, img_size, seed and a budget: section taking any "
    "TrainConfig field (flags override it).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for metrics.json and checkpoint.pt (default: results/train/<model>).",
)
@quiet_option
def command(
    model: str,
    dataset: str | None,
    img_size: int | None,
    config_file: str | None,
    out: str | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Train MODEL (a registered name or a model-config YAML) on --dataset and report it.

    The model adapts its input channels, classes and image size to the data. Settings come
    from TrainConfig's defaults, then the run settings in CONFIG.yaml, then --config FILE,
    then the flags. Prints the final val accuracy, parameters and FLOPs (fvcore: one
    multiply-add counts as one FLOP), and writes metrics.json and checkpoint.pt to --out.
    """
    import json
    from pathlib import Path

    import torch

    from affinity._io import atomic_write_text
    from affinity.commands._options import show_progress
    from affinity.data import load_dataset
    from affinity.flops import count_flops, count_params
    from affinity.models import create_model
    from affinity.train import TrainConfig, check_fits, save_checkpoint, train
    from affinity.train.config import DATA_DEFAULTS, check_value

    model_cfg, settings = _model_and_settings(model, config_file)
    given = {"dataset": dataset, "img_size": img_size, **flags}
    for key, value in given.items():
        if value is not None:
            settings[key] = check_value(key, value, f"--{key.replace('_', '-')}")
    run = {**DATA_DEFAULTS, **settings}
    dataset, img_size = run.pop("dataset"), run.pop("img_size")
    cfg = TrainConfig(**run)
    data = load_dataset(dataset, img_size=img_size, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    net = create_model(
        model_cfg, num_classes=data.num_classes, img_size=data.img_size, in_chans=data.in_chans
    )
    check_fits(net, in_chans=data.in_chans, img_size=data.img_size, num_classes=data.num_classes)
    params = count_params(net)
    flops = count_flops(net, torch.zeros(1, data.in_chans, data.img_size, data.img_size)).total
    say = click.echo if not quiet else (lambda *a, **k: None)
    say(f"{data.summary()}; {params / 1e6:.3f}M params, {flops / 1e6:.2f}M FLOPs (multiply-adds)", err=True)

    metrics = train(net, data, cfg, progress=show_progress(quiet))

    name = Path(model).stem if model.endswith((".yaml", ".yml")) else model
    out_dir = Path(out) if out else Path("results") / "train" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model,
        "dataset": dataset,
        "num_classes": data.num_classes,
        "img_size": data.img_size,
        "in_chans": data.in_chans,
        "params": params,
        "flops": flops,
        "flops_unit": "fvcore: one multiply-add = one FLOP",
        "train_config": cfg.to_dict(),
        "metrics": metrics.to_dict(),
    }
    atomic_write_text(out_dir / "metrics.json", json.dumps(record, indent=2) + "\n")
    ckpt = save_checkpoint(
        out_dir / "checkpoint.pt",
        net,
        model_cfg.to_dict(),
        metrics,
        {"model": model, "dataset": dataset, "params": params, "flops": flops},
        num_classes=data.num_classes,
        img_size=data.img_size,
        in_chans=data.in_chans,
    )
    click.echo(
        f"{name} on {dataset}: val accuracy {metrics.val_acc:.2%} (best {metrics.best_val_acc:.2%}) "
        f"after {metrics.epochs_run} epoch(s), {metrics.wall_s:.1f} s on {metrics.device}; "
        f"params {params / 1e6:.3f}M; FLOPs {flops / 1e6:.2f}M multiply-adds "
        f"at {data.in_chans}×{data.img_size}×{data.img_size}"
    )
    say(f"wrote {out_dir / 'metrics.json'} and {ckpt}", err=True)


def _model_and_settings(model: str, config_file: str | None) -> tuple[Any, dict[str, Any]]:
    """The model config and the run settings of the files given (the YAML's, then --config's)."""
    from pathlib import Path

    from affinity.models import resolve_model_config
    from affinity.train.runfile import load_run_config

    settings: dict[str, Any] = {}
    if model.endswith((".yaml", ".yml")) and Path(model).is_file():
        run = load_run_config(model)
        model_cfg, settings = run.model, dict(run.settings)
    else:
        model_cfg = resolve_model_config(model)
    if config_file is not None:
        settings.update(load_run_config(config_file, need_model=False).settings)
    return model_cfg, settings
