"""The proxies themselves, each registered once with its paper, and how a trial is scored.

A proxy is ``fn(model, batches) -> float``: ``model`` an untrained classifier, ``batches`` a
few ``(images, labels)`` minibatches of the study's training split. A proxy never changes
``model`` (it works on a copy where it must alter weights, gradients or BatchNorm
statistics). Proxies that run the network in training mode (dropout, drop-path) draw from
torch's global generator, which ``score_model`` seeds before each proxy: the same model,
batches and seed give the same score.

Every proxy sums over *all* the model's parameters, where Abdelfattah et al.'s code takes
the weights of ``Conv2d`` and ``Linear`` layers only: the token mixers here hold some of
their static affinities (token-mixing matrices, shift and filter weights) in raw
parameters, which that rule would leave out.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from affinity.registry import Registry

if TYPE_CHECKING:
    from affinity.data import DatasetSplits

__all__ = ["ACTIVATIONS", "PROXIES", "Batch", "Proxy", "ProxyFn", "Scores", "first_batches", "score_model"]

#: one minibatch: images (B, C, H, W) and integer labels (B,)
Batch = tuple[Tensor, Tensor]
ProxyFn = Callable[[nn.Module, Sequence[Batch]], float]


@dataclass(frozen=True)
class Proxy:
    """A registered proxy.

    Args:
        name: its registry name (``--proxies``).
        fn: ``fn(model, batches) -> float``.
        higher_is_better: a higher score predicts a higher trained accuracy (the correlations
            are taken with the score turned round when False).
        paper: where it comes from.
    """

    name: str
    fn: ProxyFn
    higher_is_better: bool
    paper: str


PROXIES: Registry[Proxy] = Registry("proxy")


def proxy(name: str, *, paper: str, higher_is_better: bool = True) -> Callable[[ProxyFn], ProxyFn]:
    """Register the decorated function as proxy ``name`` (the one declaration of a proxy)."""

    def register(fn: ProxyFn) -> ProxyFn:
        PROXIES.register(name, Proxy(name, fn, higher_is_better, paper))
        return fn

    return register


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _image_shape(batches: Sequence[Batch]) -> tuple[int, ...]:
    return tuple(batches[0][0].shape[1:])


@proxy("synflow", paper="Tanaka et al., Pruning neural networks without any data by iteratively "
       "conserving synaptic flow, NeurIPS 2020")  # fmt: skip
def synflow(model: nn.Module, batches: Sequence[Batch]) -> float:
    """SynFlow (Tanaka et al. 2020, eq. 2 and Theorem 2): ``Σ_θ |θ · ∂R/∂θ|`` where
    ``R = 1ᵀ f(1)`` is the sum of the outputs of the network with every parameter replaced by
    its absolute value, fed one all-ones image. No data is used but the image's shape.

    Computed in float64 (R grows as the product of the layers' weight norms) and in eval mode
    (BatchNorm with its initial statistics is an affine map, as in the paper's networks; batch
    statistics of one constant image would divide by zero). For a chain of L bias-free linear
    layers ``R = 1ᵀ|W_L|⋯|W_1|1`` and the score is ``L·R``: R is linear in each layer's
    weights, so each layer's ``Σ θ·∂R/∂θ`` is R itself (Euler's theorem).
    """
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    x = torch.ones((1, *_image_shape(batches)), dtype=torch.float64, device=_device(net))
    net(x).sum().backward()
    return _sensitivity(net)


#: the activation modules whose inputs give NASWOT its binary codes (unit active: input > 0)
ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Hardswish)


@proxy("naswot", paper="Mellor et al., Neural Architecture Search without Training, ICML 2021")
def naswot(model: nn.Module, batches: Sequence[Batch]) -> float:
    """NASWOT (Mellor et al. 2021, section 3): for a minibatch of N images, each image's binary
    code ``c_i`` marks which units of the rectified layers are active (input > 0), over every
    activation module of ``ACTIVATIONS``; with ``N_A`` units,
    ``K_H[i, j] = N_A − d_H(c_i, c_j) = c_i·c_j + (1 − c_i)·(1 − c_j)`` and the score is
    ``log |det K_H|``. Networks whose inputs are told apart by different activation patterns
    score higher. The mean over the batches; −inf when a batch has two images with the same
    code (K_H singular); NaN for a network without activation modules.

    The network runs in training mode (BatchNorm on batch statistics, as the paper's code
    scores a freshly built network), on a copy (its BatchNorm statistics are left alone).
    GELU units count as active where their input is positive, GELU's linear regime.
    """
    net = copy.deepcopy(model).train()
    acts = [m for m in net.modules() if isinstance(m, ACTIVATIONS)]
    if not acts:
        return math.nan
    codes: list[Tensor] = []  # the current batch's activation inputs, one per module

    def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        codes.append(inputs[0] > 0)

    for m in acts:  # on the copy, which is dropped with its hooks
        m.register_forward_hook(record)
    logdets = []
    for x, _ in batches:
        codes.clear()
        with torch.no_grad():
            net(x)
        c = torch.cat([code.reshape(len(x), -1) for code in codes], dim=1).double()  # (N, N_A)
        k = c @ c.T + (1 - c) @ (1 - c).T
        logdets.append(float(torch.linalg.slogdet(k).logabsdet))
    return sum(logdets) / len(logdets)


def _sensitivity(net: nn.Module) -> float:
    """``Σ_θ |θ · ∂/∂θ|`` over the parameters of ``net`` that hold a gradient."""
    grads = [(p.detach(), p.grad) for p in net.parameters() if p.grad is not None]
    return float(sum(float((p * g).abs().sum()) for p, g in grads))


def _loss_gradients(model: nn.Module, batches: Sequence[Batch]) -> nn.Module:
    """A copy of ``model`` (training mode) holding the gradients of the mean cross-entropy
    over ``batches`` (the mean of the per-batch means)."""
    net = copy.deepcopy(model).train()
    net.zero_grad(set_to_none=True)
    for x, y in batches:
        (F.cross_entropy(net(x), y) / len(batches)).backward()
    return net


@proxy("grad_norm", paper="Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021")
def grad_norm(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Grad-norm (Abdelfattah et al. 2021, section 3): ``Σ_layers ‖∂L/∂θ‖₂``, the Euclidean
    norms of the cross-entropy loss's gradient, one per parameter tensor, summed."""
    net = _loss_gradients(model, batches)
    return float(sum(float(p.grad.norm()) for p in net.parameters() if p.grad is not None))


