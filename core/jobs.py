"""Background jobs: one ``jobs`` table in the workspace catalogue, claimed then finished.

Distillation must outlive a Streamlit rerun and survive a restart of the app or the worker, so
the catalogue (SQLite, WAL) is the single source of truth and every process talks to it with
its own short transactions (litequeue's shape, see STYLE.md):

* ``submit`` inserts a ``queued`` row; ``claim`` turns the oldest runnable one ``running`` in
  ONE ``BEGIN IMMEDIATE`` transaction, so two workers never take the same job;
* ``run_job`` executes one job in the current process: its ``on_step`` callback writes
  progress, metrics and the heartbeat (throttled) and returns True once a cancel was
  requested; a heartbeat thread keeps the row fresh while a stage has no callback;
* ``finish`` records the outcome; ``recover_stale`` fails only rows whose heartbeat is old
  (another worker may be alive), and ``retry`` re-queues a failed job, which resumes from its
  checkpoint in ``ws.run_dir(f"job-{id}") / "ckpt"`` (a damaged one falls back to the
  previous generation or restarts from epoch 1, with a note: ``resume_point``);
* any reader (``get_job``, ``list_jobs``) fails a running job whose heartbeat is stale AND
  whose process, on this host, is gone, so a job whose worker and process were both killed
  can be retried or cancelled without a worker running.

Executors: :class:`LocalWorker` (the default, nothing to install) runs each job in its own
``python -m lelp_studio.jobs run`` process, one per GPU and ``max_cpu_jobs`` on CPU;
:class:`RayExecutor` sends the same ``run_job`` to a Ray cluster. Job processes are started in
their own session: stopping or killing the worker does not kill running jobs, which finish and
record their result themselves (a new worker leaves them alone while their heartbeat is fresh).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, config_from_dict, set_dotted
from .store import Workspace, atomic_write_bytes

KINDS = ("distill", "sweep-member", "embed", "teacher-finetune", "sleep")
"""Job kinds. ``sleep`` is a dependency-free stand-in used by tests and smoke checks."""
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
CONFIG_KINDS = ("distill", "sweep-member", "embed", "teacher-finetune")
"""Kinds whose config is a :class:`core.config.RunConfig` (validated at submit)."""

LOG_TAIL_CHARS = 4000
CANCEL_GRACE_S = 2.5
"""How long a job process may take to reach a cancel check before it is stopped forcibly."""
DEAD_AFTER_S = 10.0
"""Seconds without a heartbeat (beats come every second) after which a reader checks whether a
running job's process still exists; a job is marked failed only when it does not."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN {STATES!r}),
    resources TEXT NOT NULL DEFAULT 'any' CHECK (resources IN ('cpu', 'gpu', 'any')),
    device TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    heartbeat REAL,
    pid INTEGER,
    worker_id TEXT,
    progress TEXT NOT NULL DEFAULT '{{}}',
    metrics TEXT NOT NULL DEFAULT '[]',
    log_tail TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    sweep_id TEXT,
    batch_size_override INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_state_id ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_sweep ON jobs (sweep_id);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    executor TEXT NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""


