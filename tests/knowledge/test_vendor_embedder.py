"""An embedder the vendor brings (`appliance-build embedder --from`): its pooling, prefixes and
dimension reach embedder.json, and the runtime embeds questions and passages each with its own
prefix. The model is the bundled all-MiniLM-L6-v2 re-configured with CLS pooling and prompts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from appliance.knowledge.embedder import EmbedderMissing, OnnxEmbedder
from appliance.knowledge.knowledge_base import KnowledgeBase
from tests.conftest import PROMPTS

QUESTIONS = ["How do I release a purchase order?", "연차 휴가는 어떻게 신청하나요?"]
PASSAGES = ["Purchase orders are released in PO150 by the team leader.",
            "연차 휴가는 HR300 화면에서 사용일 3영업일 전까지 신청합니다."]


@pytest.fixture(scope="module")
def vendor(vendor_embedder_dir):
    embedder = OnnxEmbedder(vendor_embedder_dir)
    yield embedder
    embedder.close()


def test_the_artifact_records_what_the_folder_says(vendor_embedder_dir):
    spec = json.loads((vendor_embedder_dir / "embedder.json").read_text())
    assert spec["name"] == "vendor-minilm-cls" and spec["pooling"] == "cls"
    assert spec["dim"] == 384 and spec["max_length"] == 256 and spec["normalize"] is True
    assert (spec["query_prefix"], spec["passage_prefix"]) == (PROMPTS["query"], PROMPTS["passage"])
    assert spec["quantization"] == "int8" and "pad_token_id" not in spec  # [PAD] is right


def test_queries_and_passages_carry_their_prefix_and_match_sentence_transformers(
        vendor, vendor_model_dir, embedder):
    from sentence_transformers import SentenceTransformer

    queries, passages = vendor.embed_queries(QUESTIONS), vendor.embed_passages(PASSAGES)
    assert queries.shape == (2, vendor.dim) and np.allclose(np.linalg.norm(queries, axis=1), 1, atol=1e-4)
    assert np.allclose(queries, vendor.embed([PROMPTS["query"] + q for q in QUESTIONS]), atol=1e-5)
    assert not np.allclose(queries, vendor.embed(QUESTIONS), atol=1e-3)  # the prefix is in
    reference = SentenceTransformer(str(vendor_model_dir), device="cpu")
    expected_queries = reference.encode(QUESTIONS, prompt_name="query", normalize_embeddings=True)
    expected_passages = reference.encode(PASSAGES, prompt_name="passage", normalize_embeddings=True)
    # int8 against torch fp32: the same pooling and prefixes give nearly the same vectors...
    assert (queries * expected_queries).sum(1).min() > 0.97
    assert (passages * expected_passages).sum(1).min() > 0.97
    # ...and CLS pooling is not the bundled embedder's mean pooling.
    assert (queries * embedder.embed([PROMPTS["query"] + q for q in QUESTIONS])).sum(1).max() < 0.95


def test_a_knowledge_base_switched_to_it_embeds_each_side_with_its_prefix(kb, vendor_embedder_dir):
    kb.ingest_bytes("po.md", b"# Purchase orders\n\n" + PASSAGES[0].encode() + b"\n")
    build = kb.begin_reembed(vendor_embedder_dir)
    kb.run_reembed(build)
    kb.install(build)
    assert kb.embedder.name == "vendor-minilm-cls" and kb.status()["embedder_dim"] == 384
    hit = kb.search(QUESTIONS[0], 1, mode="dense")[0]
    passage = kb.store.chunk_texts([hit.chunk_id])[hit.chunk_id]
    expected = kb.embedder.embed_queries([QUESTIONS[0]])[0] @ kb.embedder.embed_passages([passage])[0]
    assert hit.dense_score == pytest.approx(float(expected), abs=1e-3)
    assert kb.embed(["x"], "query") @ kb.embedder.embed_queries(["x"])[0] == pytest.approx(1, abs=1e-4)


def test_an_artifact_whose_model_disagrees_with_its_dimension_is_refused(tmp_path, vendor_embedder_dir):
    wrong = tmp_path / "wrong"
    shutil.copytree(vendor_embedder_dir, wrong)
    spec = json.loads((wrong / "embedder.json").read_text())
    (wrong / "embedder.json").write_text(json.dumps({**spec, "dim": 768}))
    with pytest.raises(EmbedderMissing, match="768 dimensions in embedder.json, but its model returns 384"):
        OnnxEmbedder(wrong)


def test_an_unknown_pooling_is_refused_with_the_fix(tmp_path, vendor_embedder_dir):
    odd = tmp_path / "odd"
    shutil.copytree(vendor_embedder_dir, odd)
    spec = json.loads((odd / "embedder.json").read_text())
    (odd / "embedder.json").write_text(json.dumps({**spec, "pooling": "weightedmean"}))
    with pytest.raises(EmbedderMissing, match="appliance-build embedder --from"):
        OnnxEmbedder(odd)


def test_a_base_reopens_with_the_vendor_embedder_that_built_its_index(kb_settings, embedder,
                                                                      vendor_embedder_dir):
    kb_settings.knowledge.embedder_path = str(vendor_embedder_dir)
    base = KnowledgeBase.open(kb_settings)
    try:
        base.ingest_bytes("po.md", b"# Purchase orders\n\n" + PASSAGES[0].encode() + b"\n")
        assert base.embedder.query_prefix == PROMPTS["query"]
        assert base.search(QUESTIONS[0], 1, mode="dense")[0].document == "po.md"
    finally:
        base.close()
