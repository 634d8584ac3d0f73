"""Schema versions of the catalogue's parts and their forward migrations.

Why: the first column added to a table would otherwise break every existing workspace. The
catalogue (``catalog.sqlite``) holds tables of several parts (the workspace's own, the job
queue's); each part is a :class:`Schema` with its own version, recorded in the table
``schema_version``, so a part is migrated by the module that owns it and this layer never
imports the layers above it. A part opened by an older lelp-studio is migrated forward in one
transaction; one written by a newer lelp-studio is refused with one line that says what to do.

A workspace written before versions existed has no ``schema_version`` row: a part whose
tables exist then counts as version 1.

>>> import sqlite3
>>> con = sqlite3.connect(":memory:", isolation_level=None)
>>> notes = Schema("notes", "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY);")
>>> ensure_schema(con, notes, "demo")
1
>>> v2 = Schema("notes", notes.create, ("ALTER TABLE notes ADD COLUMN body TEXT",))
>>> ensure_schema(con, v2, "demo")
2
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import sqlite3
import time
from collections.abc import Callable, Sequence

from .files import WorkspaceError

#: A step from version ``i`` to ``i + 1``: SQL statements (``;``-separated) or a function.
Migration = str | Callable[[sqlite3.Connection], None]

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    part TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    written_by TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class Schema:
    """One part of the catalogue: its tables as they are now, and how older ones get there.

    Parameters
    ----------
    name : the part's key in ``schema_version`` (``"workspace"``, ``"jobs"``).
    create : DDL of the current version (``CREATE ... IF NOT EXISTS``); run on a new
        catalogue, and after the migrations (so a migration may leave new tables to it).
    migrations : ``migrations[i]`` takes version ``i + 1`` to ``i + 2``; append, never edit.
    legacy_table : a table whose presence, without a version row, means version 1 (a
        catalogue written before versions existed); default: the first table ``create`` makes.
    """

    name: str
    create: str
    migrations: tuple[Migration, ...] = ()
    legacy_table: str | None = None

    @property
    def version(self) -> int:
        return 1 + len(self.migrations)

    def marker_table(self) -> str:
        if self.legacy_table is not None:
            return self.legacy_table
        words = self.create.split("(", 1)[0].split()
        return words[-1]


def package_version() -> str:
    try:
        return importlib.metadata.version("lelp-studio")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def statements(sql: str) -> list[str]:
    """``sql`` as single statements: ``executescript`` would commit the open transaction."""
    out: list[str] = []
    part = ""
    for piece in sql.split(";"):  # a ';' inside a string literal is rejoined below
        part += piece + ";"
        if sqlite3.complete_statement(part):
            if part.strip(" \t\n;"):
                out.append(part.strip())
            part = ""
    return out


def _run(con: sqlite3.Connection, step: Migration) -> None:
    if callable(step):
        step(con)
    else:
        for stmt in statements(step):
            con.execute(stmt)


def _found(con: sqlite3.Connection, schema: Schema) -> tuple[int, str | None]:
    """The part's recorded version and the lelp-studio that wrote it; without a version row
    (writer None): 1 for a catalogue that holds the part's tables, 0 for none."""
    has = con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, 'schema_version')",
        (schema.marker_table(),),
    ).fetchall()
    names = {r[0] for r in has}
    if "schema_version" in names:
        row = con.execute(
            "SELECT version, written_by FROM schema_version WHERE part = ?", (schema.name,)
        ).fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
    return (1 if schema.marker_table() in names else 0), None


def newer_message(where: object, schema: Schema, found: int, written_by: str | None) -> str:
    return (
        f"workspace {where}: its {schema.name} tables have schema version {found}, written by "
        f"lelp-studio {written_by}; this lelp-studio ({package_version()}) handles versions up "
        f"to {schema.version}; upgrade lelp-studio (pip install -U lelp-studio) to open it, or "
        "use another workspace (--workspace or LELP_WORKSPACE)"
    )


def ensure_schema(con: sqlite3.Connection, schema: Schema, where: object) -> int:
    """Create ``schema``'s tables or migrate them forward; return the version now recorded.

    ``con`` must be in autocommit mode (``isolation_level=None``) with no open transaction.
    All migrations and the version row are one ``BEGIN IMMEDIATE`` transaction: a failure
    or a kill leaves the catalogue as it was. A version newer than this code knows raises
    :class:`WorkspaceError` and changes nothing. ``where`` names the workspace in messages.
    """
    found, writer = _found(con, schema)
    if found == schema.version and writer is not None:
        _run(con, schema.create)  # the common case: IF NOT EXISTS on present tables only reads
        return found
    if found > schema.version:
        raise WorkspaceError(newer_message(where, schema, found, writer))
    con.execute("BEGIN IMMEDIATE")
    try:
        found, writer = _found(con, schema)  # another process may have migrated meanwhile
        if found > schema.version:
            raise WorkspaceError(newer_message(where, schema, found, writer))
        if found < schema.version or writer is None:
            for step in schema.migrations[max(found, 1) - 1 :] if found else ():
                _run(con, step)
            _run(con, schema.create)
            _run(con, VERSION_TABLE)
            con.execute(
                "INSERT OR REPLACE INTO schema_version (part, version, written_by, updated) "
                "VALUES (?, ?, ?, ?)",
                (schema.name, schema.version, package_version(), time.time()),
            )
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return schema.version


def schema_versions(con: sqlite3.Connection) -> dict[str, int]:
    """Every part's recorded version (empty for a catalogue written before versions)."""
    try:
        rows: Sequence[tuple[str, int]] = con.execute(
            "SELECT part, version FROM schema_version ORDER BY part"
        ).fetchall()
    except sqlite3.OperationalError:  # no such table
        return {}
    return {str(p): int(v) for p, v in rows}
