"""Container's context aggregation, built from a ``MixerCfg`` (see ``affinity.ops.config``).

``Y = ((α·A(X) + β·A)·V)·W`` with ``V = proj_in(x)`` (Gao et al., "Container: Context
Aggregation Network", NeurIPS 2021); the block adds the residual ``+ X``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from affinity.errors import ConfigError
from affinity.ops.attention import Attention
from affinity.ops.base import AFFINITIES, Affinity
from affinity.ops.config import BranchCfg, MixerCfg
from affinity.ops.layers import Conv1x1, hooked, make_act, make_norm


def build_affinity(
    branch: BranchCfg, *, dim: int, hw: tuple[int, int] | None, where: str, dim_x: int | None = None
) -> Affinity:
    """The branch's affinity; unknown or reserved parameters name their path.

    ``dim_x`` (the mixer input's channels, when V is wider or narrower) goes to affinities
    that read ``x`` through their own projection (attention, spatial gating).
    """
    cls = AFFINITIES.get(branch.affinity)
    allowed = list(cls.param_names())
    for key in branch.params:
        if key not in allowed:
            raise ConfigError(
                f"{where}.params.{key} is not a parameter of affinity {branch.affinity!r}: "
                f"allowed {allowed} (dim and hw come from the mixer)"
            )
    params = dict(branch.params)
    if dim_x is not None and dim_x != dim and "dim_x" in allowed:
        params.setdefault("dim_x", dim_x)
    return cls(dim=dim, hw=hw, **params)


class SharedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over S share sets of a (B, C, H, W) map: channel c belongs to set c mod S
    (``interleaved``) or c // (C/S) (``consecutive``), and each set has one mean, variance,
    weight and bias, its statistics pooled over the set's C/S channels and all tokens.

    RepMLPNet's ``fc3_bn`` and conv-BN branches (Ding et al., CVPR 2022, released code):
    ``BatchNorm2d(S)`` on the map reshaped to (B·C/S, S, H, W), the interleaved layout.
    Both layouts are reshapes (no copy): interleaved to (B·C/S, S, H, W), consecutive to
    (B, S, C/S·H, W).

    Args:
        dim: channels C.
        sets: share sets S (divides C).
        layout: ``interleaved`` or ``consecutive``.
    """

    def __init__(self, dim: int, sets: int, layout: str) -> None:
        if sets < 1 or dim % sets:
            raise ConfigError(
                f"norm='shared_batchnorm' with share={sets} is not allowed: a divisor of dim={dim}"
            )
        if layout not in ("interleaved", "consecutive"):
            raise ConfigError(f"share_layout={layout!r} is not allowed: one of interleaved, consecutive")
        super().__init__(sets)
        self.dim = dim
        self.sets = sets
        self.layout = layout

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if c != self.dim:
            raise ConfigError(
                f"shared_batchnorm: input shape {tuple(x.shape)} is not allowed: "
                f"expected (B, {self.dim}, H, W)"
            )
        if self.layout == "interleaved":
            y = super().forward(x.reshape(b * c // self.sets, self.sets, h, w))
        else:
            y = super().forward(x.reshape(b, self.sets, c // self.sets * h, w))
        return y.reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"{self.dim}, sets={self.sets}, layout={self.layout!r}, eps={self.eps}"


def affinity_share_sets(affinity: Affinity) -> tuple[int, str] | None:
    """(S, layout) of an affinity with share sets (``dwconv``'s ``share``, ``token_mlp``'s
    ``heads``); None for affinities without them."""
    layout = getattr(affinity, "share_layout", None)
    if layout is None:
        return None
    sets = getattr(affinity, "share", None)
    if sets is None:
        sets = getattr(affinity, "heads", None)
    return None if sets is None else (int(sets), str(layout))


def make_branch_norm(name: str | None, affinity: Affinity, dim: int, where: str = "branch") -> nn.Module:
    """A branch's norm after its affinity (see ``affinity.ops.config.BRANCH_NORMS``)."""
    if name is None:
        return nn.Identity()
    if name == "batchnorm":
        return nn.BatchNorm2d(dim)
    if name == "shared_batchnorm":
        sets = affinity_share_sets(affinity)
        if sets is None:
            raise ConfigError(
                f"{where}.norm='shared_batchnorm' is not allowed for affinity {affinity.name!r}: it has no "
                "share sets (token_mlp, dwconv have); use norm='batchnorm' or None"
            )
        return SharedBatchNorm2d(dim, *sets)
    raise ConfigError(f"{where}.norm={name!r} is not allowed: one of batchnorm, shared_batchnorm, None")


class Branch(nn.Module):
    """``act(proj(norm(A(v, x))))``: one affinity with its optional norm, 1x1 projection and
    activation.

    Args:
        affinity: the affinity.
        dim: channels.
        proj: a 1x1 conv C->C with bias after the affinity (and its norm).
        act: activation name or None.
        norm: ``batchnorm`` | ``shared_batchnorm`` | None, right after the affinity.
        where: the branch's path, for error messages.
    """

    def __init__(
        self,
        affinity: Affinity,
        *,
        dim: int,
        proj: bool,
        act: str | None,
        norm: str | None = None,
        where: str = "branch",
    ) -> None:
        super().__init__()
        self.affinity: Affinity = affinity
        self.norm = make_branch_norm(norm, affinity, dim, where)
        self.proj: nn.Module = Conv1x1(dim, dim) if proj else nn.Identity()
        self.act = make_act(act)
        # a norm is not linear in training mode (batch statistics); kept out in eval mode too
        self.linear = not proj and act is None and norm is None and not getattr(affinity, "affine", False)

    def forward(self, v: Tensor, x: Tensor) -> Tensor:
        return self.after(self.affinity(v, x))

    def after(self, y: Tensor) -> Tensor:
        """What follows the affinity: its norm, projection and activation."""
        return self.act(self.proj(self.norm(y)))


class ContextAggregation(nn.Module):
    """Container's context aggregation (Gao et al. NeurIPS 2021), one token mixer.

    ``V = proj_in(x)``; parallel: ``U = Σ_b c_b · branch_b(V)``, serial:
    ``U = c_k·branch_k(… c_1·branch_1(V))``, with ``c_b = α`` for dynamic branches and ``β``
    for static ones; ``Y = proj_out(U)``. Coefficients: ``sum`` (all 1), ``fixed`` (α, β as
    given), ``learnable`` (α, β parameters initialised at the given values, one each per
    block or per head), ``convex`` (α = sigmoid(w), β = 1 − α, w initialised at 0, as
    Container's released code). Per-head coefficients take the head count from the branches'
    ``heads`` parameter (they must agree) and give each head's C/heads consecutive channels
    its own value.

    Args:
        dim: channels C of x (and V).
        branches: ``BranchCfg``s (or their dict form).
        hw: the map size (H, W); required by affinities tied to a token count.
        connection: ``parallel`` | ``serial``.
        coefficients: ``sum`` | ``fixed`` | ``learnable`` | ``convex``.
        alpha: coefficient of dynamic branches (fixed value or initial value).
        beta: coefficient of static branches.
        coef_per_head: one coefficient per head rather than per block.
        proj_in: ``V = x·W_v`` as a 1x1 conv; off: ``V = x``.
        proj_in_norm: norm after the input projection.
        proj_in_act: activation after it.
        proj_out: the output 1x1 conv ``W``; off: identity.
        proj_out_norm: norm before the output projection.
        proj_bias: biases on the input and output 1x1 convs.
        width_ratio: V has ``round(width_ratio·dim)`` channels (gMLP); the projections map to
            and from that width.
        value_norm: a norm on V after the input projection's activation (gMLP).
    """

    def __init__(
        self,
        *,
        dim: int,
        branches: Sequence[BranchCfg | Mapping[str, Any]],
        hw: tuple[int, int] | None = None,
        connection: str = "parallel",
        coefficients: str = "sum",
        alpha: float = 1.0,
        beta: float = 1.0,
        coef_per_head: bool = False,
        proj_in: bool = True,
        proj_in_norm: str | None = None,
        proj_in_act: str | None = None,
        proj_out: bool = True,
        proj_out_norm: str | None = None,
        proj_bias: bool = True,
        width_ratio: float = 1.0,
        value_norm: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ConfigError(f"dim={dim!r} is not allowed: a positive integer")
        if not isinstance(branches, (list, tuple)):
            raise ConfigError(f"branches={branches!r} is not allowed: a list of branches")
        cfg = MixerCfg(
            branches=tuple(
                b if isinstance(b, BranchCfg) else BranchCfg.from_dict(b, f"branches[{i}]")
                for i, b in enumerate(branches)
            ),
            connection=connection,
            coefficients=coefficients,
            alpha=alpha,
            beta=beta,
            coef_per_head=coef_per_head,
            proj_in=proj_in,
            proj_in_norm=proj_in_norm,
            proj_in_act=proj_in_act,
            proj_out=proj_out,
            proj_out_norm=proj_out_norm,
            proj_bias=proj_bias,
            width_ratio=width_ratio,
            value_norm=value_norm,
        )
        self.cfg = cfg
        self.dim = dim
        self.hw = tuple(hw) if hw is not None else None
        width = max(1, round(width_ratio * dim))
        self.width = width
        self.proj_in = nn.Sequential(
            Conv1x1(dim, width, bias=proj_bias) if proj_in else nn.Identity(),
            make_norm(proj_in_norm, width),
            make_act(proj_in_act),
            make_norm(value_norm, width),
        )
        self.branches = nn.ModuleList(
            Branch(
                build_affinity(b, dim=width, hw=hw, where=f"branches[{i}]", dim_x=dim),
                dim=width,
                proj=b.proj,
                act=b.act,
                norm=b.norm,
                where=f"branches[{i}]",
            )
            for i, b in enumerate(cfg.branches)
        )
        self.proj_out = nn.Sequential(
            make_norm(proj_out_norm, width),
            Conv1x1(width, dim, bias=proj_bias) if proj_out else nn.Identity(),
        )
        self.heads = self._coefficient_heads() if coef_per_head else 1
        #: fixed coefficients on each (dynamic, device, dtype) met: one copy from the host each
        self._fixed: dict[tuple[bool, torch.device, torch.dtype], Tensor] = {}
        n = self.heads
        if coefficients == "learnable":
            self.alpha = nn.Parameter(torch.full((n,), float(alpha)))
            self.beta = nn.Parameter(torch.full((n,), float(beta)))
        elif coefficients == "convex":
            self.w = nn.Parameter(torch.zeros(n))
        elif coefficients == "reweight":
            nb = len(cfg.branches)
            self.reweight = nn.Sequential(
                nn.Linear(width, max(1, width // 4)), nn.GELU(), nn.Linear(max(1, width // 4), width * nb)
            )
        # attention alone on V = proj_in(x): V, Q and K from one product (``forward``)
        self.joined_values = (
            proj_in
            and proj_in_norm is None
            and proj_in_act is None
            and value_norm is None
            and coefficients != "reweight"
            and len(self.branches) == 1
            and isinstance(self._branches()[0].affinity, Attention)
        )
        if hw is not None and connection == "parallel":
            shapes = {b.affinity.out_hw(*hw) for b in self._branches()}
            if len(shapes) > 1:
                raise ConfigError(
                    f"branches={[b.affinity for b in cfg.branches]} is not allowed in parallel: their "
                    f"outputs differ in size {sorted(shapes)}; use connection='serial'"
                )

    @classmethod
    def from_cfg(cls, cfg: MixerCfg, *, dim: int, hw: tuple[int, int] | None = None) -> ContextAggregation:
        """Build the mixer a ``MixerCfg`` describes, for ``dim`` channels on an ``hw`` map."""
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        return cls(dim=dim, hw=hw, **fields)

    def _coefficient_heads(self) -> int:
        heads = {int(b.params["heads"]) for b in self.cfg.branches if "heads" in b.params}
        if len(heads) != 1:
            raise ConfigError(
                f"coef_per_head=True is not allowed here: it needs the branches' 'heads' parameters "
                f"to give one head count, got {sorted(heads) or 'none'}"
            )
        (n,) = heads
        if self.dim % n:
            raise ConfigError(f"heads={n} is not allowed: a divisor of dim={self.dim}")
        return n

    def coefficient(self, dynamic: bool) -> Tensor | None:
        """The coefficient of dynamic (α) or static (β) branches, (1, C or 1, 1, 1); None for sum."""
        mode = self.cfg.coefficients
        if mode in ("sum", "reweight"):  # reweight: per image, computed in forward
            return None
        if mode == "fixed":  # kept as float64 so a float64 mixer sees the exact value
            return torch.tensor(self.cfg.alpha if dynamic else self.cfg.beta, dtype=torch.float64).view(
                1, 1, 1, 1
            )
        if mode == "convex":
            a = torch.sigmoid(self.w)
            c = a if dynamic else 1 - a
        else:
            c = self.alpha if dynamic else self.beta
        if self.heads > 1:
            c = c.repeat_interleave(self.dim // self.heads)
        return c.view(1, -1, 1, 1)

    @property
    def fresh_output(self) -> bool:
        """True when ``forward`` returns a tensor of its own (an output projection's or norm's),
        never a view of its input or of a parameter: a caller may write over it."""
        return any(not isinstance(m, nn.Identity) for m in self.proj_out)

    def _branches(self) -> list[Branch]:
        return [cast(Branch, b) for b in self.branches]

    def branch_affinities(self) -> list[Affinity]:
        """The affinities in branch order."""
        return [b.affinity for b in self._branches()]

    @property
    def is_linear(self) -> bool:
        """True when the aggregation between proj_in and proj_out is a per-channel linear map of V.

        That holds without norms or activations around V, without branch norms, projections
        or activations, and with affinities that have no offset (bias). A branch norm counts
        as non-linear even in eval mode (where BatchNorm is a per-channel affine map), since
        its offset is not a token matrix; ``reparameterize`` folds it instead.
        """
        cfg = self.cfg
        return (
            cfg.proj_in_norm is None
            and cfg.proj_in_act is None
            and cfg.value_norm is None
            and cfg.proj_out_norm is None
            and cfg.coefficients != "reweight"  # weights computed from V: not linear in it
            and all(b.linear and b.affinity.channel_block == 1 for b in self._branches())
        )

    def forward(self, x: Tensor) -> Tensor:
        # a trace (fvcore, ONNX) and hooks on the affinity (reports) see the plain calls
        if self.joined_values and not torch.jit.is_tracing():
            (branch,) = self._branches()
            attention = cast(Attention, branch.affinity)
            if not (hooked(attention) or hooked(self.proj_in[0])):
                y = attention.forward_with_values(x, cast(Conv1x1, self.proj_in[0]))  # A(x)·proj_in(x)
                return self.proj_out(self._scaled(branch, branch.after(y)))
        v = self.proj_in(x)  # (B, C, H, W)
        return self.proj_out(self.aggregate(v, x))

    def aggregate(self, v: Tensor, x: Tensor) -> Tensor:
        """``U`` from ``V``: the branches, weighted and combined (what lies between ``proj_in``
        and ``proj_out``); ``x`` is the mixer input the dynamic affinities read."""
        u: Tensor | None = None
        if self.cfg.connection == "parallel" and self.cfg.coefficients == "reweight":
            u = self._reweighted([b(v, x) for b in self._branches()])
        elif self.cfg.connection == "parallel":
            for b in self._branches():
                y = self._scaled(b, b(v, x))
                u = y if u is None else u + y
            assert u is not None
        else:
            u = v
            for b in self._branches():
                u = self._scaled(b, b(u, x))
        return u

    def _reweighted(self, ys: list[Tensor]) -> Tensor:
        """``Σ_k a_k ⊙ y_k`` with ``a = softmax_k(MLP(mean_tokens(Σ_k y_k)))`` per image and
        channel (CycleMLP / ViP ``reweight``; the MLP's outputs are laid out (C, branches))."""
        b, c = ys[0].shape[:2]
        pooled = torch.stack(ys).sum(0).mean(dim=(2, 3))  # (B, C)
        a = self.reweight(pooled).reshape(b, c, len(ys)).permute(2, 0, 1).softmax(dim=0)  # (n, B, C)
        out = ys[0] * a[0, :, :, None, None]
        for k in range(1, len(ys)):
            out = out + ys[k] * a[k, :, :, None, None]
        return out

    def _scaled(self, branch: Branch, y: Tensor) -> Tensor:
        dynamic = type(branch.affinity).dynamic
        if self.cfg.coefficients == "fixed":  # a constant: moved to y's device once, not per call
            key = (dynamic, y.device, y.dtype)
            if key not in self._fixed:
                with torch.inference_mode(False):  # a training step may save it for backward
                    self._fixed[key] = cast(Tensor, self.coefficient(dynamic)).to(y)
            return y * self._fixed[key]
        c = self.coefficient(dynamic)
        return y if c is None else y * c.to(y)

    def materialize(self, x: Tensor) -> Tensor:
        """The aggregation's effective per-channel matrix, (B or 1, C or 1, N_out, N_in).

        ``Σ_b c_b·A_b`` for parallel branches, ``c_k A_k ⋯ c_1 A_1`` for serial ones, so that
        ``forward(x) == proj_out(einsum('bcij,bcj->bci', M, proj_in(x)))``.

        Args:
            x: the mixer input (B, C, H, W) (dynamic affinities read it).

        Raises:
            ConfigError: when the mixer is not linear in V (see ``is_linear``).
        """
        if not self.is_linear:
            raise ConfigError(
                "materialize is not allowed for this mixer: it is not linear in V (norms or "
                "activations around V, branch norms, projections or activations, affinity biases, "
                "reweighting, or an affinity that mixes channels)"
            )
        return self.token_matrix(x)

    def token_matrix(self, x: Tensor) -> Tensor:
        """The affinities' combined matrix, ``Σ_b c_b·A_b`` (parallel) or ``c_k A_k ⋯ c_1 A_1``
        (serial), (B or 1, C or 1, N_out, N_in): ``materialize`` without its linearity check,
        so the affinities' offsets and whatever else the branches hold are left out."""
        total: Tensor | None = None
        for b in self._branches():
            a = b.affinity.materialize(x)
            c = self.coefficient(type(b.affinity).dynamic)
            if self.cfg.connection == "parallel":
                term = a if c is None else a * c.to(a)
                total = term if total is None else total + term
            else:
                total = a if total is None else a @ total
                total = total if c is None else total * c.to(total)
        assert total is not None
        return total
