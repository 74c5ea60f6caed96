"""The one network every registered model is: stages of blocks around ContextAggregation mixers.

    stage  = embed (patch embedding / downsampling) [-> class token + position embedding]
             -> depth × Block
    Block:   [x = x + pos_mixer(x)]
             x = x + DropPath(LayerScale(mixer(norm1(x)) [* gate(norm1(x))]))
             x = x + DropPath(LayerScale(channel_mlp(norm2(x))))
    head   = norm -> pool (average, or the class token) -> linear

Every token mixer (``mixer`` and ``pos_mixer``) is a ``ContextAggregation`` built from its
``MixerCfg``; nothing else here mixes tokens. Layout (B, C, H, W) throughout; a class-token
sequence is a (B, C, 1, 1+N) map.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from affinity.errors import ConfigError, check_int
from affinity.models.config import ModelCfg, StageCfg
from affinity.models.layers import (
    ChannelMlp,
    ClassTokenPos,
    ConvBnRelu,
    DropPath,
    GlobalPerceptron,
    LayerScale,
    PatchEmbed,
    PatchMerging,
    PointwiseConv,
    make_norm,
)
from affinity.models.pretrained import PretrainedCfg
from affinity.ops.config import MixerCfg
from affinity.ops.layers import hooked


def _context_aggregation() -> Any:
    from affinity.ops.mixer import ContextAggregation

    return ContextAggregation


class Block(nn.Module):
    """Pre-norm residual block: token mixer, then channel MLP (see the module docstring).

    Args:
        dim: channels.
        hw: the map's (H, W) (tied affinities need it).
        mixer: the token mixer's config.
        pos_mixer: a residual mixer before the block (Container's dw3×3 position code), or None.
        norm: pre-norm kind; eps its epsilon.
        channel_mlp_ratio: channel MLP hidden width over ``dim``.
        mlp_act: channel MLP activation; mlp_bias its biases; mlp_norm its norms.
        layer_scale: LayerScale initial value, or None.
        drop_path: stochastic depth rate of this block.
        gate: ``global_perceptron`` or None; gate_reduce its reduction.
        style: ``prenorm``, or ``convmixer``: ``x + mixer(x)`` then ``norm(act(pw(x)))``, no
            pre-norms and no residual around the pointwise conv (``norm`` and ``mlp_act`` are
            its norm and activation).
    """

    def __init__(
        self,
        *,
        dim: int,
        hw: tuple[int, int],
        mixer: MixerCfg,
        pos_mixer: MixerCfg | None = None,
        norm: str = "layernorm",
        eps: float = 1e-5,
        channel_mlp_ratio: float = 4.0,
        mlp_act: str = "gelu",
        mlp_bias: bool = True,
        mlp_norm: str | None = None,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        gate: str | None = None,
        gate_reduce: int = 4,
        style: str = "prenorm",
    ) -> None:
        super().__init__()
        aggregation = _context_aggregation()
        self.style = style
        self.pos_mixer = None if pos_mixer is None else aggregation.from_cfg(pos_mixer, dim=dim, hw=hw)
        self.norm1 = make_norm(norm, dim, eps) if style == "prenorm" else nn.Identity()
        self.mixer = aggregation.from_cfg(mixer, dim=dim, hw=hw)
        self.gate = GlobalPerceptron(dim, max(1, dim // gate_reduce)) if gate else None
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2: nn.Module = nn.Identity()
        self.mlp: nn.Module | None = None
        if style == "convmixer":
            self.mlp = PointwiseConv(dim, act=mlp_act, norm=norm, eps=eps)
        elif channel_mlp_ratio > 0:  # 0: no channel MLP (gMLP)
            self.norm2 = make_norm(norm, dim, eps)
            hidden = max(1, round(dim * channel_mlp_ratio))
            self.mlp = ChannelMlp(dim, hidden, act=mlp_act, bias=mlp_bias, norm=mlp_norm)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.pos_mixer is not None:
            x = x + self.pos_mixer(x)
        y = self.norm1(x)
        z = self.mixer(y)
        if self.gate is not None:
            z = z * self.gate(y)  # (B, C, 1, 1) channel gate
        z = self.drop_path(self.ls1(z))
        if self.gate is not None or isinstance(self.ls1, LayerScale):
            x = _residual(x, z, self.ls1)  # the gate's product or the scale's is fresh
        else:
            x = _residual(x, z, self.mixer) if self.mixer.fresh_output else x + z
        if self.mlp is None:
            return x
        if self.style == "convmixer":
            return self.mlp(x)
        y = self.drop_path(self.ls2(self.mlp(self.norm2(x))))  # the MLP's or the scale's output
        return _residual(x, y, self.ls2 if isinstance(self.ls2, LayerScale) else self.mlp)


def _residual(x: Tensor, y: Tensor, source: nn.Module) -> Tensor:
    """``x + y`` written over ``y``, a fresh tensor of ``x``'s shape and layout that ``source``
    returned (or a module inside it), in eval without autograd, outside a trace and when no hook
    could hold ``y``: the same numbers (addition commutes) without allocating a third map,
    which at the first stages of batch 8 is out of the caches."""
    if (
        torch.is_grad_enabled()
        or torch.jit.is_tracing()
        or y.shape != x.shape
        or y.stride() != x.stride()
        or any(hooked(m) for m in source.modules())
    ):
        return x + y
    return y.add_(x)


class Stage(nn.Module):
    """An embedding then ``depth`` blocks at one resolution.

    Args:
        embed: the stage's patch embedding or downsampling.
        tokens: class token / position embedding, or None.
        blocks: the blocks.
        hw: the stage's map size (H, W), before any class token.
    """

    def __init__(
        self, embed: nn.Module, tokens: nn.Module | None, blocks: list[Block], hw: tuple[int, int]
    ) -> None:
        super().__init__()
        self.embed = embed
        self.tokens = tokens
        self.blocks = nn.Sequential(*blocks)
        self.hw = hw
        # the blocks' own ops (norms, channel MLPs, 1×1 convs) run as well or better so
        self.channels_last = all(
            type(a).channels_last
            for blk in blocks
            for mixer in (blk.mixer, blk.pos_mixer)
            if mixer is not None
            for a in mixer.branch_affinities()
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        if self.tokens is not None:
            x = self.tokens(x)
        if not self.channels_last:
            return self.blocks(x)
        x = x.contiguous(memory_format=torch.channels_last)  # (B, H, W, C) contiguous: no layout copies
        images = _images_per_part(x)
        whole = self.training or torch.is_grad_enabled() or torch.jit.is_tracing()
        if whole or images >= x.shape[0] or x.device.type != "cpu":
            return self.blocks(x)
        # in eval mode every block treats each image alone: parts of a large map give the same
        # numbers, and their activations stay in the caches from one op to the next
        return torch.cat([self.blocks(part) for part in x.split(images)])


#: on the CPU, a channels-last stage whose map is larger than this runs its blocks in parts of
#: the batch of about ``_PART_TOKENS`` tokens (at least one image) in eval mode without autograd
#: (nor in a trace, which would fix the batch size). Never on CUDA: there each part is a launch
#: of every kernel (an H200 at batch 256 with float16 autocast, before this was CPU-only:
#: deit_s 7790 kernels and 148 ms a forward against timm's 313 and 13 ms; as_mlp_t 66858).
#: Batch 8, one thread: swin_t / as_mlp_t's first two stages (9.6, 4.8 MB) 5-15% faster by
#: parts of 1 and 2 images, the next two (2.4, 1.2 MB) 2-60% slower, their products too short.
_SPLIT_BYTES = 4 * 2**20
_PART_TOKENS = 2048


def _images_per_part(x: Tensor) -> int:
    if x.numel() * x.element_size() <= _SPLIT_BYTES:
        return x.shape[0]
    return max(1, _PART_TOKENS // (x.shape[2] * x.shape[3]))


class AffinityNet(nn.Module):
    """A network built from a ``ModelCfg`` (timm-like interface).

    Args:
        cfg: the architecture.
        num_classes: classifier outputs (0: no classifier, features only).
        img_size: input side (square inputs); must be divisible by ``cfg.stride``.
        in_chans: input channels.
    """

    #: the registered name or YAML path it was built from ("custom" for a bare config)
    name: str = "custom"
    #: what loading its checkpoint did (an ``affinity.checkpoints.LoadReport``), None without one
    load_report: Any = None

    def __init__(
        self,
        cfg: ModelCfg,
        *,
        num_classes: int = 1000,
        img_size: int = 224,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        _check_build(cfg, num_classes=num_classes, img_size=img_size, in_chans=in_chans)
        if not (isinstance(drop_rate, (int, float)) and 0.0 <= drop_rate < 1.0):
            raise ConfigError(f"drop_rate={drop_rate!r} is not allowed: a number in [0, 1)")
        self.cfg = cfg
        self.num_classes = num_classes
        self.img_size = img_size
        self.in_chans = in_chans
        #: the input recipe of the weights (create_model sets the registered model's or the
        #: checkpoint's); see affinity.models.pretrained
        self.pretrained_cfg = PretrainedCfg().for_model(
            num_classes=num_classes, img_size=img_size, in_chans=in_chans
        )
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        ls = cfg.layer_scale_init()
        stages: list[Stage] = []
        side, prev, k = img_size, in_chans, 0
        for i, s in enumerate(cfg.stages):
            side //= s.patch_size
            hw = (side, side)
            embed = _embed(cfg, i, prev, s)
            tokens = None
            seq_hw = hw
            if cfg.class_token or cfg.pos_embed:
                tokens = ClassTokenPos(s.dim, hw, class_token=cfg.class_token, pos_embed=cfg.pos_embed)
                seq_hw = (1, side * side + 1) if cfg.class_token else hw
            blocks = []
            for j in range(s.depth):
                blocks.append(
                    Block(
                        dim=s.dim,
                        hw=seq_hw,
                        mixer=adapt_mixer(
                            s.mixer_of(j), seq_hw, where=f"stages[{i}].mixer", img_size=img_size
                        ),
                        pos_mixer=s.pos_mixer,
                        norm=cfg.norm,
                        eps=cfg.norm_eps,
                        channel_mlp_ratio=s.channel_mlp_ratio,
                        mlp_act=cfg.channel_mlp_act,
                        mlp_bias=cfg.channel_mlp_bias,
                        mlp_norm=cfg.channel_mlp_norm,
                        layer_scale=ls,
                        drop_path=rates[k],
                        gate=cfg.gate,
                        gate_reduce=cfg.gate_reduce,
                        style=cfg.block,
                    )
                )
                k += 1
            stages.append(Stage(embed, tokens, blocks, hw))
            prev = s.dim
        self.stages = nn.ModuleList(stages)
        self.num_features = prev
        self.head_norm = make_norm(cfg.head_norm, prev, cfg.norm_eps)
        self.head_drop = nn.Dropout(drop_rate)
        self.head: nn.Module = self._make_head(num_classes)
        self.feature_info = self._feature_info(img_size)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def forward_features(self, x: Tensor) -> Tensor:
        """Input (B, in_chans, H, W) -> the last stage's normalised map (B, C, h, w)."""
        for stage in self.stages:
            x = stage(x)
        return self.head_norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool the features (average, or the class token) and classify."""
        x = x[:, :, 0, 0] if self.cfg.pool == "token" else x.mean(dim=(2, 3))  # (B, C)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    # --- timm's model API ------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The classifier (``nn.Identity`` when built with ``num_classes=0``)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: none).

        Args:
            num_classes: outputs of the new classifier.
            global_pool: ``avg`` or ``token`` (class-token models) to change the pooling too.
        """
        check_int("num_classes", num_classes, 0)
        if global_pool is not None:
            self.cfg = dataclasses.replace(self.cfg, pool=global_pool)
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)
        self.pretrained_cfg = self.pretrained_cfg.replace(num_classes=num_classes)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to train without weight decay: position embeddings, class tokens
        and relative position tables (as timm's ViT and Swin)."""
        return {n for n, _ in self.named_parameters() if n.rsplit(".", 1)[-1] in _NO_DECAY}

    def _feature_info(self, img_size: int) -> list[dict[str, Any]]:
        """timm's ``feature_info``: one entry per feature point (every block of an isotropic
        model, every stage of a hierarchical one), with its channels and stride."""
        info = []
        stride = 1
        for i, s in enumerate(self.cfg.stages):
            stride *= s.patch_size
            names = (
                [f"stages.{i}.blocks.{j}" for j in range(s.depth)]
                if self.cfg.family == "isotropic"
                else [f"stages.{i}"]
            )
            info += [{"num_chs": s.dim, "reduction": stride, "module": n} for n in names]
        return info

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's ``forward_intermediates``: the maps at the feature points ``feature_info`` lists.

        Args:
            x: input (B, in_chans, H, W).
            indices: the last n points (an int), the points at these indices (negative from
                the end), or None for all.
            norm: apply the head norm to each intermediate.
            stop_early: stop after the last requested point (``intermediates_only`` only).
            output_fmt: ``NCHW`` (the only layout; a class token is dropped and the patch
                tokens laid out on their grid) .
            intermediates_only: return the intermediates alone.

        Returns:
            ``(final features as forward_features, [intermediates])`` or the intermediates.
        """
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt={output_fmt!r} is not allowed: only 'NCHW'")
        n = len(self.feature_info)
        take = _feature_indices(indices, n)
        out: list[Tensor] = []
        point = 0
        last = max(take) if take else -1
        for stage in self.stages:
            assert isinstance(stage, Stage)
            if self.cfg.family == "isotropic":
                x = stage.embed(x)
                h, w = x.shape[2], x.shape[3]
                if stage.tokens is not None:
                    x = stage.tokens(x)
                for block in stage.blocks:
                    x = block(x)
                    if point in take:
                        out.append(self._as_map(x, h, w, norm))
                    point += 1
                    if stop_early and intermediates_only and point > last:
                        return out
            else:
                x = stage(x)
                if point in take:
                    out.append(self.head_norm(x) if norm else x)
                point += 1
                if stop_early and intermediates_only and point > last:
                    return out
        if intermediates_only:
            return out
        return self.head_norm(x), out

    def _as_map(self, x: Tensor, h: int, w: int, norm: bool) -> Tensor:
        if norm:
            x = self.head_norm(x)
        if x.shape[2] * x.shape[3] != h * w:  # (B, C, 1, 1+N): drop the class token
            x = x.flatten(2)[:, :, -h * w :].reshape(x.shape[0], x.shape[1], h, w)
        return x

    @torch.no_grad()
    def reparameterize(self) -> AffinityNet:
        """Fold every mixer's train-time branches into one affinity where possible (RepMLP).

        See ``affinity.models.reparam``; returns ``self`` (in eval mode).
        """
        from affinity.models.reparam import reparameterize_model

        reparameterize_model(self)
        return self


#: parameter names (last component) trained without weight decay
_NO_DECAY = {"cls_token", "pos_embed", "rel_pos_table"}


def _feature_indices(indices: int | list[int] | None, n: int) -> set[int]:
    if indices is None:
        return set(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ConfigError(f"indices={indices} is not allowed: 1..{n} (the last n feature points)")
        return set(range(n - indices, n))
    out = set()
    for i in indices:
        if not -n <= i < n:
            raise ConfigError(f"indices={list(indices)} is not allowed: each in [-{n}, {n})")
        out.add(i % n)
    return out


def _embed(cfg: ModelCfg, i: int, in_dim: int, s: StageCfg) -> nn.Module:
    kind = cfg.stem if i == 0 else cfg.downsample
    if kind in ("patch", "overlap"):
        return PatchEmbed(
            in_dim,
            s.dim,
            s.patch_size,
            norm=cfg.embed_norm,
            eps=cfg.norm_eps,
            overlap=kind == "overlap",
            act=cfg.embed_act,
        )
    if kind == "conv_bn_relu":
        return ConvBnRelu(in_dim, s.dim, s.patch_size)
    return PatchMerging(in_dim, s.dim, s.patch_size, norm=cfg.norm, eps=cfg.norm_eps)


def _check_build(cfg: ModelCfg, *, num_classes: int, img_size: int, in_chans: int) -> None:
    check_int("num_classes", num_classes, 0)
    check_int("img_size", img_size, 1)
    check_int("in_chans", in_chans, 1)
    if img_size % cfg.stride:
        ok = [m * cfg.stride for m in (1, 2, 4, 7, 8, 14)]
        raise ConfigError(
            f"img_size={img_size} is not allowed for this model: it must be divisible by the total "
            f"stride {cfg.stride} (product of the stages' patch sizes), e.g. {ok}"
        )


def adapt_mixer(mixer: MixerCfg, hw: tuple[int, int], *, where: str, img_size: int) -> MixerCfg:
    """Fit windowed attention to the map, as Swin does: a window as large as the map becomes
    the whole map with no shift; a map that the window does not tile is bad input."""
    branches = []
    changed = False
    for b in mixer.branches:
        window = b.params.get("window_size")
        if window is not None:
            h, w = hw
            if window >= min(h, w):
                if h != w:
                    raise ConfigError(
                        f"img_size={img_size}: {where} window_size={window} covers a non-square {h}x{w} map"
                    )
                b = dataclasses.replace(b, params={**b.params, "window_size": h, "shift_size": 0})
                changed = True
            elif h % window or w % window:
                raise ConfigError(
                    f"img_size={img_size} is not allowed: {where} has window_size={window}, which does not "
                    f"tile the {h}x{w} map there; use an img_size whose maps are multiples of {window}, "
                    f"or override window_size with a divisor of {h} (or a value >= {h})"
                )
        branches.append(b)
    return dataclasses.replace(mixer, branches=tuple(branches)) if changed else mixer
