"""Migrations apply whole or not at all, on every database's real migrations and connection modes."""

from __future__ import annotations

import functools
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import sqlite_utils

from appliance.accounts.migrations import migration as accounts_migrations
from appliance.knowledge.migrations import migration as knowledge_migrations
from appliance.migrations import MigrationFailed, Migrations
from appliance.monitoring.migrations import migration as monitoring_migrations
from appliance.releases.migrations import migration as releases_migrations

DATABASES = {"accounts": accounts_migrations, "knowledge": knowledge_migrations,
             "monitoring": monitoring_migrations, "releases": releases_migrations}
# The stores open autocommitting connections; the releases registry keeps sqlite3's default.
MODES = {"autocommit": None, "sqlite3 default": ""}


def open_db(path, mode: str | None) -> sqlite_utils.Database:
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=mode))
    db.enable_wal()
    return db


def schema(db: sqlite_utils.Database) -> list[tuple]:
    """Everything a migration can leave behind: tables, columns, indexes and rows of each table."""
    objects = sorted(db.conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall(),
                     key=lambda row: (row[0], row[1]))
    rows = [(t, db.conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in db.table_names()]
    return objects + rows


def failing_after(step, message="the disk filled up"):
    """The step runs to its end, then fails before its record is written."""

    @functools.wraps(step)
    def wrapper(db):
        step(db)
        raise OSError(message)

    return wrapper


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_a_migration_failing_halfway_leaves_nothing_and_applies_cleanly_next_time(tmp_path, mode):
    migrations = Migrations()
    fail = {"now": True}

    @migrations
    def m001_people(db):
        db["people"].create({"id": int, "name": str}, pk="id")
        db["people"].insert({"id": 1, "name": "Kim"})

    @migrations
    def m002_teams(db):
        db.execute("CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("CREATE INDEX teams_name ON teams(name)")
        db["people"].add_column("team_id", int)
        db["people"].update(1, {"team_id": 7})
        if fail["now"]:
            raise OSError("the disk filled up")
        db["teams"].insert({"id": 7, "name": "finance"})

    db = open_db(tmp_path / "x.db", mode)
    with pytest.raises(MigrationFailed, match="m002_teams .* rolled back.*the disk filled up"):
        migrations.apply(db)
    assert db.table_names() == ["_migrations", "people"]  # m001 stays, whole; nothing of m002
    assert [c.name for c in db["people"].columns] == ["id", "name"]
    assert [r["name"] for r in db["_migrations"].rows] == ["m001_people"]
    assert not db.conn.in_transaction
    db.close()

    fail["now"] = False  # the next start, with the cause fixed
    db = open_db(tmp_path / "x.db", mode)
    assert migrations.apply(db) == ["m002_teams"]
    assert list(db["people"].rows) == [{"id": 1, "name": "Kim", "team_id": 7}]
    assert list(db["teams"].rows) == [{"id": 7, "name": "finance"}]
    assert migrations.apply(db) == []
    db.close()


def test_a_process_killed_inside_a_migration_leaves_nothing_of_it(tmp_path):
    """No rollback runs at all: the process dies between the step's statements."""
    script = textwrap.dedent(f"""
        import os, sqlite3, sqlite_utils
        from appliance.migrations import Migrations

        migrations = Migrations()

        @migrations
        def m001_orders(db):
            db["orders"].create({{"id": int, "total": float}}, pk="id")
            db["orders"].insert_all([{{"id": i, "total": i * 1.5}} for i in range(1000)])
            db.execute("CREATE INDEX orders_total ON orders(total)")
            os._exit(9)

        db = sqlite_utils.Database(sqlite3.connect({str(tmp_path / "x.db")!r}, isolation_level=None))
        db.enable_wal()
        migrations.apply(db)
    """)
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert died.returncode == 9, died.stderr

    db = open_db(tmp_path / "x.db", None)
    assert db.table_names() == ["_migrations"] and db["_migrations"].count == 0
    migrations = Migrations()

    @migrations
    def m001_orders(db):
        db["orders"].create({"id": int, "total": float}, pk="id")
        db.execute("CREATE INDEX orders_total ON orders(total)")

    assert migrations.apply(db) == ["m001_orders"]
    assert db["orders"].indexes[0].name == "orders_total"
    db.close()


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
@pytest.mark.parametrize("database", DATABASES)
def test_every_shipped_migration_is_atomic(tmp_path, database, mode):
    """Each real migration, failing at its very end, leaves the database exactly as before it."""
    shipped = DATABASES[database]
    for index, step in enumerate(shipped.steps):
        path = tmp_path / f"{step.__name__}.db"
        db = open_db(path, mode)
        before = Migrations(shipped.table)
        before.steps = shipped.steps[:index]
        before.apply(db)
        snapshot = schema(db)
        broken = Migrations(shipped.table)
        broken.steps = [*shipped.steps[:index], failing_after(step)]
        with pytest.raises(MigrationFailed, match=step.__name__):
            broken.apply(db)
        assert schema(db) == snapshot, f"{database}: {step.__name__} left something behind"
        db.close()
        db = open_db(path, mode)
        assert Migrations.apply(shipped, db) == shipped.names[index:]
        db.close()


def test_a_step_that_commits_on_its_own_is_refused(tmp_path):
    migrations = Migrations()

    @migrations
    def m001_script(db):
        db.conn.executescript("CREATE TABLE a (x); CREATE TABLE b (y);")  # commits first

    db = open_db(tmp_path / "x.db", None)
    with pytest.raises(MigrationFailed, match="ended its transaction"):
        migrations.apply(db)
    assert db["_migrations"].count == 0
    db.close()


def test_two_processes_starting_at_once_apply_each_migration_once(tmp_path):
    path = tmp_path / "x.db"
    open_db(path, None).close()  # an existing file (WAL is kept in it), as after an upgrade
    script = textwrap.dedent(f"""
        import sqlite3, sqlite_utils
        from appliance.monitoring.migrations import migrate
        db = sqlite_utils.Database(sqlite3.connect({str(path)!r}, isolation_level=None, timeout=30))
        db.enable_wal()
        print(len(migrate(db)))
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in results]
    assert sum(int(out) for out, _ in results) == len(monitoring_migrations.steps)
    db = open_db(path, None)
    assert sorted(r["name"] for r in db["_migrations"].rows) == sorted(monitoring_migrations.names)
    db.close()
