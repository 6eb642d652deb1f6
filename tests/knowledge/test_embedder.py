from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from appliance.knowledge.embed_batcher import EmbeddingBatcher
from appliance.knowledge.embedder import EmbedderMissing, OnnxEmbedder


def test_embeddings_are_unit_vectors_that_rank_by_meaning(embedder):
    vectors = embedder.embed(["release a purchase order", "approve a PO", "annual leave request"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_concurrent_requests_share_model_calls(embedder):
    batcher = EmbeddingBatcher(embedder, max_batch=32, window_ms=100)
    try:
        texts = [f"question number {i} about invoices" for i in range(24)]
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(lambda t: batcher.embed([t]), texts))
        assert all(r.shape == (1, 384) for r in results)
        assert batcher.texts == 24 and batcher.batches < 24
        alone = embedder.embed([texts[5]])[0]
        assert results[5][0] @ alone > 0.98
    finally:
        batcher.close()


def test_recent_texts_are_not_embedded_again(embedder):
    batcher = EmbeddingBatcher(embedder, max_batch=32, window_ms=100, cache_size=2)
    try:
        first = batcher.embed_queries(["who approves a purchase order?"])
        again = batcher.embed(["query-less text", embedder.query_prefix + "who approves a purchase order?"])
        assert batcher.texts == 2  # the question came from the cache
        assert np.array_equal(again[1], first[0]) and again.shape == (2, 384)
        batcher.embed(["a third text"])  # the cache keeps the two most recent texts
        batcher.embed_queries(["who approves a purchase order?"])
        assert batcher.texts == 4
    finally:
        batcher.close()


def test_a_missing_artifact_says_how_to_create_it(tmp_path):
    with pytest.raises(EmbedderMissing, match="appliance-build embedder --out"):
        OnnxEmbedder(tmp_path / "nowhere")


def test_batches_group_texts_by_token_count_and_keep_the_callers_order(embedder, monkeypatch):
    texts = ["짧은 질문", "A much longer English sentence about releasing purchase orders in HERP",
             "Short one", "연차휴가 신청은 사용 3일 전까지 ESS에서 해야 하며 팀장 승인이 필요합니다"]
    widths = []
    run = embedder._run
    monkeypatch.setattr(embedder, "max_batch", 2)
    monkeypatch.setattr(embedder, "_run", lambda ids: widths.append([len(i) for i in ids]) or run(ids))
    together = embedder.embed(texts)
    lengths = [n for batch in widths for n in batch]
    assert len(widths) == 2 and lengths == sorted(lengths)  # neighbours in token count share a batch
    for text, vector in zip(texts, together):
        # Dynamic int8 scales activations per batch (padding included), so neighbours move a
        # vector slightly; sorting by token count keeps the padding, and that effect, small.
        assert vector @ embedder.embed_batch([text])[0] > 0.97


def test_a_texts_vector_does_not_depend_on_the_texts_embedded_with_it(embedder):
    # An int8 artifact runs one text a model call: the same span scores the same whatever else
    # the server was embedding at the time, so an answer does not change with the traffic.
    assert embedder.max_batch == 1
    texts = ["Purchase orders above 30 million won are released by the CFO.",
             "연차휴가 신청은 사용일 3영업일 전까지 HR100에서 해야 하며 팀장 승인이 필요합니다.",
             "Short one"]
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    assert np.array_equal(embedder.embed(texts), alone)
    assert np.array_equal(embedder.embed(texts[::-1])[::-1], alone)
