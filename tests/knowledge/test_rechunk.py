"""Re-chunking after the chunker changed: knowledge bases of the chunker before passages, and
chunk settings changed later; real SQLite, FAISS and embedder, a real kill for the resume."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from appliance.knowledge import sections
from appliance.knowledge.chunking import chunk_document
from appliance.knowledge.ingest import iter_files
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.knowledge.parsers import parse
from appliance.knowledge.sections import OldChunk, from_chunks

from .conftest import SAMPLE
from .old_chunker import old_chunk_document, old_lines, old_style_base


def consistent(kb: KnowledgeBase) -> bool:
    return kb.vectors.ids() == kb.store.chunk_ids() == kb.keywords.ids()


def documents(kb: KnowledgeBase) -> list[tuple]:
    return [(d.source, d.title, d.content_hash, d.groups, d.size) for d in kb.store.documents()]


def flat(text: str) -> str:
    return " ".join(text.split())


def chunk_lines(kb: KnowledgeBase, document_id: int) -> list[str]:
    rows = kb.store.db.execute("select text from chunks where document_id = ?", [document_id])
    return [flat(line) for row in rows.fetchall() for line in row[0].split("\n") if line.strip()]


def document_text(kb: KnowledgeBase, document_id: int) -> str:
    rows = kb.store.db.execute("select text from chunks where document_id = ? order by ordinal",
                               [document_id]).fetchall()
    return flat(" ".join(r[0] for r in rows))


@pytest.fixture
def old_base(kb_settings, old_data_dir, embedder):
    shutil.copytree(old_data_dir, kb_settings.resolved_data_dir())
    kb = KnowledgeBase.open(kb_settings, embedder=embedder)
    yield kb
    kb.close()


def test_old_chunks_give_back_the_sections_they_were_cut_from():
    for file, source in iter_files([SAMPLE]):
        doc = parse(file.read_bytes(), source)
        old = [OldChunk(c.text, c.heading, c.page, c.sheet) for c in old_chunk_document(doc)]
        rebuilt = from_chunks(doc.title, old)
        lines = [line for s in rebuilt.sections for p in s.paragraphs for line in p.split("\n")]
        assert lines == old_lines(doc), source  # every line once: the overlap is gone


def test_an_old_knowledge_base_is_migrated_to_passages_with_the_same_documents_and_text(old_base):
    kb = old_base
    before = documents(kb)
    chunker = kb.ingestor.chunker
    old_lines = {d.id: chunk_lines(kb, d.id) for d in kb.store.documents()}
    old_count = kb.store.chunk_count()
    assert len(kb.store.stale_documents(chunker)) == len(before)
    assert kb.search("annual leave request", 1)[0].document  # the old chunks serve meanwhile

    job = kb.begin_rechunk()
    job.run(kb)

    assert job.state == "done" and job.done == job.total == len(before)
    assert documents(kb) == before and consistent(kb)
    assert kb.store.stale_documents(chunker) == [] and kb.store.meta("chunker") == chunker
    assert job.chunks_before == old_count and job.chunks_after == kb.store.chunk_count() < old_count
    for document_id, lines in old_lines.items():
        text = document_text(kb, document_id)
        assert all(line in text for line in lines), document_id  # nothing lost
    assert kb.search("연차 휴가 신청", 1)[0].document == "annual-leave-request-ko.md"
    assert kb.search("overtime pay rates", 1)[0].document == "overtime-policy.md"
    assert kb.begin_rechunk() is None  # all current now
    assert kb.status()["rechunk"]["state"] == "done"


def test_changed_chunk_settings_re_chunk_from_the_stored_sections(kb_settings, embedder, hr_docs):
    kb = KnowledgeBase.open(kb_settings, embedder=embedder)
    kb.ingest([hr_docs])
    assert kb.begin_rechunk() is None
    kb.close()

    kb_settings.knowledge.chunk_tokens = 120
    kb_settings.knowledge.chunk_max_tokens = 200
    kb = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        job = kb.begin_rechunk()
        assert job is not None and job.total == len(kb.store.documents())
        job.run(kb)
        assert consistent(kb)
        for file, source in iter_files([hr_docs]):  # as if each file were ingested afresh
            expected = chunk_document(parse(file.read_bytes(), source), target=120, maximum=200)
            rows = kb.store.db.execute(
                "select c.text from chunks c join documents d on d.id = c.document_id "
                "where d.source = ? order by c.ordinal", [source]).fetchall()
            assert [r[0] for r in rows] == [c.text for c in expected], source
    finally:
        kb.close()


def test_writes_while_re_chunking_win(old_base, hr_docs):
    kb = old_base
    job = kb.begin_rechunk()
    later = [kb.store.document(i) for i in job.documents[1:3]]

    def meanwhile(progress):
        if progress.done == 1:  # a document waiting its turn is deleted, another re-ingested
            kb.delete(later[0].id)
            kb.ingest([hr_docs / later[1].source])

    job.run(kb, progress=meanwhile)
    assert job.state == "done" and consistent(kb)
    assert kb.store.by_source(later[0].source) is None
    assert kb.store.stale_documents(kb.ingestor.chunker) == []


def test_a_crash_midway_resumes_on_the_next_open(old_base, kb_settings, embedder):
    kb = old_base
    before = documents(kb)
    job = kb.begin_rechunk()
    for document_id in job.documents[:2]:
        kb.rechunk_document(document_id)
    kb.persist()
    # The "crash": a third document's swap reaches SQLite, but neither index.
    title, _, _, ids, old = kb.store.rechunk_input(job.documents[2])
    doc = from_chunks(title, old)
    chunks, _, terms = kb.ingestor.chunks(doc)
    kb.store.rechunk_document(job.documents[2], ids, chunks, terms, sections.to_json(doc),
                              kb.ingestor.chunker)
    kb.vectors = None  # abandon the in-memory state, as a killed process would

    reopened = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        assert consistent(reopened)  # repair caught the indexes up with SQLite
        resumed = reopened.begin_rechunk()
        assert resumed.total == len(before) - 3
        resumed.run(reopened)
        assert documents(reopened) == before and consistent(reopened)
        assert reopened.store.stale_documents(reopened.ingestor.chunker) == []
    finally:
        reopened.close()
    kb.vectors = reopened.vectors  # so the fixture's close has something to close


@pytest.mark.slow
def test_kill_9_mid_rechunk_resumes_and_loses_nothing(kb_settings, embedder_dir, embedder,
                                                      sample_subset):
    data_dir = kb_settings.resolved_data_dir()
    old_style_base(data_dir, sample_subset)
    kb = KnowledgeBase.open(kb_settings, embedder=embedder)  # the old vectors, as before the upgrade
    before = documents(kb)
    old_text = {d.source: document_text(kb, d.id) for d in kb.store.documents()}
    kb.close()

    env = {**os.environ, "APPLIANCE_KNOWLEDGE__EMBEDDER_PATH": str(embedder_dir)}
    process = subprocess.Popen([sys.executable, "-m", "appliance.cli", "rechunk", "--data-dir",
                                str(data_dir)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    db = data_dir / "knowledge" / "knowledge.db"
    deadline, done = time.monotonic() + 180, 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with sqlite3.connect(db) as conn:
                done = conn.execute("select count(*) from document_sections").fetchone()[0]
        except sqlite3.OperationalError:
            done = 0
        if done >= 3:
            break
        time.sleep(0.1)
    assert process.poll() is None, "re-chunking finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    kb = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        assert consistent(kb) and documents(kb) == before
        job = kb.begin_rechunk()
        assert 0 < job.total <= len(before) - 3
        job.run(kb)
        assert documents(kb) == before and consistent(kb)
        for document in kb.store.documents():
            text = document_text(kb, document.id)
            assert all(word in text for word in old_text[document.source].split()), document.source
    finally:
        kb.close()
