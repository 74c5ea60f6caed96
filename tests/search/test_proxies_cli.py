"""``affinity proxies`` on a tiny search: every trained configuration scored once, the
baselines equal to the leaderboard's own figures, the correlations recomputable from the
scores, the same numbers on a second run, files written and shown by the report, bad input
one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from affinity.proxies import PROXIES, kendall_tau_b, spearman_rho
from affinity.search.hypervolume import contributions, hypervolume
from tests._cli import run_main


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny search for the whole module (its results root): its 4 distinct configurations."""
    root = tmp_path_factory.mktemp("proxies") / "results"
    ran = run_main(["search", "--space", "tiny.yaml", "--n-trials", "4", "--out", str(root), "--quiet"])
    assert ran.code == 0, ran.stderr
    return root


def test_scores_every_trained_configuration_once(tiny_results: Path) -> None:
    ran = run_main(["proxies", "tiny", "--out", str(tiny_results), "--format", "json"])
    assert ran.code == 0, ran.stderr
    doc = json.loads(ran.stdout)
    board = pd.read_csv(tiny_results / "tiny" / "leaderboard.csv")
    trained = board[(board["state"] == "COMPLETE") & (board["status"] == "ok")].set_index("number")
    trials = pd.DataFrame(doc["trials"]).set_index("number")
    assert sorted(trials.index) == sorted(trained.index) and len(trials) >= 2
    # the baselines are the search's own counts of the same models
    assert trials["flops"].tolist() == pytest.approx((trained.loc[trials.index, "gflops"] * 1e9).tolist())
    assert trials["params"].tolist() == pytest.approx((trained.loc[trials.index, "params_m"] * 1e6).tolist())
    acc = trained.loc[trials.index, "val_acc"].tolist()
    assert trials["val_acc"].tolist() == pytest.approx(acc, rel=1e-12)
    corr = pd.DataFrame(doc["correlations"]).set_index("proxy")
    assert sorted(corr.index) == PROXIES.names()
    for name in PROXIES.names():
        assert corr.loc[name, "n"] == len(trials)
        tau = kendall_tau_b(trials[name], trials["val_acc"])
        assert corr.loc[name, "kendall_tau"] == pytest.approx(tau, nan_ok=True)
        rho = spearman_rho(trials[name], trials["val_acc"])
        assert corr.loc[name, "spearman_rho"] == pytest.approx(rho, nan_ok=True)
        tau_hv = kendall_tau_b(trials[name], trials["hv_contribution"])
        assert corr.loc[name, "kendall_tau_hv"] == pytest.approx(tau_hv, nan_ok=True)
        rho_hv = spearman_rho(trials[name], trials["hv_contribution"])
        assert corr.loc[name, "spearman_rho_hv"] == pytest.approx(rho_hv, nan_ok=True)
    # each trial's hypervolume contribution: the study's hypervolume less that of the others,
    # at the study's reference point (the search prints its hypervolume at the same point)
    ref = 1.1 * board["gflops"].max()
    points = list(zip(trials["val_acc"], trials["gflops"]))
    for k, number in enumerate(trials.index):
        lost = hypervolume(points, ref) - hypervolume(points[:k] + points[k + 1 :], ref)
        assert trials.loc[number, "hv_contribution"] == pytest.approx(lost, rel=1e-9, abs=1e-15)
        # a dominated design adds nothing (up to the sweep's rounding), a front design adds area
        assert (lost > 1e-9 * hypervolume(points, ref)) == (trained.loc[number, "pareto_rank"] == 1)
    folder = tiny_results / "tiny" / "proxies"
    assert sorted(p.name for p in folder.glob("proxy_*.png")) == [f"proxy_{n}.png" for n in PROXIES.names()]
    written = pd.read_csv(folder / "scores.csv").set_index("number")
    assert written[PROXIES.names()].to_numpy() == pytest.approx(trials[PROXIES.names()].to_numpy())
    assert "timestamp" not in ran.stderr and "proxies: scored trial" in ran.stderr  # a line per trial, piped

    again = run_main(["proxies", "tiny", "--out", str(tiny_results), "--proxies", "naswot,params", "--quiet"])
    assert again.code == 0, again.stderr
    assert again.stderr == "" and "Kendall" in again.stdout and "naswot" in again.stdout
    rerun = pd.read_csv(folder / "scores.csv").set_index("number")
    assert list(rerun.columns[-2:]) == ["naswot", "params"]
    both = ["naswot", "params"]
    assert rerun[both].to_numpy().tolist() == written[both].to_numpy().tolist()
    assert sorted(p.name for p in folder.glob("proxy_*.png")) == ["proxy_naswot.png", "proxy_params.png"]

    # the report shows the scatter plots of the last run
    assert run_main(["report", "tiny", "--out", str(tiny_results), "--quiet"]).code == 0
    page = (tiny_results / "tiny" / "report.html").read_text()
    assert "Zero-cost proxies" in page
    assert 'data-file="proxies/proxy_naswot.png"' in page and "proxy_synflow" not in page


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["tiny", "--proxies", "synflw"], ["--proxies", "synflow"]),
        (["tiny", "--proxies", ","], ["--proxies", "allowed"]),
        (["nosuch"], ["nosuch", "tiny"]),
        (["tiny", "--batches", "0"], ["--batches"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_results: Path, args: list[str], names: list[str]) -> None:
    before = sorted(p.name for p in tiny_results.iterdir())
    ran = run_main(["proxies", *args, "--out", str(tiny_results), "--quiet"])
    assert ran.code == 2 and ran.stdout == ""
    assert len(ran.stderr.strip().splitlines()) == 1 and "Traceback" not in ran.stderr
    assert all(n in ran.stderr for n in names), ran.stderr
    assert sorted(p.name for p in tiny_results.iterdir()) == before


def test_hypervolume_contributions_by_hand() -> None:
    # reference GFLOPs 10; points (acc, gflops): a (0.5, 2), b (0.8, 6), c (0.4, 4) dominated by a.
    # HV: strip [2, 6) at 0.5 = 2.0, strip [6, 10) at 0.8 = 3.2: 5.2. Without a: [4, 6) at 0.4
    # = 0.8 and [6, 10) at 0.8 = 3.2: 4.0, so a adds 1.2; without b: [2, 10) at 0.5 = 4.0, so
    # b adds 1.2; c adds nothing
    assert contributions([(0.5, 2.0), (0.8, 6.0), (0.4, 4.0)], 10.0) == pytest.approx([1.2, 1.2, 0.0])
    # two equal points: each is replaced by the other, so neither adds anything alone
    assert contributions([(0.5, 2.0), (0.5, 2.0)], 10.0) == pytest.approx([0.0, 0.0])
