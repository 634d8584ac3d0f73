"""Catalogue schema versions: a workspace written before versions opens, newer is refused.

``tests/data/workspace_v1`` was written by lelp-studio before schema versions existed (a
one-epoch ``lelp distill examples/digits-kd.yaml``, a saved spec, one succeeded and one
queued job). Every test copies it first: the committed copy is never opened.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from lelp_studio import jobs
from lelp_studio.store import (
    WORKSPACE_SCHEMA,
    Schema,
    Workspace,
    WorkspaceError,
    ensure_schema,
    schema_versions,
)

FIXTURE = Path(__file__).parent / "data" / "workspace_v1"
RUN_ID = "20261201-234255-513923"


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "workspace_v1"
    shutil.copytree(FIXTURE, dest)
    return dest


def _versions(root: Path) -> dict[str, int]:
    con = sqlite3.connect(root / "catalog.sqlite")
    try:
        return schema_versions(con)
    finally:
        con.close()


def test_fixture_is_unversioned() -> None:
    """The committed workspace predates versions; were it stamped, the tests below would not
    test the upgrade of an old workspace."""
    assert _versions(FIXTURE) == {}


def test_old_workspace_opens_with_its_runs_specs_and_jobs(v1_copy: Path) -> None:
    ws = Workspace(v1_copy)
    assert [r["run_id"] for r in ws.list_runs()] == [RUN_ID]
    run = ws.load_run(RUN_ID)
    assert run["name"] == "digits-kd" and run["config"]["train"]["objective"] == "kd"
    assert ws.list_specs() == ["digits-kd-spec"]
    assert ws.load_spec("digits-kd-spec")["dataset"]["source"] == "digits-bin"
    assert len(ws.list_teacher_outputs()) == 1
    assert _versions(v1_copy) == {"workspace": WORKSPACE_SCHEMA.version}
    found = {j.id: (j.kind, j.state) for j in jobs.list_jobs(ws)}
    assert found == {1: ("distill", "succeeded"), 2: ("distill", "queued")}


def test_newer_workspace_is_refused_with_one_clear_line(v1_copy: Path) -> None:
    Workspace(v1_copy)
    newer = WORKSPACE_SCHEMA.version + 1
    con = sqlite3.connect(v1_copy / "catalog.sqlite")
    with con:
        con.execute(
            "UPDATE schema_version SET version = ?, written_by = '9.9' WHERE part = 'workspace'",
            (newer,),
        )
    con.close()
    before = (v1_copy / "catalog.sqlite").read_bytes()
    with pytest.raises(WorkspaceError) as err:
        Workspace(v1_copy)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"schema version {newer}, written by lelp-studio 9.9" in msg
    assert f"handles versions up to {WORKSPACE_SCHEMA.version}" in msg
    assert "upgrade lelp-studio" in msg and "another workspace" in msg
    assert (v1_copy / "catalog.sqlite").read_bytes() == before  # nothing was changed


def _notes(*migrations: str) -> Schema:
    return Schema(
        "notes", "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, t TEXT);", migrations
    )


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_older_version_migrates_forward_keeping_rows(tmp_path: Path) -> None:
    con = _connect(tmp_path / "c.sqlite")
    assert ensure_schema(con, _notes(), tmp_path) == 1
    con.execute("INSERT INTO notes (t) VALUES ('kept')")
    v3 = _notes(
        "ALTER TABLE notes ADD COLUMN body TEXT NOT NULL DEFAULT '';",
        "ALTER TABLE notes ADD COLUMN n INTEGER NOT NULL DEFAULT 0; UPDATE notes SET n = 1;",
    )
    assert ensure_schema(con, v3, tmp_path) == 3
    assert con.execute("SELECT t, body, n FROM notes").fetchall() == [("kept", "", 1)]
    assert schema_versions(con) == {"notes": 3}
    assert ensure_schema(con, v3, tmp_path) == 3  # idempotent


def test_unversioned_tables_count_as_version_1(tmp_path: Path) -> None:
    con = _connect(tmp_path / "c.sqlite")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, t TEXT)")
    v2 = _notes("ALTER TABLE notes ADD COLUMN body TEXT;")
    assert ensure_schema(con, v2, tmp_path) == 2  # the ALTER ran: version 1 was assumed
    assert "body" in [r[1] for r in con.execute("PRAGMA table_info(notes)")]


def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    con = _connect(tmp_path / "c.sqlite")
    ensure_schema(con, _notes(), tmp_path)
    broken = _notes("ALTER TABLE notes ADD COLUMN body TEXT; ALTER TABLE nope ADD COLUMN x;")
    with pytest.raises(sqlite3.OperationalError, match="nope"):
        ensure_schema(con, broken, tmp_path)
    assert not con.in_transaction
    assert schema_versions(con) == {"notes": 1}
    assert "body" not in [r[1] for r in con.execute("PRAGMA table_info(notes)")]


def test_parts_are_versioned_separately(tmp_path: Path) -> None:
    """The job queue's tables are migrated by their own part, never blocked by another's."""
    con = _connect(tmp_path / "c.sqlite")
    ensure_schema(con, _notes("ALTER TABLE notes ADD COLUMN body TEXT;"), tmp_path)
    other = Schema("other", "CREATE TABLE IF NOT EXISTS other (id INTEGER PRIMARY KEY);")
    ensure_schema(con, other, tmp_path)
    assert schema_versions(con) == {"notes": 2, "other": 1}
