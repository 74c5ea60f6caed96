"""A study's report as ONE self-contained HTML file: no network, no scripts, no external CSS;
every picture is embedded as a base64 PNG ``data:`` URI (and also written beside it)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affinity._io import atomic_write_bytes, atomic_write_text
from affinity.units import scale_for

if TYPE_CHECKING:
    from affinity.report.study import StudyReport

__all__ = ["Image", "render_html", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.8em}th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f4f4f4;position:sticky;top:0}tr.front td{background:#fdecea}
.scroll{max-height:32em;overflow:auto}.note{color:#666;font-style:italic}
figure{display:inline-block;margin:.5em}img{max-width:100%}pre{background:#f7f7f7;padding:.6em;font-size:.8em}
"""


@dataclass
class Image:
    """One picture of the report.

    Args:
        section: ``pareto`` | ``hypervolume`` | ``importances`` | ``params`` | ``proxies``.
        filename: the PNG written beside the report.
        caption: one line under the picture.
        png: the PNG bytes.
    """

    section: str
    filename: str
    caption: str
    png: bytes


def _img(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    alt, file = html.escape(image.caption, quote=True), html.escape(image.filename, quote=True)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}" data-file="{file}">'
        f"<figcaption>{html.escape(image.caption)}</figcaption></figure>"
    )


