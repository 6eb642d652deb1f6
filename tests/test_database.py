"""The SQLite helper every store uses: per-thread connections, WAL, and IMMEDIATE write transactions."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from appliance.database import Database, DatabaseClosed
from appliance.releases.registry import Registry


def make(tmp_path: Path) -> Database:
    db = Database(tmp_path / "t.db")
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, owner TEXT, n INTEGER)")
    return db


def in_threads(count: int, work) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # collected: the test reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_every_thread_gets_its_own_connection_with_the_same_pragmas(tmp_path):
    db = make(tmp_path)
    seen = {}

    def look(i: int) -> None:
        conn = db.conn
        seen[i] = (id(conn), conn.execute("PRAGMA journal_mode").fetchone()[0],
                   conn.execute("PRAGMA foreign_keys").fetchone()[0],
                   conn.execute("PRAGMA busy_timeout").fetchone()[0])

    assert in_threads(4, look) == []
    assert len({v[0] for v in seen.values()}) == 4
    assert {v[1:] for v in seen.values()} == {("wal", 1, 30_000)}


def test_writes_from_many_threads_at_once_all_land(tmp_path):
    db = make(tmp_path)

    def write(i: int) -> None:
        for n in range(40):
            if n % 2:
                db["items"].insert({"owner": f"t{i}", "n": n})  # sqlite-utils' own helper
            else:
                with db.write() as conn:
                    conn.execute("INSERT INTO items (owner, n) VALUES (?, ?)", [f"t{i}", n])

    assert in_threads(8, write) == []
    assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 8 * 40


def test_a_failed_write_leaves_nothing_behind_even_from_sqlite_utils_helpers(tmp_path):
    db = make(tmp_path)
    with pytest.raises(RuntimeError):
        with db.write() as conn:
            conn.execute("INSERT INTO items (owner, n) VALUES ('a', 1)")
            db["items"].insert_all([{"owner": "b", "n": i} for i in range(3)])
            raise RuntimeError("disk on fire")
    assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 0
    with db.write():
        db["items"].insert({"owner": "c", "n": 1})
        with db.write():  # nested: joins the outer transaction
            db["items"].insert({"owner": "c", "n": 2})
    assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 2


def test_foreign_keys_are_enforced(tmp_path):
    db = Database(tmp_path / "fk.db")
    db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id))")
    with pytest.raises(Exception, match="FOREIGN KEY"):
        db["child"].insert({"parent": 42})


def test_two_processes_writing_at_once_take_turns(tmp_path):
    db = make(tmp_path)
    script = (
        "import sys; from appliance.database import Database\n"
        "db = Database(sys.argv[1])\n"
        "for n in range(200):\n"
        "    with db.write() as conn:\n"
        "        conn.execute(\"INSERT INTO items (owner, n) VALUES ('other', ?)\", [n])\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script, str(db.path)], stderr=subprocess.PIPE,
                             text=True)
    for n in range(200):
        db["items"].insert({"owner": "me", "n": n})
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 400


def test_closed_database_refuses_clearly(tmp_path):
    db = make(tmp_path)
    db.close()
    with pytest.raises(DatabaseClosed, match="closed"):
        db.execute("SELECT 1")


def test_online_backup_is_a_consistent_copy_while_writes_go_on(tmp_path):
    db = make(tmp_path)
    db["items"].insert_all([{"owner": "x", "n": i} for i in range(1000)])
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            db["items"].insert({"owner": "late", "n": 0})

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        db.backup(tmp_path / "copy.db")
    finally:
        stop.set()
        writer.join()
    copy = Database(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM items WHERE owner = 'x'").fetchone()[0] == 1000


def test_registry_writes_from_the_event_loop_and_worker_threads_at_once(tmp_path):
    """The registry used to share one connection across threads without a lock: two history
    records at the same moment met as "cannot start a transaction within a transaction"."""
    registry = Registry(tmp_path / "releases.db", tmp_path / "models")

    def record(i: int) -> None:
        for n in range(30):
            registry.record("imported", f"m{i}", str(n), reason="thread test")

    assert in_threads(8, record) == []
    assert len(registry.history(limit=1000)) == 8 * 30
