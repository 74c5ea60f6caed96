"""`affinity report`: the data (front, importances, per-parameter series) and the HTML page."""

from __future__ import annotations

import base64
import itertools
import math
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.storages.journal import JournalFileBackend, JournalStorage

from affinity.cli import cli, main
from affinity.errors import StudyError
from affinity.report.study import collect, importances, open_study, param_series

optuna.logging.set_verbosity(optuna.logging.WARNING)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    kind = trial.suggest_categorical("kind", ["axial_shift", "spatial_shift", "dwconv"])
    size = trial.suggest_int("shift_size", 1, 9, step=2)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("padding", ["zero"])  # one value only: no importance
    gflops = 0.1 + 0.02 * size + (0.05 if kind == "dwconv" else 0.0)
    acc = 0.5 + 0.04 * size - 0.05 * abs(math.log10(lr) + 2) + (0.03 if kind == "axial_shift" else 0.0)
    # the attributes `affinity search` records on a finished trial
    for key, value in {
        "status": "ok",
        "val_acc": acc,
        "gflops": gflops,
        "params_m": 0.2 + 0.01 * size,
    }.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("config", {"family": "isotropic", "mixer": kind, "shift_size": size})
    return acc, gflops


def make_study(name: str = "toy", n_trials: int = 14, fail: bool = True) -> optuna.Study:
    """A two-objective study in the search's default storage, results/<name>/journal.log."""
    path = Path("results") / name / "journal.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(_objective, n_trials=n_trials)
    if fail:  # a trial the models rejected and one over budget: both must still be listed
        t = study.ask()
        t.set_user_attr("status", "rejected")
        study.tell(t, state=optuna.trial.TrialState.FAIL)
        t = study.ask()
        t.set_user_attr("status", "over_budget")
        t.set_user_attr("gflops", 9.0)
        study.tell(t, state=optuna.trial.TrialState.PRUNED)
    return study


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def test_front_is_the_nondominated_set() -> None:
    study = make_study()
    report = collect(study)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    values = {t.number: (t.values[0], t.values[1]) for t in done}
    expected = {n for n, v in values.items() if not any(_dominates(w, v) for w in values.values())}
    assert set(report.points.loc[report.points["front"], "number"]) == expected
    assert len(report.points) == len(done)
    assert sorted(n for n, _ in report.front_configs) == sorted(expected)
    for n, text in report.front_configs:  # the trial's model config, as front/trial_<n>.yaml holds it
        assert yaml.safe_load(text) == {"model": study.trials[n].user_attrs["config"]}
    # every trial (the failed one too) is a leaderboard row
    assert len(report.leaderboard) == len(study.trials)


def test_importances_rank_the_parameter_that_matters() -> None:
    study = make_study(n_trials=20)
    imp = importances(study)
    assert set(imp.values) == {"kind", "shift_size", "lr"}
    assert max(imp.values, key=imp.values.__getitem__) == "shift_size"
    assert 0 < sum(imp.values.values()) <= 1 + 1e-6  # shares of one variance
    assert imp.trials == dict.fromkeys(imp.values, 20)
    assert "padding" in imp.note  # single-valued: named, not crashed on
    assert "fewer than" not in imp.note  # 20 trials support the ranking


def test_importances_with_too_few_trials_give_a_note() -> None:
    study = make_study(n_trials=2, fail=False)
    imp = importances(study)
    assert imp.values == {}
    assert "at least" in imp.note and "2" in imp.note


def _conditional(trial: optuna.Trial) -> tuple[float, float]:
    """shift_size exists only for the axial shift, and it is what matters there."""
    kind = trial.suggest_categorical("kind", ["axial_shift", "spatial_shift"])
    acc = 0.4
    if kind == "axial_shift":
        size = trial.suggest_int("shift_size", 1, 7, step=2)
        acc = 0.3 + 0.1 * size
    width = trial.suggest_categorical("width", [16, 32])
    acc += 0.001 * width
    for key, value in {"status": "ok", "val_acc": acc, "gflops": 0.001 * width}.items():
        trial.set_user_attr(key, value)
    return acc, 0.001 * width


