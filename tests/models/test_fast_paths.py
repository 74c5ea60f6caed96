"""The speed paths give the numbers of the plain ones: row-chunked channel MLP, 1×1 convs
as linears on channels-last maps, channels-last stages, activations in place."""

from __future__ import annotations

import pytest
import torch

from affinity.models import create_model, layers, network
from affinity.ops.layers import Conv1x1, act_in_place, is_channels_last, make_act


@pytest.mark.parametrize("norm", [None, "batchnorm"])
def test_channel_mlp_by_parts_equals_whole(monkeypatch: pytest.MonkeyPatch, norm: str | None) -> None:
    """Tokens by rows (linears, channels-last) or images one by one (1×1 convs + BatchNorm)."""
    torch.manual_seed(0)
    mlp = layers.ChannelMlp(6, 24, norm=norm).double()
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64)
    if norm is None:
        x = x.contiguous(memory_format=torch.channels_last)
    else:  # running statistics that are not the identity
        mlp(x)
    mlp.eval()
    whole = mlp(x)  # grad enabled: the whole map at once
    monkeypatch.setattr(layers, "_LARGE_BYTES", 0)
    monkeypatch.setattr(layers, "_ROWS", 8)  # 105 tokens: 14 parts, the last one short
    with torch.no_grad():
        parts = mlp(x)
    torch.testing.assert_close(parts, whole, atol=1e-12, rtol=0)  # a shorter GEMM may round apart
    assert is_channels_last(parts) == (norm is None)


