"""The ``jobs`` table: its schema, the decoded row (:class:`Job`) and short transactions.

The catalogue (SQLite, WAL) is the single source of truth for every process that touches a
job (the app, workers, job processes), so each talks to it with its own short transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..store import Schema, Workspace, ensure_schema

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")


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
    heartbeat REAL NOT NULL,
    cpu_jobs INTEGER,
    job_threads INTEGER
);
"""
# The jobs tables are their own part of the catalogue's schema versions (store.schema): a
# change appends a migration here, so a workspace written by an older lelp-studio opens.
JOBS_SCHEMA = Schema(
    "jobs",
    SCHEMA,
    migrations=(
        # 1 -> 2: what a local worker runs at once, for the app to show (NULL: a Ray executor)
        "ALTER TABLE workers ADD COLUMN cpu_jobs INTEGER; "
        "ALTER TABLE workers ADD COLUMN job_threads INTEGER",
    ),
    legacy_table="jobs",
)


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
            ensure_schema(con, JOBS_SCHEMA, ws.root)
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
