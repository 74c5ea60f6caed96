"""``affinity benchmark``: the figures it reports agree with each other and with
``affinity.flops`` (no timing is asserted: timings are the benchmark's output, not a test)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from affinity.benchmark import benchmark
from affinity.cli import main
from affinity.flops import count_flops
from affinity.models import create_model
from tests.checkpoints.timm_import import import_timm

MODEL, SIZE = "resmlp_s12", 32


def _macs(name: str = MODEL, img_size: int = SIZE) -> int:
    model = create_model(name, img_size=img_size)
    return count_flops(model, torch.randn(1, model.in_chans, img_size, img_size)).total


def _consistent(row: dict, batch: int) -> None:
    assert float(row["gmacs"]) == pytest.approx(_macs() / 1e9, rel=1e-12)
    ms, ips = float(row["ms_per_step"]), float(row["img_per_s"])
    assert ips == pytest.approx(int(batch) * 1000.0 / ms, rel=1e-9)
    rate = float(row["gemm_gmacs_per_s"]) * 1e9
    assert float(row["gemm_fraction"]) == pytest.approx(
        float(row["gmacs"]) * 1e9 * batch / (ms / 1e3) / rate, rel=1e-9
    )
    assert float(row["peak_memory_mb"]) > 0
    assert float(row["gemm_fraction_p25"]) <= float(row["gemm_fraction"]) <= float(row["gemm_fraction_p75"])


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_library_figures_agree(mode: str) -> None:
    result = benchmark(MODEL, batch_size=2, img_size=SIZE, mode=mode, repeats=1, warmup=0, threads=1)
    factor = 3 if mode == "train" else 1
    assert result.gmacs == pytest.approx(_macs() / 1e9, rel=1e-12)
    assert result.img_per_s == pytest.approx(2000.0 / result.ms_per_step, rel=1e-9)
    expected = result.gmacs * 2 * factor / (result.ms_per_step / 1e3) / result.gemm_gmacs_per_s
    assert result.gemm_fraction == pytest.approx(expected, rel=1e-9)
    assert result.threads == 1 and result.timm_ratio is None and result.reparam is False


def test_reparam_times_and_counts_the_deploy_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--reparam: the GMACs are the deploy form's (RepMLPNet's conv branches folded into its
    FC: fewer than the train form's), and the row says so."""
    name = "repmlpnet_t224"
    x = torch.randn(1, 3, SIZE, SIZE)
    train_form = create_model(name, img_size=SIZE)
    deploy = count_flops(create_model(name, img_size=SIZE).reparameterize(), x).total
    assert deploy < count_flops(train_form, x).total
    argv = ["benchmark", name, "--reparam", "--img-size", str(SIZE), "--batch-size", "1", "--repeats", "1"]
    main([*argv, "--threads", "1", "--format", "json", "--out", str(tmp_path), "-q"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["reparam"] is True
    assert row["gmacs"] == pytest.approx(deploy / 1e9, rel=1e-12)


def test_fraction_is_the_median_of_each_repetitions_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each repetition's model time goes against the GEMM timed beside it, not the medians
    against each other: a slow patch of the machine slows both in the same repetition."""
    import affinity.benchmark as bench

    canned = {"model": iter([1.0, 2.0, 3.0]), "gemm": iter([3.0, 1.0, 2.0])}

    def timed(step: object, device: object) -> float:
        return next(canned["gemm" if "_gemm_step" in getattr(step, "__qualname__", "") else "model"])

    monkeypatch.setattr(bench, "_timed", timed)
    result = benchmark(MODEL, batch_size=2, img_size=SIZE, repeats=3, warmup=0, threads=1)
    scale = _macs() * 2 / bench.gemm_macs()  # the model's MACs per step over the GEMM's
    own = sorted(scale * g / t for t, g in [(1.0, 3.0), (2.0, 1.0), (3.0, 2.0)])  # 0.5, 0.67, 3 (× scale)
    assert result.gemm_fraction == pytest.approx(own[1], rel=1e-12)
    assert result.gemm_fraction != pytest.approx(scale * 2.0 / 2.0)  # what the medians alone give
    assert result.gemm_fraction_p25 == pytest.approx((own[0] + own[1]) / 2, rel=1e-12)
    assert result.gemm_fraction_p75 == pytest.approx((own[1] + own[2]) / 2, rel=1e-12)
    assert result.ms_per_step == pytest.approx(2000.0) and result.gemm_gmacs_per_s * 1e9 == pytest.approx(
        bench.gemm_macs() / 2.0
    )


def test_cli_json_and_csv_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["benchmark", MODEL, "--img-size", str(SIZE), "--batch-size", "1", "--batch-size", "2"]
    main([*argv, "--repeats", "1", "--threads", "1", "--format", "json", "--out", str(tmp_path), "-q"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["batch_size"] for r in rows] == [1, 2]
    for row in rows:
        _consistent(row, row["batch_size"])
    (written,) = (tmp_path / "benchmarks").glob("benchmark-*.csv")
    from_file = list(csv.DictReader(io.StringIO(written.read_text())))
    assert [float(r["gmacs"]) for r in from_file] == [r["gmacs"] for r in rows]


def test_cli_csv_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "benchmark",
            MODEL,
            "--img-size",
            str(SIZE),
            "--repeats",
            "1",
            "--format",
            "csv",
            "--out",
            str(tmp_path),
            "-q",
        ]
    )
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["model"] == MODEL and row["batch_size"] == "8"
    _consistent(row, 8)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["no_such_model"], "no_such_model"),
        ([MODEL, "--batch-size", "0"], "batch_size"),
        (["as_mlp_t", "gmlp_ti", "--compare-timm"], "--compare-timm: timm has none of as_mlp_t, gmlp_ti"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", *args, "--out", str(tmp_path), "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "benchmarks").exists()


@pytest.mark.skipif(import_timm() is None, reason="timm is not installed (pip install 'affinity[timm]')")
def test_compare_timm_reports_the_ratio() -> None:
    from affinity.commands.benchmark import _timm_factory

    result = benchmark(
        MODEL,
        batch_size=1,
        img_size=SIZE,
        repeats=1,
        warmup=0,
        threads=1,
        compare_timm=True,
        timm_factory=_timm_factory(SIZE, False),
    )
    assert result.timm_model == "resmlp_12_224"
    assert result.timm_ms_per_step is not None and result.timm_ratio is not None
    assert result.timm_ratio == pytest.approx(result.ms_per_step / result.timm_ms_per_step, rel=1e-9)
    assert result.timm_ratio_p25 == result.timm_ratio == result.timm_ratio_p75  # one repetition


@pytest.mark.skipif(import_timm() is None, reason="timm is not installed (pip install 'affinity[timm]')")
@pytest.mark.parametrize("reparam", [False, True])
def test_timm_is_reparameterised_with_ours(reparam: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """--reparam also gives timm's model its deploy form (timm.utils.reparameterize_model)."""
    from affinity.commands.benchmark import _timm_factory

    timm = import_timm()
    folded: list[object] = []
    monkeypatch.setattr(timm.utils, "reparameterize_model", lambda m: folded.append(m) or m)
    model = _timm_factory(SIZE, reparam)("resmlp_12_224")
    assert folded == ([model] if reparam else [])


@pytest.mark.skipif(import_timm() is None, reason="timm is not installed (pip install 'affinity[timm]')")
def test_compare_timm_times_timm_beside_the_models_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zoo-wide run: gmlp_ti has no timm counterpart here, so its row has no timm figures."""
    argv = ["benchmark", "gmlp_ti", MODEL, "--compare-timm", "--img-size", str(SIZE), "--batch-size", "1"]
    main([*argv, "--repeats", "1", "--threads", "1", "--format", "json", "--out", str(tmp_path), "-q"])
    mine, theirs = json.loads(capsys.readouterr().out)
    assert (mine["model"], mine["timm_model"], mine["timm_ratio"]) == ("gmlp_ti", None, None)
    assert mine["timm_ratio_p25"] is None and mine["timm_ratio_p75"] is None
    assert theirs["timm_model"] == "resmlp_12_224"
    assert theirs["timm_ratio"] == pytest.approx(theirs["ms_per_step"] / theirs["timm_ms_per_step"], rel=1e-9)


def test_the_order_rotates_so_each_step_takes_each_place() -> None:
    from affinity.benchmark import rotated

    orders = [rotated(["model", "gemm", "timm"], i) for i in range(4)]
    assert orders == [
        ["model", "gemm", "timm"],
        ["gemm", "timm", "model"],
        ["timm", "model", "gemm"],
        ["model", "gemm", "timm"],
    ]
    assert {o.index("model") for o in orders[:3]} == {0, 1, 2}


def test_quiet_writes_nothing_to_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Not even kineto's ``USDT: ... profiler_start`` lines from the peak-memory profile (fd 2)."""
    argv = ["benchmark", MODEL, "--img-size", str(SIZE), "--batch-size", "1", "--repeats", "1"]
    main([*argv, "--threads", "1", "--format", "csv", "--out", str(tmp_path), "-q"])
    out, err = capfd.readouterr()
    assert err == ""
    assert out.startswith("model,batch_size,")


def test_the_profiler_filter_gives_back_every_other_line(capfd: pytest.CaptureFixture[str]) -> None:
    import os
    import sys

    from affinity.benchmark import _without_profiler_lines

    print("before", file=sys.stderr)  # flushed first: it stays before what the window writes
    with _without_profiler_lines():
        os.write(2, b"USDT:2026 SyncActivityProfilerHandler.cpp:52] profiler_start\nfirst\n")
        os.write(2, b"second\nUSDT:2026 SyncActivityProfilerHandler.cpp:59] profiler_stop\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nfirst\nsecond\nafter\n"
