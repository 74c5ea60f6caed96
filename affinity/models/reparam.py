"""Structural re-parameterisation (RepMLP, Ding et al. 2021, sec. 3.3; RepMLPNet, CVPR 2022).

After training, these folds turn a model into its deploy form with the same outputs:

- BatchNorm folds into the convolution before it (the channel MLP's conv-BN pairs, the
  conv-BN-ReLU embeddings): ``W' = W·γ/σ``, ``b' = (b − μ)·γ/σ + β``.
- Each mixer branch's BatchNorm over the share sets (``shared_batchnorm``: RepMLPNet's
  ``fc3_bn`` and the conv branches' BN) folds into its branch the same way, per set: the
  branch's kernel scaled by ``γ/σ``, its offset ``β − μγ/σ`` (plus its scaled bias).
- Each depthwise conv branch of a mixer folds into the mixer's dense token affinity (the
  FC): the conv is a linear map of the tokens, so running it on an identity matrix (one
  one-hot map per token) gives its N×N matrix, which is added to the FC's kernel of the same
  share set, its offset to the FC's bias. The conv branches are then dropped, and the FC
  (with a bias) is the mixer's one branch, without a norm.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from affinity.ops.mixer import SharedBatchNorm2d


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


def _branch_norm_affine(branch: Any, sets: int) -> tuple[Tensor, Tensor] | None:
    """The branch norm as per-set (scale, shift), each (S,) in float64, from its running
    statistics: ``γ/σ`` and ``β − μγ/σ``; None for no norm (``_foldable_norm`` checked it)."""
    norm = branch.norm
    if isinstance(norm, nn.Identity):
        return None
    assert isinstance(norm, SharedBatchNorm2d) and norm.sets == sets
    assert norm.running_var is not None and norm.running_mean is not None
    scale = torch.rsqrt(norm.running_var.double() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    return scale, shift


def _foldable_norm(branch: Any, sets: int, layout: str) -> bool:
    """No norm, or a ``shared_batchnorm`` with running statistics over the FC's share sets."""
    norm = branch.norm
    if isinstance(norm, nn.Identity):
        return True
    return (
        isinstance(norm, SharedBatchNorm2d)
        and norm.track_running_stats
        and norm.running_mean is not None
        and norm.sets == sets
        and (sets == 1 or norm.layout == layout)
    )


def fold_mixer(mixer: Any) -> bool:
    """Fold a mixer's branch norms and depthwise-conv branches into its token-FC branch; True
    when it did.

    Applies to parallel mixers whose branches are one ``token_mlp`` (N→N) and ``dwconv``
    branches with the same share sets and layout, none with a projection or activation, each
    with no norm or a ``shared_batchnorm`` over those sets, and with ``sum`` coefficients
    (RepMLPNet's). Others are left unchanged. As RepMLPNet's ``get_equivalent_fc3``, with
    each branch ``y = scale_s·(A_s v + b_s) + shift_s`` per share set s (the norm from its
    running statistics, as in eval mode):

    - the FC matrix and each conv's matrix (the conv run on an identity matrix) are scaled by
      their own norm's ``γ/σ`` per set and summed into one (S, N, N) matrix;
    - the biases (conv biases, FC bias, norm shifts ``β − μγ/σ``) are scaled likewise and
      summed into the FC's per-set, per-token bias.

    The mixer keeps one branch, the FC without a norm, with a bias when any branch had a bias
    or a norm; its ``cfg`` is updated to match. Computed in float64, stored in the FC's dtype.
    """
    from affinity.ops.mixer import Branch
    from affinity.ops.token_mlp import TokenMLP

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
    sets, layout = fc.heads, fc.share_layout
    if fc.in_tokens != h * w or fc.out_tokens != h * w:
        return False
    for b in branches:
        a = b.affinity
        if a.name == "dwconv" and (a.share != sets or (sets > 1 and a.share_layout != layout)):
            return False
        if not _foldable_norm(b, sets, layout):
            return False
    n = h * w
    weight = torch.zeros(sets, n, n, dtype=torch.float64, device=fc.weight.device)
    bias = torch.zeros(sets, n, dtype=torch.float64, device=fc.weight.device)
    has_bias = False
    for b in branches:
        a = b.affinity
        if a.name == "dwconv":
            mat = conv_as_matrix(a, h, w).double()  # (S, N, N)
            off = None if a.bias is None else a.bias.double()[:, None].expand(sets, n)
        else:
            mat = a.weight.double()
            off = None if a.bias is None else a.bias.double()
        affine = _branch_norm_affine(b, sets)
        if affine is not None:
            scale, shift = affine
            mat = mat * scale[:, None, None]
            off = shift[:, None].expand(sets, n) if off is None else off * scale[:, None] + shift[:, None]
        weight += mat
        if off is not None:
            bias += off
            has_bias = True
    deploy = TokenMLP(dim=fc.dim, hw=fc.hw, heads=sets, share_layout=layout, bias=has_bias).to(
        device=fc.weight.device, dtype=fc.weight.dtype
    )
    deploy.weight.copy_(weight)
    if deploy.bias is not None:
        deploy.bias.copy_(bias)
    mixer.branches = nn.ModuleList([Branch(deploy, dim=fc.dim, proj=False, act=None)])
    fc_cfg = cfg.branches[fc_index]
    mixer.cfg = dataclasses.replace(
        cfg,
        branches=(dataclasses.replace(fc_cfg, params={**fc_cfg.params, "bias": has_bias}, norm=None),),
    )
    return True


@torch.no_grad()
def reparameterize_model(model: nn.Module) -> int:
    """Fold BN into the preceding convs, and branch norms and conv branches into the FCs, in place.

    The model is put in eval mode (the folds are exact only with BN's running statistics).
    Its ``cfg`` (when it has one) is updated to the deploy form.

    Returns:
        The number of mixers folded.
    """
    from affinity.models.layers import ChannelMlp, ConvBnRelu
    from affinity.ops.mixer import ContextAggregation

    model.eval()
    deploy: list[tuple[Any, Any]] = []  # (train-time MixerCfg, deploy MixerCfg)
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
            before = module.cfg
            if fold_mixer(module):
                deploy.append((before, module.cfg))
    cfg = getattr(model, "cfg", None)
    if deploy and cfg is not None and hasattr(cfg, "stages"):
        model.cfg = _deploy_cfg(cfg, deploy)
    return len(deploy)


def _deploy_cfg(cfg: Any, deploy: list[tuple[Any, Any]]) -> Any:
    """The model config with each folded mixer config replaced by its deploy form (the
    configs the built mixers were folded from, matched by equality)."""

    def replace(mixer: Any) -> Any:
        for before, after in deploy:
            if mixer == before:
                return after
        return mixer

    stages = []
    for s in cfg.stages:
        changes = {name: replace(m) for name, m in s.mixers().items() if m is not None}
        stages.append(dataclasses.replace(s, **changes))
    return dataclasses.replace(cfg, stages=tuple(stages))
