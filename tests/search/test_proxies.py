"""Each proxy against a value computed by hand or by a second formula, on tiny models; the
rank correlations against hand-counted pairs; determinism and purity of every proxy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from affinity.errors import UnknownNameError
from affinity.proxies import PROXIES, average_ranks, kendall_tau_b, score_model, spearman_rho


def _fn(name: str):  # type: ignore[no-untyped-def]
    return PROXIES.get(name).fn


def _batches(shape: tuple[int, ...], n: int, classes: int, count: int = 1, seed: int = 1) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *shape, generator=gen), torch.randint(0, classes, (n,), generator=gen))
            for _ in range(count)]  # fmt: skip


def test_registry_declares_each_proxy_once_with_its_paper() -> None:
    assert PROXIES.names() == ["flops", "grad_norm", "naswot", "params", "snip", "synflow"]
    for name in PROXIES.names():
        entry = PROXIES.get(name)
        assert entry.name == name and entry.paper and entry.higher_is_better
    with pytest.raises(UnknownNameError, match="did you mean synflow"):
        PROXIES.get("synflw")


def test_synflow_of_a_linear_chain_is_layers_times_the_product_of_absolute_weights() -> None:
    torch.manual_seed(3)
    chain = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    w1, w2 = (chain[i].weight.detach().double().abs().numpy() for i in (1, 2))
    # R = 1ᵀ|W2||W1|1, by matrix products
    r = float(np.ones(2) @ w2 @ w1 @ np.ones(4))
    # the per-weight scores |θ·∂R/∂θ| written out:
    # ∂R/∂|W1|[j,i] = Σ_k |W2|[k,j]; ∂R/∂|W2|[k,j] = Σ_i |W1|[j,i]
    per_weight = float((w1 * w2.sum(0)[:, None]).sum() + (w2 * w1.sum(1)[None, :]).sum())
    assert per_weight == pytest.approx(2 * r, rel=1e-12)
    before = [p.detach().clone() for p in chain.parameters()]
    score = _fn("synflow")(chain, _batches((1, 2, 2), 5, 2))
    assert score == pytest.approx(2 * r, rel=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(before, chain.parameters()))  # signs kept


def _softmax_grads(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """dL/dW and dL/db of the mean cross-entropy of the linear model x Wᵀ + b."""
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(w.shape[0])[y]) / len(x)
    return g.T @ x, g.sum(0)


def test_snip_and_grad_norm_of_a_linear_model_against_the_gradient_by_hand() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    batches = _batches((1, 2, 3), 5, 3, count=2)
    w = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    grads = [_softmax_grads(w, b, x.flatten(1).double().numpy(), y.numpy()) for x, y in batches]
    dw = (grads[0][0] + grads[1][0]) / 2  # the mean of the two batches' losses
    db = (grads[0][1] + grads[1][1]) / 2
    snip = float(np.abs(w * dw).sum() + np.abs(b * db).sum())
    norm = float(np.sqrt((dw**2).sum()) + np.sqrt((db**2).sum()))
    assert _fn("snip")(model, batches) == pytest.approx(snip, rel=1e-5)
    assert _fn("grad_norm")(model, batches) == pytest.approx(norm, rel=1e-5)
    assert model[1].weight.grad is None  # the model itself is left alone


def _images(codes: list[list[int]]) -> torch.Tensor:
    """Images (N, 1, 1, A) whose ReLU codes are ``codes``: +1 where active, −1 where not."""
    return (2 * torch.tensor(codes, dtype=torch.float32) - 1).view(len(codes), 1, 1, -1)


def test_naswot_is_the_log_determinant_of_the_hamming_kernel() -> None:
    relu = nn.Sequential(nn.Flatten(), nn.ReLU())
    codes = [[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    # K[i,j] = N_A − Hamming(c_i, c_j) = 4 − d: d(0,1) = 2, d(0,2) = 3, d(1,2) = 3
    k = [[4, 2, 1], [2, 4, 1], [1, 1, 4]]
    det = 4 * (4 * 4 - 1 * 1) - 2 * (2 * 4 - 1 * 1) + 1 * (2 * 1 - 4 * 1)  # 44
    assert det == round(float(np.linalg.det(np.array(k, dtype=float))))
    y = torch.zeros(3, dtype=torch.long)
    assert _fn("naswot")(relu, [(_images(codes), y)]) == pytest.approx(math.log(det), rel=1e-12)
    # two batches: the mean of their log-determinants; the second's K = [[4, 0], [0, 4]]
    other = [[1, 1, 1, 1], [0, 0, 0, 0]]
    both = [(_images(codes), y), (_images(other), y[:2])]
    assert _fn("naswot")(relu, both) == pytest.approx((math.log(det) + math.log(16)) / 2, rel=1e-12)
    # codes of every activation module are concatenated: a second ReLU of the same codes doubles N_A
    twice = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.ReLU())
    assert _fn("naswot")(twice, [(_images(other), y[:2])]) == pytest.approx(math.log(64), rel=1e-12)
    # two images with the same code: K is singular
    assert _fn("naswot")(relu, [(_images([[1, 0, 1, 0]] * 2), y[:2])]) == -math.inf
    assert math.isnan(_fn("naswot")(nn.Flatten(), [(_images(codes), y)]))  # no activation, no codes


def test_params_and_flops_baselines() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    batches = _batches((1, 5, 5), 2, 3)
    numel = sum(p.numel() for p in model.parameters())
    assert _fn("params")(model, batches) == numel == 4 * 9 + 4 + 100 * 3 + 3
    # fvcore: one multiply-add per weight use: the conv 4·9 per output pixel of 25, the linear 100·3
    assert _fn("flops")(model, batches) == 4 * 9 * 25 + 100 * 3


def test_every_proxy_is_deterministic_under_a_seed_and_leaves_the_model_alone() -> None:
    from affinity.data import load_dataset
    from affinity.models.config import ModelCfg
    from affinity.proxies import first_batches
    from affinity.search.objective import seeded_model

    data = load_dataset("digits", img_size=8, seed=0)
    cfg = ModelCfg.from_dict(
        {"family": "hierarchical", "norm": "batchnorm", "drop_path_rate": 0.3, "stages": [
            {"dim": 8, "depth": 2, "patch_size": 2, "channel_mlp_ratio": 2.0,
             "mixer": {"branches": [{"affinity": "axial_shift", "params": {"shift_size": 3, "axis": "w"}}]}}]}
    )  # fmt: skip
    model = seeded_model(cfg, data, 11)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = first_batches(data, 11, n_batches=2, batch_size=16)
    assert len(batches) == 2 and batches[0][0].shape == (16, data.in_chans, 8, 8)
    first = score_model(model, batches, PROXIES.names(), seed=5)
    torch.manual_seed(123)  # whatever state the process is in
    again = score_model(model, batches, PROXIES.names(), seed=5)
    assert first.values == again.values
    assert all(math.isfinite(v) for v in first.values.values())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    other = score_model(model, batches, ["grad_norm"], seed=6)  # drop-path draws from the seed
    assert other.values["grad_norm"] != first.values["grad_norm"]


def test_ranks_and_correlations_against_hand_counted_pairs() -> None:
    assert average_ranks([10, 20, 20, 5]).tolist() == [2, 3.5, 3.5, 1]
    # no ties: pairs (i<j) concordant 7, discordant 3 -> τ = 4/10; ρ = 1 − 6·Σd²/(n(n²−1)), Σd² = 8
    x, y = [1, 2, 3, 4, 5], [3, 1, 2, 5, 4]
    assert kendall_tau_b(x, y) == pytest.approx(0.4)
    assert spearman_rho(x, y) == pytest.approx(1 - 6 * 8 / (5 * 24))
    # ties: concordant 3, discordant 1, 5 pairs untied in x, 5 in y -> τ-b = 2/√25;
    # ρ from average ranks x (1, 2.5, 2.5, 4), y (1, 4, 2.5, 2.5): 2.25 / √(4.5·4.5)
    x, y = [1, 2, 2, 3], [1, 3, 2, 2]
    assert kendall_tau_b(x, y) == pytest.approx(0.4)
    assert spearman_rho(x, y) == pytest.approx(0.5)
    # −inf ranks lowest; NaN pairs are left out; a constant side has no correlation
    assert kendall_tau_b([-math.inf, 1, 2, math.nan], [0, 1, 2, 3]) == pytest.approx(1.0)
    assert spearman_rho([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3])) and math.isnan(spearman_rho([1], [2]))


def test_correlations_match_scipy_where_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)  # many ties
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
