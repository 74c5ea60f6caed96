"""Rendering of a ``ProfileResult``: rich tables, JSON, CSV. Pure functions of the result.

Tables pick one unit per table for counts (``affinity.units``): a 16×16 toy model reads in
KFLOPs, a 224×224 backbone in GFLOPs, and every figure of a column compares. Text that
comes from data (model names, paths, notes) is escaped, never read as rich markup.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from affinity.profiling._result import ProfileResult
from affinity.units import scale_for

__all__ = ["LEGEND", "render_table", "to_csv", "to_json"]

#: printed under the tables: what the short headers mean
LEGEND = (
    "FLOPs: multiply-adds of one image (fvcore counts one multiply-add as one FLOP, as the papers do); "
    "K = 10³, M = 10⁶, G = 10⁹. map: tokens H×W. %: share of the model's FLOPs. "
    "dense N×N: the token mixing as dense N×N matrices (what the fast paths avoid)."
)


#: the columns of ``to_csv``
CSV_COLUMNS = ("model", "img_size", "part", "params", "gflops", "flops_pct", "latency_ms", "throughput")


def _pct(part: int, total: int) -> float:
    return 100.0 * part / total if total else 0.0


def _fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}%"


def to_json(result: ProfileResult) -> str:
    """The result as JSON (keys documented in README.md, "affinity profile")."""
    return json.dumps(result.to_dict(), indent=2)


def to_csv(result: ProfileResult) -> str:
    """One CSV row per part (each stage, the head, and a ``total`` row); GFLOPs to six
    significant digits, so a toy model's figures are not rounded to zero."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in result.stages:
        gflops, pct = f"{s.flops / 1e9:.6g}", f"{s.flops_pct:.2f}"
        writer.writerow([result.model, result.img_size, s.name, s.params, gflops, pct, "", ""])
    latency = "" if result.latency_ms is None else f"{result.latency_ms:.2f}"
    throughput = "" if result.throughput is None else f"{result.throughput:.2f}"
    total = [result.model, result.img_size, "total", result.params, f"{result.gflops:.6g}", "100.00"]
    writer.writerow([*total, latency, throughput])
    return buf.getvalue()


def _summary(result: ProfileResult) -> Any:
    from rich.markup import escape
    from rich.table import Table

    ref = result.reference or {}
    excl = bool(ref.get("params_exclude_head"))
    params = result.params_excl_head if excl else result.params
    ref_params = None if ref.get("params_m") is None else ref["params_m"] * 1e6
    ref_flops = None if ref.get("gflops") is None else ref["gflops"] * 1e9
    p_unit = scale_for([params, ref_params])
    f_unit = scale_for([result.flops, ref_flops, result.dense_nxn_flops])
    a_unit = scale_for([result.activations])
    table = Table(
        title=escape(f"{result.model} @ {result.img_size}×{result.img_size} ({result.device})"),
        title_justify="left",
    )
    table.add_column("")
    table.add_column("computed", justify="right")
    table.add_column("published", justify="right")
    table.add_column("diff", justify="right")
    table.add_row(
        p_unit.label("params") + (" excl. head" if excl else ""),
        p_unit(params),
        p_unit(ref_params),
        _fmt_pct(result.params_diff_pct),
    )
    diff = _fmt_pct(result.flops_diff_pct)
    table.add_row(f_unit.label("FLOPs"), f_unit(result.flops), f_unit(ref_flops), diff)
    table.add_row("top-1 (%)", "", "" if ref.get("top1") is None else f"{ref['top1']}", "")
    table.add_row(a_unit.label("activations"), a_unit(result.activations), "", "")
    table.add_row(f"dense N×N {f_unit.label('FLOPs')}", f_unit(result.dense_nxn_flops), "", "")
    if result.latency_ms is not None and result.throughput is not None:
        table.add_row(f"latency (ms, batch {result.batch_size})", f"{result.latency_ms:.1f}", "", "")
        table.add_row("throughput (img/s)", f"{result.throughput:.1f}", "", "")
    return table


def render_table(result: ProfileResult, *, per_layer: bool = False) -> list[Any]:
    """Rich renderables: the summary beside the published figures, per-stage, per-affinity and
    per-component tables, (``per_layer``) one row per embedding and block, and a legend."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    ref = result.reference or {}
    out: list[Any] = [_summary(result)]
    if ref.get("note"):
        out.append(Text(f"note: {ref['note']}", style="dim"))

    params = scale_for([s.params for s in result.stages])
    flops = scale_for([s.flops for s in result.stages])
    stages = Table(title="per stage", title_justify="left")
    for col in ("part", "map", "dim", params.label("params"), flops.label("FLOPs"), "%"):
        stages.add_column(col, justify="left" if col == "part" else "right")
    for s in result.stages:
        stages.add_row(
            escape(s.name),
            "" if s.hw is None else f"{s.hw[0]}×{s.hw[1]}",
            "" if s.dim is None else str(s.dim),
            params(s.params),
            flops(s.flops),
            f"{s.flops_pct:.1f}",
        )
    out.append(stages)

    params = scale_for([a.params for a in result.by_affinity])
    flops = scale_for([v for a in result.by_affinity for v in (a.flops, a.dense_nxn_flops)])
    kinds = Table(title="per affinity kind", title_justify="left")
    for col in ("affinity", "count", params.label("params"), flops.label("FLOPs"), "dense N×N"):
        kinds.add_column(col, justify="left" if col == "affinity" else "right")
    for a in result.by_affinity:
        dense = flops(a.dense_nxn_flops)
        kinds.add_row(escape(a.kind), str(a.count), params(a.params), flops(a.flops), dense)
    out.append(kinds)

    flops = scale_for(result.by_component.values())
    comp = Table(title="per component", title_justify="left")
    comp.add_column("component")
    comp.add_column(flops.label("FLOPs"), justify="right")
    comp.add_column("%", justify="right")
    for k, v in sorted(result.by_component.items(), key=lambda kv: -kv[1]):
        comp.add_row(escape(k), flops(v), f"{_pct(v, result.flops):.1f}")
    out.append(comp)

    if per_layer:
        params = scale_for([r.params for r in result.layers])
        flops = scale_for([r.flops for r in result.layers])
        layers = Table(title="per layer", title_justify="left")
        for col in ("module", "kind", params.label("params"), flops.label("FLOPs")):
            layers.add_column(col, justify="left" if col in ("module", "kind") else "right")
        for row in result.layers:
            layers.add_row(escape(row.path), escape(row.type), params(row.params), flops(row.flops))
        out.append(layers)
    out.append(Text(f"{LEGEND} Profiled in {result.seconds:.1f} s.", style="dim"))
    return out
