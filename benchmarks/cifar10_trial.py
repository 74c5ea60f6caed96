"""How long one trial of ``search_spaces/cifar10_shifts.yaml`` takes here: times training
steps of its cheapest and its most expensive model on CIFAR-shaped data and extrapolates to
the space's budget (50,000 train and 10,000 val images, its epochs and batch size).

The data is random uint8 of CIFAR-10's shape (the step time does not depend on the pixels),
so no download is needed. Prints the per-step figures it measured and the estimate.

    python benchmarks/cifar10_trial.py [--steps 20] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import optuna
import torch

from affinity.data.base import DatasetSplits, TensorSplit, finalize
from affinity.flops import count_flops, count_params
from affinity.models import create_model
from affinity.search.space import load_space
from affinity.train import TrainConfig, train

TRAIN, VAL = 50_000, 10_000
#: the two ends of the space's cost axis
ENDS = {
    "cheapest": {
        "model.dims": "[64, 128, 256]",
        "model.channel_mlp_ratio": 2,
        "model.mixer.kind": "spatial_shift",
    },
    "most expensive": {
        "model.dims": "[96, 192, 384]",
        "model.channel_mlp_ratio": 4,
        "model.mixer.kind": "axial_shift",
        "model.mixer.shift_size": 5,
        "model.mixer.dilation": 1,
        "model.mixer.padding": "zero",
        "model.mixer.connection": "parallel",
    },
}


def _fake(n: int, batch: int) -> DatasetSplits:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    split = TensorSplit(x, y, 1 / 255)
    val = TensorSplit(x[:batch], y[:batch], 1 / 255)
    return finalize(DatasetSplits(split, val, 10, 3, 32, "cifar-shaped", flip=True, crop_pad=4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("cifar10_shifts.yaml")
    s = space.settings
    batch = s.batch_size
    steps_per_epoch = math.ceil(TRAIN / batch)
    print(
        f"space {space.name}: {s.epochs} epochs x {steps_per_epoch} steps of {batch} images, "
        f"{VAL} val images per epoch; {args.threads} thread(s) on {args.device}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    data = _fake(batch * args.steps, batch)
    for label, params in ENDS.items():
        torch.manual_seed(0)
        cfg = space.sample(optuna.trial.FixedTrial(params), 32)
        model = create_model(cfg, num_classes=10, img_size=32, in_chans=3)
        flops = count_flops(model, torch.zeros(1, 3, 32, 32)).total
        tc = TrainConfig(epochs=1, batch_size=batch, threads=args.threads, device=args.device)
        metrics = train(model, data, tc)
        step_s = metrics.wall_s / args.steps  # one small evaluation included: an upper bound
        model.eval()
        x = torch.randn(batch, 3, 32, 32, device=next(model.parameters()).device)
        with torch.inference_mode():
            model(x)
            start = time.perf_counter()
            for _ in range(3):
                model(x)
            fwd_s = (time.perf_counter() - start) / 3
        trial_s = s.epochs * (steps_per_epoch * step_s + math.ceil(VAL / batch) * fwd_s)
        print(
            f"{label}: {count_params(model) / 1e6:.2f}M params, {flops / 1e6:.1f} MFLOPs; "
            f"{step_s * 1000:.0f} ms per training step, {fwd_s * 1000:.0f} ms per eval batch; "
            f"one trial about {trial_s / 3600:.1f} h"
        )


if __name__ == "__main__":
    main()
