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


def test_a_missing_artifact_says_how_to_create_it(tmp_path):
    with pytest.raises(EmbedderMissing, match="appliance-build embedder --out"):
        OnnxEmbedder(tmp_path / "nowhere")