class JobError(ValueError):
    """A job request that cannot be honoured (unknown id, wrong state); the message says why."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table, decoded (``config``/``progress``/``metrics`` as JSON)."""

    id: int
    kind: str
    config: dict[str, Any]
    state: str
    resources: str
    device: str | None
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    pid: int | None
    worker_id: str | None
    progress: dict[str, Any]
    metrics: list[dict[str, Any]]
    log_tail: str
    error: str | None
    result: str | None
    attempts: int
    cancel_requested: bool
    sweep_id: str | None
    batch_size_override: int | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Job:
        d = dict(r)
        d["config"] = json.loads(d["config"])
        d["progress"] = json.loads(d["progress"] or "{}")
        d["metrics"] = json.loads(d["metrics"] or "[]")
        d["cancel_requested"] = bool(d["cancel_requested"])
        return cls(**d)

    @property
    def name(self) -> str:
        """A human label: the config's name, else ``<kind> #<id>``."""
        return str(self.config.get("name") or f"{self.kind} #{self.id}")

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] for a progress bar (0 when the total is not known yet)."""
        if self.state == "succeeded":
            return 1.0
        total = self.progress.get("total") or 0
        return min(1.0, float(self.progress.get("step", 0)) / total) if total else 0.0


# -- catalogue access ----------------------------------------------------------------------
_SCHEMA_READY: set[str] = set()


@contextlib.contextmanager
def _db(ws: Workspace, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """A short transaction on the catalogue, with the pragmas of ``Workspace.connect``.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so a read-then-write (claim, append a
    metrics row) can never fail with SQLITE_BUSY on upgrade, which the busy timeout does not
    retry; readers use a deferred transaction and never block writers (WAL).
    """
    con = sqlite3.connect(ws.db_path, timeout=30.0, isolation_level=None)
    # Keyed by inode too: a workspace deleted and recreated at the same path needs the schema.
    key = f"{ws.db_path.resolve()}:{os.stat(ws.db_path).st_ino}"
    try:
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA synchronous=NORMAL")
        if key not in _SCHEMA_READY:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            _SCHEMA_READY.add(key)
        con.row_factory = sqlite3.Row
        con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        con.close()


def _resources(kind: str, config: dict[str, Any]) -> str:
    """'gpu' (needs one), 'cpu' (must not use one) or 'any' (a GPU if free, else CPU)."""
    if kind == "sleep":
        device = config.get("device", "cpu")
    else:
        device = config.get("train", {}).get("device", "auto")
    return {"cuda": "gpu", "auto": "any"}.get(device, "cpu")


def _validate(kind: str, config: dict[str, Any] | RunConfig) -> dict[str, Any]:
    if kind not in KINDS:
        raise JobError(f"job kind {kind!r} is not known; choose one of {', '.join(KINDS)}")
    if isinstance(config, RunConfig):
        return config.model_dump(mode="json")
    if not isinstance(config, dict):
        raise JobError(f"job config must be a dict or RunConfig, got {type(config).__name__}")
    if kind in CONFIG_KINDS:
        return config_from_dict(config, f"{kind} job").model_dump(mode="json")
    return json.loads(json.dumps(config))  # must be JSON: it crosses processes


def submit(
    ws: Workspace, kind: str, config: dict[str, Any] | RunConfig, sweep_id: str | None = None
) -> int:
    """Queue one job and return its id. Distillation kinds are validated as a RunConfig now,
    so a typo fails here and not minutes later in a worker."""
    cfg = _validate(kind, config)
    with _db(ws) as con:
        cur = con.execute(
            "INSERT INTO jobs (kind, config, resources, created, sweep_id) VALUES (?,?,?,?,?)",
            (kind, json.dumps(cfg), _resources(kind, cfg), time.time(), sweep_id),
        )
        return int(cur.lastrowid)


def expand_grid(base: RunConfig, grid: dict[str, list[Any]]) -> list[RunConfig]:
    """The cartesian product of ``grid`` (dotted config paths -> values) applied to ``base``,
    each member validated; the member's name records its grid values. Points that differ only
    in a setting their objective ignores (tau for hard labels) are queued once."""
    if not grid:
        raise ConfigError("a sweep needs at least one grid key, e.g. train.seed=0,1,2")
    for key, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(f"grid key {key!r}: give a non-empty list of values, got {values!r}")
    from .sweeps import same_student

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
                ("sweep-member", json.dumps(d), _resources("sweep-member", d), now, sweep_id),
            )
            ids.append(int(cur.lastrowid))
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
    with _db(ws) as con:
        row = con.execute(
            f"SELECT id FROM jobs WHERE state = 'queued' AND resources IN "
            f"({','.join('?' * len(accept))}) ORDER BY id LIMIT 1",
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


def _epoch(row: dict[str, Any]) -> int | None:
    e = row.get("epoch")
    return e if isinstance(e, int) and not isinstance(e, bool) else None


def _merge_metrics(hist: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """``hist`` plus ``row``, dropping rows of the same or a later epoch first: an attempt
    that redoes epochs (resumed from an older checkpoint, or restarted) replaces them, so the
    history never holds an epoch twice."""
    e = _epoch(row)
    if e is not None:
        hist = [m for m in hist if (_epoch(m) or 0) < e]
    return [*hist, row]


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


def ckpt_dir(ws: Workspace, job_id: int) -> Path:
    """Where a job checkpoints; kept across attempts so a retry resumes."""
    return ws.run_dir(f"job-{int(job_id)}") / "ckpt"


def _safetensors_epoch(path: Path) -> int | None:
    """The epoch a checkpoint's weights file records; None when it is damaged. Checks the
    header and that the file holds every byte it declares (what ``safe_open`` checks in
    ``core.train._load_checkpoint``) without importing torch, so the CLI stays quick."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= size - 8:
                return None
            header = json.loads(f.read(n))
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
        return int(header["__metadata__"]["epoch"]) if 8 + n + end == size else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a job's next attempt starts: after ``epoch`` (0: from the start). ``note`` says
    why it is not the newest checkpoint (damaged files), ``history`` is the restored
    checkpoint's per-epoch history, ``saved`` its time; ``exists``: any checkpoint file was
    there (so a restart is news, not a first start)."""

    epoch: int
    note: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    saved: float = 0.0
    exists: bool = False


def resume_point(ws: Workspace, job_id: int) -> ResumePoint:
    """What a retry of ``job_id`` will resume from, read from its checkpoint folder with the
    rule ``core.train._load_checkpoint`` follows (``last.*``, else ``prev.*``, paired by
    epoch; nothing readable restarts from epoch 1). Why: a retry must not claim to resume
    when it restarts, and a damaged checkpoint must be said, not fail every attempt."""
    ckpt = ckpt_dir(ws, job_id)
    try:
        rel = ckpt.relative_to(ws.root)
    except ValueError:
        rel = ckpt
    counter = ckpt / "counter.json"  # the sleep kind's checkpoint
    if counter.exists():
        try:
            return ResumePoint(int(json.loads(counter.read_text())["epoch"]), exists=True)
        except (OSError, ValueError, KeyError, TypeError):
            note = f"checkpoint {rel}/counter.json is unreadable; it restarts from epoch 1"
            return ResumePoint(0, note, exists=True)
    problems: list[str] = []
    metas: list[tuple[dict[str, Any], float]] = []
    weights: set[int] = set()
    for name in ("last", "prev"):
        meta_path, w_path = ckpt / f"{name}.json", ckpt / f"{name}.safetensors"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                int(meta["epoch"]), int(meta["step"]), meta["optim_param_groups"]
                metas.append((meta, meta_path.stat().st_mtime))
            except (OSError, ValueError, KeyError, TypeError):
                problems.append(f"{name}.json is unreadable")
        if w_path.exists():
            epoch = _safetensors_epoch(w_path)
            if epoch is None:
                problems.append(f"{name}.safetensors is damaged (truncated?)")
            else:
                weights.add(epoch)
    if not metas and not weights and not problems:
        return ResumePoint(0)
    newest = max([int(m["epoch"]) for m, _ in metas] + list(weights), default=0)
    good = [(m, t) for m, t in metas if int(m["epoch"]) in weights]
    if not good:
        why = "; ".join(problems) or "no complete checkpoint"
        return ResumePoint(
            0, f"no readable checkpoint in {rel} ({why}); it restarts from epoch 1", exists=True
        )
    meta, saved = max(good, key=lambda mt: int(mt[0]["epoch"]))
    epoch, note = int(meta["epoch"]), None
    if problems and epoch < newest:
        note = (
            f"checkpoint {rel}: {'; '.join(problems)}; it resumes after epoch {epoch} from "
            "the previous checkpoint"
        )
    history = tuple(h for h in meta.get("history", []) if (_epoch(h) or 0) <= epoch)
    return ResumePoint(epoch, note, history, saved, exists=True)


def _restore_metrics(hist: list[dict[str, Any]], point: ResumePoint) -> list[dict[str, Any]]:
    """The job's metrics as the attempt resuming at ``point`` starts: rows of later epochs
    dropped (they are redone), and epochs the checkpoint holds but the job's metrics missed
    (killed between the checkpoint and the metrics write) filled in from its history."""
    kept = [m for m in hist if (_epoch(m) or 0) <= point.epoch]
    have = {_epoch(m) for m in kept}
    for h in point.history:
        if _epoch(h) not in have:
            kept.append(_jsonable(h) | {"time": point.saved})
    return sorted(kept, key=lambda m: _epoch(m) or 0)


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


# -- running one job -----------------------------------------------------------------------
def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Keep the JSON-representable values of a step report (numpy/torch scalars via item)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if hasattr(v, "item") and callable(v.item):
            with contextlib.suppress(Exception):
                v = v.item()
        if v is None or isinstance(v, bool | int | str):
            out[k] = v
        elif isinstance(v, float):
            out[k] = v if math.isfinite(v) else None
        elif isinstance(v, dict):
            out[k] = _jsonable(v)
    return out


def _is_eval(info: dict[str, Any]) -> bool:
    return any("accuracy" in k or "agreement" in k for k in info)


def is_oom(err: BaseException) -> bool:
    """True for a CUDA out-of-memory error (checked without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        oom = getattr(torch, "OutOfMemoryError", None) or getattr(
            getattr(torch, "cuda", None), "OutOfMemoryError", None
        )
        if oom is not None and isinstance(err, oom):
            return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and "out of memory" in text and "cuda" in text


def _batch_size(job: Job) -> int:
    """The batch size this attempt uses (the out-of-memory override, else the config's)."""
    if job.batch_size_override:
        return int(job.batch_size_override)
    if job.kind == "sleep":
        return int(job.config.get("batch_size", 128))
    return int(job.config.get("train", {}).get("batch_size", 128))


def _effective_config(job: Job) -> dict[str, Any]:
    cfg = json.loads(json.dumps(job.config))
    if job.batch_size_override:
        if job.kind == "sleep":
            cfg["batch_size"] = job.batch_size_override
        else:
            cfg.setdefault("train", {})["batch_size"] = job.batch_size_override
    return cfg


Runner = Callable[..., dict[str, Any]]


def _run_sleep(
    ws: Workspace, job: Job, on_step: Callable, ckpt: Path, resume: bool, progress: Callable
) -> dict[str, Any]:
    """A stand-in job without torch: ``steps`` steps of ``delay`` s, an evaluation and a
    checkpoint (a counter file) every ``steps_per_epoch``; ``fail_at`` raises at that step,
    ``oom_above`` raises torch.OutOfMemoryError while ``batch_size`` exceeds it."""
    c = _effective_config(job)
    steps, spe = int(c.get("steps", 20)), max(1, int(c.get("steps_per_epoch", 5)))
    delay, fail_at = float(c.get("delay", 0.05)), c.get("fail_at")
    epochs = math.ceil(steps / spe)
    counter = ckpt / "counter.json"
    start_epoch = 0
    if resume and counter.exists():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # damaged: restart
            start_epoch = int(json.loads(counter.read_text())["epoch"])
    if c.get("oom_above") is not None and int(c.get("batch_size", 128)) > int(c["oom_above"]):
        import torch

        raise torch.OutOfMemoryError(
            f"CUDA out of memory (simulated at batch size {c.get('batch_size', 128)})"
        )
    for step in range(start_epoch * spe + 1, steps + 1):
        time.sleep(delay)
        if fail_at is not None and step == int(fail_at):
            raise RuntimeError(f"sleep job: planned failure at step {step}")
        epoch = (step - 1) // spe + 1
        info: dict[str, Any] = {
            "step": step,
            "total_steps": steps,
            "epoch": epoch,
            "epochs": epochs,
            "loss": 1.0 / step,
        }
        end_of_epoch = step % spe == 0 or step == steps
        if end_of_epoch:
            info |= {"accuracy": step / steps, "agreement": step / steps}
        if on_step(info):
            return {"run_id": None, "metrics": {"cancelled": True, "step": step}}
        if end_of_epoch:
            atomic_write_bytes(counter, json.dumps({"epoch": epoch, "step": step}).encode())
    record = {
        "run_id": f"job-{job.id}",
        "name": c.get("name") or f"sleep job {job.id}",
        "config": c,
        "metrics": {"steps": steps, "resumed_from_epoch": start_epoch, "cancelled": False},
        "artifacts": {"checkpoint": str(counter)},
    }
    ws.save_run(record)
    return record


def _run_config_kind(
    ws: Workspace, job: Job, on_step: Callable, ckpt: Path, resume: bool, progress: Callable
) -> dict[str, Any]:
    """distill / sweep-member: the same ``pipeline.run_distill`` the CLI and the app call."""
    from . import pipeline

    cfg = config_from_dict(_effective_config(job), f"job {job.id}")
    return pipeline.run_distill(
        cfg,
        ws,
        on_step,
        run_id=f"job-{job.id}",
        checkpoint_dir=ckpt,
        resume=resume,
        progress=progress,
    )


def _run_embed(
    ws: Workspace, job: Job, on_step: Callable, ckpt: Path, resume: bool, progress: Callable
) -> dict[str, Any]:
    """embed / teacher-finetune: compute (or fetch) the teacher outputs into the cache; a
    finetune teacher (``teacher.mode: finetune``) is trained on the way."""
    from . import pipeline

    cfg = config_from_dict(_effective_config(job), f"job {job.id}")
    dataset = pipeline.get_dataset(cfg.dataset)
    _, key, hit = pipeline.get_teacher_outputs(ws, dataset, cfg.teacher, progress)
    return {"run_id": None, "teacher_key": key, "metrics": {"cache_hit": hit}}


RUNNERS: dict[str, Runner] = {
    "distill": _run_config_kind,
    "sweep-member": _run_config_kind,
    "embed": _run_embed,
    "teacher-finetune": _run_embed,
    "sleep": _run_sleep,
}
"""Kind -> runner ``(ws, job, on_step, ckpt_dir, resume, progress) -> record``."""


class _JobLog:
    """The job's log file (``runs/job-N/job.log``): worker-redirected output lands there too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line.rstrip()}\n")

    def tail(self, n: int = LOG_TAIL_CHARS) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class _Heartbeat(threading.Thread):
    """Keeps the job's heartbeat fresh and watches for cancel even while a stage (teacher
    embedding) reports nothing; with ``hard_cancel`` it ends a process that ignores a cancel
    for ``CANCEL_GRACE_S`` (only in a dedicated job process)."""

    def __init__(
        self, ws: Workspace, job: Job, interval: float, hard_cancel: bool, log: _JobLog
    ) -> None:
        super().__init__(daemon=True, name=f"heartbeat-job-{job.id}")
        self.ws, self.job, self.interval, self.hard_cancel, self.log = (
            ws,
            job,
            interval,
            hard_cancel,
            log,
        )
        self.stop = threading.Event()
        self.cancel = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        cancel_seen: float | None = None
        while not self.stop.wait(self.interval):
            try:
                with _db(self.ws) as con:
                    con.execute(
                        "UPDATE jobs SET heartbeat=? WHERE id=? AND attempts=? AND state='running'",
                        (time.time(), self.job.id, self.job.attempts),
                    )
                    row = con.execute(
                        "SELECT state, attempts, cancel_requested FROM jobs WHERE id=?",
                        (self.job.id,),
                    ).fetchone()
            except sqlite3.Error:
                continue  # a busy catalogue: try again next beat
            if row is None or row["state"] != "running" or row["attempts"] != self.job.attempts:
                self.lost.set()  # failed by recover_stale or re-queued: stop working on it
                self.cancel.set()
            elif row["cancel_requested"]:
                self.cancel.set()
            if self.cancel.is_set() and self.hard_cancel and not self.stop.is_set():
                cancel_seen = cancel_seen or time.monotonic()
                if time.monotonic() - cancel_seen > CANCEL_GRACE_S:
                    self.log.write("cancel: no cancel check reached in time; stopping the process")
                    if not self.lost.is_set():
                        finish(
                            self.ws,
                            self.job.id,
                            "cancelled",
                            error="cancelled (stopped forcibly: the job was in a stage "
                            "without cancel checks)",
                            attempt=self.job.attempts,
                            log_tail=self.log.tail(),
                        )
                    os._exit(0)


def _claim_specific(ws: Workspace, job_id: int, worker_id: str, device: str) -> Job:
    now = time.time()
    with _db(ws) as con:
        n = con.execute(
            "UPDATE jobs SET state='running', device=?, worker_id=?, started=?, heartbeat=?, "
            "attempts=attempts+1, pid=NULL, finished=NULL, error=NULL "
            "WHERE id=? AND state='queued'",
            (device, worker_id, now, now, int(job_id)),
        ).rowcount
    job = get_job(ws, job_id)
    if n == 0 and job.state != "running":
        raise JobError(f"job {job_id} is {job.state}; only queued or claimed jobs can be run")
    return job


def run_job(
    ws: Workspace | str | Path,
    job_id: int,
    *,
    throttle: float = 0.5,
    heartbeat_interval: float = 1.0,
    hard_cancel: bool = False,
) -> Job:
    """Execute one job in this process and record its outcome; returns the final row.

    A queued job is claimed first (so ``python -m lelp_studio.jobs run --job N`` works alone). The
    ``on_step`` callback writes progress at most every ``throttle`` s and always at an
    evaluation (then also a metrics row and a log line), and returns True once a cancel was
    requested. A CUDA out-of-memory error retries once with half the batch size (recorded in
    ``batch_size_override``, so a later retry keeps it); every other exception fails the job
    with its message, the traceback going to the job log.
    """
    ws = ws if isinstance(ws, Workspace) else Workspace(ws)
    job = _claim_specific(ws, job_id, f"direct-{socket.gethostname()}-{os.getpid()}", "local")
    attempt = job.attempts
    log = _JobLog(ws.run_dir(f"job-{job.id}") / "job.log")
    ckpt = ckpt_dir(ws, job.id)
    point = resume_point(ws, job.id)
    with _db(ws) as con:
        row = con.execute("SELECT metrics, progress FROM jobs WHERE id=?", (job.id,)).fetchone()
        progress = json.loads(row["progress"] or "{}")
        progress.pop("note", None)
        if point.note:
            progress["note"] = point.note
        con.execute(
            "UPDATE jobs SET pid=?, heartbeat=?, metrics=?, progress=? WHERE id=? AND attempts=?",
            (
                os.getpid(),
                time.time(),
                json.dumps(_restore_metrics(json.loads(row["metrics"]), point)),
                json.dumps(progress),
                job.id,
                attempt,
            ),
        )
    log.write(f"attempt {attempt} of {job.kind} job {job.id} on {job.device} (pid {os.getpid()})")
    if point.note:
        log.write(point.note)
    elif point.epoch:
        log.write(f"resuming after epoch {point.epoch}")
    hb = _Heartbeat(ws, job, heartbeat_interval, hard_cancel, log)
    hb.start()
    state = {"last": 0.0, "cancel": False}

    def write(progress: dict[str, Any], metrics_row: dict[str, Any] | None) -> None:
        with _db(ws) as con:
            row = con.execute(
                "SELECT metrics, cancel_requested, state, attempts FROM jobs WHERE id=?",
                (job.id,),
            ).fetchone()
            if row["state"] != "running" or row["attempts"] != attempt:
                state["cancel"] = True  # no longer ours: stop as soon as possible
                return
            hist = json.loads(row["metrics"])
            if metrics_row is not None:
                hist = _merge_metrics(hist, metrics_row)
            if point.note:
                progress = progress | {"note": point.note}
            con.execute(
                "UPDATE jobs SET progress=?, metrics=?, heartbeat=? WHERE id=?",
                (json.dumps(progress), json.dumps(hist), time.time(), job.id),
            )
            state["cancel"] = state["cancel"] or bool(row["cancel_requested"])

    def on_step(info: dict[str, Any]) -> bool:
        now = time.monotonic()
        ev = _is_eval(info)
        total = info.get("total_steps")
        if ev or now - state["last"] >= throttle or (total and info.get("step") == total):
            state["last"] = now
            progress = _jsonable(
                {
                    "step": info.get("step"),
                    "total": total,
                    "epoch": info.get("epoch"),
                    "epochs": info.get("epochs"),
                    "loss": info.get("loss"),
                }
            )
            row = _jsonable(info) | {"time": time.time()} if ev else None
            write(progress, row)
            if ev:
                shown = " ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in _jsonable(info).items()
                )
                log.write(shown)
        return state["cancel"] or hb.cancel.is_set()

    def progress_cb(done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if now - state["last"] >= throttle or done >= total:
            state["last"] = now
            write({"stage": stage, "step": done, "total": total}, None)

    runner = RUNNERS[job.kind]
    final, result, error = "failed", None, None
    try:
        for try_ in range(2):
            resume = ckpt.is_dir() and any(ckpt.iterdir())
            try:
                record = runner(ws, job, on_step, ckpt, resume, progress_cb)
                break
            except Exception as err:
                if not is_oom(err):
                    raise
                bs = _batch_size(job)
                if try_ == 1 or bs <= 1:
                    orig = _batch_size(dataclasses.replace(job, batch_size_override=None))
                    raise RuntimeError(
                        f"CUDA out of memory at train.batch_size={bs} (started at {orig}, "
                        "already retried with half); lower train.batch_size, "
                        "student.max_length or the student size, free the GPU (nvidia-smi), "
                        "or set train.device=cpu"
                    ) from err
                half = max(1, bs // 2)
                log.write(f"CUDA out of memory at batch size {bs}; retrying with {half}")
                torch = sys.modules.get("torch")
                if torch is not None and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                with _db(ws) as con:
                    con.execute("UPDATE jobs SET batch_size_override=? WHERE id=?", (half, job.id))
                job = dataclasses.replace(job, batch_size_override=half)
        metrics = record.get("metrics") or {}
        result = record.get("run_id") or record.get("teacher_key")
        if point.note and record.get("run_id") and isinstance(record.get("metrics"), dict):
            record["metrics"]["resume_note"] = point.note  # the run says how it was resumed
            ws.save_run(record)
        if metrics.get("cancelled") or state["cancel"] or hb.cancel.is_set():
            final = "cancelled"
            log.write("cancelled; partial progress and metrics kept")
        else:
            final = "succeeded"
            log.write(f"succeeded; result {result}")
    except BaseException as err:  # noqa: BLE001 - every failure must reach the catalogue
        error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        log.write("failed:\n" + "".join(traceback.format_exception(err)))
        if not isinstance(err, Exception):
            error = f"interrupted ({type(err).__name__}); retry resumes from the last checkpoint"
    finally:
        hb.stop.set()
    hb.join(timeout=5)
    finish(ws, job.id, final, result=result, error=error, attempt=attempt, log_tail=log.tail())
    return get_job(ws, job.id)


# -- executors -----------------------------------------------------------------------------
def detect_gpus() -> list[str]:
    """GPU indices this machine offers: ``CUDA_VISIBLE_DEVICES`` if set, else torch's count."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch or a broken driver means no GPU
        return []


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit status {rc}"


