"""``lelp export``: a run's student as ONNX or a Hugging Face folder, with a model card.
The exporters (torch, onnx) are imported inside the command, so ``lelp --help`` starts
fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import WorkspaceOpt, _workspace, friendly


@friendly
def export(
    run_id: Annotated[str, typer.Argument(help="The run to ship (ids: `lelp runs`)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write: new or empty")],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="onnx (every student) or hf (transformer students)"),
    ] = "onnx",
    force: Annotated[
        bool, typer.Option("--force", help="Replace a previous export in --out")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Export a run's student with a model card: onnx (onnxruntime) or hf (transformers'
    Auto classes); both output the class log-probabilities the project scores."""
    from ..export import MARKER, export_run, find_run

    ws = _workspace(workspace)
    folder = export_run(ws, find_run(ws, run_id), fmt, out, force=force)
    info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    size = info["size"]
    typer.echo(
        f"exported run {run_id} ({info['student_kind']} student, {len(info['labels'])} classes) "
        f"as {fmt} to {folder}"
    )
    typer.echo(
        f"  {size['parameters']:,} parameters, {size['files_bytes']:,} bytes; model card: "
        f"{folder / 'README.md'}"
    )
