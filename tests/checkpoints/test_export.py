"""``affinity export``: the file is written, run back and compared; failures are one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from affinity.cli import cli, main
from affinity.export import _op_of, export_model
from affinity.models import create_model, save_model_config

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))


def _small_swin():
    # windowed attention with shifts and a relative bias, patch merging, the last stage one window
    return create_model(
        "swin_t",
        num_classes=5,
        img_size=32,
        dims=(8, 16, 16, 16),
        depths=(2, 1, 1, 1),
        heads=(1, 2, 2, 2),
        window_size=4,
    )


def test_torchscript_export_runs_back_equal(tmp_path: Path) -> None:
    model = _small_swin()
    r = export_model(model, tmp_path / "s.torchscript.pt", "torchscript")
    assert r.max_abs_diff is not None and r.max_abs_diff < 1e-5 and r.runtime == "torch.jit.load"
    assert r.size_bytes == (tmp_path / "s.torchscript.pt").stat().st_size > 0
    loaded = torch.jit.load(str(tmp_path / "s.torchscript.pt"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))  # traced at batch 1, runs any batch


@pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript, onnxruntime not installed (affinity[export])")
def test_onnx_export_from_the_command_line(tmp_path: Path) -> None:
    cfg = save_model_config(_small_swin().cfg, tmp_path / "s.yaml")
    result = CliRunner().invoke(
        cli,
        ["export", str(cfg), "--img-size", "32", "--num-classes", "5", "--file", str(tmp_path / "s.onnx")],
    )
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output and (tmp_path / "s.onnx").stat().st_size > 0
    diff = float(result.output.split("max |diff| ")[1].split()[0])
    assert diff < 1e-4


def test_missing_onnx_packages_are_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxscript" else real(n, *a))
    cfg = save_model_config(_small_swin().cfg, tmp_path / "s.yaml")
    with pytest.raises(SystemExit) as exc:
        main(["export", str(cfg), "--img-size", "32", "--format", "onnx"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxscript" in err[0] and "affinity[export]" in err[0]


def test_a_failing_op_is_named_on_one_line() -> None:
    try:
        try:
            raise AssertionError("only 4D query, key, and value are supported\nmore detail")
        except AssertionError as inner:
            raise RuntimeError(
                "Error when translating node %sdpa: "
                "call_function[target=torch.ops.aten.scaled_dot_product_attention.default]"
            ) from inner
    except RuntimeError as exc:
        line = _op_of(exc)
    assert line == "op aten.scaled_dot_product_attention.default: only 4D query, key, and value are supported"