def _register_worker(ws: Workspace, worker_id: str, executor: str) -> None:
    now = time.time()
    with _db(ws) as con:
        con.execute(
            "INSERT OR REPLACE INTO workers VALUES (?,?,?,?,COALESCE((SELECT started FROM "
            "workers WHERE id=?), ?),?)",
            (worker_id, os.getpid(), socket.gethostname(), executor, worker_id, now, now),
        )


def _unregister_worker(ws: Workspace, worker_id: str) -> None:
    with _db(ws) as con:
        con.execute("DELETE FROM workers WHERE id=?", (worker_id,))


def list_workers(ws: Workspace, fresh_within: float = 10.0) -> list[dict[str, Any]]:
    """Workers whose heartbeat is younger than ``fresh_within`` seconds (for the app)."""
    with _db(ws, immediate=False) as con:
        rows = con.execute(
            "SELECT * FROM workers WHERE heartbeat > ? ORDER BY started",
            (time.time() - fresh_within,),
        ).fetchall()
    return [dict(r) for r in rows]


def _touch_pending(ws: Workspace, job_ids: list[int]) -> None:
    """Keep the heartbeat of claimed jobs whose process has not started yet (pid unset)."""
    if job_ids:
        with _db(ws) as con:
            con.execute(
                f"UPDATE jobs SET heartbeat=? WHERE state='running' AND pid IS NULL AND id IN "
                f"({','.join('?' * len(job_ids))})",
                (time.time(), *job_ids),
            )


