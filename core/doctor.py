"""``lelp doctor``: check a workspace, and with ``repair`` set aside what is damaged.

Why a separate pass: reads already refuse damaged files one at a time (``Workspace.get_array``
checks each array's hash once per process); the doctor looks at everything at once, also what
no read has touched yet, and repairs without deleting anything sound. Damaged files are moved
into ``quarantine/``, never deleted; a damaged catalogue is set aside and rebuilt from the
mirror files every save writes (``runs/<id>/run.json``, ``mirror/<table>/*.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .jobs import list_jobs
from .store import ArrayDamaged, Workspace, WorkspaceError, array_digest

#: Catalogue tables rebuilt from mirror files (the jobs table and caches are not mirrored).
MIRRORED = ("runs", "specs", "manual_groups", "teacher_outputs")


@dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` (catalogue, array, reference, student, orphan, job), what is
    wrong, and what fixes it."""

    kind: str
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.kind}: {self.what}; {self.fix}"


def catalogue_problem(root: Path) -> str | None:
    """Why the catalogue cannot be used, or None when it is sound (or not made yet)."""
    db = root / "catalog.sqlite"
    if not db.exists():
        return None
    wal = db.with_name(db.name + "-wal")
    saved = any((root / "runs").glob("*")) or any((root / "arrays").glob("*/*.npy"))
    if db.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size) and saved:
        return "it is empty (0 bytes) while runs and arrays are saved"
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
        try:
            ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        return str(err)
    return None if ok == "ok" else f"integrity check: {ok}"


def _array_problem(path: Path) -> str | None:
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        return f"unreadable ({err})"
    if array_digest(a) != path.stem:
        return "its content no longer matches its hash"
    return None


def _referenced(ws: Workspace) -> dict[str, list[tuple[str, str]]]:
    """sha -> [(table, key)] for every array the catalogue refers to."""
    refs: dict[str, list[tuple[str, str]]] = {}
    with ws.connect() as con:
        for key, arrays in con.execute("SELECT key, arrays FROM teacher_outputs"):
            for sha in json.loads(arrays).values():
                refs.setdefault(sha, []).append(("teacher_outputs", key))
        for run_id, arts in con.execute("SELECT run_id, artifacts FROM runs"):
            sha = json.loads(arts).get("eval_logits")
            if sha:
                refs.setdefault(sha, []).append(("runs", run_id))
        for fp, name, sha in con.execute("SELECT dataset_fp, name, array FROM manual_groups"):
            refs.setdefault(sha, []).append(("manual_groups", f"{fp}/{name}"))
        for key, sha in con.execute("SELECT key, array FROM projections"):
            refs.setdefault(sha, []).append(("projections", key))
    return refs


def check(root: str | Path) -> list[Finding]:
    """Every problem found in the workspace at ``root`` (empty: healthy)."""
    root = Path(root)
    out: list[Finding] = []
    repair = f"run `lelp doctor --repair -w {root}`"
    why = catalogue_problem(root)
    if why is not None:
        out.append(Finding("catalogue", f"catalog.sqlite is damaged ({why})", repair))
    for path in sorted((root / "arrays").glob("*/*.npy")):
        problem = _array_problem(path)
        if problem:
            out.append(Finding("array", f"{path.name[:12]} is damaged: {problem}", repair))
    for tmp in _stale_tmp(root):
        out.append(Finding("orphan", f"{tmp.relative_to(root)} is a half-written file", repair))
    if why is not None:
        return out
    ws = Workspace(root)
    present = {p.stem for p in (root / "arrays").glob("*/*.npy")}
    for sha, users in _referenced(ws).items():
        if sha not in present:
            for table, key in users:
                out.append(
                    Finding("reference", f"{table} {key[:24]} refers to missing array "
                            f"{sha[:12]}", repair)
                )  # fmt: skip
    known = {r["run_id"] for r in ws.list_runs()}
    for f in _unlisted_runs(root, known):
        out.append(Finding("orphan", f"run folder {f.parent.name} has no catalogue row", repair))
    for run in ws.list_runs():
        student = ws.artifact_path(run, "student_dir")
        if student is not None and not (student / "student.safetensors").is_file():
            out.append(
                Finding(
                    "student",
                    f"run {run['run_id']}: the student weights are missing from {student}",
                    "re-run it (Distill page or `lelp distill`); nothing can restore them",
                )
            )
    out += _job_findings(ws)
    return out


#: A temporary file younger than this may belong to a writer still at work (a job's
#: checkpoint, an export being staged): the doctor leaves it alone.
STALE_TMP_S = 600


def _stale_tmp(root: Path) -> list[Path]:
    """Half-written files and staging folders (``.*.tmp``) left by a killed writer."""
    now = time.time()
    return [
        p
        for p in sorted(root.rglob(".*.tmp"))
        if "quarantine" not in p.parts and now - p.stat().st_mtime > STALE_TMP_S
    ]


def _job_findings(ws: Workspace) -> list[Finding]:
    """Jobs whose process died: reading the whole job list settles them as failed
    (``core.jobs``), then the failed ones with that reason are reported."""
    found = []
    for job in list_jobs(ws):
        if job.state == "failed" and "process died" in (job.error or ""):
            found.append(Finding("job", f"job {job.id}: {job.error}", "retry it as it says"))
    return found


