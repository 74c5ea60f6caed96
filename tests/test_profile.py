"""profile(): the data it returns, its renderings, and the CLI (`affinity profile`, `models`)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from affinity.cli import cli, main
from affinity.errors import ConfigError
from affinity.flops import count_params
from affinity.models import MODELS, create_model, save_model_config
from affinity.profiling import profile, render_table, to_csv, to_json


@pytest.fixture(scope="module")
def small():
    """A small Container (attention + dwconv + pos conv), profiled once with timing."""
    model = create_model("container", num_classes=10, img_size=64, in_chans=1, depth=1)
    return model, profile(model, img_size=64, in_chans=1, timing=True, warmup=1, max_runs=3)


def test_profile_data_is_consistent(small) -> None:
    model, result = small
    assert result.params == count_params(model)
    assert result.params - result.params_excl_head == model.num_features * 10 + 10
    assert sum(s.flops for s in result.stages) == result.flops
    assert sum(result.by_component.values()) == result.flops
    assert result.by_component["other"] == 0
    assert [s.name for s in result.stages] == ["stages.0", "stages.1", "stages.2", "stages.3", "head"]
    assert result.stages[0].hw == (16, 16) and result.stages[3].hw == (2, 2)
    kinds = {a.kind: a for a in result.by_affinity}
    assert set(kinds) == {"attention", "dwconv"}
    assert kinds["attention"].count == 4 and kinds["dwconv"].count == 8  # mixer + pos conv per block
    # attention at 16×16 with 64 channels: QKᵀ and AV, 2·N²·C, plus its Q, K projection 2·N·C²
    n, c = 16 * 16, 64
    stage0_attention = result.flops and next(r.flops for r in result.layers if r.path == "stages.0.blocks.0")
    assert stage0_attention > 2 * n * n * c + 2 * n * c * c
    assert result.dense_nxn_flops > 0
    assert result.latency_ms is not None and len(result.latency_runs) >= 3
    assert result.throughput == pytest.approx(1000.0 / result.latency_ms)
    assert result.reference is None  # "custom" model: no published figures
    assert len(result.layers) == 4 + 4  # one embed and one block per stage


def test_renderings(small) -> None:
    _, result = small
    data = json.loads(to_json(result))
    for key in ("params", "flops", "gflops", "activations", "stages", "by_affinity", "latency_ms", "unit"):
        assert key in data
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert rows[-1]["part"] == "total" and int(rows[-1]["params"]) == result.params
    assert len(render_table(result, per_layer=True)) > len(render_table(result))


def test_profile_registered_model_beside_published() -> None:
    result = profile("resmlp_s12", timing=False)
    assert result.reference is not None and result.reference["params_m"] == 15.4
    assert result.params_diff_pct is not None and abs(result.params_diff_pct) < 3
    assert result.flops_diff_pct is not None and abs(result.flops_diff_pct) < 3
    assert result.latency_ms is None


def test_profile_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size=0"):
        profile("resmlp_s12", batch_size=0, timing=False)
    with pytest.raises(ConfigError, match="device='tpu'"):
        profile("resmlp_s12", device="tpu", timing=False)


def test_cli_profile_as_mlp_b_at_384() -> None:
    result = CliRunner().invoke(
        cli, ["profile", "as_mlp_b", "--img-size", "384", "--no-timing", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["reference"]["gflops"] == 44.6 and data["img_size"] == 384
    assert abs(data["gflops"] - 44.6) / 44.6 < 0.03
    assert abs(data["flops_diff_pct"]) < 3


def test_cli_profile_yaml_and_table(tmp_path) -> None:
    path = save_model_config(MODELS.get("s2mlp_wide").cfg, tmp_path / "s2.yaml")
    result = CliRunner().invoke(
        cli, ["profile", str(path), "--img-size", "32", "--no-timing", "--per-layer", "--in-chans", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "spatial_shift" in result.output and "stages.0.blocks.11" in result.output
    assert "multiply-add" in result.output
    csv_out = CliRunner().invoke(
        cli, ["profile", str(path), "--img-size", "32", "--no-timing", "--format", "csv"]
    )
    assert csv_out.exit_code == 0 and csv_out.output.splitlines()[0].startswith("model,img_size,part")


def test_cli_unknown_model_one_line_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["profile", "as_mlp_bb", "--no-timing"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "as_mlp_b" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["profile", "as_mlp_t", "--img-size", "100", "--no-timing"])
    assert exc.value.code == 2
    assert "img_size=100" in capsys.readouterr().err


def test_cli_models() -> None:
    result = CliRunner().invoke(cli, ["models", "as_mlp", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["as_mlp_b", "as_mlp_mobile", "as_mlp_s", "as_mlp_t"]
    assert rows[0]["gflops"] == 15.2
    table = CliRunner().invoke(cli, ["models"])
    assert table.exit_code == 0 and "swin_t" in table.output and "repmlpnet_b224" in table.output
    with pytest.raises(SystemExit) as exc:
        main(["models", "no_such_family"])
    assert exc.value.code == 2


def test_top_level_profile_is_the_function() -> None:
    import affinity
    import affinity.profiling as module

    result = affinity.profile("resmlp_s12", img_size=32, in_chans=1, timing=False)
    assert result.params == module.profile("resmlp_s12", img_size=32, in_chans=1, timing=False).params


def test_stage_dims_come_from_the_config() -> None:
    """ResMLP's affine norm has no ``weight``: the dims are the config's, for every family."""
    resmlp = profile("resmlp_s12", img_size=32, in_chans=1, num_classes=10, timing=False)
    assert [(s.name, s.dim) for s in resmlp.stages] == [("stages.0", 384), ("head", None)]
    as_mlp = profile("as_mlp_t", img_size=32, in_chans=1, num_classes=10, timing=False)
    assert [s.dim for s in as_mlp.stages] == [96, 192, 384, 768, None]


def test_table_units_scale_to_the_model() -> None:
    """A toy model at 32×32 reads in K/M FLOPs, not 0.000 GFLOPs; data is never markup."""
    from rich.console import Console

    model = create_model("as_mlp_mobile", num_classes=10, img_size=32, in_chans=1, dims=(8, 16, 32, 64))
    model.name = "toy[c,i]"
    result = profile(model, img_size=32, in_chans=1, timing=False)
    console = Console(width=100, record=True)
    for part in render_table(result, per_layer=True):
        console.print(part)
    text = console.export_text()
    assert "toy[c,i] @ 32×32" in text
    assert "GFLOPs" not in text and "0.000" not in text
    assert 1e5 < result.flops < 1e6  # so the summary says KFLOPs, three digits
    assert f"│ KFLOPs           │      {result.flops / 1e3:.0f} │" in text
    assert max(len(line) for line in text.splitlines()) <= 100
