"""Reference checkpoint layouts, written out as the sources name and shape them (small configs),
and the sources' forward passes re-derived from their code as plain functions of those tensors.

Read from: timm 1.0 ``mlp_mixer.py`` (MlpMixer with MixerBlock / ResBlock + Affine),
``vision_transformer.py`` (VisionTransformer), ``swin_transformer.py`` (SwinTransformer);
svip-lab/AS-MLP ``models/as_mlp.py``; DingXiaoH/RepMLP ``repmlpnet.py``; allenai/container
``models.py`` (``container_v1_light``). Nothing here imports them: the timm layouts are
compared against timm itself where it is installed (test_timm.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Layout = dict[str, tuple[int, ...]]


def fill(layout: Layout, seed: int = 0) -> dict[str, Tensor]:
    """Random tensors of the layout's shapes (BatchNorm variances positive, counters integral)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=g) + 0.5
        else:
            out[name] = torch.randn(shape, generator=g) * 0.3
    return out


def _ln(prefix: str, c: int) -> Layout:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _bn(prefix: str, c: int) -> Layout:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def _linear(prefix: str, out: int, inp: int, *, conv: bool = False, bias: bool = True) -> Layout:
    d: Layout = {f"{prefix}.weight": (out, inp, 1, 1) if conv else (out, inp)}
    if bias:
        d[f"{prefix}.bias"] = (out,)
    return d


# --- timm -------------------------------------------------------------------------------------
def timm_mixer(*, c: int, n: int, ds: int, dc: int, p: int, depth: int, classes: int) -> Layout:
    """timm ``MlpMixer`` with ``MixerBlock``: stem, blocks (norm1, mlp_tokens, norm2,
    mlp_channels), norm, head."""
    d: Layout = {"stem.proj.weight": (c, 3, p, p), "stem.proj.bias": (c,)}
    for i in range(depth):
        b = f"blocks.{i}"
        d |= (
            _ln(f"{b}.norm1", c)
            | _linear(f"{b}.mlp_tokens.fc1", ds, n)
            | _linear(f"{b}.mlp_tokens.fc2", n, ds)
        )
        d |= (
            _ln(f"{b}.norm2", c)
            | _linear(f"{b}.mlp_channels.fc1", dc, c)
            | _linear(f"{b}.mlp_channels.fc2", c, dc)
        )
    return d | _ln("norm", c) | _linear("head", classes, c)


def timm_resmlp(*, c: int, n: int, p: int, depth: int, classes: int) -> Layout:
    """timm ``MlpMixer`` with ``ResBlock`` and ``Affine`` (alpha, beta of shape (1, 1, C))."""
    d: Layout = {"stem.proj.weight": (c, 3, p, p), "stem.proj.bias": (c,)}
    for i in range(depth):
        b = f"blocks.{i}"
        d |= {f"{b}.norm1.alpha": (1, 1, c), f"{b}.norm1.beta": (1, 1, c)}
        d |= _linear(f"{b}.linear_tokens", n, n)
        d |= {f"{b}.norm2.alpha": (1, 1, c), f"{b}.norm2.beta": (1, 1, c)}
        d |= _linear(f"{b}.mlp_channels.fc1", 4 * c, c) | _linear(f"{b}.mlp_channels.fc2", c, 4 * c)
        d |= {f"{b}.ls1": (c,), f"{b}.ls2": (c,)}
    return d | {"norm.alpha": (1, 1, c), "norm.beta": (1, 1, c)} | _linear("head", classes, c)


def timm_vit(*, c: int, n: int, p: int, depth: int, classes: int) -> Layout:
    """timm ``VisionTransformer`` (DeiT): cls_token (1, 1, C), pos_embed (1, 1+N, C), fused qkv."""
    d: Layout = {
        "cls_token": (1, 1, c),
        "pos_embed": (1, 1 + n, c),
        "patch_embed.proj.weight": (c, 3, p, p),
        "patch_embed.proj.bias": (c,),
    }
    for i in range(depth):
        b = f"blocks.{i}"
        d |= _ln(f"{b}.norm1", c) | _linear(f"{b}.attn.qkv", 3 * c, c) | _linear(f"{b}.attn.proj", c, c)
        d |= _ln(f"{b}.norm2", c) | _linear(f"{b}.mlp.fc1", 4 * c, c) | _linear(f"{b}.mlp.fc2", c, 4 * c)
    return d | _ln("norm", c) | _linear("head", classes, c)