@proxy("snip", paper="Lee et al., SNIP: Single-shot Network Pruning based on Connection Sensitivity, "
       "ICLR 2019; as a proxy: Abdelfattah et al., ICLR 2021")  # fmt: skip
def snip(model: nn.Module, batches: Sequence[Batch]) -> float:
    """SNIP (Lee et al. 2019, eq. 6; summed over the network as a proxy by Abdelfattah et al.
    2021): ``Σ_θ |θ · ∂L/∂θ|``, the connection sensitivity of every parameter to the
    cross-entropy loss."""
    net = _loss_gradients(model, batches)
    return _sensitivity(net)


@proxy("params", paper="baseline: the parameter count (Abdelfattah et al., ICLR 2021, Table 1)")
def params(model: nn.Module, batches: Sequence[Batch]) -> float:
    """The number of parameters (each shared tensor once), a baseline every proxy should beat
    (on NAS-Bench-201 it ranks nearly as well as the best of them, Abdelfattah et al. 2021)."""
    from affinity.flops import count_params

    return float(count_params(model))


@proxy("flops", paper="baseline: fvcore FLOPs of one image (Abdelfattah et al., ICLR 2021, Table 1)")
def flops(model: nn.Module, batches: Sequence[Batch]) -> float:
    """FLOPs of one image as the search counts them (fvcore, one multiply-add = one FLOP, the
    leaderboard's ``gflops`` × 10⁹), a baseline."""
    from affinity.flops import count_flops

    x = torch.zeros((1, *_image_shape(batches)), device=_device(model))
    return float(count_flops(model, x).total)


def first_batches(data: DatasetSplits, seed: int, *, n_batches: int, batch_size: int) -> list[Batch]:
    """The first ``n_batches`` training batches of a run seeded ``seed``: ``affinity.train``
    shuffles the train split with a generator seeded so before its first epoch, and these
    are the batches it starts from (without augmentation). Fewer when the split is small."""
    n = len(data.train)
    size = min(batch_size, n)
    gen = torch.Generator()
    gen.manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    return [data.train.batch(order[i * size : (i + 1) * size]) for i in range(min(n_batches, n // size))]


@dataclass
class Scores:
    """One model's proxy scores and the wall time of each, in seconds."""

    values: dict[str, float]
    seconds: dict[str, float]


def score_model(model: nn.Module, batches: Sequence[Batch], names: Sequence[str], *, seed: int) -> Scores:
    """Score ``model`` with each proxy of ``names`` (torch's global generator seeded with
    ``seed`` before each, so that each score depends on nothing but its inputs).

    Raises:
        UnknownNameError: a name that is not a registered proxy.
    """
    entries = [PROXIES.get(name) for name in names]
    scores = Scores({}, {})
    for entry in entries:
        torch.manual_seed(seed)
        start = time.perf_counter()
        scores.values[entry.name] = float(entry.fn(model, batches))
        scores.seconds[entry.name] = time.perf_counter() - start
    return scores
