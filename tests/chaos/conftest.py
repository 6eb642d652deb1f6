"""Chaos helpers: a server process that can be killed at any moment, and the invariants every
kill must leave intact (SQLite whole, indexes agreeing with it, nothing acknowledged lost)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import ApplianceProcess

SEED = int(os.environ.get("APPLIANCE_CHAOS_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)


@pytest.fixture
def rng() -> random.Random:
    print(f"chaos seed {SEED} (APPLIANCE_CHAOS_SEED={SEED} replays it)")
    return random.Random(SEED)


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


class KillableAppliance(ApplianceProcess):
    """A server (auth off) that chaos tests kill -9 and start again on the same data folder."""

    def __init__(self, data_dir: Path, model_path: str, embedder_dir: Path, **env: str):
        super().__init__(data_dir, model_path, embedder_dir, **{
            "APPLIANCE_AUTH__ENABLED": "false", "APPLIANCE_MONITORING__FLUSH_SECONDS": "0.2",
            "APPLIANCE_LOG_LEVEL": "warning", "APPLIANCE_SERVER__DRAIN_SECONDS": "5", **env})

    def kill(self) -> None:
        kill9(self.proc)
        self.log.close()


def databases(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*.db") if "backups" not in p.parts]


def assert_intact(data_dir: Path) -> None:
    """Every database passes SQLite's integrity check; every FAISS index file loads."""
    import faiss

    for db in databases(data_dir):
        with closing(sqlite3.connect(db, timeout=30)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
    for index in (data_dir / "knowledge").glob("vectors*.faiss"):
        faiss.read_index(str(index))  # raises on a torn file


def faiss_ids_match_chunks(data_dir: Path) -> None:
    """With the server stopped cleanly: the live FAISS index holds exactly SQLite's chunk ids."""
    import json

    import faiss

    with closing(sqlite3.connect(data_dir / "knowledge" / "knowledge.db")) as conn:
        chunks = {row[0] for row in conn.execute("SELECT id FROM chunks")}
        record = conn.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()
    name = json.loads(record[0])["name"] if record else ""
    index = faiss.read_index(str(data_dir / "knowledge" / (f"vectors-{name}.faiss" if name else "vectors.faiss")))
    ids = set(faiss.vector_to_array(index.id_map).tolist()) if hasattr(index, "id_map") else None
    assert ids == chunks, (len(ids or ()), len(chunks))


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
