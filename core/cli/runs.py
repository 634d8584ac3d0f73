"""``lelp runs``: finished runs aggregated and ranked, as Compare's sweep view shows them.
pandas (through ``sweeps``) and the jobs package are imported inside the command, so ``lelp
--help`` starts fast."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import WorkspaceOpt, _workspace, friendly


@friendly
def runs(
    sweep: Annotated[str | None, typer.Option(help="Only the runs of this sweep id")] = None,
    metric: Annotated[str, typer.Option(help="Score to rank by: accuracy or agreement")] = (
        "accuracy"
    ),
    save_best: Annotated[
        str | None, typer.Option(help="Save the best setting as a spec with this name")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Only runs on this dataset source")] = None,
    teacher: Annotated[str | None, typer.Option(help="Only runs with this teacher kind")] = None,
    objective: Annotated[str | None, typer.Option(help="Only runs of this objective")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or markdown")] = "table",
    workspace: WorkspaceOpt = None,
) -> None:
    """Finished runs aggregated: seeds folded (mean ± std, n), grouped by every setting that
    differs, ranked on the selection split, test shown beside it (Compare's sweep view)."""
    from .. import sweeps
    from ..jobs import sweep_run_ids

    if metric not in ("accuracy", "agreement"):
        raise typer.BadParameter("choose accuracy or agreement", param_hint="--metric")
    if fmt not in sweeps.FORMATS:
        raise typer.BadParameter(
            f"choose one of {', '.join(sweeps.FORMATS)}", param_hint="--format"
        )
    ws = _workspace(workspace)
    records = sweeps.filter_runs(
        ws.list_runs(), dataset=dataset, teacher=teacher, objective=objective
    )
    if sweep is not None:
        ids = set(sweep_run_ids(ws, sweep).get(sweep, []))
        if not ids:
            typer.secho(
                f"error: sweep {sweep!r} has no finished runs in {ws.root}; see `lelp jobs list`",
                err=True,
            )
            raise typer.Exit(2)
        records = [r for r in records if r["run_id"] in ids]
    df = sweeps.aggregate(records, metric=metric)
    typer.echo(sweeps.render(df, fmt))
    if df.empty or fmt != "table":
        if save_best is not None and not df.empty:
            ws.save_spec(save_best, sweeps.best_config(ws, df))
        return
    scored = df.dropna(subset=["sel_mean"])
    if not scored.empty:
        top = scored.iloc[0]
        typer.echo(
            f"best on the selection split: rank {top['rank']} ({top['n']} seeds), selection "
            f"{top['sel_mean']:.2f}, test {top['test_mean']:.2f} (shown, never used to rank)"
        )
    if save_best is not None:
        ws.save_spec(save_best, sweeps.best_config(ws, df))
        typer.echo(f"saved the best setting as spec {save_best!r}: lelp distill --spec {save_best}")
