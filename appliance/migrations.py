"""Append-only named schema migrations, one list per database (never edit one that shipped)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlite_utils

from appliance.errors import ApplianceError

Step = Callable[[sqlite_utils.Database], None]


class MigrationFailed(ApplianceError):
    code = "migration_failed"


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on a connection that autocommits (as sqlite-utils' do), where `with
    conn:` alone would not group statements. IMMEDIATE takes the write lock at BEGIN, so writers in
    other processes take turns instead of failing halfway with "database is locked"."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Migrations:
    """Register steps with `@migrations`; `apply(db)` runs the ones not yet recorded, in order,
    each in one transaction together with its record, so a step is applied whole or not at all.

    A step may only use statements SQLite runs inside a transaction (CREATE, ALTER, INSERT, ...):
    VACUUM, `PRAGMA journal_mode` / `foreign_keys` and `executescript` belong where the database
    is opened, and a step that ends the transaction is refused.
    """

    def __init__(self, table: str = "_migrations"):
        self.table = table
        self.steps: list[Step] = []

    def __call__(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    @property
    def names(self) -> list[str]:
        return [step.__name__ for step in self.steps]

    def applied(self, db: sqlite_utils.Database) -> set[str]:
        return {row[0] for row in db.conn.execute(f'SELECT name FROM "{self.table}"')}

    def apply(self, db: sqlite_utils.Database) -> list[str]:
        """Apply the pending steps; return their names."""
        if self.table not in db.table_names():
            # Written by hand, not with sqlite-utils' create(): its deferred BEGIN fails at once
            # ("database is locked") when another process starting at the same moment wrote first.
            with immediate_transaction(db.conn) as conn:
                conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" '
                             "(name TEXT PRIMARY KEY, applied_at FLOAT)")
        applied = []
        for step in self.steps:
            if step.__name__ not in self.applied(db) and self._apply_one(db, step):
                applied.append(step.__name__)
        return applied

    def _apply_one(self, db: sqlite_utils.Database, step: Step) -> bool:
        """Run one step and record it in one transaction; False if another process just did."""
        conn, name = db.conn, step.__name__
        if conn.in_transaction:
            raise MigrationFailed(f"Cannot apply migration {name}: a transaction is already open on "
                                  "this connection; migrate right after opening the database.")
        # sqlite3's own transaction handling would let DDL autocommit statement by statement (and
        # sqlite-utils commits what it runs outside a transaction): an explicit BEGIN groups them.
        # IMMEDIATE takes the write lock first, so two processes starting at once take turns.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if name in self.applied(db):
                conn.execute("ROLLBACK")
                return False
            step(db)
            if not conn.in_transaction:
                raise MigrationFailed(
                    f"Migration {name} ended its transaction (COMMIT, VACUUM or executescript), so "
                    "it cannot be applied atomically; move that statement out of the migration.")
            db[self.table].insert({"name": name, "applied_at": time.time()})
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, ApplianceError) or not isinstance(exc, Exception):
                raise
            raise MigrationFailed(
                f"Migration {name} ({self.table}) failed and was rolled back, so the database is as "
                f"it was: {exc}. Fix the cause (disk space, permissions) and start again.") from exc
        conn.execute("COMMIT")
        return True