def repair(root: str | Path) -> list[str]:
    """Set aside what is damaged and rebuild what can be; returns what was done, one line
    each. Sound files and rows are left as they are."""
    root = Path(root)
    done: list[str] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (root / "quarantine").mkdir(parents=True, exist_ok=True)
    damaged_sha = set()
    for path in sorted((root / "arrays").glob("*/*.npy")):
        if _array_problem(path):
            os.replace(path, root / "quarantine" / f"{path.name}.{stamp}")
            damaged_sha.add(path.stem)
            done.append(f"set aside damaged array {path.name[:12]} (in quarantine/)")
    for tmp in _stale_tmp(root):
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        done.append(f"removed half-written {tmp.relative_to(root)}")
    if catalogue_problem(root) is not None:
        done += _rebuild_catalogue(root, stamp)
    ws = Workspace(root)
    known = {r["run_id"] for r in ws.list_runs()}
    done += _replay(ws, _unlisted_runs(root, known))  # rows lost while their files stayed
    present = {p.stem for p in (root / "arrays").glob("*/*.npy")}
    for sha, users in _referenced(ws).items():
        if sha in present:
            continue
        for table, key in users:
            done.append(_drop_reference(ws, table, key, sha))
    return done


def _rebuild_catalogue(root: Path, stamp: str) -> list[str]:
    db = root / "catalog.sqlite"
    for suffix in ("", "-wal", "-shm"):
        p = db.with_name(db.name + suffix)
        if p.exists():
            os.replace(p, root / "quarantine" / f"{p.name}.{stamp}")
    ws = Workspace(root)
    files = sorted((root / "runs").glob("*/run.json")) + sorted((root / "mirror").glob("*/*.json"))
    got = _replay(ws, files, quiet=True)[0]
    return [
        f"set the damaged catalogue aside (quarantine/catalog.sqlite.{stamp}) and rebuilt it "
        f"from the saved files: {got}; the job list (and with it the sweep groupings) and the "
        "cached 'does distillation pay' answers start empty"
    ]


def _unlisted_runs(root: Path, known: set[str]) -> list[Path]:
    """``run.json`` files (written only by a finished run's save) whose run has no row; a
    folder without one (a job still training) is not an orphan."""
    return [f for f in sorted((root / "runs").glob("*/run.json")) if f.parent.name not in known]


def _replay(ws: Workspace, files: list[Path], quiet: bool = False) -> list[str]:
    """Insert the rows mirrored in ``files``; a damaged mirror file is skipped, not trusted.
    Returns a count per table (``quiet``) or one line per file."""
    counts: dict[str, int] = {}
    done = []
    with ws.connect() as con:
        for f in files:
            try:
                row = json.loads(f.read_text(encoding="utf-8"))
                table, values = row["table"], row["values"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if table not in MIRRORED:
                continue
            marks = ",".join("?" * len(values))
            sql = f"INSERT OR REPLACE INTO {table} VALUES ({marks})"  # noqa: S608 - checked above
            con.execute(sql, values)
            counts[table] = counts.get(table, 0) + 1
            done.append(f"re-added the catalogue row of {f.parent.name} from {f.name}")
    if quiet:
        return [", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "nothing"]
    return done


def _drop_reference(ws: Workspace, table: str, key: str, sha: str) -> str:
    """Forget a row whose array is gone (teacher outputs are recomputed on next use)."""
    with ws.connect() as con:
        if table == "teacher_outputs":
            con.execute("DELETE FROM teacher_outputs WHERE key = ?", (key,))
            ws.unmirror("teacher_outputs", key)
            return (
                f"teacher outputs {key[:12]} lost array {sha[:12]}: forgotten, recomputed on "
                "next use"
            )
        if table == "projections":
            con.execute("DELETE FROM projections WHERE key = ?", (key,))
            return f"map projection {key[:12]} lost its array: forgotten, recomputed on next use"
        if table == "manual_groups":
            fp, name = key.split("/", 1)
            con.execute("DELETE FROM manual_groups WHERE dataset_fp = ? AND name = ?", (fp, name))
            ws.unmirror("manual_groups", key)
            return (
                f"manual group {name!r} lost its rows (array {sha[:12]}): removed; lasso it again"
            )
    run = ws.load_run(key)
    run["artifacts"] = {k: v for k, v in run["artifacts"].items() if k != "eval_logits"}
    run.setdefault("metrics", {})["notes"] = [
        *run["metrics"].get("notes", []),
        f"stored evaluation logits {sha[:12]} were lost ({time.strftime('%Y-%m-%d')})",
    ]
    ws.save_run(run)
    return (
        f"run {key}: its stored evaluation logits were lost; its scores are kept, re-run it "
        "for the plots"
    )


def summary(findings: list[Finding]) -> str:
    """One line for the app's banner and the CLI's last line."""
    if not findings:
        return "the workspace is healthy"
    kinds: dict[str, int] = {}
    for f in findings:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    return f"{len(findings)} problem(s): " + ", ".join(f"{n} {k}" for k, n in kinds.items())


def safe_check(root: str | Path) -> tuple[list[Finding], Any]:
    """``check`` that never raises: a folder that cannot be read is itself a finding."""
    try:
        return check(root), None
    except (WorkspaceError, ArrayDamaged, OSError, sqlite3.Error) as err:
        return [Finding("workspace", str(err), "choose another folder")], err
