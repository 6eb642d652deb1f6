"""One SQLite helper for every store: WAL, busy timeout, foreign keys, and write transactions.

Each thread gets its own connection (the event loop, worker threads and background jobs never
share one), so reads run side by side under WAL. Writes are `BEGIN IMMEDIATE` transactions:
within a process they take turns on a lock per file (a quick hand-over rather than SQLite's
sleeping busy handler), and against other processes the busy timeout makes them wait their turn
instead of failing with "database is locked". sqlite-utils' own write helpers go through the
same transactions, so `db["table"].insert(...)` is safe from any thread too.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.errors import ApplianceError, DiskFull

BUSY_TIMEOUT_MS = 30_000
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


class DatabaseClosed(ApplianceError):
    status = 503
    code = "database_closed"


def _write_lock(path: Path) -> threading.Lock:
    """One lock per database file in this process, whichever `Database` object opened it."""
    with _write_locks_guard:
        return _write_locks.setdefault(str(path), threading.Lock())


class _Connection(sqlite3.Connection):
    """A plain connection that can be tracked weakly (sqlite3.Connection itself cannot)."""


class _ThreadDatabase(sqlite_utils.Database):
    """sqlite-utils over one thread's connection; its write helpers join our transactions."""

    def __init__(self, conn: sqlite3.Connection, owner: Database):
        super().__init__(conn)
        self._owner = owner

    @contextmanager
    def atomic(self) -> Iterator[_ThreadDatabase]:
        if self.conn.in_transaction:
            with super().atomic():  # a savepoint inside the running transaction
                yield self
        else:
            with self._owner.write():
                yield self


class Database:
    """A SQLite file shared by threads: `conn`/`execute`/`query` read on the calling thread's
    connection, `write()` is one IMMEDIATE transaction, and `db["table"]` is sqlite-utils."""

    def __init__(self, path: str | Path, *, row_factory: Any = None, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.row_factory = row_factory
        self.synchronous = synchronous
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._guard = threading.Lock()
        self._closed = False
        self._lock = _write_lock(self.path.resolve())
        self.conn.execute("PRAGMA journal_mode = WAL")  # persistent: set once per file

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> _Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False, factory=_Connection)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        if self.row_factory is not None:
            conn.row_factory = self.row_factory
        return conn

    def _thread_db(self) -> _ThreadDatabase:
        found = getattr(self._local, "db", None)
        if found is not None:
            return found
        with self._guard:
            if self._closed:
                raise DatabaseClosed(f"{self.path.name} is closed: the appliance is shutting down; "
                                     "retry against the running server.")
            conn = self._connect()
            self._connections.add(conn)
        db = self._local.db = _ThreadDatabase(conn, self)
        if self.row_factory is not None:
            conn.row_factory = self.row_factory  # sqlite-utils' set-up must not replace it
        return db

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        return self._thread_db().conn

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils over this thread's connection."""
        return self._thread_db()

    def __getitem__(self, table: str) -> sqlite_utils.db.Table:
        return self._thread_db()[table]

    def __getattr__(self, name: str) -> Any:
        # Everything else sqlite-utils offers (table_names, query, ...) on this thread's connection.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._thread_db(), name)

    def execute(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    # -- transactions --------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection; nested calls join the outer one."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        with self._lock, self._disk_full_explained():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _disk_full_explained(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc):
                raise
            raise DiskFull(f"The disk holding {self.path} is full, so this change was not saved "
                           "(everything saved before is intact); free space, then retry.") from exc

    atomic = write  # what sqlite-utils callers (and its own helpers) use

    # -- maintenance ---------------------------------------------------------------------------
    def backup(self, target: str | Path) -> None:
        """A consistent copy of the whole database while others read and write (online backup)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        destination = sqlite3.connect(target)
        try:
            self.conn.backup(destination)
        finally:
            destination.close()

    def close(self) -> None:
        """Close every thread's connection; later use raises DatabaseClosed."""
        with self._guard:
            self._closed = True
            connections = list(self._connections)
            self._connections = weakref.WeakSet()
        for conn in connections:
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # another thread is mid-statement: it ends with an error
                pass
        self._local = threading.local()