def timm_swin(
    *,
    dims: tuple[int, ...],
    depths: tuple[int, ...],
    heads: tuple[int, ...],
    window: int,
    img: int,
    classes: int,
) -> Layout:
    """timm >= 0.9 ``SwinTransformer``: patch merging starts stages 1.. (``layers.i.downsample``,
    a Linear (2C, 4C)); a stage map smaller than the window takes the map as its window;
    ``relative_position_index`` and ``attn_mask`` are not persistent."""
    d: Layout = {"patch_embed.proj.weight": (dims[0], 3, 4, 4), "patch_embed.proj.bias": (dims[0],)}
    d |= _ln("patch_embed.norm", dims[0])
    for i, (c, depth, nh) in enumerate(zip(dims, depths, heads)):
        if i:
            d |= _ln(f"layers.{i}.downsample.norm", 4 * dims[i - 1])
            d[f"layers.{i}.downsample.reduction.weight"] = (c, 4 * dims[i - 1])
        ws = min(window, img // 4 // 2**i)
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}"
            d |= _ln(f"{b}.norm1", c)
            d[f"{b}.attn.relative_position_bias_table"] = ((2 * ws - 1) ** 2, nh)
            d |= _linear(f"{b}.attn.qkv", 3 * c, c) | _linear(f"{b}.attn.proj", c, c)
            d |= _ln(f"{b}.norm2", c) | _linear(f"{b}.mlp.fc1", 4 * c, c) | _linear(f"{b}.mlp.fc2", c, 4 * c)
    return d | _ln("norm", dims[-1]) | _linear("head.fc", classes, dims[-1])


def swin_msft_from_timm(state: dict[str, Tensor], window: int) -> dict[str, Tensor]:
    """The same weights in Microsoft's layout (timm < 0.9): merging ends stage i
    (``layers.{i-1}.downsample``), ``head`` without ``.fc``, and the persistent buffers
    ``relative_position_index`` and ``attn_mask`` (values irrelevant: recomputed)."""
    out = {}
    for k, v in state.items():
        if ".downsample." in k:
            i = int(k.split(".")[1])
            k = k.replace(f"layers.{i}.", f"layers.{i - 1}.", 1)
        k = k.replace("head.fc.", "head.")
        out[k] = v
        if k.endswith("relative_position_bias_table"):
            base = k.rsplit(".", 1)[0]
            out[base + ".relative_position_index"] = torch.zeros(window**2, window**2, dtype=torch.long)
            out[base.rsplit(".", 1)[0] + ".attn_mask"] = torch.zeros(1, window**2, window**2)
    return out


# --- AS-MLP -----------------------------------------------------------------------------------
def as_mlp(*, dims: tuple[int, ...], depths: tuple[int, ...], classes: int) -> Layout:
    """svip-lab/AS-MLP ``AS_MLP``: GroupNorm(1, C) everywhere, 1×1 convs (with bias) in the
    axial shift and the MLP, ``PatchMerging`` (norm over 4C, conv 4C -> 2C without bias) at
    the end of every stage but the last."""
    d: Layout = {"patch_embed.proj.weight": (dims[0], 3, 4, 4), "patch_embed.proj.bias": (dims[0],)}
    d |= _ln("patch_embed.norm", dims[0])
    for i, (c, depth) in enumerate(zip(dims, depths)):
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}"
            a = f"{b}.axial_shift"
            d |= _ln(f"{b}.norm1", c)
            for conv in ("conv1", "conv2_1", "conv2_2", "conv3"):
                d |= _linear(f"{a}.{conv}", c, c, conv=True)
            d |= _ln(f"{a}.norm1", c) | _ln(f"{a}.norm2", c) | _ln(f"{b}.norm2", c)
            d |= _linear(f"{b}.mlp.fc1", 4 * c, c, conv=True) | _linear(f"{b}.mlp.fc2", c, 4 * c, conv=True)
        if i < len(dims) - 1:
            d |= _ln(f"layers.{i}.downsample.norm", 4 * c)
            d[f"layers.{i}.downsample.reduction.weight"] = (dims[i + 1], 4 * c, 1, 1)
    return d | _ln("norm", dims[-1]) | _linear("head", classes, dims[-1])