class _WorkerLock:
    """An exclusive ``flock`` on ``<workspace>/worker.lock`` held for a worker's lifetime: the
    kernel drops it when the process dies, so it is a liveness check that never goes stale."""

    def __init__(self, ws: Workspace, name: str = "worker.lock") -> None:
        self.path = ws.root / name
        self.fd: int | None = None

    def acquire(self, record_pid: bool = True) -> bool:
        """Take the lock if free; ``record_pid`` writes this process's id into the file (a
        liveness probe passes False, so the file keeps naming the worker)."""
        try:
            import fcntl
        except ImportError:  # Windows: no lock; ensure_worker falls back to the workers table
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        if record_pid:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def acquire_for_worker(self, wait: float = 1.0) -> bool:
        """``acquire``, retried for up to ``wait`` s: a liveness probe (``worker_alive``,
        ``ensure_worker``) holds the lock for an instant, and a worker starting in that
        instant must not give up as if another worker ran."""
        deadline = time.monotonic() + wait
        while not self.acquire():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


class _PollingExecutor:
    """The polling loop shared by ``LocalWorker`` and ``RayExecutor``: they differ in how
    they start, take jobs (``run_once`` returns how many of theirs are active) and stop."""

    _stop: threading.Event
    poll: float

    def start(self) -> None:  # pragma: no cover - both subclasses define it
        raise NotImplementedError

    def run_once(self) -> int:  # pragma: no cover
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _queued_runnable(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def run_forever(self, until_idle: bool = False, parent_pid: int | None = None) -> str:
        """Loop until ``stop()`` (or SIGTERM/Ctrl-C); ``until_idle`` returns once the queue
        holds nothing this executor could run and its own jobs have ended; ``parent_pid``
        returns once that process is gone (the app's worker must not outlive the app). Job
        processes already started finish and record their outcome on their own. Returns why
        it stopped: ``"stopped"``, ``"idle"`` or ``"parent gone"``."""
        self.start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        why = "stopped"
        try:
            while not self._stop.is_set():
                if parent_pid is not None and not _pid_alive(parent_pid):
                    why = "parent gone"
                    break
                active = self.run_once()
                if until_idle and active == 0 and not self._queued_runnable():
                    why = "idle"
                    break
                self._stop.wait(self.poll)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return why


class LocalWorker(_PollingExecutor):
    """Runs queued jobs on this machine, each in its own process.

    At most one job per GPU (``CUDA_VISIBLE_DEVICES`` set to that GPU) and ``max_cpu_jobs`` on
    CPU (``CUDA_VISIBLE_DEVICES=""``). On a machine with GPUs, CPU slots take only jobs that
    asked for ``train.device: cpu``. A job process that dies without recording its outcome
    (killed, out of host memory) is marked failed with its exit signal; jobs of other,
    vanished processes are failed by ``recover_stale`` once their heartbeat is older than
    ``stale_after``. With ``lock`` (the default) only one such worker runs per workspace.
    """

    def __init__(
        self,
        ws: Workspace,
        max_cpu_jobs: int = 1,
        gpus: list[str] | None = None,
        poll: float = 0.5,
        stale_after: float = 15.0,
        lock: bool = True,
        worker_id: str | None = None,
    ) -> None:
        self.ws = ws
        self.gpus = detect_gpus() if gpus is None else [str(g) for g in gpus]
        self.max_cpu_jobs = max_cpu_jobs
        self.poll = poll
        self.stale_after = stale_after
        self.worker_id = worker_id or f"local-{socket.gethostname()}-{os.getpid()}"
        self.slots: dict[str, tuple[int, int, subprocess.Popen] | None] = {
            **{f"cuda:{g}": None for g in self.gpus},
            **{f"cpu:{i}": None for i in range(max_cpu_jobs)},
        }
        self._lock = _WorkerLock(ws) if lock else None
        self._started = False
        self._stop = threading.Event()

    def start(self) -> None:
        if self._started:
            return
        if self._lock is not None and not self._lock.acquire_for_worker():
            raise JobError(
                f"another worker already runs for workspace {self.ws.root} (see "
                f"{self._lock.path}); stop it first or use it"
            )
        self._started = True
        _register_worker(self.ws, self.worker_id, "local")
        recover_stale(self.ws, self.stale_after)

    def stop(self) -> None:
        """Stop claiming; running job processes carry on and record their own outcome."""
        self._stop.set()
        if self._started:
            _unregister_worker(self.ws, self.worker_id)
            if self._lock is not None:
                self._lock.release()
            self._started = False

    @property
    def running(self) -> list[int]:
        return [s[0] for s in self.slots.values() if s is not None]

    def _spawn(self, slot: str, job: Job) -> subprocess.Popen:
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = slot.split(":", 1)[1] if slot.startswith("cuda") else ""
        env["PYTHONUNBUFFERED"] = "1"
        # Share the cores among the slots: oversubscribed torch threads slow CPU jobs ~10x.
        threads = max(1, (os.cpu_count() or 1) // max(1, len(self.slots)))
        env.setdefault("OMP_NUM_THREADS", str(threads))
        env.setdefault("MKL_NUM_THREADS", str(threads))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_repo_root(), env.get("PYTHONPATH")]))
        log_path = self.ws.run_dir(f"job-{job.id}") / "job.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lelp_studio.jobs",
                    "run",
                    "--workspace",
                    str(self.ws.root.resolve()),
                    "--job",
                    str(job.id),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C or killing the worker leaves jobs running
            )

    def _reap(self) -> None:
        for slot, entry in self.slots.items():
            if entry is None:
                continue
            job_id, attempt, proc = entry
            rc = proc.poll()
            if rc is None:
                continue
            self.slots[slot] = None
            job = get_job(self.ws, job_id)
            if job.state == "running" and job.attempts == attempt:
                finish(
                    self.ws,
                    job_id,
                    "failed",
                    error=f"job process {proc.pid} ended with {_describe_exit(rc)} before "
                    "recording a result (killed or out of memory?) — retry resumes from the "
                    "last checkpoint",
                    attempt=attempt,
                )

    def run_once(self) -> int:
        """One scheduling pass: recover stale jobs, reap finished processes, fill free slots.
        Returns the number of job processes still running."""
        self.start()
        _register_worker(self.ws, self.worker_id, "local")
        recover_stale(self.ws, self.stale_after)
        self._reap()
        for slot, entry in self.slots.items():
            if entry is not None:
                continue
            if slot.startswith("cuda"):
                accept = ("gpu", "any")
            else:
                accept = ("cpu",) if self.gpus else ("cpu", "any")
            job = claim(self.ws, self.worker_id, slot, accept)
            if job is None:
                continue
            self.slots[slot] = (job.id, job.attempts, self._spawn(slot, job))
        _touch_pending(self.ws, self.running)
        return len(self.running)

    def _queued_runnable(self) -> bool:
        """Whether a queued job exists that one of this worker's slots could take (a GPU job
        on a machine without GPUs is not: it waits for a GPU worker)."""
        accept = {"cpu"} | ({"gpu", "any"} if self.gpus else {"any"})
        with _db(self.ws, immediate=False) as con:
            row = con.execute(
                f"SELECT 1 FROM jobs WHERE state='queued' AND resources IN "
                f"({','.join('?' * len(accept))}) LIMIT 1",
                sorted(accept),
            ).fetchone()
        return row is not None