def test_conditional_parameters_ranked_where_they_exist_duplicates_once() -> None:
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1)
    )
    study.optimize(_conditional, n_trials=24)
    axial = [t for t in study.trials if "shift_size" in t.params]
    imp = importances(study)
    assert imp.trials["shift_size"] == len(axial) and imp.trials["kind"] == 24
    assert imp.values["shift_size"] > 0.8  # nearly all the variance among the axial trials
    assert f"shift_size ({len(axial)})" in imp.note  # fewer than 20 trials: said so
    # three copies of trial 0, as the search records duplicates: counted once by default
    first = study.trials[0]
    for _ in range(3):
        study.add_trial(
            optuna.trial.create_trial(
                params=first.params,
                distributions=first.distributions,
                values=first.values,
                user_attrs={**first.user_attrs, "status": "duplicate", "duplicate_of": 0},
            )
        )
    assert importances(study).trials["kind"] == 24
    assert importances(study, with_duplicates=True).trials["kind"] == 27
    series = {s.name: s for s in param_series(study)}
    assert len(series["kind"].trials) == 24
    assert series["shift_size"].kind == "discrete" and series["shift_size"].choices == [1, 3, 5, 7]
    report = collect(study)
    assert len(report.points) == 24 and report.duplicates == 3
    assert len(collect(study, with_duplicates=True).points) == 27


