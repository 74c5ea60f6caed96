"""dwconv against nn.Conv2d and an independent Toeplitz construction; token_mlp layouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from affinity.errors import ConfigError
from affinity.ops import create_affinity


def toeplitz(kernel: torch.Tensor, h: int, w: int, dilation: int, padding: str) -> torch.Tensor:
    """(N, N) matrix of one k×k kernel, built position by position (no shared helpers)."""
    k = kernel.shape[-1]
    n = h * w
    a = torch.zeros(n, n, dtype=kernel.dtype)

    def source(p: int, size: int) -> int | None:
        if 0 <= p < size:
            return p
        if padding == "zero":
            return None
        if padding == "circular":
            return p % size
        if padding == "replicate":
            return min(max(p, 0), size - 1)
        return -p if p < 0 else 2 * (size - 1) - p  # reflect

    for i in range(h):
        for j in range(w):
            for kh in range(k):
                for kw in range(k):
                    si = source(i + (kh - k // 2) * dilation, h)
                    sj = source(j + (kw - k // 2) * dilation, w)
                    if si is not None and sj is not None:
                        a[i * w + j, si * w + sj] += kernel[kh, kw]
    return a


@pytest.mark.parametrize("padding", ["zero", "circular", "reflect", "replicate"])
@pytest.mark.parametrize(("kernel_size", "dilation"), [(1, 1), (3, 1), (5, 1), (3, 2)])
def test_dwconv_matrix_is_the_toeplitz_of_its_kernel(padding: str, kernel_size: int, dilation: int) -> None:
    h, w, c = 5, 6, 3
    aff = create_affinity(
        "dwconv", dim=c, kernel_size=kernel_size, dilation=dilation, padding=padding
    ).double()
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    a = aff.materialize(x)
    for ch in range(c):
        expected = toeplitz(aff.weight[ch, 0].detach(), h, w, dilation, padding)
        torch.testing.assert_close(a[0, ch], expected, atol=1e-12, rtol=0)
    conv = nn.Conv2d(
        c,
        c,
        kernel_size,
        padding=(kernel_size // 2) * dilation,
        dilation=dilation,
        groups=c,
        bias=False,
        padding_mode="zeros" if padding == "zero" else padding,
    ).double()
    conv.weight.data.copy_(aff.weight.data)
    torch.testing.assert_close(aff(x), conv(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize(
    ("layout", "sets_of"), [("consecutive", [0, 0, 0, 1, 1, 1]), ("interleaved", [0, 1, 0, 1, 0, 1])]
)
def test_dwconv_share_layout(layout: str, sets_of: list[int], kernel_size: int) -> None:
    """share=S: S kernels; consecutive C/S channels each, or channel c -> c mod S (RepMLPNet).
    The 1×1 kernel (a per-channel scale, computed without a conv) gives the conv's numbers."""
    aff = create_affinity(
        "dwconv", dim=6, kernel_size=kernel_size, share=2, share_layout=layout, bias=True
    ).double()
    assert aff.weight.shape == (2, 1, kernel_size, kernel_size)
    x = torch.randn(1, 6, 4, 4, dtype=torch.float64)
    out = aff(x)
    for ch, s in enumerate(sets_of):
        single = torch.nn.functional.conv2d(
            x[:, ch : ch + 1], aff.weight[s : s + 1], aff.bias[s : s + 1], padding=kernel_size // 2
        )
        torch.testing.assert_close(out[:, ch : ch + 1], single, atol=1e-12, rtol=0)


def test_token_mlp_is_resmlp_linear_with_bias_offset() -> None:
    aff = create_affinity("token_mlp", dim=3, hw=(2, 3)).double()
    nn.init.normal_(aff.bias)
    v = torch.randn(2, 3, 2, 3, dtype=torch.float64)
    lin = nn.Linear(6, 6).double()
    lin.weight.data.copy_(aff.weight.data[0])
    lin.bias.data.copy_(aff.bias.data[0])
    torch.testing.assert_close(aff(v), lin(v.flatten(2)).view(2, 3, 2, 3), atol=1e-12, rtol=0)
    off = aff.offset(v)
    assert off is not None
    torch.testing.assert_close(off[0, 0], aff.bias[0].detach())


def test_token_mlp_heads_and_layouts() -> None:
    for layout, owner in [("consecutive", [0, 0, 1, 1]), ("interleaved", [0, 1, 0, 1])]:
        aff = create_affinity(
            "token_mlp", dim=4, hw=(2, 2), heads=2, share_layout=layout, bias=False
        ).double()
        v = torch.randn(1, 4, 2, 2, dtype=torch.float64)
        out = aff(v).flatten(2)
        for ch, s in enumerate(owner):
            torch.testing.assert_close(
                out[0, ch], aff.weight[s].detach() @ v[0, ch].flatten(), atol=1e-12, rtol=0
            )


def test_token_mlp_mixer_shapes_and_wrong_size() -> None:
    first = create_affinity("token_mlp", dim=4, hw=(3, 3), out_tokens=5)
    second = create_affinity("token_mlp", dim=4, hw=(3, 3), in_tokens=5)
    hidden = first(torch.randn(2, 4, 3, 3))
    assert hidden.shape == (2, 4, 1, 5)
    assert second(hidden).shape == (2, 4, 3, 3)
    with pytest.raises(ConfigError, match="in_tokens = 9"):
        first(torch.randn(2, 4, 4, 4))
    with pytest.raises(ConfigError, match="hw"):
        create_affinity("token_mlp", dim=4)