def ensure_worker(ws: Workspace, wait: float = 15.0, *, outlive_caller: bool = False) -> bool:
    """Start a detached local worker for ``ws`` unless one is alive; True if one was started.

    Liveness is the worker's ``flock`` on ``worker.lock`` (released by the kernel when the
    worker dies), so a crashed worker never blocks a new one. Waits up to ``wait`` seconds for
    the new worker to take the lock, so two quick calls never start two workers. The worker
    gets ``--parent-pid`` (this process) and exits once this process is gone, so the app's
    worker stops with the app; jobs already running still finish. ``outlive_caller`` leaves
    it running instead.
    """
    spawn_lock = _WorkerLock(ws, "worker.spawn.lock")
    deadline = time.monotonic() + wait
    while not spawn_lock.acquire():  # another caller is starting one right now
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    try:
        if worker_alive(ws):
            return False
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_repo_root(), env.get("PYTHONPATH")]))
        with open(ws.root / "worker.log", "ab") as out:
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lelp_studio.jobs",
                    "worker",
                    "--workspace",
                    str(ws.root.resolve()),
                    *([] if outlive_caller else ["--parent-pid", str(os.getpid())]),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() < deadline and _has_fcntl():
            check = _WorkerLock(ws)
            if not check.acquire(record_pid=False):
                break
            check.release()
            time.sleep(0.05)
        return True
    finally:
        spawn_lock.release()