def _gn(x: Tensor, w: dict[str, Tensor], p: str) -> Tensor:
    return F.group_norm(x, 1, w[f"{p}.weight"], w[f"{p}.bias"], eps=1e-5)


def _conv1(x: Tensor, w: dict[str, Tensor], p: str) -> Tensor:
    weight = w[f"{p}.weight"]
    return F.conv2d(x, weight.reshape(*weight.shape[:2], 1, 1), w.get(f"{p}.bias"))


def as_mlp_shift(x: Tensor, dim: int, shift_size: int) -> Tensor:
    """AS-MLP's reference shift (its commented formulation): zero-pad, chunk the channels
    into ``shift_size`` groups, roll group g by g − shift_size//2 along ``dim``, crop."""
    pad = shift_size // 2
    h, wd = x.shape[2], x.shape[3]
    x = F.pad(x, (pad, pad, pad, pad))
    groups = torch.chunk(x, shift_size, 1)
    x = torch.cat([torch.roll(g, s, dim) for g, s in zip(groups, range(-pad, pad + 1))], 1)
    return x[:, :, pad : pad + h, pad : pad + wd]


def merge_2x2(x: Tensor) -> Tensor:
    """Swin / AS-MLP patch merging's concatenation, as the sources write it."""
    return torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)


def as_mlp_forward(w: dict[str, Tensor], x: Tensor, depths: tuple[int, ...], shift_size: int = 5) -> Tensor:
    x = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=4)
    x = _gn(x, w, "patch_embed.norm")
    for i, depth in enumerate(depths):
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}"
            a = f"{b}.axial_shift"
            y = F.gelu(_gn(_conv1(_gn(x, w, f"{b}.norm1"), w, f"{a}.conv1"), w, f"{a}.norm1"))
            lr = F.gelu(_conv1(as_mlp_shift(y, 3, shift_size), w, f"{a}.conv2_1"))
            td = F.gelu(_conv1(as_mlp_shift(y, 2, shift_size), w, f"{a}.conv2_2"))
            x = x + _conv1(_gn(lr + td, w, f"{a}.norm2"), w, f"{a}.conv3")
            x = x + _conv1(F.gelu(_conv1(_gn(x, w, f"{b}.norm2"), w, f"{b}.mlp.fc1")), w, f"{b}.mlp.fc2")
        if i < len(depths) - 1:
            p = f"layers.{i}.downsample"
            x = _conv1(_gn(merge_2x2(x), w, f"{p}.norm"), w, f"{p}.reduction")
    x = _gn(x, w, "norm")
    return F.linear(x.mean((2, 3)), w["head.weight"], w["head.bias"])


