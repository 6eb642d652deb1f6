"""The Milvus store behind the same seam, on milvus-lite with a local file."""

import numpy as np
import pytest

from appliance.knowledge.access import AccessIndex
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.knowledge.vectors import MilvusStore

from .conftest import make_settings

pytest.importorskip("milvus_lite")


def test_milvus_store_adds_searches_excludes_and_removes(tmp_path, embedder):
    store = MilvusStore(embedder.dim, str(tmp_path / "milvus.db"))
    try:
        texts = ["purchase order release", "annual leave request", "stock transfer between plants"]
        store.add([11, 12, 13], embedder.embed(texts))
        query = embedder.embed(["how to release a PO"])[0]
        assert store.search(query, 1)[0][0] == 11
        access = AccessIndex()
        access.set([11], ["executives"])
        access.set([12, 13], ["all"])
        assert 11 not in dict(store.search(query, 3, access.filter(["all"])))
        store.remove([11])
        assert store.ids() == {12, 13}
        store.add([12], embedder.embed(["replaced vector"]))  # same id: an update
        assert store.ids() == {12, 13}
    finally:
        store.close()


def test_knowledge_base_on_milvus(tmp_path, embedder_dir, embedder):
    settings = make_settings(tmp_path / "data", embedder_dir, vector_store="milvus")
    kb = KnowledgeBase.open(settings, embedder=embedder)
    try:
        kb.ingest_bytes("gr.md", b"# Goods receipt\n\nPost goods receipts with GR100.\n")
        kb.ingest_bytes("secret.md", b"# Bonus\n\nThe bonus pool code is BON-77.\n", ["executives"])
        assert kb.search("goods receipt", 1)[0].document == "gr.md"
        assert all(h.document != "secret.md"
                   for h in kb.search("bonus pool BON-77", 5, groups=["all"], mode="dense"))
        kb.delete(kb.store.by_source("gr.md").id)
        assert kb.vectors.ids() == kb.store.chunk_ids()
        assert np.isfinite(kb.search("bonus", 1)[0].score)
    finally:
        kb.close()
