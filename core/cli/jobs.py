"""``lelp jobs ...`` and ``lelp worker``: a thin Typer shell over the jobs package.

``jobs_app`` is mounted as ``lelp jobs`` and :func:`worker` as ``lelp worker`` (the loop is
``jobs.serve``, which ``python -m lelp_studio.jobs worker`` runs too). The jobs package is
imported inside each command: it pulls in pandas, and ``lelp --help`` should start fast.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from ..config import ConfigError, load_config
from ..store import WorkspaceError
from .common import SetOpt, WorkspaceOpt, _workspace

jobs_app = typer.Typer(
    help="List, submit, cancel, retry and sweep background jobs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Expected errors print one line and exit with status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..jobs import JobError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, JobError, WorkspaceError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _ago(t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0.0, time.time() - t)
    return (
        f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"
    )


def _progress_text(job: Any) -> str:
    p = job.progress
    if not p:
        return "-"
    parts = []
    if p.get("stage"):
        parts.append(str(p["stage"]))
    if p.get("total"):
        parts.append(f"{p.get('step', 0)}/{p['total']} ({100 * job.fraction:.0f}%)")
    if p.get("epoch"):
        parts.append(f"epoch {p['epoch']}/{p.get('epochs', '?')}")
    return " ".join(parts) or "-"


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["train.seed=0,1,2", "subclasses.n_subclasses=[2,2],[4,4]"]`` -> a grid dict.

    Values are read as YAML; commas inside brackets do not split, so per-class lists work.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. train.seed=0,1,2")
        key, raw = item.split("=", 1)
        parts, depth, cur = [], 0, ""
        for ch in raw:
            depth += ch in "[{"
            depth -= ch in "]}"
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        try:
            grid[key.strip()] = [yaml.safe_load(p.strip()) for p in parts if p.strip()]
        except yaml.YAMLError as err:
            raise ConfigError(f"--grid {item!r}: a value is not valid YAML ({err})") from None
    return grid


@jobs_app.command("list")
@_friendly
def list_cmd(
    workspace: WorkspaceOpt = None,
    sweep: Annotated[str | None, typer.Option(help="Only the jobs of this sweep id")] = None,
    state: Annotated[
        list[str] | None, typer.Option(help="Only jobs in this state (repeatable)")
    ] = None,
) -> None:
    """Jobs, newest first: state, progress, device and the start of any error."""
    from rich.console import Console
    from rich.table import Table

    from ..jobs import list_jobs

    jobs = list_jobs(_workspace(workspace), sweep_id=sweep, states=tuple(state) if state else None)
    if not jobs:
        typer.echo("no jobs")
        return
    table = Table("id", "kind", "name", "state", "progress", "device", "heartbeat", "error")
    for j in jobs:
        table.add_row(
            str(j.id),
            j.kind,
            j.name[:40],
            j.state,
            _progress_text(j),
            j.device or "-",
            _ago(j.heartbeat) if j.state == "running" else "-",
            (j.error or j.progress.get("note") or "")[:60],
        )
    Console().print(table)


@jobs_app.command("show")
@_friendly
def show_cmd(
    job_id: Annotated[int, typer.Argument(help="Job id (see `lelp jobs list`)")],
    workspace: WorkspaceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole row as JSON")] = False,
) -> None:
    """One job in full: config, progress, metrics history, error and log tail."""
    import dataclasses

    from ..jobs import get_job

    job = get_job(_workspace(workspace), job_id)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(job), indent=2))
        return
    typer.echo(f"job {job.id} ({job.kind}) {job.name}: {job.state}")
    typer.echo(f"  device {job.device or '-'}  attempts {job.attempts}  pid {job.pid or '-'}")
    typer.echo(f"  progress {_progress_text(job)}  heartbeat {_ago(job.heartbeat)}")
    if job.sweep_id:
        typer.echo(f"  sweep {job.sweep_id}")
    if job.batch_size_override:
        typer.echo(f"  batch size reduced to {job.batch_size_override} after out-of-memory")
    if job.result:
        typer.echo(f"  result {job.result}")
    if job.metrics:
        typer.echo(f"  metrics ({len(job.metrics)} evaluations), last: {job.metrics[-1]}")
    if job.progress.get("note"):
        typer.echo(f"  note: {job.progress['note']}")
    if job.error:
        typer.secho(f"  error: {job.error}", fg=typer.colors.RED)
    typer.echo("config:\n" + yaml.safe_dump(job.config, sort_keys=False).rstrip())
    if job.log_tail:
        typer.echo("log tail:\n" + job.log_tail.rstrip())


@jobs_app.command("submit")
@_friendly
def submit_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML run config")] = None,
    set_: SetOpt = None,
    workspace: WorkspaceOpt = None,
    kind: Annotated[str, typer.Option(help="distill, embed or teacher-finetune")] = "distill",
) -> None:
    """Queue one job (run by `lelp worker`)."""
    from ..jobs import submit

    cfg = load_config(config, set_ or [])
    job_id = submit(_workspace(workspace), kind, cfg)
    typer.echo(f"queued job {job_id}")


@jobs_app.command("cancel")
@_friendly
def cancel_cmd(job_id: int, workspace: WorkspaceOpt = None) -> None:
    """Cancel a job: a queued one now, a running one within a few seconds (metrics stay)."""
    from ..jobs import request_cancel

    state = request_cancel(_workspace(workspace), job_id)
    if state == "running":
        typer.echo(f"cancel requested for job {job_id}; it stops at its next check")
    else:
        typer.echo(f"job {job_id} is {state}")


@jobs_app.command("retry")
@_friendly
def retry_cmd(job_id: int, workspace: WorkspaceOpt = None) -> None:
    """Re-queue a failed or cancelled job; it resumes from its last readable checkpoint (a
    damaged one falls back to the previous one or restarts from epoch 1, and says so)."""
    from ..jobs import STEP_KINDS, checkpoints_each_epoch, resume_point, resume_text, retry

    ws = _workspace(workspace)
    job = retry(ws, job_id)
    point = resume_point(ws, job_id, job.kind)
    by_step = job.kind in STEP_KINDS
    if point.note:
        typer.echo(f"job {job_id} re-queued; {point.note}")
    elif point.epoch or point.step:
        typer.echo(f"job {job_id} re-queued; it resumes {resume_text(point, by_step)}")
    elif checkpoints_each_epoch(job.kind):
        start = "step 0" if by_step else "epoch 1"
        typer.echo(f"job {job_id} re-queued; it has no checkpoint yet, so it starts from {start}")
    else:
        typer.echo(f"job {job_id} re-queued")


@jobs_app.command("sweep")
@_friendly
def sweep_cmd(
    config: Annotated[Path | None, typer.Argument(help="Base YAML run config")] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", "-g", help="KEY=V1,V2 (repeatable), e.g. train.seed=0,1,2"),
    ] = None,
    set_: SetOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Queue one job per point of a grid (the cartesian product of all --grid keys)."""
    from ..jobs import submit_sweep

    base = load_config(config, set_ or [])
    sweep_id, ids = submit_sweep(_workspace(workspace), base, parse_grid(grid or []))
    typer.echo(f"sweep {sweep_id}: queued {len(ids)} jobs ({ids[0]}..{ids[-1]})")


