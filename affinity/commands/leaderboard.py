"""``affinity leaderboard STUDY``: rebuild a study's leaderboard from its storage."""

from __future__ import annotations

import click

from affinity.commands._options import format_option, out_option, storage_option

#: columns sorted best-first in descending order; every other column sorts ascending
DESCENDING = ("val_acc",)


@click.command("leaderboard")
@click.argument("study")
@storage_option
@out_option("Results root: the study is OUT/STUDY/.")
@click.option("--top", type=int, default=None, help="Show only the first K rows.")
@click.option(
    "--sort", "sort_col", default=None, help="Sort by this column (val_acc descending, others ascending)."
)
@click.option(
    "--with-duplicates",
    is_flag=True,
    help="Also list trials that repeat an earlier configuration (the CSV always has them).",
)
@click.option(
    "--hv-ref-gflops",
    type=float,
    default=None,
    help="Reference GFLOPs of the hypervolume (default: 1.1 x the largest GFLOPs costed).",
)
@format_option
def command(
    study: str,
    storage: str | None,
    out: str,
    top: int | None,
    sort_col: str | None,
    with_duplicates: bool,
    hv_ref_gflops: float | None,
    fmt: str,
) -> None:
    """Rebuild a study's leaderboard (one row per trial, Pareto ranks) from its storage.

    --format json writes {"study", "provenance" (the versions, platform, device and git
    commit that produced the study), "trials" (the rows)}.

    Columns are documented in README.md (val_acc, gflops, params_m, latency_ms, pareto_rank,
    dominated_by, ... and one per searched parameter). GFLOPs are fvcore's: one
    multiply-add counts as one FLOP. The table and JSON list each configuration once (a
    duplicate reuses an earlier trial's result); --format csv keeps every trial. The
    hypervolume of the (max val_acc, min GFLOPs) front (reference point: val_acc 0 and
    --hv-ref-gflops) closes the table, and is JSON's ``hypervolume`` beside its ``trials``.
    """
    from affinity.errors import StudyError
    from affinity.search.hypervolume import study_hypervolume
    from affinity.search.leaderboard import build_leaderboard
    from affinity.search.render import leaderboard_table
    from affinity.search.runner import quiet_optuna
    from affinity.search.study import load_study

    quiet_optuna()
    if top is not None and top < 1:
        raise StudyError(f"--top: {top} is not allowed; allowed: an integer >= 1")
    if hv_ref_gflops is not None and not hv_ref_gflops > 0:
        raise StudyError(f"--hv-ref-gflops: {hv_ref_gflops:g} is not allowed; allowed: a number > 0")
    from affinity.search.provenance import ATTR, describe

    st = load_study(study, storage, out=out)
    board = build_leaderboard(st)
    hv, ref = study_hypervolume(board, hv_ref_gflops)
    if sort_col is not None:
        if sort_col not in board.columns:
            raise StudyError(f"--sort: {sort_col!r} is not a column; allowed: {', '.join(board.columns)}")
        board = board.sort_values(
            sort_col, ascending=sort_col not in DESCENDING, na_position="last", kind="mergesort"
        ).reset_index(drop=True)
    total = len(board)
    if not with_duplicates and fmt != "csv":
        board = board[board["status"] != "duplicate"].reset_index(drop=True)
    hidden = total - len(board)
    if top is not None:
        board = board.head(top)
    if fmt == "csv":
        click.echo(board.to_csv(index=False), nl=False)
    elif fmt == "json":
        import json

        rows = json.loads(board.to_json(orient="records"))
        doc = {
            "study": study,
            "provenance": st.user_attrs.get(ATTR),
            "hypervolume": {"value": hv, "reference": {"val_acc": 0.0, "gflops": ref}},
            "trials": rows,
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        from affinity._console import console

        notes = []
        if hidden:
            notes.append(f"{hidden} duplicate trials hidden (--with-duplicates lists them)")
        if ref is not None:
            notes.append(f"hypervolume {hv:.5g} (reference point: val_acc 0, {ref:.4g} GFLOPs)")
        shown = f"top {len(board)} of " if top is not None else ""
        title = f"{study}: {shown}{total - hidden} distinct configurations ({total} trials)"
        note = "; ".join(filter(None, [*notes, describe(st.user_attrs.get(ATTR))]))
        console().print(leaderboard_table(board, title, note=note))
