"""``lelp doctor``: check a workspace and repair what can be repaired."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..store import default_root
from .common import WorkspaceOpt


def doctor(
    workspace: WorkspaceOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Set damaged files aside and rebuild what can be")
    ] = False,
) -> None:
    """Check a workspace: catalogue, every array's header, size and hash, references,
    student weights, dead jobs, half-written files. Exit status 1 when problems remain."""
    from .. import doctor as dr  # it settles dead jobs: imports the jobs package (pandas)

    root = Path(workspace) if workspace is not None else default_root()
    if not root.is_dir():
        typer.secho(f"error: no workspace folder at {root}; pass -w with one", err=True)
        raise typer.Exit(2)
    if repair:
        for line in dr.repair(root):
            typer.echo(f"repaired: {line}")
    findings, _ = dr.safe_check(root)
    for f in findings:
        typer.echo(f.line())
    typer.echo(f"{root}: {dr.summary(findings)}")
    if findings:
        raise typer.Exit(1)
