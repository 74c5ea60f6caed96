"""``affinity train MODEL|CONFIG.yaml``: train one model on a dataset, write metrics and a checkpoint.

The training options are generated from ``TrainConfig``'s declaration (default, rule and
meaning written once, in ``affinity.train.config``): a handful as flags, every field through
``--config FILE.yaml`` (the run-settings format of ``affinity.train.runfile``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from affinity.commands._options import checkpoint_option, out_option, quiet_option, train_options

#: the TrainConfig fields offered as flags; every other one is set with --config FILE.yaml
FLAGS = ("epochs", "batch_size", "lr", "seed", "device", "threads")


@click.command("train", short_help="Train a model on a dataset and write its metrics.")
@click.argument("model", metavar="MODEL|CONFIG.yaml")
@checkpoint_option
@click.option(
    "--dataset",
    default=None,
    help="digits (the default), synthetic[:k=v,...], cifar10:PATH, cifar100:PATH, "
    "imagefolder:PATH or npz:PATH.",
)
@click.option(
    "--img-size", type=int, default=None, help="Image side (default: the dataset's own, 32 for digits)."
)
@train_options(*FLAGS)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML of run settings: dataset, img_size, seed and a budget: section taking any "
    "TrainConfig field (flags override it).",
)
@out_option("Results root: metrics.json and checkpoint.pt go to OUT/train/<model>/.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="This run's folder instead of OUT/train/<model>/.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run interrupted (Ctrl-C) into the run's folder; same final result as an "
    "uninterrupted run.",
)
@quiet_option
def command(
    model: str,
    checkpoint: str | None,
    dataset: str | None,
    img_size: int | None,
    config_file: str | None,
    out: str,
    run_dir: str | None,
    resume: bool,
    quiet: bool,
    **flags: Any,
) -> None:
    """Train MODEL (a registered name or a model-config YAML) on --dataset and report it.

    The model adapts its input channels, classes and image size to the data. Settings come
    from TrainConfig's defaults, then the run settings in CONFIG.yaml, then --config FILE,
    then the flags. Prints the final val accuracy, parameters and FLOPs (fvcore: one
    multiply-add counts as one FLOP), and writes metrics.json and checkpoint.pt to
    OUT/train/<model>/ (or --run-dir).
    Ctrl-C finishes the current step, writes both marked interrupted and exits with 130;
    the same command with --resume continues from there.
    """
    from pathlib import Path

    import torch

    from affinity._io import check_writable
    from affinity.data import load_dataset
    from affinity.flops import count_flops, count_params
    from affinity.models import create_model
    from affinity.train import TrainConfig, check_fits, train
    from affinity.train.config import DATA_DEFAULTS, check_value

    model_cfg, settings = _model_and_settings(model, config_file)
    given = {"dataset": dataset, "img_size": img_size, **flags}
    for key, value in given.items():
        if value is not None:
            settings[key] = check_value(key, value, f"--{key.replace('_', '-')}")
    run = {**DATA_DEFAULTS, **settings}
    dataset, img_size, data_seed = run.pop("dataset"), run.pop("img_size"), run.pop("data_seed")
    cfg = TrainConfig(**run)
    name = Path(model).stem if model.endswith((".yaml", ".yml")) else model
    out_dir = Path(run_dir) if run_dir else Path(out) / "train" / name
    say = click.echo if not quiet else (lambda *a, **k: None)
    split_seed = cfg.seed if data_seed is None else data_seed
    data = load_dataset(dataset, img_size=img_size, seed=split_seed, quiet=quiet)
    torch.manual_seed(cfg.seed)
    net = create_model(
        model_cfg,
        num_classes=data.num_classes,
        img_size=data.img_size,
        in_chans=data.in_chans,
        checkpoint_path=checkpoint,  # a starting point: all but a classifier of another class count
    )
    net.pretrained_cfg = net.pretrained_cfg.replace(  # what the trained weights expect of an image
        mean=data.mean or net.pretrained_cfg.mean,
        std=data.std or net.pretrained_cfg.std,
        interpolation="bilinear",
        crop_pct=1.0,
        label_names=tuple(data.class_names) if data.class_names else None,
        source=f"affinity train on {dataset}",
    )
    run_info = {
        "model": model,
        "dataset": dataset,
        "img_size": data.img_size,
        "model_cfg": model_cfg.to_dict(),
    }
    state = _resume_from(out_dir / "checkpoint.pt", net, run_info, cfg) if resume else None
    if resume and state is None:
        return
    check_fits(net, in_chans=data.in_chans, img_size=data.img_size, num_classes=data.num_classes)
    params = count_params(net)
    flops = count_flops(net, torch.zeros(1, data.in_chans, data.img_size, data.img_size)).total
    check_writable(out_dir)
    say(f"{data.summary()}; {params / 1e6:.3f}M params, {flops / 1e6:.2f}M FLOPs (multiply-adds)", err=True)

    with _stop_on_ctrl_c(say) as stop:
        metrics = train(net, data, cfg, should_stop=stop, resume=state, progress=not quiet)

    where = f"at {data.in_chans}×{data.img_size}×{data.img_size}"
    record = {
        **run_info,
        "num_classes": data.num_classes,
        "in_chans": data.in_chans,
        "params": params,
        "flops": flops,
        "flops_unit": "fvcore: one multiply-add = one FLOP",
        "train_config": cfg.to_dict(),
        "pretrained_cfg": net.pretrained_cfg.to_dict(),
        "metrics": metrics.to_dict(),
    }
    if metrics.interrupted:
        assert metrics.state is not None
        click.echo(
            f"{name} on {dataset}: interrupted at epoch {metrics.state.epoch}, step {metrics.steps} of "
            f"{metrics.state.total_steps}: val accuracy {metrics.val_acc:.2%} there; {metrics.wall_s:.1f} s "
            f"on {metrics.device}"
        )
    else:
        click.echo(
            f"{name} on {dataset}: val accuracy {metrics.val_acc:.2%} (best {metrics.best_val_acc:.2%}) "
            f"after {metrics.epochs_run} epoch(s), {metrics.wall_s:.1f} s on {metrics.device}; "
            f"params {params / 1e6:.3f}M; FLOPs {flops / 1e6:.2f}M multiply-adds {where}"
        )
    _write_results(out_dir, net, record, metrics)
    if metrics.interrupted:
        click.echo(
            f"affinity: interrupted; wrote {out_dir / 'checkpoint.pt'} and metrics.json (marked "
            "interrupted): run the same command with --resume to continue",
            err=True,
        )
        raise click.exceptions.Exit(130)
    say(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'checkpoint.pt'}", err=True)


def _write_results(out_dir: Any, net: Any, record: dict[str, Any], metrics: Any) -> None:
    """metrics.json and checkpoint.pt (with the state to resume from, when interrupted).

    Raises:
        ConfigError: a write failed (disk full, ...) after training: the metrics go to
            stdout first, so the result is not lost.
    """
    import json

    from affinity._io import atomic_write_text
    from affinity.commands._outputs import printed_if_unwritten
    from affinity.train import save_checkpoint

    text = json.dumps(record, indent=2) + "\n"
    with printed_if_unwritten(out_dir, lambda: text):
        atomic_write_text(out_dir / "metrics.json", text)
        save_checkpoint(
            out_dir / "checkpoint.pt",
            net,
            record["model_cfg"],
            metrics,
            {k: record[k] for k in ("model", "dataset", "params", "flops", "train_config", "pretrained_cfg")},
            num_classes=record["num_classes"],
            img_size=record["img_size"],
            in_chans=record["in_chans"],
            state=metrics.state,
        )


def _resume_from(path: Any, net: Any, run_info: dict[str, Any], cfg: Any) -> Any:
    """The state of the run interrupted into ``path``, its weights loaded into ``net``; None
    (after saying so) when that run had finished.

    Raises:
        ConfigError: no checkpoint there, or it was trained with other settings.
    """
    from affinity.errors import ConfigError
    from affinity.train import load_checkpoint
    from affinity.train.config import RUNTIME_KEYS

    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path} (Ctrl-C in affinity train writes one)")
    ck = load_checkpoint(path)
    if ck.train_state is None:
        acc = (ck.metrics or {}).get("val_acc", float("nan"))
        click.echo(
            f"--resume: {path} holds a finished run (val accuracy {acc:.2%}); nothing to resume", err=True
        )
        return None
    was = {**ck.extra, "img_size": ck.img_size, "model_cfg": ck.model_cfg}
    diff = [
        "the model config differs" if k == "model_cfg" else f"{k} {was.get(k)!r} -> {v!r}"
        for k, v in run_info.items()
        if k != "model" and was.get(k) != v
    ]
    now = cfg.to_dict()
    stored = ck.extra.get("train_config", {})
    diff += [
        f"{k} {stored.get(k)!r} -> {now[k]!r}"
        for k in now
        if k not in RUNTIME_KEYS and stored.get(k) != now[k]
    ]
    if diff:
        raise ConfigError(
            f"--resume: {path} was trained with other settings ({'; '.join(diff)}); allowed: the "
            "interrupted run's settings, or a run without --resume"
        )
    net.load_state_dict(ck.state_dict)
    return ck.train_state


@contextlib.contextmanager
def _stop_on_ctrl_c(say: Callable[..., Any]) -> Iterator[Callable[[], bool]]:
    """While training, the first Ctrl-C (SIGINT) asks the trainer to stop after the current
    step; a second one stops at once (KeyboardInterrupt, nothing written)."""
    import signal
    import threading

    asked: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(True)
        say("affinity: stopping after this step to save a checkpoint (Ctrl-C again: stop at once)", err=True)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGINT, previous)


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