def test_param_series_kinds_and_values() -> None:
    study = make_study()
    series = {s.name: s for s in param_series(study)}
    assert series["kind"].kind == "categorical"
    assert series["kind"].choices == ["axial_shift", "spatial_shift", "dwconv"]
    assert series["lr"].kind == "numeric" and series["lr"].log
    assert series["shift_size"].kind == "discrete" and series["shift_size"].choices == [1, 3, 5, 7, 9]
    done = {t.number: t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    s = series["shift_size"]
    assert sorted(s.trials) == sorted(done)
    for n, v, acc in zip(s.trials, s.values, s.accuracy):
        assert done[n].params["shift_size"] == v and done[n].values[0] == acc


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []
        self.rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and (a.get("id") or "").startswith("trial-"):
            self.rows.append(a["id"] or "")
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag in ("script", "link") or (tag == "a" and (a.get("href") or "").startswith("http")):
            self.links.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_command_writes_one_self_contained_page() -> None:
    study = make_study()
    result = CliRunner().invoke(cli, ["report", "toy"])
    assert result.exit_code == 0, result.output
    out = Path("results/toy")
    pngs = sorted(out.glob("*.png"))
    # pareto, importances, one per searched parameter (kind, lr, padding, shift_size)
    assert [p.name for p in pngs] == sorted(
        [
            "pareto.png",
            "hypervolume.png",
            "importances.png",
            "param_kind.png",
            "param_lr.png",
            "param_padding.png",
            "param_shift_size.png",
        ]
    )
    page = _Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.links == []  # no scripts, stylesheets or outside links
    assert len(page.imgs) == len(pngs)
    embedded = []
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        embedded.append(base64.b64decode(src.split(",", 1)[1]))
    assert all(b.startswith(PNG_MAGIC) for b in embedded)
    assert sorted(embedded) == sorted(p.read_bytes() for p in pngs)
    # every trial is a leaderboard row, the failed one too
    assert sorted(page.rows) == sorted(f"trial-{t.number}" for t in study.trials)
    text = "\n".join(page.text)
    assert "FAIL" in text and "over_budget" in text


def _area(points: list[tuple[float, float]], ref: float) -> float:
    """The dominated area by a second formula: the union of the rectangles [g, ref] x [0, a],
    integrated over a fine grid of GFLOPs cells (exact here: every edge is on the grid)."""
    edges = sorted({g for _, g in points} | {ref})
    area = 0.0
    for left, right in itertools.pairwise(edges):
        area += (right - left) * max((a for a, g in points if g <= left), default=0.0)
    return area


def test_hypervolume_curves_of_compared_studies_share_one_reference() -> None:
    a, b = make_study("a", n_trials=10), make_study("b", n_trials=6, fail=False)
    report = collect(a, compare=[b])
    # reference: 1.1 x the largest GFLOPs costed in either (a's over-budget trial: 9.0)
    assert report.hv_ref_gflops == pytest.approx(1.1 * 9.0)
    assert [label for label, _ in report.hypervolume] == ["a", "b"]
    for study, (_, curve) in zip((a, b), report.hypervolume):
        assert [n for n, _ in curve] == [t.number for t in study.trials]
        hvs = [hv for _, hv in curve]
        assert hvs == sorted(hvs)  # a trial can only add area
        done = [(t.values[0], t.values[1]) for t in study.trials if t.state.name == "COMPLETE"]
        assert hvs[-1] == pytest.approx(_area(done, 9.9))
        first = done[0]  # after the first trial: one rectangle
        assert hvs[0] == pytest.approx(first[0] * (9.9 - first[1]))
    result = CliRunner().invoke(cli, ["report", "a", "b", "--quiet"])
    assert result.exit_code == 0, result.output
    html = Path("results/a/report.html").read_text(encoding="utf-8")
    assert (Path("results/a") / "hypervolume.png").read_bytes().startswith(PNG_MAGIC)
    assert "<h2>Hypervolume</h2>" in html and "9.9 GFLOPs" in html
    assert f"b {report.hypervolume[1][1][-1][1]:.5g}" in html
    with pytest.raises(SystemExit) as exc:
        main(["report", "a", "nosuch"])
    assert exc.value.code == 2


def test_report_html_file_and_a_study_with_one_trial(tmp_path: Path) -> None:
    make_study("one", n_trials=1, fail=False)
    result = CliRunner().invoke(cli, ["report", "one", "--html", str(tmp_path / "here" / "one.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "here" / "one.html").read_text(encoding="utf-8")
    assert "need at least" in html  # importances: a note, no crash
    assert (tmp_path / "here" / "pareto.png").is_file()  # the PNGs beside the page
    assert not (tmp_path / "here" / "importances.png").exists()
    assert not Path("results/one/report.html").exists()


def test_report_out_is_the_results_root(tmp_path: Path) -> None:
    """As for search and leaderboard: the study is OUT/STUDY/, the page OUT/STUDY/report.html."""
    make_study("moved", n_trials=4, fail=False)
    root = tmp_path / "elsewhere"
    Path("results").rename(root)
    result = CliRunner().invoke(cli, ["report", "moved", "--out", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / "moved" / "report.html").is_file()
    with pytest.raises(SystemExit) as exc:
        main(["report", "moved", "--out", "report.html"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report", "nosuch"], "study 'nosuch' not found under results/ (studies there: toy"),
        (["report", "other", "--storage", "results/toy/journal.log"], "'other'"),
        (["report", "x", "--storage", "sqlite:///missing.db"], "missing.db"),
    ],
)
def test_bad_study_is_one_line_exit_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_study(n_trials=2, fail=False)
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not Path("results/nosuch").exists()  # nothing written for a missing study


def test_open_study_unknown_names_known_ones() -> None:
    make_study(n_trials=1, fail=False)
    with pytest.raises(StudyError, match="toy"):
        open_study("nope", "results/toy/journal.log")


def test_single_objective_study_and_one_without_finished_trials() -> None:
    path = Path("results/acc/journal.log")
    path.parent.mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="acc", storage=storage, direction="maximize")
    for _ in range(2):  # nothing finished yet: a page with notes, no plots, every trial listed
        t = study.ask({"shift_size": optuna.distributions.IntDistribution(1, 9, step=2)})
        t.set_user_attr("status", "rejected")
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    assert CliRunner().invoke(cli, ["report", "acc"]).exit_code == 0
    page = _Page()
    page.feed(Path("results/acc/report.html").read_text(encoding="utf-8"))
    assert page.imgs == [] and not list(Path("results/acc").glob("*.png"))
    assert sorted(page.rows) == ["trial-0", "trial-1"]
    # accuracy only (`--objective accuracy`): GFLOPs come from the trial attributes
    study.optimize(lambda t: _objective(t)[0], n_trials=6)
    report = collect(study)
    assert report.directions == ["maximize"]
    assert len(report.points) == 6 and report.points["front"].any()
    assert CliRunner().invoke(cli, ["report", "acc"]).exit_code == 0
    assert Path("results/acc/pareto.png").read_bytes().startswith(PNG_MAGIC)


def test_front_trials_at_one_point_share_one_label() -> None:
    """Two configurations with equal accuracy and cost: one label "#a, #b", not two on top."""
    from affinity.report.pictures import plot_pareto

    study = make_study(n_trials=6, fail=False)
    best = max((t for t in study.trials if t.values), key=lambda t: t.values[0])
    twin = study.ask()
    for key, value in best.user_attrs.items():
        twin.set_user_attr(key, value)
    study.tell(twin, list(best.values))
    labels = [t.get_text() for t in plot_pareto(collect(study)).axes[0].texts]
    assert f"#{best.number}, #{twin.number}" in labels
    assert f"#{twin.number}" not in labels


def test_report_leaderboard_counts_in_one_unit_per_column() -> None:
    """The toy's 0.12-0.30 GFLOPs read as MFLOPs, 0.21-0.29 M params as K params."""
    from affinity.report.html import render_html

    page = render_html(collect(make_study(n_trials=6, fail=False)), [])
    assert "<th>MFLOPs</th>" in page and "<th>params (K)</th>" in page
    assert "<th>gflops</th>" not in page
