"""``affinity train MODEL|CONFIG.yaml``: train one model on a dataset, write metrics and a checkpoint."""

from __future__ import annotations

import click

from affinity.commands._options import device_option, quiet_option


@click.command("train", short_help="Train a model on a dataset and write its metrics.")
@click.argument("model")
@click.option(
    "--dataset",
    default="digits",
    show_default=True,
    help="digits, synthetic[:k=v,...], cifar10:PATH, cifar100:PATH, imagefolder:PATH or npz:PATH.",
)
@click.option("--epochs", type=int, default=30, show_default=True, help="Passes over the train split.")
@click.option(
    "--img-size", type=int, default=None, help="Image side (default: the dataset's own, 32 for digits)."
)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Peak AdamW learning rate.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds the weights, the split and the batches."
)
@device_option
@click.option(
    "--threads", type=int, default=None, help="torch CPU threads while training (default: torch's)."
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
    dataset: str,
    epochs: int,
    img_size: int | None,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
    threads: int | None,
    out: str | None,
    quiet: bool,
) -> None:
    """Train MODEL (a registered name or a model-config YAML) on --dataset and report it.

    The model adapts its input channels, classes and image size to the data. Prints the final
    val accuracy, parameters and FLOPs (fvcore: one multiply-add counts as one FLOP), and
    writes metrics.json and checkpoint.pt to --out.
    """
    import json
    from pathlib import Path

    import torch

    from affinity._io import atomic_write_text
    from affinity.commands._options import resolve_device, show_progress
    from affinity.data import load_dataset
    from affinity.flops import count_flops, count_params
    from affinity.models import create_model, resolve_model_config
    from affinity.train import TrainConfig, check_fits, save_checkpoint, train

    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=resolve_device(device), threads=threads
    )
    model_cfg = resolve_model_config(model)
    data = load_dataset(dataset, img_size=img_size, seed=seed)
    torch.manual_seed(seed)
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
        "train_config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
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
