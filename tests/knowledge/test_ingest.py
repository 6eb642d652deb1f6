from appliance.knowledge.knowledge_base import KnowledgeBase

from .conftest import SAMPLE

GUIDE_V1 = b"# Goods receipt\n\n## Posting\n\nPost goods receipts with transaction GR100 in HERP.\n"
GUIDE_V2 = b"# Goods receipt\n\n## Posting\n\nPost goods receipts with transaction GR900 from now on.\n"


def _write(folder, name, data):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_unchanged_documents_are_skipped_and_changed_ones_replaced(kb, tmp_path):
    docs = tmp_path / "docs"
    _write(docs, "gr.md", GUIDE_V1)
    first = kb.ingest([docs])
    assert first.added == ["gr.md"]
    version = kb.version
    assert kb.ingest([docs]).unchanged == ["gr.md"]
    assert kb.version == version  # nothing changed, so cached answers stay valid

    old_ids = kb.store.chunk_ids()
    _write(docs, "gr.md", GUIDE_V2)
    assert kb.ingest([docs]).updated == ["gr.md"]
    assert kb.version != version
    assert not old_ids & kb.store.chunk_ids()
    assert kb.vectors.ids() == kb.store.chunk_ids() == kb.keywords.ids()
    hits = kb.search("GR900 goods receipt", 3)
    assert "GR900" in hits[0].text
    assert not any("GR100" in h.text for h in kb.search("GR100", 5, mode="keyword"))


def test_delete_removes_the_document_everywhere(kb, kb_settings, embedder, tmp_path):
    _write(tmp_path / "d", "gr.md", GUIDE_V1)
    _write(tmp_path / "d", "other.txt", b"Vendor payments run every Friday.\n")
    kb.ingest([tmp_path / "d"])
    doc = kb.store.by_source("gr.md")
    kb.delete(doc.id)
    assert kb.store.by_source("gr.md") is None
    assert kb.vectors.ids() == kb.store.chunk_ids() == kb.keywords.ids()
    assert all(h.document != "gr.md" for h in kb.search("goods receipt GR100", 5))
    # ...and after a restart, from the persisted index too.
    kb.persist()
    reopened = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        assert reopened.repair() == {"missing": 0, "orphans": 0}
        assert reopened.vectors.ids() == reopened.store.chunk_ids()
        assert [d.source for d in reopened.store.documents()] == ["other.txt"]
    finally:
        reopened.close()


def test_a_broken_file_is_reported_and_the_batch_goes_on(kb, tmp_path):
    docs = tmp_path / "batch"
    _write(docs, "a.md", GUIDE_V1)
    _write(docs, "broken.pdf", b"%PDF-1.4 truncated garbage")
    _write(docs, "broken.docx", b"PK\x03\x04 not a zip")
    _write(docs, "image.png", b"\x89PNG")
    _write(docs, "drawing.svg", b"<svg/>")
    _write(docs, "z.csv", (SAMPLE / "admin" / "system-error-codes.csv").read_bytes())
    report = kb.ingest([docs])
    assert sorted(report.added) == ["a.md", "z.csv"]
    failed = dict(report.failed)
    assert set(failed) == {"broken.pdf", "broken.docx", "image.png", "drawing.svg"}
    assert "pdf" in failed["broken.pdf"] and "not a readable png" in failed["image.png"]
    assert "unsupported" in failed["drawing.svg"]
    assert kb.search("SYS-E-1005 account locked", 1)[0].document == "z.csv"


def test_uploaded_bytes_and_groups_change(kb):
    kb.ingest_bytes("gr.md", GUIDE_V1)
    version = kb.version
    kb.ingest_bytes("gr.md", GUIDE_V1, ["finance"])
    assert kb.store.by_source("gr.md").groups == ("finance",)
    assert kb.version != version  # a regrouped document changes who may see cached answers
