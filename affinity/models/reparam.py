"""Structural re-parameterisation (RepMLP, Ding et al. 2021, sec. 3.3; RepMLPNet, CVPR 2022).

After training, two folds turn a model into its deploy form with the same outputs:

- BatchNorm folds into the convolution before it (the channel MLP's conv-BN pairs, the
  conv-BN-ReLU embeddings): ``W' = W·γ/σ``, ``b' = (b − μ)·γ/σ + β``.
- Each depthwise conv branch of a mixer folds into the mixer's dense token affinity (the
  FC): the conv is a linear map of the tokens, so running it on an identity matrix (one
  one-hot map per token) gives its N×N matrix, which is added to the FC's kernel of the same
  share set. The conv branches are then dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.errors import ConfigError


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to ``bn(conv(x))`` at inference."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = (bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)) / torch.sqrt(
        bn.running_var + bn.eps
    )
    shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
    ).to(conv.weight.device, conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + shift)  # type: ignore[union-attr]
    return fused


def conv_as_matrix(conv: Any, h: int, w: int) -> Tensor:
    """The (S, N, N) matrices of a ``dwconv`` affinity's S kernels on an h×w map, computed as
    RepMLP does: the conv applied to an identity matrix (N one-hot maps), column j the
    response to token j."""
    n = h * w
    eye = torch.eye(n, dtype=conv.weight.dtype, device=conv.weight.device).view(n, 1, h, w)
    if conv.padding != "zero" and conv.pad > 0:
        eye = F.pad(eye, (conv.pad,) * 4, mode=conv.padding)
        pad = 0
    else:
        pad = conv.pad
    out = F.conv2d(eye, conv.weight, None, padding=pad, dilation=conv.dilation)  # (N_in, S, h, w)
    return out.flatten(2).permute(1, 2, 0)  # (S, N_out, N_in)


def fold_mixer(mixer: Any) -> bool:
    """Fold a mixer's depthwise-conv branches into its token-FC branch; True when it did.

    Applies to parallel mixers whose branches are one ``token_mlp`` (N→N) and ``dwconv``
    branches with the same share sets and layout, none with a projection or activation, and
    with ``sum`` coefficients (RepMLPNet's). Others are left unchanged.

    Raises:
        ConfigError: a conv branch with a bias (the FC has none to take it).
    """
    cfg = mixer.cfg
    branches = list(mixer.branches)
    kinds = [b.affinity.name for b in branches]
    if (
        cfg.connection != "parallel"
        or cfg.coefficients != "sum"
        or kinds.count("token_mlp") != 1
        or "dwconv" not in kinds
        or set(kinds) != {"token_mlp", "dwconv"}
        or any(bc.proj or bc.act for bc in cfg.branches)
    ):
        return False
    fc_index = kinds.index("token_mlp")
    fc = branches[fc_index].affinity
    h, w = fc.hw
    if fc.in_tokens != h * w or fc.out_tokens != h * w:
        return False
    for b in branches:
        a = b.affinity
        if a.name == "dwconv" and (
            a.share != fc.heads or (a.share > 1 and a.share_layout != fc.share_layout)
        ):
            return False
    for b in branches:
        a = b.affinity
        if a.name != "dwconv":
            continue
        if a.bias is not None:
            raise ConfigError("reparameterize: a dwconv branch with bias=True cannot fold into a token_mlp")
        fc.weight.add_(conv_as_matrix(a, h, w).to(fc.weight.dtype))
    mixer.branches = nn.ModuleList([branches[fc_index]])
    mixer.cfg = dataclasses.replace(cfg, branches=(cfg.branches[fc_index],))
    return True


@torch.no_grad()
def reparameterize_model(model: nn.Module) -> int:
    """Fold BN into the preceding convs and conv branches into the FCs, in place.

    The model is put in eval mode (the folds are exact only with BN's running statistics).
    Its ``cfg`` (when it has one) is updated to the deploy form.

    Returns:
        The number of mixers folded.
    """
    from affinity.models.layers import ChannelMlp, ConvBnRelu
    from affinity.ops.mixer import ContextAggregation

    model.eval()
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, ChannelMlp):
            for conv_name, bn_name in (("fc1", "norm1"), ("fc2", "norm2")):
                bn = getattr(module, bn_name)
                if isinstance(bn, nn.BatchNorm2d):
                    setattr(module, conv_name, fuse_conv_bn(getattr(module, conv_name), bn))
                    setattr(module, bn_name, nn.Identity())
        elif isinstance(module, ConvBnRelu) and isinstance(module[1], nn.BatchNorm2d):
            module[0] = fuse_conv_bn(cast(nn.Conv2d, module[0]), module[1])
            module[1] = nn.Identity()
        elif isinstance(module, ContextAggregation):
            folded += int(fold_mixer(module))
    cfg = getattr(model, "cfg", None)
    if folded and cfg is not None and hasattr(cfg, "stages"):
        model.cfg = _deploy_cfg(cfg)
    return folded


def _deploy_cfg(cfg: Any) -> Any:
    """The config without the conv branches that fold into a token FC (RepMLPNet's deploy)."""
    stages = []
    for s in cfg.stages:
        kinds = [b.affinity for b in s.mixer.branches]
        if "token_mlp" in kinds and "dwconv" in kinds and set(kinds) == {"token_mlp", "dwconv"}:
            keep = tuple(b for b in s.mixer.branches if b.affinity == "token_mlp")
            s = dataclasses.replace(s, mixer=dataclasses.replace(s.mixer, branches=keep))
        stages.append(s)
    return dataclasses.replace(cfg, stages=tuple(stages))
