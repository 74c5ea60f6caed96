"""The trainer's flat-buffer AdamW step (affinity.train._flat) changes no number."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from affinity.data import load_dataset
from affinity.train import TrainConfig, train


@pytest.fixture(scope="module")
def digits16():
    return load_dataset("digits", img_size=16)


class Net(nn.Module):
    """Weights of odd sizes (tails that no vector width divides), a norm, and optionally a
    parameter that never gets a gradient."""

    def __init__(self, unused: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 13, 4, 4)
        self.norm = nn.BatchNorm2d(13)
        self.fc1 = nn.Linear(13, 37)
        self.fc2 = nn.Linear(37, 10)
        self.unused = nn.Parameter(torch.ones(3)) if unused else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x)).mean(dim=(2, 3))
        return self.fc2(nn.functional.gelu(self.fc1(x)))


#: clip_grad small enough to clip every step (its norm then matters to the last bit)
CFG = TrainConfig(epochs=2, batch_size=64, lr=0.01, clip_grad=0.05, seed=3, threads=1, device="cpu")


def _run(digits16, monkeypatch, *, flat: bool, unused: bool = False, **kwargs):
    if not flat:
        monkeypatch.setattr("affinity.train.loop.flat_adamw", lambda *a: None)
    model = Net(unused)
    metrics = train(model, digits16, kwargs.pop("cfg", CFG), **kwargs)
    monkeypatch.undo()
    return model, metrics


def _same(a: nn.Module, b: nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("unused", [False, True])
def test_flat_step_gives_the_per_parameter_weights_bit_for_bit(digits16, monkeypatch, unused: bool) -> None:
    """Flat buffers (or, with a parameter without gradient, the per-parameter fallback) train
    to the weights, losses and accuracies of per-parameter AdamW + clip_grad_norm_."""
    flat, flat_metrics = _run(digits16, monkeypatch, flat=True, unused=unused)
    plain, plain_metrics = _run(digits16, monkeypatch, flat=False, unused=unused)
    assert _same(flat, plain)
    assert [h.val_acc for h in flat_metrics.history] == [h.val_acc for h in plain_metrics.history]
    assert [h.train_loss for h in flat_metrics.history] == [h.train_loss for h in plain_metrics.history]
    # afterwards every parameter owns its storage again (no view into a shared buffer)
    assert all(p._base is None for p in flat.parameters())
    assert len({p.data_ptr() for p in flat.parameters()}) == len(list(flat.parameters()))


@pytest.mark.parametrize(("first", "second"), [(True, True), (False, True), (True, False)])
def test_interrupted_run_resumes_bit_for_bit_across_step_kinds(
    digits16, monkeypatch, first: bool, second: bool
) -> None:
    """An interrupted run saves the per-parameter optimiser state whichever step ran, and a
    resumed run (with either kind of step) ends as the uninterrupted run does."""
    straight, _ = _run(digits16, monkeypatch, flat=True)
    steps = iter(range(10_000))
    model, part = _run(digits16, monkeypatch, flat=first, should_stop=lambda: next(steps) == 30)
    assert part.interrupted and part.state is not None
    optimizer = part.state.optimizer
    assert len(optimizer["state"]) == len(list(model.parameters()))
    assert optimizer["state"][0]["exp_avg"].shape == next(model.parameters()).shape
    if not second:
        monkeypatch.setattr("affinity.train.loop.flat_adamw", lambda *a: None)
    train(model, digits16, CFG, resume=part.state)
    assert _same(model, straight)
