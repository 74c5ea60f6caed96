"""Every registered model runs forward and backward on a small input with its real mixers."""

from __future__ import annotations

import re

import pytest
import torch

from affinity.models import create_model, list_models
from affinity.ops.mixer import ContextAggregation


def small_overrides(name: str) -> dict[str, object]:
    """One block per stage (the mixer types unchanged); Swin keeps two (plain, then shifted
    windows) with a window that tiles its 8×8 first map."""
    if name.startswith("swin"):
        return {"depth": 2, "window_size": 4}
    return {"depth": 1}


def one_per_family() -> list[str]:
    """The first registered model of each paper family (the name's first word: as, deit, ...)."""
    first: dict[str, str] = {}
    for name in list_models():
        first.setdefault(re.split(r"[_\d]", name)[0], name)
    return sorted(first.values())


def small_img_size(name: str) -> int:
    """32, or 28 for the models of stride 7 and 14 (ConvMixer, ViP)."""
    return 28 if name.startswith(("vip", "convmixer")) else 32


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_small(name: str) -> None:
    torch.set_num_threads(1)
    size = small_img_size(name)
    model = create_model(name, num_classes=10, img_size=size, in_chans=1, **small_overrides(name))
    assert model.num_classes == 10
    x = torch.randn(2, 1, size, size)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), f"{name}: some parameters got no gradient"
    assert any(g.abs().sum() > 0 for g in grads if g is not None)
    feats = model.forward_features(x)
    assert feats.shape[:2] == (2, model.num_features)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    # every token mixer is a ContextAggregation of registered affinities
    for block in (b for s in model.stages for b in s.blocks):
        assert isinstance(block.mixer, ContextAggregation)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3


@pytest.mark.parametrize("name", list_models())
def test_channels_last_gives_the_same_logits(name: str) -> None:
    """``model.to(memory_format=torch.channels_last)`` (as ``affinity benchmark --channels-last``
    does) reorders the 4-d parameters too: every model still computes the same function."""
    torch.set_num_threads(1)
    size = small_img_size(name)
    model = create_model(name, num_classes=10, img_size=size, **small_overrides(name)).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        out = model(x.contiguous(memory_format=torch.channels_last))
    # the kernels differ (and with them the order of fp32 sums: ~1e-6 at logits ~1 on an AVX2
    # CPU, as_mlp_s and poolformer_s12): a tolerance of ~80 float eps of the logits' scale;
    # a wrong layout is off by the logits' own size
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize(
    ("name", "device"), [(n, "meta") for n in list_models()] + [(n, "cpu") for n in one_per_family()]
)
def test_training_after_an_inference_mode_forward(name: str, device: str) -> None:
    """Index plans, window orders, masks and constants cached by a first forward under
    ``torch.inference_mode`` (evaluation, ``affinity benchmark``) are normal tensors: a training
    step may save them for its backward (swin_t raised here before). The meta device takes the
    paths of a GPU (no batch parts, the gathered shift) without computing."""
    size = small_img_size(name)
    model = create_model(name, num_classes=10, img_size=size, **small_overrides(name)).to(device)
    x = torch.randn(2, 3, size, size, device=device)
    with torch.inference_mode():
        model.eval()(x)
    model.train()
    model(x).logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