def _leaderboard_table(report: StudyReport) -> str:
    """Every trial; FLOPs and parameters in one unit per column (K, M or G) so they compare."""
    board = report.leaderboard
    front = set(report.points.loc[report.points["front"], "number"].tolist())
    num_col = next(c for c in ("number", "trial") if c in board.columns)
    # counts stored in GFLOPs / millions, shown in their column's unit
    counts = {c: f for c, f in (("gflops", 1e9), ("params_m", 1e6)) if c in board.columns}
    units = {c: scale_for(board[c].astype(float) * f) for c, f in counts.items()}
    headers = {"gflops": units["gflops"].label("FLOPs")} if "gflops" in units else {}
    if "params_m" in units:
        headers["params_m"] = units["params_m"].label("params")

    def cell(col: str, value: Any) -> str:
        if col in units and _fmt(value):
            return units[col](float(value) * counts[col])
        return _fmt(value)

    head = "".join(f"<th>{html.escape(headers.get(str(c), str(c)))}</th>" for c in board.columns)
    rows = []
    for rec in board.itertuples(index=False):
        values = dict(zip(board.columns, rec))
        number = int(values[num_col])
        cls = ' class="front"' if number in front else ""
        cells = "".join(f"<td>{html.escape(cell(c, v))}</td>" for c, v in values.items())
        rows.append(f'<tr id="trial-{number}"{cls}>{cells}</tr>')
    body = "".join(rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _fmt(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, (str, list, tuple, dict)) and bool(pd.isna(value))):
        return ""  # None, NaN, pd.NA: an empty cell, as in leaderboard.csv
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_html(report: StudyReport, images: list[Image]) -> str:
    """The report page for ``report`` with ``images`` embedded."""
    by_section: dict[str, list[Image]] = {}
    for im in images:
        by_section.setdefault(im.section, []).append(im)
    esc = html.escape
    n_front = int(report.points["front"].sum())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>affinity report: {esc(report.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>affinity report: {esc(report.name)}</h1>",
        f"<p>{len(report.leaderboard)} trials; objectives: {esc(', '.join(report.directions))}; "
        f"{n_front} on the Pareto front (val accuracy up, GFLOPs down). FLOPs are fvcore's: "
        "one multiply-add counts as one FLOP."
        + (
            f" The plots and importances count each configuration once: {report.duplicates} "
            "duplicate trials (the leaderboard lists them) are left out (--with-duplicates keeps them)."
            if report.duplicates
            else ""
        )
        + "</p>",
        "<h2>Pareto front</h2>",
        *(_img(im) for im in by_section.get("pareto", [])),
    ]
    if not by_section.get("pareto"):
        parts.append('<p class="note">no finished trial has both a val accuracy and GFLOPs</p>')
    if report.hypervolume:
        parts.append("<h2>Hypervolume</h2>")
        parts.extend(_img(im) for im in by_section.get("hypervolume", []))
        finals = "; ".join(f"{esc(label)} {curve[-1][1]:.5g}" for label, curve in report.hypervolume if curve)
        parts.append(
            f"<p>Area of the (val accuracy, GFLOPs) plane the feasible trials dominate, up to the "
            f"reference point val accuracy 0, {report.hv_ref_gflops:.4g} GFLOPs (1.1 x the largest "
            f"GFLOPs costed in the studies shown). Final: {finals}.</p>"
        )
    parts.append("<h2>Leaderboard</h2>")
    parts.append('<p class="note">Rows of the Pareto front are shaded.</p>')
    parts.append(_leaderboard_table(report))
    parts.append("<h2>Parameter importances</h2>")
    parts.extend(_img(im) for im in by_section.get("importances", []))
    if report.importances.note:
        parts.append(f'<p class="note">{esc(report.importances.note)}</p>')
    parts.append("<h2>Val accuracy per searched parameter</h2>")
    parts.extend(_img(im) for im in by_section.get("params", []))
    if not by_section.get("params"):
        parts.append('<p class="note">no finished trial with searched parameters</p>')
    if by_section.get("proxies"):
        parts.append("<h2>Zero-cost proxies</h2>")
        parts.append(
            '<p class="note">From <code>affinity proxies</code>: each trained configuration scored '
            "untrained; Kendall τ and Spearman ρ with the trained val accuracy in each title.</p>"
        )
        parts.extend(_img(im) for im in by_section["proxies"])
    parts.append("<h2>Configurations on the front</h2>")
    figures = {
        int(n): (float(a), float(g))
        for n, a, g in zip(report.points["number"], report.points["accuracy"], report.points["gflops"])
    }
    for number, text in report.front_configs:
        acc, gflops = figures[number]
        params = ", ".join(f"{k}={v}" for k, v in report.trial_params.get(number, {}).items())
        parts.append(
            f"<h3>trial #{number}: val accuracy {acc:.4f}, {gflops:.4g} GFLOPs</h3>"
            f"<p>{esc(params)}</p><pre>{esc(text)}</pre>"
        )
    if not report.front_configs:
        parts.append('<p class="note">the front is empty</p>')
    parts.append("<h2>Provenance</h2>")
    if report.provenance:
        cells = "".join(
            f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in report.provenance.items()
        )
        parts.append(f"<table>{cells}</table>")
    else:
        parts.append('<p class="note">not recorded (a study from before affinity recorded it)</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    report: StudyReport, out_dir: str | Path, *, html_name: str = "report.html"
) -> tuple[Path, list[Path]]:
    """Draw every picture, write each PNG and the page (``html_name``) into ``out_dir``.

    Returns:
        The HTML path and the PNG paths, in the order they appear in the page.
    """
    from affinity.report import pictures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: list[Image] = []
    if len(report.points):
        images.append(
            Image(
                "pareto",
                "pareto.png",
                "val accuracy vs GFLOPs; the front in red, labelled by trial",
                pictures.png_bytes(pictures.plot_pareto(report)),
            )
        )
    if report.hypervolume:
        images.append(
            Image(
                "hypervolume",
                "hypervolume.png",
                "hypervolume against trial number"
                + (", one line per study" if len(report.hypervolume) > 1 else ""),
                pictures.png_bytes(pictures.plot_hypervolume(report)),
            )
        )
    if report.importances.values:
        images.append(
            Image(
                "importances",
                "importances.png",
                "fANOVA importance of each parameter for val accuracy, among the trials that have it",
                pictures.png_bytes(pictures.plot_importances(report)),
            )
        )
    for s in report.params:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s.name)
        images.append(
            Image(
                "params",
                f"param_{safe}.png",
                f"val accuracy vs {s.name}",
                pictures.png_bytes(pictures.plot_param(s, report.name)),
            )
        )
    from affinity.proxies import FOLDER

    for png in sorted((out / FOLDER).glob("proxy_*.png")):  # drawn by `affinity proxies STUDY`
        caption = f"trained val accuracy vs {png.stem.removeprefix('proxy_')}"
        images.append(Image("proxies", f"{FOLDER}/{png.name}", caption, png.read_bytes()))
    written = {im.filename for im in images}
    for old in [out / "pareto.png", out / "importances.png", *out.glob("param_*.png")]:
        if old.name not in written:  # a plot of an earlier report that this one no longer has
            old.unlink(missing_ok=True)
    paths = []
    for im in images:
        paths.append(atomic_write_bytes(out / im.filename, im.png))
    page = atomic_write_text(out / html_name, render_html(report, images))
    return page, paths
