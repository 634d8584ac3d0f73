"""The queue: submit, claim, report, finish, cancel, retry and recover jobs.

``submit`` inserts a ``queued`` row; ``claim`` turns the oldest runnable one ``running`` in ONE
``BEGIN IMMEDIATE`` transaction, so two workers never take the same job; ``finish`` records the
outcome; ``recover_stale`` fails only rows whose heartbeat is old (another worker may be
alive), and ``retry`` re-queues a failed job, which resumes from its checkpoint. Any reader
(``get_job``, ``list_jobs``) settles a running job whose process died (see ``liveness``).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
import uuid
from typing import Any

from ..config import ConfigError, RunConfig, config_from_dict, set_dotted
from ..store import Workspace
from ..sweeps import same_student
from .kinds import CONFIG_KINDS, KINDS, known_kinds, plugin_kinds, resources
from .liveness import _settle
from .table import FINAL_STATES, Job, JobError, _db, _jsonable, _merge_metrics


def _validate(kind: str, config: dict[str, Any] | RunConfig) -> dict[str, Any]:
    if kind not in KINDS and kind not in plugin_kinds():
        raise JobError(f"job kind {kind!r} is not known; choose one of {', '.join(known_kinds())}")
    if isinstance(config, RunConfig):
        return _finetunes(kind, config.model_dump(mode="json"))
    if not isinstance(config, dict):
        raise JobError(f"job config must be a dict or RunConfig, got {type(config).__name__}")
    if kind in CONFIG_KINDS:
        return _finetunes(kind, config_from_dict(config, f"{kind} job").model_dump(mode="json"))
    return json.loads(json.dumps(config))  # must be JSON: it crosses processes


def _finetunes(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A ``teacher-finetune`` job must name a teacher it can fine-tune (else it would quietly
    compute a frozen one)."""
    t = cfg["teacher"]
    if kind == "teacher-finetune" and (t["kind"], t["mode"]) != ("minilm", "finetune"):
        raise JobError(
            f"a teacher-finetune job fine-tunes the bundled MiniLM, but the config's teacher is "
            f"kind {t['kind']!r}, mode {t['mode']!r}; set teacher.kind=minilm and "
            "teacher.mode=finetune (or use `lelp finetune`, which sets them)"
        )
    return cfg


def _inserted_id(cur: sqlite3.Cursor) -> int:
    """The id SQLite gave the row the INSERT on ``cur`` just added (never None after one)."""
    assert cur.lastrowid is not None
    return cur.lastrowid


def submit(
    ws: Workspace, kind: str, config: dict[str, Any] | RunConfig, sweep_id: str | None = None
) -> int:
    """Queue one job and return its id. Distillation kinds are validated as a RunConfig now,
    so a typo fails here and not minutes later in a worker."""
    cfg = _validate(kind, config)
    with _db(ws) as con:
        cur = con.execute(
            "INSERT INTO jobs (kind, config, resources, created, sweep_id) VALUES (?,?,?,?,?)",
            (kind, json.dumps(cfg), resources(kind, cfg), time.time(), sweep_id),
        )
        return _inserted_id(cur)


def expand_grid(base: RunConfig, grid: dict[str, list[Any]]) -> list[RunConfig]:
    """The cartesian product of ``grid`` (dotted config paths -> values) applied to ``base``,
    each member validated; the member's name records its grid values. Points that differ only
    in a setting their objective ignores (tau for hard labels) are queued once."""
    if not grid:
        raise ConfigError("a sweep needs at least one grid key, e.g. train.seed=0,1,2")
    for key, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(f"grid key {key!r}: give a non-empty list of values, got {values!r}")
    base_dict = base.model_dump(mode="json")
    base_name = base.name or "sweep"
    members, seen = [], set()
    for combo in itertools.product(*grid.values()):
        d = json.loads(json.dumps(base_dict))
        label = []
        for key, value in zip(grid, combo, strict=True):
            set_dotted(d, key, value, what="grid key")
            label.append(f"{key.rsplit('.', 1)[-1]}={value}")
        d["name"] = f"{base_name} " + " ".join(label)
        key = same_student(d)  # e.g. hard x tau 1, 4: one student, queued once
        if key not in seen:
            seen.add(key)
            members.append(config_from_dict(d, f"sweep member {', '.join(label)}"))
    return members


