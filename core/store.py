"""The workspace: a SQLite catalogue plus content-addressed arrays on disk.

The workspace is the single source of truth shared by the app, the CLI and job workers (each
opens its own connection). Arrays are stored once under their sha256 and memory-mapped on
read, so a 1.6M x 384 float16 embedding matrix costs no RAM until touched. Every write goes to
a temporary file, is fsynced, then renamed: a crash mid-write leaves the previous version.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.types import TeacherOutputs, hash_arrays

SCHEMA = """
CREATE TABLE IF NOT EXISTS teacher_outputs (
    key TEXT PRIMARY KEY,
    dataset_fp TEXT NOT NULL,
    teacher_fp TEXT NOT NULL,
    pooling TEXT NOT NULL,
    arrays TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS specs (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS projections (
    key TEXT PRIMARY KEY,
    array TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS headroom (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS manual_groups (
    dataset_fp TEXT NOT NULL,
    name TEXT NOT NULL,
    array TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (dataset_fp, name)
);
"""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+=,@-]{0,99}$")


class WorkspaceError(RuntimeError):
    """The workspace cannot be used (unwritable, disk full, bad name); the message says how to
    fix it."""


def safe_name(name: str, what: str = "name") -> str:
    """Validate a user-given name that becomes part of a path or a key.

    Rejects path separators, ``..``, absolute paths, control and non-ASCII look-alike characters,
    so no name can write outside the workspace.
    """
    norm = unicodedata.normalize("NFKC", str(name)).strip()
    if norm != str(name).strip() or not _NAME_RE.match(norm) or ".." in norm:
        raise WorkspaceError(
            f"{what} {name!r} is not allowed: use 1-100 letters, digits, spaces or . _ - + = , @ "
            "(no slashes, no '..', not starting with a dot)"
        )
    return norm


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any library); on success it is fsynced
    and renamed over ``path``, so ``path`` only ever holds a complete file. On any error (or a
    kill) the previous version stays and the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file object that appears at ``path`` only once fully written (see
    :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_save_npy(path: Path, a: np.ndarray) -> None:
    """Save one array as ``.npy`` atomically (``allow_pickle`` is never needed to read it)."""
    with atomic_file(path) as f:
        np.save(f, np.ascontiguousarray(a), allow_pickle=False)


def default_root() -> Path:
    return Path(os.environ.get("LELP_WORKSPACE", "workspace"))


class Workspace:
    """A folder holding the catalogue (``catalog.sqlite``), ``arrays/`` and ``runs/``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "arrays").mkdir(exist_ok=True)
            (self.root / "runs").mkdir(exist_ok=True)
        except OSError as err:
            raise WorkspaceError(
                f"workspace {self.root}: cannot create it ({err.strerror}); set LELP_WORKSPACE "
                "to a writable folder"
            ) from None
        if not os.access(self.root, os.W_OK):
            raise WorkspaceError(
                f"workspace {self.root}: not writable; set LELP_WORKSPACE to a writable folder"
            )
        self.db_path = self.root / "catalog.sqlite"
        con = sqlite3.connect(self.db_path, timeout=30.0)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
        finally:
            con.close()

    # -- catalogue -------------------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection in WAL mode with a generous busy timeout.

        Used as ``with ws.connect() as con:``; commits on success, rolls back on error, and
        always closes (SQLite connections must not be shared across processes).
        """
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=NORMAL")
            con.row_factory = sqlite3.Row
            con.execute("BEGIN")
            try:
                yield con
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL, IOERR); a second
                # ROLLBACK would raise and hide the real error.
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            else:
                con.execute("COMMIT")
        except sqlite3.OperationalError as err:
            if "disk" in str(err).lower() or "readonly" in str(err).lower():
                raise WorkspaceError(
                    f"workspace {self.root}: {err}; free disk space or choose another folder"
                ) from None
            raise
        finally:
            con.close()

    # -- arrays ----------------------------------------------------------------------------
    def _array_path(self, sha: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise WorkspaceError(f"array id {sha!r} is not a sha256 hex digest")
        return self.root / "arrays" / sha[:2] / f"{sha}.npy"

    def put_array(self, a: np.ndarray) -> str:
        """Store ``a`` under its content hash (idempotent) and return the hash."""
        a = np.asarray(a)
        if a.dtype == object:
            raise WorkspaceError("object arrays cannot be stored; convert to a numeric dtype")
        sha = hash_arrays(a)
        path = self._array_path(sha)
        if not path.exists():
            try:
                atomic_save_npy(path, a)
            except OSError as err:
                raise WorkspaceError(
                    f"workspace {self.root}: cannot write an array ({err.strerror}); free disk "
                    "space or choose another folder"
                ) from None
        return sha

    def get_array(self, sha: str, mmap: bool = True) -> np.ndarray:
        path = self._array_path(sha)
        if not path.exists():
            raise WorkspaceError(f"array {sha[:12]} is missing from {self.root / 'arrays'}")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)

    # -- teacher outputs -------------------------------------------------------------------
    @staticmethod
    def teacher_key(dataset_fp: str, teacher_fp: str, pooling: str) -> str:
        return hash_arrays("teacher-outputs", dataset_fp, teacher_fp, pooling)

    def encoder_dir(self, key: str) -> Path:
        """Where a fine-tuned teacher's encoder is kept next to its outputs ``key``, for
        students initialised from it and for AMAD's attention maps."""
        return self.root / "encoders" / safe_name(key)

    def save_teacher_outputs(
        self,
        key: str,
        out: TeacherOutputs,
        *,
        dataset_fp: str = "",
        teacher_fp: str = "",
        pooling: str = "",
    ) -> None:
        """Store H (as float16, the design's on-disk format), Z, W and b under ``key``."""
        arrays: dict[str, str] = {"W": self.put_array(out.W.astype(np.float32))}
        arrays["b"] = self.put_array(out.b.astype(np.float32))
        for split in out.H:
            arrays[f"H:{split}"] = self.put_array(np.asarray(out.H[split], dtype=np.float16))
            arrays[f"Z:{split}"] = self.put_array(np.asarray(out.Z[split], dtype=np.float32))
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO teacher_outputs VALUES (?,?,?,?,?,?,?)",
                (
                    key,
                    dataset_fp,
                    teacher_fp,
                    pooling,
                    json.dumps(arrays),
                    json.dumps(out.meta, default=str),
                    time.time(),
                ),
            )

    def load_teacher_outputs(self, key: str) -> TeacherOutputs | None:
        """The cached outputs for ``key`` (H memory-mapped float16), or None on a miss."""
        with self.connect() as con:
            row = con.execute(
                "SELECT arrays, meta FROM teacher_outputs WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        arrays = json.loads(row["arrays"])
        H = {k[2:]: self.get_array(v) for k, v in arrays.items() if k.startswith("H:")}
        Z = {k[2:]: self.get_array(v, mmap=False) for k, v in arrays.items() if k.startswith("Z:")}
        meta = json.loads(row["meta"])
        meta["cache_key"] = key
        return TeacherOutputs(
            H=H,
            Z=Z,
            W=self.get_array(arrays["W"], mmap=False),
            b=self.get_array(arrays["b"], mmap=False),
            meta=meta,
        )

    def list_teacher_outputs(self) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT key, dataset_fp, teacher_fp, pooling, meta, created FROM teacher_outputs "
                "ORDER BY created DESC"
            ).fetchall()
        return [dict(r) | {"meta": json.loads(r["meta"])} for r in rows]

    # -- subclass specs --------------------------------------------------------------------
    def save_spec(self, name: str, config: dict[str, Any]) -> str:
        name = safe_name(name, "spec name")
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO specs VALUES (?,?,?)",
                (name, json.dumps(config), time.time()),
            )
        return name

    def list_specs(self) -> list[str]:
        with self.connect() as con:
            return [r[0] for r in con.execute("SELECT name FROM specs ORDER BY created DESC")]

    def load_spec(self, name: str) -> dict[str, Any]:
        with self.connect() as con:
            row = con.execute("SELECT config FROM specs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise WorkspaceError(
                f"no saved spec named {name!r}; saved specs: {self.list_specs() or 'none'}"
            )
        return json.loads(row[0])

    # -- runs ------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / safe_name(run_id, "run id")

    def save_run(self, record: dict[str, Any]) -> str:
        """Record a finished run: ``run_id``, ``name``, ``config``, ``metrics``, ``artifacts``."""
        run_id = safe_name(record["run_id"], "run id")
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?)",
                (
                    run_id,
                    record.get("name"),
                    json.dumps(record.get("config", {})),
                    json.dumps(record.get("metrics", {}), default=float),
                    json.dumps(record.get("artifacts", {})),
                    record.get("created", time.time()),
                ),
            )
        return run_id

    @staticmethod
    def _run_row(r: sqlite3.Row) -> dict[str, Any]:
        return {
            "run_id": r["run_id"],
            "name": r["name"],
            "config": json.loads(r["config"]),
            "metrics": json.loads(r["metrics"]),
            "artifacts": json.loads(r["artifacts"]),
            "created": r["created"],
        }

    def list_runs(self) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
        return [self._run_row(r) for r in rows]

    def load_run(self, run_id: str) -> dict[str, Any]:
        with self.connect() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no run with id {run_id!r} in {self.root}")
        return self._run_row(row)

    # -- projections (the map) -------------------------------------------------------------
    def save_projection(self, key: str, xy: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        sha = self.put_array(np.asarray(xy, dtype=np.float32))
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO projections VALUES (?,?,?,?)",
                (key, sha, json.dumps(meta or {}), time.time()),
            )

    def projection_meta(self, key: str) -> dict[str, Any] | None:
        """What was saved with a projection (method, axis titles, parameters), or None."""
        with self.connect() as con:
            row = con.execute("SELECT meta FROM projections WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def load_projection(self, key: str) -> np.ndarray | None:
        with self.connect() as con:
            row = con.execute("SELECT array FROM projections WHERE key = ?", (key,)).fetchone()
        return None if row is None else self.get_array(row[0], mmap=False)

    # -- "does distillation pay here?" (core.headroom) --------------------------------------
    def save_headroom(self, key: str, record: dict[str, Any]) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO headroom VALUES (?,?,?)",
                (key, json.dumps(record), time.time()),
            )

    def load_headroom(self, key: str) -> dict[str, Any] | None:
        with self.connect() as con:
            row = con.execute("SELECT record FROM headroom WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def latest_headroom(self, teacher_key: str, student_kind: str) -> dict[str, Any] | None:
        """The newest result for a teacher and student kind, whatever the budget (pages
        that do not know the training budget show this one)."""
        with self.connect() as con:
            rows = con.execute("SELECT record FROM headroom ORDER BY created DESC").fetchall()
        for (text,) in rows:
            rec = json.loads(text)
            if rec.get("teacher_key") == teacher_key and rec.get("student_kind") == student_kind:
                return rec
        return None

    # -- manual groups (lasso selections) ---------------------------------------------------
    def save_manual_group(self, dataset_fp: str, name: str, row_ids: np.ndarray) -> str:
        name = safe_name(name, "group name")
        sha = self.put_array(np.unique(np.asarray(row_ids, dtype=np.int64)))
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO manual_groups VALUES (?,?,?,?)",
                (dataset_fp, name, sha, time.time()),
            )
        return name

    def list_manual_groups(self, dataset_fp: str) -> dict[str, np.ndarray]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT name, array FROM manual_groups WHERE dataset_fp = ? ORDER BY created",
                (dataset_fp,),
            ).fetchall()
        return {r[0]: self.get_array(r[1], mmap=False) for r in rows}

    def delete_manual_group(self, dataset_fp: str, name: str) -> None:
        with self.connect() as con:
            con.execute(
                "DELETE FROM manual_groups WHERE dataset_fp = ? AND name = ?", (dataset_fp, name)
            )