@_friendly
def worker(
    workspace: WorkspaceOpt = None,
    executor: Annotated[str, typer.Option(help="local (default) or ray")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray executor), e.g. ray://host:10001")
    ] = None,
    max_cpu_jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU jobs at once (local; default: $LELP_CPU_JOBS, else one per core up to 4, "
            "1 on a machine with GPUs); each gets its share of the cores as torch threads",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Exit when the queue is empty and jobs have ended")
    ] = False,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between queue polls")] = 0.5,
    parent_pid: Annotated[
        int | None,
        typer.Option(
            "--parent-pid",
            help="Exit once the process with this id has ended (the app starts its worker "
            "with its own id, so the worker stops with the app)",
        ),
    ] = None,
) -> None:
    """Run queued jobs: locally (one process per job, one job per GPU) or on a Ray cluster.

    The worker runs until Ctrl-C or SIGTERM (or, with --once, until the queue is empty). When
    it stops, job processes already running carry on, finish and record their result; queued
    jobs wait for the next worker. The worker the app starts is given --parent-pid, so it
    exits when the app stops; start `lelp worker` yourself to keep jobs running without the
    app.
    """
    from ..jobs import serve

    serve(
        _workspace(workspace),
        executor,
        address=address,
        max_cpu_jobs=max_cpu_jobs,
        once=once,
        poll=poll,
        parent_pid=parent_pid,
        echo=typer.echo,
    )