def submit_sweep(
    ws: Workspace, base_config: RunConfig, grid: dict[str, list[Any]]
) -> tuple[str, list[int]]:
    """Expand a grid (e.g. ``{"subclasses.n_subclasses": [2, 4], "train.seed": [0, 1]}``)
    into ``sweep-member`` jobs sharing one ``sweep_id``; nothing is queued if any member is
    invalid. Members share the dataset and teacher, hence the cached teacher outputs."""
    members = expand_grid(base_config, grid)
    sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    now = time.time()
    with _db(ws) as con:
        ids = []
        for cfg in members:
            d = cfg.model_dump(mode="json")
            cur = con.execute(
                "INSERT INTO jobs (kind, config, resources, created, sweep_id) VALUES (?,?,?,?,?)",
                ("sweep-member", json.dumps(d), resources("sweep-member", d), now, sweep_id),
            )
            ids.append(_inserted_id(cur))
    return sweep_id, ids


def _read_job(ws: Workspace, job_id: int) -> Job:
    with _db(ws, immediate=False) as con:
        row = con.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
    if row is None:
        raise JobError(f"no job with id {job_id} in {ws.root}; see `lelp jobs list`")
    return Job.from_row(row)


def get_job(ws: Workspace, job_id: int) -> Job:
    """One job; a running job whose process died is marked failed first (see ``_settle``)."""
    return _settle(ws, _read_job(ws, job_id), time.time())


def active_twin(ws: Workspace, kind: str, config: dict[str, Any] | RunConfig) -> int | None:
    """The id of a queued or running job of ``kind`` with this very config, else None.

    Why: pressing "Queue run" twice queued the same run twice, doubling the wait for nothing
    (seeds and every setting are in the config, so a real repeat differs in it).
    """
    want = _validate(kind, config)
    for job in list_jobs(ws, states=("queued", "running")):
        if job.kind == kind and job.config == want:
            return job.id
    return None


def list_jobs(
    ws: Workspace, sweep_id: str | None = None, states: tuple[str, ...] | None = None
) -> list[Job]:
    """Jobs, newest first, optionally of one sweep and/or in some states."""
    sql, args = "SELECT * FROM jobs WHERE 1=1", []
    if sweep_id is not None:
        sql += " AND sweep_id = ?"
        args.append(sweep_id)
    if states:
        sql += f" AND state IN ({','.join('?' * len(states))})"
        args.extend(states)
    with _db(ws, immediate=False) as con:
        rows = con.execute(sql + " ORDER BY id DESC", args).fetchall()
    now = time.time()
    found = [_settle(ws, Job.from_row(r), now) for r in rows]
    return [j for j in found if not states or j.state in states]


def claim(
    ws: Workspace,
    worker_id: str,
    device: str,
    accept: tuple[str, ...] | None = None,
) -> Job | None:
    """Mark the oldest runnable queued job ``running`` for ``worker_id`` and return it.

    ``device`` is recorded (``cpu``, ``cuda:0``, ``ray``); ``accept`` lists the resource
    classes this slot takes (default: a GPU slot takes gpu/any jobs, a CPU slot cpu/any).
    One ``BEGIN IMMEDIATE`` transaction, so concurrent workers never claim the same row.
    """
    if accept is None:
        accept = ("gpu", "any") if device.startswith("cuda") else ("cpu", "any")
    now = time.time()
    marks = ",".join("?" * len(accept))
    with _db(ws) as con:
        row = con.execute(
            "SELECT id FROM jobs WHERE state = 'queued' AND resources IN "  # noqa: S608 - "?" marks only
            f"({marks}) ORDER BY id LIMIT 1",
            accept,
        ).fetchone()
        if row is None:
            return None
        con.execute(
            "UPDATE jobs SET state='running', device=?, worker_id=?, started=?, heartbeat=?, "
            "attempts=attempts+1, pid=NULL, finished=NULL, error=NULL WHERE id=?",
            (device, worker_id, now, now, row["id"]),
        )
        return Job.from_row(con.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone())


def heartbeat(ws: Workspace, job_id: int, pid: int | None = None) -> None:
    with _db(ws) as con:
        con.execute(
            "UPDATE jobs SET heartbeat=?, pid=COALESCE(?, pid) WHERE id=? AND state='running'",
            (time.time(), pid, int(job_id)),
        )


def update_progress(ws: Workspace, job_id: int, progress: dict[str, Any]) -> None:
    with _db(ws) as con:
        con.execute(
            "UPDATE jobs SET progress=?, heartbeat=? WHERE id=?",
            (json.dumps(_jsonable(progress)), time.time(), int(job_id)),
        )


def append_metrics(ws: Workspace, job_id: int, row: dict[str, Any]) -> None:
    """Append one evaluation row to the job's metrics history (read-modify-write under the
    write lock, so concurrent appends are never lost)."""
    with _db(ws) as con:
        cur = con.execute("SELECT metrics FROM jobs WHERE id=?", (int(job_id),)).fetchone()
        if cur is None:
            raise JobError(f"no job with id {job_id} in {ws.root}")
        hist = _merge_metrics(json.loads(cur["metrics"]), _jsonable(row))
        con.execute("UPDATE jobs SET metrics=? WHERE id=?", (json.dumps(hist), int(job_id)))