def _has_fcntl() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def worker_alive(ws: Workspace) -> bool:
    """Whether a local worker holds this workspace's lock (or, without flock, has a fresh
    heartbeat in the ``workers`` table)."""
    if not _has_fcntl():
        return bool(list_workers(ws))
    # A worker holds the lock for its lifetime, another probe only for an instant: retry
    # briefly, so two probes at once never take each other for a worker.
    probe = _WorkerLock(ws)
    deadline = time.monotonic() + 0.25
    while not probe.acquire(record_pid=False):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.01)
    probe.release()
    return False


def _ray_task(root: str, job_id: int) -> str:
    """What a Ray worker runs: the same ``run_job`` as a local job process."""
    return run_job(Workspace(root), job_id).state


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise JobError(
            "the Ray executor needs Ray: pip install 'lelp-studio[ray]' (or use --executor local)"
        ) from None
    return ray


class RayExecutor(_PollingExecutor):
    """Sends queued jobs to a Ray cluster as tasks running :func:`run_job`.

    Artifacts travel through a SHARED FILESYSTEM, not Ray's object store: each task opens the
    workspace at the same path as this process (``ws.root``) and writes the catalogue, arrays
    and checkpoints there, so the workspace folder must be reachable at that path from every
    Ray node (NFS or similar; for a local Ray instance it is). A job that needs a GPU
    (``train.device: cuda``, or ``auto`` when the cluster has GPUs) asks for ``num_gpus=1``.
    In-flight tasks are capped at the cluster's CPU count so claimed jobs start promptly and
    their heartbeat stays fresh; a task that dies is marked failed with Ray's error. With
    ``lock`` (the default) it holds the local worker's lock, so it never runs beside another
    executor of this workspace.
    """

    def __init__(
        self,
        ws: Workspace,
        address: str | None = None,
        num_cpus: int | None = None,
        poll: float = 0.5,
        stale_after: float = 15.0,
        max_in_flight: int | None = None,
        lock: bool = True,
    ) -> None:
        self.ws, self.address, self.num_cpus, self.poll = ws, address, num_cpus, poll
        self.stale_after, self.max_in_flight = stale_after, max_in_flight
        self.worker_id = f"ray-{socket.gethostname()}-{os.getpid()}"
        self.in_flight: dict[Any, tuple[int, int, bool]] = {}
        self._cancel_seen: dict[int, float] = {}
        self._ray: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        # The local worker's lock: one executor of either kind per workspace, since both
        # recover stale jobs and claim from the same queue.
        self._lock = _WorkerLock(ws) if lock else None
        self._locked = False

    def start(self) -> None:
        if self._ray is not None:
            return
        if self._lock is not None and not self._locked:
            if not self._lock.acquire_for_worker():
                raise JobError(
                    f"another worker already runs for workspace {self.ws.root} (see "
                    f"{self._lock.path}); stop it first or use it"
                )
            self._locked = True
        try:
            ray = _import_ray()
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True}
                if self.address:
                    kwargs["address"] = self.address
                elif self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
                ray.init(**kwargs)
        except BaseException:
            self._release()
            raise
        self._ray = ray
        _register_worker(self.ws, self.worker_id, "ray")
        recover_stale(self.ws, self.stale_after)

    def _capacity(self) -> tuple[int, int]:
        res = self._ray.cluster_resources()
        cpus = self.max_in_flight or max(1, int(res.get("CPU", 1)))
        return cpus, int(res.get("GPU", 0))

    def _collect(self) -> None:
        if not self.in_flight:
            return
        refs = list(self.in_flight)
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            job_id, attempt, _gpu = self.in_flight.pop(ref)
            self._cancel_seen.pop(job_id, None)
            try:
                self._ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a dead task must reach the catalogue
                finish(
                    self.ws,
                    job_id,
                    "failed",
                    error=f"Ray task failed ({type(err).__name__}: {str(err)[:500]}) — retry "
                    "resumes from the last checkpoint",
                    attempt=attempt,
                )

    def _force_cancel(self) -> None:
        """Cancel tasks whose job ignores a cancel request beyond the grace period."""
        for ref, (job_id, attempt, _) in list(self.in_flight.items()):
            job = get_job(self.ws, job_id)
            if not job.cancel_requested:
                continue
            seen = self._cancel_seen.setdefault(job_id, time.monotonic())
            if time.monotonic() - seen > CANCEL_GRACE_S * 2:
                self._ray.cancel(ref, force=True)
                finish(
                    self.ws,
                    job_id,
                    "cancelled",
                    error="cancelled (task stopped by Ray)",
                    attempt=attempt,  # never over a newer attempt of the same job
                )

    def run_once(self) -> int:
        self.start()
        _register_worker(self.ws, self.worker_id, "ray")
        recover_stale(self.ws, self.stale_after)
        self._collect()
        self._force_cancel()
        cpus, gpus = self._capacity()
        if self._task is None:
            self._task = self._ray.remote(_ray_task)
        task = self._task
        while len(self.in_flight) < cpus:
            gpu_busy = sum(g for _, _, g in self.in_flight.values())
            accept = (
                ("cpu", "any", "gpu") if gpu_busy < gpus else ("cpu",) + (() if gpus else ("any",))
            )
            job = claim(self.ws, self.worker_id, "ray", accept)
            if job is None:
                break
            use_gpu = job.resources == "gpu" or (job.resources == "any" and gpu_busy < gpus)
            ref = task.options(num_gpus=1 if use_gpu else 0, num_cpus=1, max_retries=0).remote(
                str(self.ws.root.resolve()), job.id
            )
            self.in_flight[ref] = (job.id, job.attempts, use_gpu)
        _touch_pending(self.ws, [j for j, _, _ in self.in_flight.values()])
        return len(self.in_flight)

    def _queued_runnable(self) -> bool:
        """Any queued job: Ray places GPU jobs on whichever node has a GPU."""
        return bool(list_jobs(self.ws, states=("queued",)))

    def stop(self) -> None:
        self._stop.set()
        if self._ray is not None:
            _unregister_worker(self.ws, self.worker_id)
            self._ray = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None and self._locked:
            self._lock.release()
            self._locked = False


if __name__ == "__main__":
    from .cli_jobs import entry_app

    entry_app()
