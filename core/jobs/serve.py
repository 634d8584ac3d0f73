"""A worker's life, shared by ``lelp worker`` and ``python -m lelp_studio.jobs worker``:
start an executor, say what it runs, take jobs until stopped, idle or orphaned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..store import Workspace
from .kinds import plugin_kinds
from .local import LocalWorker
from .ray_executor import RayExecutor
from .table import JobError


def serve(
    ws: Workspace,
    executor: str = "local",
    *,
    address: str | None = None,
    max_cpu_jobs: int | None = None,
    once: bool = False,
    poll: float = 0.5,
    parent_pid: int | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Run queued jobs of ``ws`` locally or on a Ray cluster until Ctrl-C or SIGTERM (with
    ``once``, until the queue is empty; with ``parent_pid``, until that process is gone).
    ``max_cpu_jobs`` None: ``LELP_CPU_JOBS``, else one per core (``local.default_cpu_jobs``).
    ``echo`` prints the start line and why it stopped. A ``LELP_JOB_PLUGINS`` that cannot be
    loaded is refused here, in one line, rather than failing every job it would start."""
    plugin_kinds()
    w: LocalWorker | RayExecutor
    if executor == "local":
        w = LocalWorker(ws, max_cpu_jobs=max_cpu_jobs, poll=poll)
        w.start()
        echo(f"worker {w.worker_id}: {w.describe()}")
    elif executor == "ray":
        w = RayExecutor(ws, address=address, poll=poll)
        w.start()
        echo(f"ray executor {w.worker_id} connected (workspace {ws.root.resolve()})")
    else:
        raise JobError(f"--executor {executor!r}: choose local or ray")
    if w.run_forever(until_idle=once, parent_pid=parent_pid) == "parent gone":
        echo(
            f"worker: process {parent_pid} (the app) has ended; stopped taking jobs (running "
            "jobs finish on their own)"
        )
