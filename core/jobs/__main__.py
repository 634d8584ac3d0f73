"""``python -m lelp_studio.jobs run|worker``: what the local worker starts per job (``run``)
and what ``ensure_worker`` starts for the app (``worker``, the same loop as ``lelp worker``).

Its argument parsing lives here, with argparse, so a job process never imports the CLI (nor
Typer and rich): the CLI imports the jobs package, never the reverse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..config import ConfigError
from ..store import Workspace, WorkspaceError
from .runner import run_job
from .serve import serve
from .table import JobError

WORKSPACE_HELP = "Workspace folder (default $LELP_WORKSPACE or ./workspace)"


def _min(low: float, kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lelp_studio.jobs")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run one job in this process (the worker starts these)")
    run.add_argument("--job", type=int, required=True, help="Job id")
    run.add_argument("--workspace", "-w", type=Path, default=None, help=WORKSPACE_HELP)
    w = sub.add_parser("worker", help="Run queued jobs (what `lelp worker` runs)")
    w.add_argument("--workspace", "-w", type=Path, default=None, help=WORKSPACE_HELP)
    w.add_argument("--executor", default="local", help="local (default) or ray")
    w.add_argument("--address", default=None, help="Ray cluster address (ray executor)")
    w.add_argument(
        "--max-cpu-jobs",
        type=_min(1, int),
        default=None,
        help="CPU jobs at once (default: $LELP_CPU_JOBS, else one per core up to 4; 1 with GPUs)",
    )
    w.add_argument("--once", action="store_true", help="Exit when the queue is empty")
    w.add_argument("--poll", type=_min(0.05, float), default=0.5, help="Seconds between polls")
    w.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="Exit once the process with this id has ended (the app starts its worker with "
        "its own id, so the worker stops with the app)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run; the exit status (run: 0 when the job succeeded or was
    cancelled, else 1; worker: 2 with one line for an expected error)."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        final = run_job(Workspace(args.workspace), args.job, hard_cancel=True)
        return 0 if final.state in ("succeeded", "cancelled") else 1
    try:
        serve(
            Workspace(args.workspace),
            args.executor,
            address=args.address,
            max_cpu_jobs=args.max_cpu_jobs,
            once=args.once,
            poll=args.poll,
            parent_pid=args.parent_pid,
            echo=lambda line: print(line, flush=True),
        )
    except (ConfigError, JobError, WorkspaceError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
