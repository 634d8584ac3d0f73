"""``lelp finetune``: the teacher's fine-tune as a background job, as the Data page queues it
(``jobs.submit_finetune``)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import ConfigArg, SetOpt, WorkspaceOpt, _load, _workspace
from .jobs import _friendly


@_friendly
def finetune(
    config: ConfigArg = None,
    set_: SetOpt = None,
    workspace: WorkspaceOpt = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Run the job here and now (Ctrl-C stops it; a retry resumes)"),
    ] = False,
) -> None:
    """Fine-tune the MiniLM teacher as a background job; runs naming it then use its outputs.

    teacher.mode is set to finetune; teacher.epochs, lr and batch_size apply. A `lelp worker`
    runs it; `lelp jobs list` shows its step, `lelp jobs cancel N` stops it and `lelp jobs
    retry N` resumes it from its last checkpoint. Its outputs land in the workspace cache,
    where every run and page that names this teacher (mode finetune) finds them.
    """
    from ..jobs import get_job, run_job, submit_finetune

    cfg = _load(config, set_)
    ws = _workspace(workspace)
    done = submit_finetune(ws, cfg.dataset, cfg.teacher)
    typer.echo(done.message())
    if not wait:
        typer.echo("run it with `lelp worker`; follow it with `lelp jobs list`")
        return
    if done.action == "already":
        job = get_job(ws, done.job_id)
        typer.echo(f"job {job.id} is {job.state}; not running it twice")
        return
    job = run_job(ws, done.job_id)
    if job.state == "succeeded":
        typer.echo(f"job {job.id} succeeded: teacher outputs {str(job.result)[:16]} cached")
    else:
        why = f": {job.error}" if job.error else ""
        typer.echo(f"job {job.id} {job.state}{why}; `lelp jobs retry {job.id}` resumes it")
        raise typer.Exit(1)
