"""Crash safety: SQLite commits first, the indexes follow, and start-up repairs any gap."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from appliance.knowledge.chunking import chunk_document
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.knowledge.parsers import parse

from .conftest import SAMPLE


def test_a_kill_between_sqlite_commit_and_index_write_is_repaired(kb, kb_settings, embedder):
    kb.ingest_bytes("a.md", b"# Assets\n\nFixed assets are capitalised above KRW 1,000,000.\n")
    # The "crash": the document reaches SQLite, but neither index is written or persisted.
    doc = parse(b"# Leave\n\nAnnual leave requests go through HR300 before the 20th.\n", "leave.md")
    chunks = chunk_document(doc)
    kb.store.replace_document(source="leave.md", title=doc.title, format="md", content_hash="x",
                              groups=["all"], size=1, chunks=chunks,
                              terms=[" ".join(kb.analyzer.terms(c.context(doc.title))) for c in chunks])
    # An orphan too: a vector whose chunk SQLite never committed.
    kb.vectors.add([999_999], embedder.embed(["orphan"]))
    kb.vectors.persist()
    kb.vectors = None  # abandon the in-memory state, as a killed process would

    reopened = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        assert reopened.vectors.ids() == reopened.store.chunk_ids()
        assert 999_999 not in reopened.vectors.ids()
        assert reopened.search("annual leave HR300", 1)[0].document == "leave.md"
    finally:
        reopened.close()
    kb.vectors = reopened.vectors  # so the fixture's close has something to close


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_a_consistent_base(tmp_path, kb_settings, embedder_dir, embedder):
    data_dir = kb_settings.data_dir
    env = {**os.environ, "APPLIANCE_KNOWLEDGE__EMBEDDER_PATH": str(embedder_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "ingest", str(SAMPLE), "--data-dir", str(data_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    db = data_dir / "knowledge" / "knowledge.db"
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    committed = conn.execute("select count(*) from documents").fetchone()[0]
            except sqlite3.OperationalError:
                committed = 0
            if committed >= 3:
                break
        time.sleep(0.2)
    assert process.poll() is None, "ingest finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    kb = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        documents = kb.store.documents()
        assert len(documents) >= 3
        ids = kb.store.chunk_ids()
        assert kb.vectors.ids() == ids == kb.keywords.ids()
        # Every committed document is whole: its chunk count matches its rows.
        for doc in documents:
            assert len(kb.store.db.execute(
                "select id from chunks where document_id = ?", [doc.id]).fetchall()) == doc.chunk_count
        hit = kb.search(documents[0].title, 1)
        assert hit and np.isfinite(hit[0].score)
    finally:
        kb.close()
