"""Every registered model against its published params and FLOPs, computed each run.

Params and FLOPs come from the built model at the reference input size (fvcore multiply-
adds, batch 1); published figures are read from the registry's references. A documented
disagreement is held to the paper's own formula or code instead, with its reason.
"""

from __future__ import annotations

import pytest
import torch

from affinity.flops import count_flops, count_params
from affinity.models import MODELS, create_model, get_reference, list_models

TOLERANCE = 0.03


_CACHE: dict[str, tuple[int, int, int]] = {}


def _figures(name: str, **overrides: object) -> tuple[int, int, int]:
    """(params, params excluding the classifier, FLOPs) of ``name`` at 224 (each computed once)."""
    key = f"{name}{sorted(overrides.items())}"
    if key not in _CACHE:
        _CACHE[key] = _compute(name, **overrides)
    return _CACHE[key]


def _compute(name: str, **overrides: object) -> tuple[int, int, int]:
    model = create_model(name, **overrides)  # type: ignore[arg-type]
    params = count_params(model)
    params_excl = count_params(model, exclude=("head",))
    report = count_flops(model, torch.zeros(1, 3, 224, 224))
    assert report.unsupported == {}, f"{name}: ops left uncounted {report.unsupported}"
    return params, params_excl, report.total


def s2mlp_formula_params(p: int, c: int, n: int, r: int) -> float:
    """S2-MLP's own parameter formula (Yu et al. 2022, sec. 3.3), excluding the classifier."""
    return (3 * p * p + 1) * c + n * (c * c * (2 * r + 2) + c * (3 + r))


def gmlp_formula_flops(d: int, d_ffn: int, layers: int = 30, patch: int = 16, img: int = 224) -> int:
    """gMLP's products (Liu et al. 2021, Table 1 architecture): patch embedding, then per block
    U (d -> d_ffn), the spatial matrix (N×N on d_ffn/2 channels) and V (d_ffn/2 -> d); head."""
    n = (img // patch) ** 2
    block = n * d * d_ffn + (d_ffn // 2) * n * n + n * (d_ffn // 2) * d
    return n * 3 * patch * patch * d + layers * block + d * 1000


@pytest.mark.parametrize("name", list_models())
def test_params_and_flops_match_published(name: str) -> None:
    torch.set_num_threads(1)
    ref = get_reference(name)
    assert ref is not None and ref.paper
    params, params_excl, flops = _figures(name)
    mine_params = params_excl if ref.params_exclude_head else params
    if name == "s2mlp_deep":
        # printed 51M; the paper's formula gives 53.5M for these settings: held to the formula
        assert "formula" in ref.note
        formula = s2mlp_formula_params(16, 384, 36, 4)
        assert abs(formula / 1e6 - 53.5) < 0.05
        assert abs(mine_params - formula) / formula < TOLERANCE
        assert abs(mine_params / 1e6 - ref.params_m) / ref.params_m > TOLERANCE  # the disagreement is real
    elif name == "gmlp_ti":
        # printed 1.4G; its Table 1 architecture costs 1.33G of products: held to the formula
        assert "formula" in ref.note and ref.params_m and ref.gflops
        formula = gmlp_formula_flops(128, 768)
        assert abs(flops - formula) / formula < TOLERANCE, (flops, formula)
        assert (ref.gflops - formula / 1e9) / ref.gflops > TOLERANCE  # the disagreement is real
        assert abs(mine_params / 1e6 - ref.params_m) / ref.params_m < TOLERANCE
    elif name == "container_pam":
        # published as "DeiT-S + about 2.8M": the per-head static affinity over 1+N tokens
        deit, _, deit_flops = _figures("deit_s")
        assert abs((params - deit) / 1e6 - 2.8) < 0.1
        assert params - deit == 12 * 6 * 197 * 197
        assert flops > deit_flops
    elif ref.exempt:
        # a reconstruction: report beside the published figures, no tolerance; it must say so
        assert "reconstruction" in ref.note
        assert ref.params_m and ref.gflops
        assert abs(mine_params / 1e6 - ref.params_m) / ref.params_m < 0.25
        assert abs(flops / 1e9 - ref.gflops) / ref.gflops < 0.25
    else:
        if ref.params_m is not None:
            assert abs(mine_params / 1e6 - ref.params_m) / ref.params_m < TOLERANCE, (
                mine_params,
                ref.params_m,
            )
        if ref.gflops is not None:
            assert abs(flops / 1e9 - ref.gflops) / ref.gflops < TOLERANCE, (flops, ref.gflops)
    if name == "s2mlp_wide":
        formula = s2mlp_formula_params(16, 768, 12, 4)
        assert abs(mine_params - formula) / formula < TOLERANCE


def test_container_light_code_ratios_give_the_released_figures() -> None:
    """The paper's 20.0M / 3.2G are ratio 4; the released code's 8-8-4-4 gives 20.6M / 3.86G."""
    torch.set_num_threads(1)
    ref = get_reference("container_light")
    assert ref is not None and "8-8-4-4" in ref.note
    params, _, flops = _figures("container_light", channel_mlp_ratio=(8, 8, 4, 4))
    assert abs(params / 1e6 - 20.6) / 20.6 < TOLERANCE
    assert abs(flops / 1e9 - 3.86) / 3.86 < TOLERANCE


def test_registry_holds_every_required_variant() -> None:
    required = {
        "as_mlp_t", "as_mlp_s", "as_mlp_b", "as_mlp_mobile", "s2mlp_wide", "s2mlp_deep",
        "mixer_s16", "mixer_b16", "mixer_l16", "mixer_s32", "mixer_b32", "mixer_l32",
        "resmlp_s12", "resmlp_s24", "resmlp_s36", "resmlp_b24", "resmlp_b24_8",
        "repmlpnet_t224", "repmlpnet_b224", "container_light", "container", "container_pam",
        "deit_s", "swin_t",
        "poolformer_s12", "poolformer_s24", "poolformer_s36", "gfnet_xs", "gfnet_s", "gfnet_b",
        "gmlp_ti", "gmlp_s", "gmlp_b", "cyclemlp_b1", "cyclemlp_b2", "vip_s7", "vip_m7",
        "convmixer_768_32", "convmixer_1536_20",
    }  # fmt: skip
    assert required <= set(list_models())
    assert list_models("as_mlp*") == ["as_mlp_b", "as_mlp_mobile", "as_mlp_s", "as_mlp_t"]
    assert MODELS.get("as_mlp_b").reference_at(384).gflops == 44.6  # type: ignore[union-attr]