@pytest.mark.parametrize(("batch", "side", "channels_last"), [(3, 7, True), (1, 7, False), (3, 9, False)])
def test_conv_norm_mlp_on_a_narrow_map_runs_channels_last(batch: int, side: int, channels_last: bool) -> None:
    """RepMLPNet's conv-BN channel MLP on a batch of maps of at most ``_NARROW_TOKENS`` tokens
    (64; 7×7 here, not 9×9 nor one image) runs its 1×1 convs as linears over the batch's
    tokens, and returns the NCHW map the plain path does, with its numbers."""
    torch.manual_seed(0)
    mlp = layers.ChannelMlp(6, 24, norm="batchnorm").double()
    x = torch.randn(batch, 6, side, side, dtype=torch.float64)
    mlp(torch.randn(4, 6, side, side, dtype=torch.float64))  # running statistics, not the identity
    mlp.eval()
    plain = mlp(x)  # grad enabled: the convolutions
    seen: list[bool] = []
    mlp.fc1.register_forward_pre_hook(lambda _, args: seen.append(is_channels_last(args[0])))
    with torch.no_grad():
        fast = mlp(x)
    assert seen == [channels_last]
    assert fast.is_contiguous()  # NCHW, as it came
    torch.testing.assert_close(fast, plain, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_conv1x1_channels_last_is_the_conv(bias: bool) -> None:
    torch.manual_seed(0)
    conv = Conv1x1(5, 3, bias=bias).double()
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    plain = conv(x)  # NCHW: the convolution
    fast = conv(x.contiguous(memory_format=torch.channels_last))  # a linear over channels
    assert not is_channels_last(plain) and is_channels_last(fast)
    torch.testing.assert_close(fast, plain, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        plain, torch.nn.functional.conv2d(x, conv.weight, conv.bias), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize(("name", "channels_last"), [("swin_t", True), ("resmlp_s12", False)])
def test_stages_run_channels_last_when_their_affinities_do(name: str, channels_last: bool) -> None:
    model = create_model(name, num_classes=3)
    assert all(stage.channels_last == channels_last for stage in model.stages)


@pytest.mark.parametrize("name", ["as_mlp_t", "swin_t"])
def test_channels_last_stages_by_parts_of_the_batch_equal_whole(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    torch.manual_seed(0)
    small = {"dims": (8, 16, 16, 16), "depths": (2, 1, 1, 1)}
    if name == "swin_t":  # shifted windows with a relative bias, as tests/checkpoints/test_export.py
        small |= {"heads": (1, 2, 2, 2), "window_size": 4}
    model = create_model(name, img_size=32, num_classes=3, **small).eval()
    x = torch.randn(3, 3, model.img_size, model.img_size)
    whole = model(x)  # grad enabled: whole batches
    calls: list[int] = []
    monkeypatch.setattr(network, "_SPLIT_BYTES", 0)
    monkeypatch.setattr(network, "_PART_TOKENS", 1)  # one image a part
    for stage in model.stages:
        stage.blocks.register_forward_pre_hook(lambda _, args: calls.append(args[0].shape[0]))
    with torch.no_grad():
        parts = model(x)
    assert calls == [1, 1, 1] * len(model.stages)
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("device", "stage_parts", "mlp_parts"), [("cpu", 8, 13), ("meta", 1, 1)])
def test_parts_are_for_the_cpu_only(device: str, stage_parts: int, mlp_parts: int) -> None:
    """Parts of a batch keep a large map in the CPU's caches; on any other device (meta here,
    CUDA in tests/test_cuda.py) the whole batch goes at once: on a GPU each part launched every
    kernel again (deit_s at batch 256 on an H200: 7790 kernels a forward, timm's 313)."""
    model = create_model("as_mlp_t").eval().to(device)
    calls: list[int] = []
    model.stages[0].blocks.register_forward_pre_hook(lambda _, args: calls.append(args[0].shape[0]))
    mlp = layers.ChannelMlp(96, 384).eval().to(device)  # 38 MB of hidden activations at batch 8
    rows: list[int] = []
    mlp.fc1.register_forward_pre_hook(lambda _, args: rows.append(args[0].shape[0]))
    with torch.no_grad():
        model(torch.randn(8, 3, 224, 224, device=device))
        mlp(torch.randn(8, 96, 56, 56, device=device).contiguous(memory_format=torch.channels_last))
    assert calls == [8 // stage_parts] * stage_parts
    assert len(rows) == mlp_parts


@pytest.mark.parametrize("kind", ["gelu", "relu"])
def test_activation_in_place_without_autograd_only(kind: str) -> None:
    act = make_act(kind)
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64)
    plain = act(x)
    fresh = x.clone()
    with torch.no_grad():
        out = act_in_place(act, fresh, act)
    assert out.data_ptr() == fresh.data_ptr()  # written over its input
    assert torch.equal(out, plain)
    seen: list[torch.Tensor] = []  # a hook on the activation (NASWOT's) sees its call
    act.register_forward_hook(lambda _, args, out: seen.append(args[0]))
    fresh = x.clone()
    with torch.no_grad():
        out = act_in_place(act, fresh, act)
    assert len(seen) == 1 and torch.equal(fresh, x) and torch.equal(out, plain)
    kept = x.clone().requires_grad_()
    out = act_in_place(act, kept * 1, act)  # autograd on: the backward needs the input
    assert torch.equal(out, plain)
    out.sum().backward()
    assert kept.grad is not None


def test_gelu_of_a_channels_last_map_is_the_nchw_maps() -> None:
    """GELU (and its in-place form, and the backward) of a channels-last map gives exactly
    the numbers of the same map in NCHW (torch's oneDNN kernel; its other kernel, which it
    takes for a channels-last 4-D map, differs by up to 4.8e-7), and keeps the layout."""
    act = make_act("gelu")
    nchw = (3 * torch.randn(2, 64, 14, 14)).requires_grad_()
    last = nchw.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    plain, ours = act(nchw), act(last)
    assert is_channels_last(ours) and torch.equal(ours, plain)
    grad = torch.randn(2, 64, 14, 14)
    plain.backward(grad)
    ours.backward(grad.contiguous(memory_format=torch.channels_last))
    assert last.grad is not None and torch.equal(last.grad, nchw.grad)
    with torch.no_grad():
        fresh = last.detach().clone()
        out = act_in_place(act, fresh, act)
    assert out.data_ptr() == fresh.data_ptr() and is_channels_last(out) and torch.equal(out, plain)


@pytest.mark.parametrize(
    ("name", "small"),
    [
        ("repmlpnet_t224", {"dims": (8, 16, 32, 32), "depths": (1, 1, 2, 1), "share": (1, 2, 4, 8)}),
        ("resmlp_s12", {"dim": 16, "depth": 2}),
        ("deit_s", {"dim": 16, "depth": 2, "heads": 2}),
    ],
)
def test_eval_without_autograd_gives_the_plain_numbers(name: str, small: dict[str, object]) -> None:
    """Residuals written over a gated / scaled mixer output or the MLP's output, activations in
    place, MLP parts and joined qkv (no autograd) against the plain ops (autograd on)."""
    torch.manual_seed(0)
    model = create_model(name, img_size=32, num_classes=3, **small)
    model(torch.randn(4, 3, 32, 32))  # running statistics that are not the identity
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    plain = model(x)
    with torch.no_grad():
        fast = model(x)
    torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-6)


def test_outputs_held_by_hooks_are_not_written_over() -> None:
    """A hook holding a mixer's or a layer's output (feature extraction) keeps its values: the
    in-place residuals and activations step aside."""
    torch.manual_seed(0)
    model = create_model("deit_s", img_size=32, num_classes=3, dim=16, depth=2, heads=2).eval()
    block = model.stages[0].blocks[0]
    held: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in ("mixer", "mlp.fc1"):
        module = block.get_submodule(name)
        module.register_forward_hook(lambda m, args, out, name=name: held.__setitem__(name, (args[0], out)))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        for name, (inputs, out) in held.items():
            assert torch.equal(out, block.get_submodule(name)(inputs)), name
