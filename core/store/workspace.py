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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..types import TeacherOutputs, hash_arrays
from .files import (
    ArrayDamaged,
    WorkspaceError,
    _stat_key,
    array_digest,
    atomic_save_npy,
    atomic_write_bytes,
    forget_verified,
    is_verified,
    mark_verified,
    safe_name,
)
from .schema import Schema, ensure_schema

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
#: The workspace's part of the catalogue; append a migration (never edit one) to change it.
WORKSPACE_SCHEMA = Schema("workspace", SCHEMA, legacy_table="runs")


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
        #: What was found damaged and worked around in this process (the CLI prints them).
        self.notes: list[str] = []
        self._check_catalogue_file()
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            ensure_schema(con, WORKSPACE_SCHEMA, self.root)
        except sqlite3.DatabaseError as err:
            raise WorkspaceError(self.damaged_catalogue(str(err))) from None
        finally:
            con.close()
        self._backfill_mirrors()

    #: Rows mirrored as files, by table: (the key the mirror is named by, from a row).
    _MIRRORED = {
        "runs": lambda r: r[0],
        "specs": lambda r: r[0],
        "manual_groups": lambda r: f"{r[0]}/{r[1]}",
        "teacher_outputs": lambda r: r[0],
    }

    def _backfill_mirrors(self) -> None:
        """Write the mirror file of every row saved before mirrors existed, once per
        workspace (a marker records it), so ``lelp doctor --repair`` can rebuild them too."""
        marker = self.root / "mirror" / ".complete"
        if marker.exists():
            return
        with contextlib.suppress(sqlite3.Error, OSError, WorkspaceError):
            with self.connect() as con:
                for table, key_of in self._MIRRORED.items():
                    sql = f"SELECT * FROM {table}"  # noqa: S608 - a constant of _MIRRORED
                    for row in con.execute(sql).fetchall():
                        key = key_of(tuple(row))
                        if not self._mirror_path(table, key).exists():
                            self._mirror(table, key, {"table": table, "values": list(row)})
            atomic_write_bytes(marker, b"rows saved before mirrors were written as files\n")

    def damaged_catalogue(self, why: str) -> str:
        """The one line every command and page shows for a catalogue that cannot be read."""
        return (
            f"workspace {self.root}: the catalogue catalog.sqlite is damaged ({why}); run "
            f"`lelp doctor --repair -w {self.root}` to set it aside and rebuild it from the "
            "run, spec and teacher-output files (nothing else is changed)"
        )

    def check_catalogue(self) -> None:
        """Raise the one-line damage message when the catalogue file is no longer sound
        (reads 16 bytes: cheap enough for every app rerun, where the Workspace is cached)."""
        self._check_catalogue_file()

    def _check_catalogue_file(self) -> None:
        """A zero-byte catalogue beside saved runs or arrays is damage, not a new workspace:
        opening it as new would make every run, spec and group vanish from view."""
        db, wal = self.db_path, self.db_path.with_name(self.db_path.name + "-wal")
        if not db.exists():
            return
        if db.stat().st_size > 0:
            with open(db, "rb") as f:  # SQLite reads the header lazily: check it here
                if f.read(16) != b"SQLite format 3\x00":
                    raise WorkspaceError(self.damaged_catalogue("file is not a database"))
            return
        if wal.exists() and wal.stat().st_size > 0:
            return
        saved = [p for p in (self.root / "runs").iterdir()] + [
            p for p in (self.root / "arrays").iterdir()
        ]
        if saved:
            raise WorkspaceError(
                self.damaged_catalogue(
                    f"0 bytes, but the workspace holds {len(saved)} run and array folders"
                )
            )

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
        except sqlite3.DatabaseError as err:  # "file is not a database", "malformed"
            raise WorkspaceError(self.damaged_catalogue(str(err))) from None
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
        sha = array_digest(a)  # = hash_arrays(a), streamed: a memmap is not copied
        path = self._array_path(sha)
        if path.exists():
            try:
                self.get_array(sha)  # a damaged copy under this name is replaced, not kept
            except WorkspaceError:
                self.quarantine(path)
        if not path.exists():
            try:
                atomic_save_npy(path, a)
                mark_verified(path)  # written from the bytes just hashed
            except OSError as err:
                raise WorkspaceError(
                    f"workspace {self.root}: cannot write an array ({err.strerror or err}); "
                    "free disk space or choose another folder"
                ) from None
        return sha

    def get_array(self, sha: str, mmap: bool = True) -> np.ndarray:
        """The array stored under ``sha``. Its header, size and content hash are checked (the
        hash once per file version, see ``files.is_verified``): a damaged array raises
        ``ArrayDamaged``, never comes back silently different."""
        path = self._array_path(sha)
        if not path.exists():
            raise ArrayDamaged(
                f"array {sha[:12]} is missing from {self.root / 'arrays'}; run `lelp doctor "
                f"--repair -w {self.root}` (teacher outputs are then recomputed on next use)"
            )
        try:
            a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ArrayDamaged(self._damaged(sha, f"unreadable: {err}")) from None
        if not is_verified(path, _stat_key(path)):
            if array_digest(a) != sha:
                raise ArrayDamaged(self._damaged(sha, "its content no longer matches its hash"))
            mark_verified(path)
        return a

    def _damaged(self, sha: str, why: str) -> str:
        return (
            f"array {sha[:12]} in {self.root / 'arrays'} is damaged ({why}); run `lelp doctor "
            f"--repair -w {self.root}` to set it aside (teacher outputs are then recomputed)"
        )

    def quarantine(self, path: Path) -> Path:
        """Move a damaged file aside into ``quarantine/`` (kept for inspection, never used)."""
        dest = self.root / "quarantine" / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
        dest.parent.mkdir(exist_ok=True)
        os.replace(path, dest)
        forget_verified(path)
        return dest

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
            arrays[f"H:{split}"] = self.put_embeddings(out.H[split])
            arrays[f"Z:{split}"] = self.put_array(np.asarray(out.Z[split], dtype=np.float32))
        values = (
            key,
            dataset_fp,
            teacher_fp,
            pooling,
            json.dumps(arrays),
            json.dumps(out.meta, default=str),
            time.time(),
        )
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO teacher_outputs VALUES (?,?,?,?,?,?,?)", values)
        self._mirror("teacher_outputs", key, {"table": "teacher_outputs", "values": values})

    def load_teacher_outputs(self, key: str) -> TeacherOutputs | None:
        """The cached outputs for ``key`` (H memory-mapped float16), or None on a miss."""
        with self.connect() as con:
            row = con.execute(
                "SELECT arrays, meta FROM teacher_outputs WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        arrays = json.loads(row["arrays"])
        try:
            H = {k[2:]: self.get_array(v) for k, v in arrays.items() if k.startswith("H:")}
            Z = {
                k[2:]: self.get_array(v, mmap=False)
                for k, v in arrays.items()
                if k.startswith("Z:")
            }
            W, b = self.get_array(arrays["W"], mmap=False), self.get_array(arrays["b"], mmap=False)
        except ArrayDamaged as err:
            # A damaged cache is a miss: set the bad arrays aside, forget the entry, recompute.
            for sha in arrays.values():
                path = self._array_path(sha)
                try:
                    if path.exists():
                        self.get_array(sha)
                except ArrayDamaged:
                    self.quarantine(path)
            with self.connect() as con:
                con.execute("DELETE FROM teacher_outputs WHERE key = ?", (key,))
            self.unmirror("teacher_outputs", key)
            self.notes.append(f"teacher outputs {key[:12]}: {err}; they are recomputed")
            return None
        meta = json.loads(row["meta"])
        meta["cache_key"] = key
        return TeacherOutputs(H=H, Z=Z, W=W, b=b, meta=meta)

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
        values = (name, json.dumps(config), time.time())
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO specs VALUES (?,?,?)", values)
        self._mirror("specs", name, {"table": "specs", "values": values})
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
        values = (
            run_id,
            record.get("name"),
            json.dumps(record.get("config", {})),
            json.dumps(record.get("metrics", {}), default=float),
            json.dumps(record.get("artifacts", {})),
            record.get("created", time.time()),
        )
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?)", values)
        self._mirror("runs", run_id, {"table": "runs", "values": values})
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
    def save_projection(
        self, key: str, xy: np.ndarray, meta: dict[str, Any] | None = None, dtype: Any = np.float32
    ) -> None:
        """Store a map's coordinates (float32), or another array derived from a teacher's
        embeddings (``stored_stats``: float64 class statistics), under ``key``."""
        sha = self.put_array(np.asarray(xy, dtype=dtype))
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

    # -- mirrors: the catalogue's rows also as files, so a lost catalogue can be rebuilt ----
    def _mirror(self, table: str, key: str, row: dict[str, Any]) -> None:
        """Write one catalogue row as ``<table>/<key>.json`` (runs: ``runs/<id>/run.json``).

        Why: the catalogue is one file; when it is damaged, ``lelp doctor --repair`` rebuilds
        runs, specs, manual groups and teacher-output entries from these."""
        path = self._mirror_path(table, key)
        atomic_write_bytes(path, json.dumps(row, default=float).encode())

    def _mirror_path(self, table: str, key: str) -> Path:
        if table == "runs":
            return self.run_dir(key) / "run.json"
        return self.root / "mirror" / table / f"{hash_arrays(key)[:32]}.json"

    def unmirror(self, table: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._mirror_path(table, key).unlink()

    def artifact_path(self, run: dict[str, Any], name: str) -> Path | None:
        """A run's artifact path (``student_dir``, ``method_state``) inside THIS workspace.

        Runs store paths relative to the workspace, so a moved or copied workspace serves its
        own files. Older runs stored absolute paths: the part from ``runs/<id>/`` on is
        resolved against this workspace too (a copy never reads the original's files)."""
        where = (run.get("artifacts") or {}).get(name)
        if not where:
            return None
        p = Path(where)
        if not p.is_absolute():
            return self.root / p
        parts = p.parts
        if "runs" in parts:
            i = len(parts) - 1 - parts[::-1].index("runs")
            return self.root.joinpath(*parts[i:])
        return p

    # -- manual groups (lasso selections) ---------------------------------------------------
    def save_manual_group(self, dataset_fp: str, name: str, row_ids: np.ndarray) -> str:
        name = safe_name(name, "group name")
        sha = self.put_array(np.unique(np.asarray(row_ids, dtype=np.int64)))
        values = (dataset_fp, name, sha, time.time())
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO manual_groups VALUES (?,?,?,?)", values)
        self._mirror(
            "manual_groups", f"{dataset_fp}/{name}", {"table": "manual_groups", "values": values}
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
        self.unmirror("manual_groups", f"{dataset_fp}/{name}")

    # -- float16 H written in place by extraction (teachers' ``h_dir``) -----------------------
    def adopt_array(self, path: Path) -> str:
        """Store a finished ``.npy`` file inside the workspace under its content hash by
        renaming it (no copy, no read into memory) and return the hash; the file is gone
        from ``path`` afterwards. A file whose hash is already stored is simply removed."""
        path = Path(path)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise WorkspaceError(f"{path}: only files inside {self.root} can be adopted")
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        sha = array_digest(a)
        del a
        dest = self._array_path(sha)
        if dest.exists():
            try:
                self.get_array(sha)
            except WorkspaceError:
                self.quarantine(dest)
        if dest.exists():
            path.unlink()
            return sha
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(path, dest)
        mark_verified(dest)  # hashed from this very file
        return sha

    def put_embeddings(self, h: np.ndarray) -> str:
        """Store H as float16: a float16 ``.npy`` memmap inside the workspace (extraction's
        output) is adopted, anything else is cast and written."""
        where = getattr(h, "filename", None)
        if isinstance(h, np.memmap) and h.dtype == np.float16 and where is not None:
            path = Path(where)
            inside = path.resolve().is_relative_to((self.root / "staging").resolve())
            if inside and path.suffix == ".npy" and path.is_file():
                return self.adopt_array(path)
        return self.put_array(np.asarray(h, dtype=np.float16))
