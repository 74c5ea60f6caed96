"""The affinity protocol: one small base class every token mixer's affinity implements.

Layout, declared once: values ``v`` and block input ``x`` are ``(B, C, H, W)``; tokens are
the ``N = H·W`` positions in row-major order (token ``i = h·W + w``). A sequence with extra
tokens (a class token) is carried as a ``1 × N`` map; only spatially agnostic affinities
(attention, dense token affinities) accept such maps.

An affinity ``A`` maps values to aggregated values, ``out[b, c, i] = Σ_j A[b, c, i, j] ·
v[b, c, j] (+ offset[b, c, i])``. Two paths compute it:

- ``forward(v, x=None)``: the fast path. It never builds an N×N matrix when a cheaper
  equivalent exists (a shift is slicing, a depthwise conv is ``conv2d``, attention is
  ``scaled_dot_product_attention``). ``x`` feeds dynamic affinities (``A(X)``); static
  ones ignore it.
- ``materialize(x)``: the explicit matrix, ``(B or 1, C or 1, N_out, N_in)``; a size-1
  batch or channel dimension broadcasts (the affinity is shared). ``x`` supplies ``H, W``
  (and the data, for dynamic affinities).

``offset(x)`` is the affine part (ResMLP's token-FC bias), ``None`` for purely linear
affinities.

Channel blocks: an affinity whose matrix also mixes the channels inside consecutive blocks of
``k = channel_block`` channels (Vision Permutator's Permute-MLP mixes the S channels of a
segment with the tokens along one axis) materializes ``(B or 1, C/k or 1, k·N_out, k·N_in)``
over (channel-in-block, token) pairs, index ``s·N + i``; ``k = 1`` (every other affinity) is
the per-channel matrix above. ``reference(v, x)`` computes the output from ``materialize`` with one einsum;
the conformance tests prove ``forward == reference``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from affinity.errors import ConfigError, check_int
from affinity.ops._common import check_hw
from affinity.ops.params import Inert, Param, resolve
from affinity.registry import Registry

AFFINITIES: Registry[type[Affinity]] = Registry("affinity")


def register_affinity(name: str) -> Any:
    """Class decorator: register an ``Affinity`` subclass under ``name`` (sets ``cls.name``)."""

    def wrap(cls: type[Affinity]) -> type[Affinity]:
        cls.name = name
        return AFFINITIES.register(name, cls)

    return wrap


class Affinity(nn.Module, ABC):
    """Base class of all affinities (see the module docstring for the protocol).

    **Adding an affinity** is one file in ``affinity/ops/`` (every public module there is
    imported, so registration is the decorator) holding one class::

        @register_affinity("pool")
        class Pool(Affinity):  # docstring: the paper and equation it implements
            paper = "Pooling (PoolFormer, Yu et al., CVPR 2022): out = avgpool_k(v) - v"
            params = (Param("pool_size", 3, odd(), "side k of the pooling window"),)
            layout: ClassVar = {"proj_in": False, "proj_out": False}  # its paper's mixer

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)  # dim, hw and every declared parameter checked
                self.pool_size: int = self.hparams["pool_size"]

            def forward(self, v, x=None): ...      # the fast path
            def materialize(self, x): ...          # the explicit (B|1, C|1, N, N) matrix

    From that declaration alone the affinity is listed by ``affinity affinities``, usable
    in a ``BranchCfg`` and a model-config YAML, overridable (``--set pool_size=5``), and a
    search kind of its own name whose parameters are its ``search=True`` params, built as
    one branch inside ``layout`` (``MixerCfg`` fields). ``inert`` declares parameters that
    change nothing under some values of the others (``Inert``; the search then treats such
    proposals as one configuration, ``affinity.ops.canonical``). A model-zoo entry
    (``affinity/models/zoo.py``) is the only other place a published model needs.

    Constructor arguments are keyword-only: ``dim`` (channels of ``v``), ``hw`` (the input
    map's ``(H, W)``, required by affinities tied to a token count, else optional and used
    to check map limits early) and the declared hyperparameters. ``Affinity.__init__``
    checks each against its ``Param`` rule and fills defaults into ``self.hparams``;
    conditions between parameters, or on ``dim``/``hw``, are the subclass's to check,
    raising ``ConfigError`` that names the parameter, the value and what is allowed.
    """

    name: ClassVar[str] = ""
    #: True when the matrix depends on the input (``A(X)``), False for a static ``A``.
    dynamic: ClassVar[bool] = False
    #: Paper and equation, one line, shown by ``affinity affinities``.
    paper: ClassVar[str] = ""
    #: channels coupled by the matrix (see the module docstring); 1: a matrix per channel.
    channel_block: int = 1
    #: True when the fast path reads tokens with their channels adjacent (a channels-last
    #: map, ``torch.channels_last``) without copying: blocks whose mixers all say so run
    #: channels-last (``affinity.models.network.Stage``). A speed hint; any layout works.
    channels_last: ClassVar[bool] = False
    #: Its hyperparameters, declared once (see ``affinity.ops.params``).
    params: ClassVar[tuple[Param, ...]] = ()
    #: Parameters that change nothing under some values of the others (canonical forms).
    inert: ClassVar[tuple[Inert, ...]] = ()
    #: ``MixerCfg`` fields of the mixer its paper puts it in: the search kind of an affinity
    #: without a published kind in ``affinity.search.kinds`` is one branch inside them.
    layout: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def __init__(self, *, dim: int, hw: tuple[int, int] | None = None, **params: Any) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, 1)
        #: the map size given at construction (None: checked at the first forward)
        self.given_hw: tuple[int, int] | None = check_hw(hw)
        #: every declared hyperparameter, given or default
        self.hparams: dict[str, Any] = resolve(self.params, params, f"affinity {self.name!r}")

    def required_hw(self) -> tuple[int, int]:
        """The map size given at construction, for an affinity tied to its token count."""
        if self.given_hw is None:
            raise ConfigError(f"hw=None is not allowed for {self.name}: give the map size (H, W)")
        return self.given_hw

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The declared hyperparameter names (``dim`` and ``hw`` come from the mixer)."""
        return tuple(p.name for p in cls.params)

    @abstractmethod
    def forward(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        """Aggregate ``v`` (B, C, H, W) -> (B, C, H_out, W_out); usually H_out, W_out = H, W."""

    @abstractmethod
    def materialize(self, x: Tensor) -> Tensor:
        """The explicit affinity, (B or 1, C or 1, N_out, N_in), for input ``x`` (B, C_x, H, W)."""

    def offset(self, x: Tensor) -> Tensor | None:
        """The additive term (B or 1, C or 1, N_out), or None when the affinity is linear."""
        return None

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """Spatial shape of the output for an (h, w) input."""
        return h, w

    def reference(self, v: Tensor, x: Tensor | None = None) -> Tensor:
        """Slow exact path: ``einsum('bcij,bcj->bci', materialize(x), v)`` (+ offset)."""
        x = v if x is None else x
        a = self.materialize(x)
        b, c, k = v.shape[0], v.shape[1], self.channel_block
        flat = v.reshape(b, c // k, k * v.shape[2] * v.shape[3])  # (B, C/k, k·N): block-major
        out = torch.einsum("bcij,bcj->bci", a.expand(b, c // k, -1, -1), flat).reshape(b, c, -1)
        off = self.offset(x)
        if off is not None:
            out = out + off
        return out.reshape(b, c, *self.out_hw(v.shape[2], v.shape[3]))

    def extra_repr(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"name={self.name!r}, dynamic={self.dynamic}" + (f", {shown}" if shown else "")


def create_affinity(name: str, **kwargs: Any) -> Affinity:
    """Build the affinity registered as ``name`` with keyword arguments (dim, hw, ...)."""
    return AFFINITIES.get(name)(**kwargs)