# --- RepMLPNet --------------------------------------------------------------------------------
def repmlpnet(
    *,
    dims: tuple[int, ...],
    depths: tuple[int, ...],
    sides: tuple[int, ...],
    shares: tuple[int, ...],
    classes: int,
    deploy: bool = False,
    gp_reduce: int = 4,
) -> Layout:
    """DingXiaoH/RepMLP ``RepMLPNet`` (reparam_conv_k=(1, 3)); ``deploy``: after
    ``locality_injection`` (fc3 with a bias, no fc3_bn, no repconv)."""
    d: Layout = {"conv_embedding.conv.weight": (dims[0], 3, 4, 4)} | _bn("conv_embedding.bn", dims[0])
    for i, (c, depth, hw, s) in enumerate(zip(dims, depths, sides, shares)):
        n = hw * hw
        for j in range(depth):
            u = f"stages.{i}.{j}"
            r = f"{u}.repmlp_block"
            d |= _linear(f"{r}.gp.fc1", c // gp_reduce, c, conv=True)
            d |= _linear(f"{r}.gp.fc2", c, c // gp_reduce, conv=True)
            d[f"{r}.fc3.weight"] = (s * n, n, 1, 1)
            if deploy:
                d[f"{r}.fc3.bias"] = (s * n,)
            else:
                d |= _bn(f"{r}.fc3_bn", s)
                for k in (1, 3):
                    d[f"{r}.repconv{k}.conv.weight"] = (s, 1, k, k)
                    d |= _bn(f"{r}.repconv{k}.bn", s)
            d[f"{u}.ffn_block.ffn_fc1.conv.weight"] = (4 * c, c, 1, 1)
            d |= _bn(f"{u}.ffn_block.ffn_fc1.bn", 4 * c)
            d[f"{u}.ffn_block.ffn_fc2.conv.weight"] = (c, 4 * c, 1, 1)
            d |= _bn(f"{u}.ffn_block.ffn_fc2.bn", c)
            d |= _bn(f"{u}.prebn1", c) | _bn(f"{u}.prebn2", c)
        if i < len(dims) - 1:
            d[f"embeds.{i}.conv.weight"] = (dims[i + 1], c, 2, 2)
            d |= _bn(f"embeds.{i}.bn", dims[i + 1])
    return d | _bn("head_norm", dims[-1]) | _linear("head", classes, dims[-1])


def _bnf(x: Tensor, w: dict[str, Tensor], p: str) -> Tensor:
    return F.batch_norm(
        x, w[f"{p}.running_mean"], w[f"{p}.running_var"], w[f"{p}.weight"], w[f"{p}.bias"], False, 0.0, 1e-5
    )


def repmlpnet_forward(
    w: dict[str, Tensor], x: Tensor, depths: tuple[int, ...], shares: tuple[int, ...], deploy: bool = False
) -> Tensor:
    """RepMLPNet's forward in eval mode, one partition per map (h, w = the stage's map)."""
    x = F.relu(_bnf(F.conv2d(x, w["conv_embedding.conv.weight"], stride=4), w, "conv_embedding.bn"))
    for i, (depth, s) in enumerate(zip(depths, shares)):
        for j in range(depth):
            u = f"stages.{i}.{j}"
            r = f"{u}.repmlp_block"
            y = _bnf(x, w, f"{u}.prebn1")
            b, c, h, wd = y.shape
            gate = torch.sigmoid(
                _conv1(F.relu(_conv1(y.mean((2, 3), keepdim=True), w, f"{r}.gp.fc1")), w, f"{r}.gp.fc2")
            )
            # the grouped FC reads rows of S consecutive channels: channel c is share set c mod S
            fc = F.conv2d(
                y.reshape(-1, s * h * wd, 1, 1), w[f"{r}.fc3.weight"], w.get(f"{r}.fc3.bias"), groups=s
            )
            out = fc.reshape(-1, s, h, wd)
            if not deploy:
                out = _bnf(out, w, f"{r}.fc3_bn")
                parts = y.reshape(-1, s, h, wd)
                for k in (1, 3):
                    conv = F.conv2d(parts, w[f"{r}.repconv{k}.conv.weight"], padding=k // 2, groups=s)
                    out = out + _bnf(conv, w, f"{r}.repconv{k}.bn")
            x = x + out.reshape(b, c, h, wd) * gate
            f = f"{u}.ffn_block"
            z = _bnf(F.conv2d(_bnf(x, w, f"{u}.prebn2"), w[f"{f}.ffn_fc1.conv.weight"]), w, f"{f}.ffn_fc1.bn")
            x = x + _bnf(F.conv2d(F.gelu(z), w[f"{f}.ffn_fc2.conv.weight"]), w, f"{f}.ffn_fc2.bn")
        if i < len(depths) - 1:
            x = F.relu(_bnf(F.conv2d(x, w[f"embeds.{i}.conv.weight"], stride=2), w, f"embeds.{i}.bn"))
    x = _bnf(x, w, "head_norm")
    return F.linear(x.mean((2, 3)), w["head.weight"], w["head.bias"])


# --- Container-Light --------------------------------------------------------------------------
def container_light(
    *,
    dims: tuple[int, ...],
    depths: tuple[int, ...],
    ratios: tuple[int, ...],
    patches: tuple[int, ...],
    classes: int,
) -> Layout:
    """allenai/container ``container_v1_light``: ``patch_embed1..4`` (conv + LayerNorm),
    ``blocks1..3`` CBlocks (pos_embed, norm1, conv1, attn = 5×5 depthwise, conv2, norm2, mlp),
    ``blocks4`` MixBlocks (conv1 makes 3C: q | k | v; ``conv`` the 5×5 depthwise on v;
    ``sa_weight``), BatchNorm ``norm``, ``head``."""
    d: Layout = {}
    prev = 3
    for i, (c, depth, r, p) in enumerate(zip(dims, depths, ratios, patches)):
        d[f"patch_embed{i + 1}.proj.weight"] = (c, prev, p, p)
        d[f"patch_embed{i + 1}.proj.bias"] = (c,)
        d |= _ln(f"patch_embed{i + 1}.norm", c)
        for j in range(depth):
            b = f"blocks{i + 1}.{j}"
            d |= {f"{b}.pos_embed.weight": (c, 1, 3, 3), f"{b}.pos_embed.bias": (c,)}
            d |= _bn(f"{b}.norm1", c) | _bn(f"{b}.norm2", c)
            if i < 3:
                d |= _linear(f"{b}.conv1", c, c, conv=True)
                d |= {f"{b}.attn.weight": (c, 1, 5, 5), f"{b}.attn.bias": (c,)}
            else:
                d |= _linear(f"{b}.conv1", 3 * c, c, conv=True)
                d |= {f"{b}.conv.weight": (c, 1, 5, 5), f"{b}.conv.bias": (c,), f"{b}.sa_weight": (1,)}
            d |= _linear(f"{b}.conv2", c, c, conv=True)
            d |= _linear(f"{b}.mlp.fc1", r * c, c, conv=True) | _linear(f"{b}.mlp.fc2", c, r * c, conv=True)
        prev = c
    return d | _bn("norm", dims[-1]) | _linear("head", classes, dims[-1])


def container_attention(qkv: Tensor, heads: int) -> Tensor:
    """``Attention_pure`` on a (B, 3C, H, W) map: q | k | v along the channels, heads
    consecutive in each; returns (B, C, H, W)."""
    b, c3, h, wd = qkv.shape
    c = c3 // 3
    t = qkv.flatten(2).transpose(1, 2).reshape(b, h * wd, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = t[0], t[1], t[2]
    attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(-1)
    return (attn @ v).transpose(1, 2).reshape(b, h, wd, c).permute(0, 3, 1, 2)


def container_forward(
    w: dict[str, Tensor], x: Tensor, depths: tuple[int, ...], patches: tuple[int, ...], heads: int
) -> Tensor:
    for i, (depth, p) in enumerate(zip(depths, patches)):
        e = f"patch_embed{i + 1}"
        x = F.conv2d(x, w[f"{e}.proj.weight"], w[f"{e}.proj.bias"], stride=p)
        c = x.shape[1]
        x = F.layer_norm(x.permute(0, 2, 3, 1), (c,), w[f"{e}.norm.weight"], w[f"{e}.norm.bias"]).permute(
            0, 3, 1, 2
        )
        for j in range(depth):
            b = f"blocks{i + 1}.{j}"
            x = x + F.conv2d(x, w[f"{b}.pos_embed.weight"], w[f"{b}.pos_embed.bias"], padding=1, groups=c)
            y = _conv1(_bnf(x, w, f"{b}.norm1"), w, f"{b}.conv1")
            if i < 3:
                y = F.conv2d(y, w[f"{b}.attn.weight"], w[f"{b}.attn.bias"], padding=2, groups=c)
            else:
                conv = F.conv2d(
                    y[:, 2 * c :], w[f"{b}.conv.weight"], w[f"{b}.conv.bias"], padding=2, groups=c
                )
                alpha = torch.sigmoid(w[f"{b}.sa_weight"])
                y = alpha * container_attention(y, heads) + (1 - alpha) * conv
            x = x + _conv1(y, w, f"{b}.conv2")
            x = x + _conv1(F.gelu(_conv1(_bnf(x, w, f"{b}.norm2"), w, f"{b}.mlp.fc1")), w, f"{b}.mlp.fc2")
    x = _bnf(x, w, "norm")
    return F.linear(x.flatten(2).mean(-1), w["head.weight"], w["head.bias"])