def finish(
    ws: Workspace,
    job_id: int,
    state: str,
    result: str | None = None,
    error: str | None = None,
    *,
    attempt: int | None = None,
    log_tail: str | None = None,
) -> bool:
    """Record a running job's outcome; False if it was no longer running (e.g. already failed
    by ``recover_stale`` or re-queued), so a late finisher never overwrites a newer attempt."""
    if state not in FINAL_STATES:
        raise JobError(f"finish state {state!r}: choose one of {', '.join(FINAL_STATES)}")
    sql = (
        "UPDATE jobs SET state=?, finished=?, result=COALESCE(?, result), error=?, "
        "log_tail=COALESCE(?, log_tail) WHERE id=? AND state='running'"
    )
    args: list[Any] = [state, time.time(), result, error, log_tail, int(job_id)]
    if attempt is not None:
        sql += " AND attempts=?"
        args.append(attempt)
    with _db(ws) as con:
        return con.execute(sql, args).rowcount == 1


def request_cancel(ws: Workspace, job_id: int) -> str:
    """Cancel a job: a queued one at once, a running one at its next check (within seconds).
    Returns the job's state after the request. A running job whose process died is
    cancelled at once (nothing would ever read the flag)."""
    job = _settle(ws, _read_job(ws, job_id), time.time(), state="cancelled")
    if job.state == "cancelled":
        return "cancelled"
    with _db(ws) as con:
        row = con.execute("SELECT state FROM jobs WHERE id=?", (int(job_id),)).fetchone()
        if row is None:
            raise JobError(f"no job with id {job_id} in {ws.root}; see `lelp jobs list`")
        if row["state"] == "queued":
            con.execute(
                "UPDATE jobs SET state='cancelled', finished=?, cancel_requested=1 WHERE id=?",
                (time.time(), int(job_id)),
            )
            return "cancelled"
        if row["state"] == "running":
            con.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (int(job_id),))
        return str(row["state"])


def retry(ws: Workspace, job_id: int) -> Job:
    """Re-queue a failed or cancelled job; it resumes from its last checkpoint. Its progress
    and metrics history stay visible until the new attempt overwrites the progress. A
    running job whose process died is marked failed first, so no worker is needed."""
    get_job(ws, job_id)
    with _db(ws) as con:
        row = con.execute("SELECT state FROM jobs WHERE id=?", (int(job_id),)).fetchone()
        if row is None:
            raise JobError(f"no job with id {job_id} in {ws.root}; see `lelp jobs list`")
        if row["state"] not in ("failed", "cancelled"):
            raise JobError(
                f"job {job_id} is {row['state']}; only failed or cancelled jobs can be retried"
            )
        con.execute(
            "UPDATE jobs SET state='queued', cancel_requested=0, error=NULL, finished=NULL, "
            "started=NULL, pid=NULL, heartbeat=NULL, worker_id=NULL, device=NULL WHERE id=?",
            (int(job_id),),
        )
    return get_job(ws, job_id)


def recover_stale(ws: Workspace, stale_after: float = 15.0) -> list[int]:
    """Fail running jobs whose heartbeat is older than ``stale_after`` seconds, and only those
    (a job with a fresh heartbeat belongs to a live process, perhaps another worker's)."""
    now = time.time()
    failed = []
    with _db(ws) as con:
        rows = con.execute(
            "SELECT id, COALESCE(heartbeat, started, created) AS hb FROM jobs "
            "WHERE state='running' AND COALESCE(heartbeat, started, created) < ?",
            (now - stale_after,),
        ).fetchall()
        for r in rows:
            msg = (
                f"worker stopped responding (no heartbeat for {now - r['hb']:.0f} s; process "
                "killed or out of memory?) — retry resumes from the last checkpoint"
            )
            con.execute(
                "UPDATE jobs SET state='failed', finished=?, error=? WHERE id=?",
                (now, msg, r["id"]),
            )
            failed.append(int(r["id"]))
    return failed


def sweep_run_ids(ws: Workspace, sweep_id: str | None = None) -> dict[str, list[str]]:
    """Finished runs grouped by the sweep that queued them, ``{sweep_id: [run_id, ...]}``
    (one sweep when ``sweep_id`` is given)."""
    have = {r["run_id"] for r in ws.list_runs()}
    out: dict[str, list[str]] = {}
    for job in list_jobs(ws, sweep_id=sweep_id):
        rid = f"job-{job.id}"
        if job.sweep_id and rid in have:
            out.setdefault(job.sweep_id, []).append(rid)
    return out
