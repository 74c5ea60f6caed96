"""The speed paths give the numbers of the plain ones: row-chunked channel MLP, 1×1 convs
as linears on channels-last maps, channels-last stages."""

from __future__ import annotations

import pytest
import torch

from affinity.models import create_model, layers
from affinity.ops.layers import Conv1x1, is_channels_last


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
