"""Whether a running job's process is alive: any reader fails a job whose heartbeat is stale
AND whose process, on this host, is gone, so a job whose worker and process were both killed
can be retried or cancelled without a worker running."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path

from ..store import Workspace
from .table import Job, _db

DEAD_AFTER_S = 10.0
"""Seconds without a heartbeat (beats come every second) after which a reader checks whether a
running job's process still exists; a job is marked failed only when it does not."""


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie (which can never
    beat again). Errs towards alive: a job is never failed while its process might run."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): existence is all we know
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])


def _job_process_starting(ws: Workspace, job_id: int) -> bool:
    """Whether a ``python -m lelp_studio.jobs run`` process for this job exists on this host: its
    worker may have died after starting it and before it recorded its pid. True where
    ``/proc`` cannot tell (then only a worker's ``recover_stale`` fails such a job)."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        return True
    want = ["lelp_studio.jobs", "run", "--workspace", str(ws.root.resolve()), "--job", str(job_id)]
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if args[-len(want) - 1 : -1] == want or args[-len(want) :] == want:
            return True
    return False


def _process_gone(ws: Workspace, job: Job) -> bool:
    """True only when the job's process provably ended: it ran on THIS host (the worker id
    ``local-<host>-<pid>`` or ``direct-<host>-<pid>`` says so) and its pid is not alive, or,
    before it recorded one, neither its worker nor a job process for it is. Ray tasks and
    unknown workers are never judged here (their executor recovers them)."""
    kind, _, rest = (job.worker_id or "").partition("-")
    host, _, owner = rest.rpartition("-")
    if kind not in ("local", "direct") or host != socket.gethostname() or not owner.isdigit():
        return False
    if job.pid:
        return not _pid_alive(job.pid)
    return not _pid_alive(int(owner)) and not _job_process_starting(ws, job.id)


def _dead_reason(ws: Workspace, job: Job, now: float) -> str | None:
    """The one-line reason a running job is dead (stale heartbeat AND process gone), else None."""
    if job.state != "running":
        return None
    beat = job.heartbeat or job.started or job.created
    if now - beat < DEAD_AFTER_S or not _process_gone(ws, job):
        return None
    since = time.strftime(
        "%H:%M:%S" if now - beat < 86400 else "%Y-%m-%d %H:%M", time.localtime(beat)
    )
    return (
        f"the job's process died (no heartbeat since {since}); retry it with "
        f"`lelp jobs retry {job.id}`"
    )


def _settle(ws: Workspace, job: Job, now: float, state: str = "failed") -> Job:
    """Mark a dead running job ``state`` (failed, or cancelled for a cancel request) so it can
    be retried without a worker running; any reader does this. Guarded by the attempt and the
    stale heartbeat, so a job that came back to life or was re-queued meanwhile is untouched.
    A read-only catalogue shows the row as it is."""
    reason = _dead_reason(ws, job, now)
    if reason is None:
        return job
    if state == "cancelled":
        reason = f"cancelled; {reason.split(';')[0]}"
    try:
        with _db(ws) as con:
            con.execute(
                "UPDATE jobs SET state=?, finished=?, error=? WHERE id=? AND state='running' "
                "AND attempts=? AND COALESCE(heartbeat, started, created) < ?",
                (state, now, reason, job.id, job.attempts, now - DEAD_AFTER_S),
            )
            row = con.execute("SELECT * FROM jobs WHERE id=?", (job.id,)).fetchone()
    except sqlite3.Error:
        return job
    return Job.from_row(row)
