"""Re-embedding into a new index for another embedder (another size too), beside the live one:
real embedders, real FAISS, real SQLite."""

from __future__ import annotations

import threading

import pytest

from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.knowledge.reembed import ReembedCancelled

DOCS = {
    "po.md": b"# Purchase orders\n\nRelease a purchase order with transaction PO150 once the "
             b"Purchasing Team Leader approved it.\n",
    "leave.md": b"# Annual leave\n\nRequest annual leave in HR300 at least five days ahead.\n",
    "assets.md": b"# Fixed assets\n\nFixed assets are capitalised above KRW 1,000,000 in FA100.\n",
    "warehouse.md": b"# Warehouses\n\nThe main warehouse has the code WH01; returns go to WH09.\n",
}


@pytest.fixture
def base(kb_settings, embedder):
    kb = KnowledgeBase.open(kb_settings, embedder=embedder)
    for name, data in DOCS.items():
        kb.ingest_bytes(name, data)
    yield kb
    kb.close()


def consistent(kb: KnowledgeBase) -> bool:
    return kb.vectors.ids() == kb.store.chunk_ids() == kb.keywords.ids()


def test_new_index_is_built_beside_the_live_one_and_swapped_in_with_its_embedder(
        base, kb_settings, projected_embedder_dir):
    folder = kb_settings.resolved_data_dir() / "knowledge"
    live_vectors, live_embedder = base.vectors, base.embedder
    build = base.begin_reembed(projected_embedder_dir)
    assert build is not None and build.record.embedder == "all-minilm-l6-v2-p256/256"

    # Writes once the re-embedding has begun: a new document, an update and a deletion reach
    # both indexes, whether they come before the build reads SQLite or while it embeds.
    base.ingest_bytes("card.md", b"# Corporate card\n\nCorporate card receipts go to EX200.\n")
    worker = threading.Thread(target=base.run_reembed, args=(build,))
    worker.start()
    base.ingest_bytes("leave.md", b"# Annual leave\n\nRequest annual leave in HR310 now.\n")
    base.delete(base.store.by_source("assets.md").id)
    hits = base.search("corporate card receipts", 1)  # the live index answers meanwhile
    worker.join()

    assert hits[0].document == "card.md" and hits[0].dense_score is not None
    assert build.state == "ready" and build.done == build.total
    assert base.vectors is live_vectors and base.vectors.dim == 384 and consistent(base)
    assert build.vectors.ids() == base.store.chunk_ids()  # nothing ingested meanwhile is lost

    base.install(build)
    assert base.embedder is not live_embedder and base.embedder.dim == 256
    assert base.vectors.dim == 256 and consistent(base)
    hit = base.search("corporate card receipts", 1, mode="dense")[0]
    assert hit.document == "card.md"
    assert base.search("annual leave", 1, mode="dense")[0].text.count("HR310") == 1
    assert (folder / "vectors.faiss").is_file()  # kept for a rollback
    assert (folder / f"vectors-{build.record.name}.faiss").is_file()
    assert base.status()["reembed"]["state"] == "installed"

    # A restart opens the index with the embedder that built it, not the configured one.
    base.ingest_bytes("late.md", b"# Credit notes\n\nCredit notes are posted in AR410.\n")
    reopened = KnowledgeBase.open(kb_settings)  # as the next process would (SQLite is in WAL mode)
    try:
        assert reopened.embedder.dim == 256 and reopened.embedder.path == projected_embedder_dir
        assert reopened.index == build.record and consistent(reopened)
        assert reopened.search("credit notes", 1, mode="dense")[0].document == "late.md"
    finally:
        reopened.close()


def test_going_back_reuses_the_kept_index_and_catches_it_up(base, embedder_dir, projected_embedder_dir):
    first = base.begin_reembed(projected_embedder_dir)
    base.run_reembed(first)
    base.install(first)
    base.ingest_bytes("card.md", b"# Corporate card\n\nCorporate card receipts go to EX200.\n")
    base.delete(base.store.by_source("assets.md").id)
    new_chunks = base.store.by_source("card.md").chunk_count

    back = base.begin_reembed(embedder_dir)
    assert back.reused and back.record.name == ""  # the original vectors.faiss
    base.run_reembed(back)
    assert back.total == new_chunks  # only what changed since the switch was embedded
    base.install(back)
    assert base.embedder.dim == 384 and consistent(base)
    assert base.search("corporate card receipts", 1, mode="dense")[0].document == "card.md"
    assert base.begin_reembed(embedder_dir) is None  # already serving with it

    dropped = base.drop_previous_index()
    assert dropped is not None and dropped.name == first.record.name
    assert not (base.folder / f"vectors-{first.record.name}.faiss").exists()


def test_cancelled_reembedding_leaves_the_live_index_and_embedder_serving(
        base, kb_settings, projected_embedder_dir):
    before = (base.vectors, base.embedder, base.index)
    build = base.begin_reembed(projected_embedder_dir)
    build.cancel()
    with pytest.raises(ReembedCancelled, match="cancelled after 0 of"):
        base.run_reembed(build)
    assert build.state == "cancelled"
    assert (base.vectors, base.embedder, base.index) == before and consistent(base)
    assert not (base.folder / f"vectors-{build.record.name}.faiss").exists()
    base.ingest_bytes("card.md", b"# Corporate card\n\nCorporate card receipts go to EX200.\n")
    assert consistent(base) and len(build.vectors) == 0  # no longer written to
    assert base.search("corporate card receipts", 1)[0].document == "card.md"
    with pytest.raises(Exception, match="is cancelled, not ready"):
        base.install(build)


def test_an_embedder_that_does_not_load_is_refused_before_anything_changes(base, tmp_path, embedder_dir):
    broken = tmp_path / "broken-embedder"
    broken.mkdir()
    for name in ("tokenizer.json", "embedder.json"):
        (broken / name).write_bytes((embedder_dir / name).read_bytes())
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(Exception):
        base.begin_reembed(broken)
    assert base.reembed_status() is None and consistent(base)
