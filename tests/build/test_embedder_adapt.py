"""The embedder adaptation stage: pairs from the train split only, recall of base and adapted on
held-out pairs and KB probes, the keep-if-better gate, and the adapted embedder's export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from appliance_build import jsonl
from appliance_build.embedder_adapt import (
    Pair,
    build_pairs,
    gate,
    pair_set,
    probe_set,
    remove_overlap,
)
from appliance_build.metrics import rank_metrics


def doc(group, heading, body, where, tags=()):
    return {"kind": "doc", "group": group, "question": f"what does '{heading}' say?", "answer": body,
            "heading": heading, "where": where, "doc_path": group.removeprefix("doc:"), "tags": list(tags)}


def row(kind, group, question, answer, tags=()):
    return {"kind": kind, "group": group, "question": question, "answer": answer, "tags": list(tags)}


LEAVE = "doc:docs/hr/annual-leave-ko.md"
SAME_DAY = "당일 09:30까지 팀장에게 보고하고 복귀 후 2영업일 이내에 사후 신청합니다."
RECORDS = [
    doc(LEAVE, "1. 신청 방법", "HR100 화면에서 사용일 3영업일 전까지 신청합니다.",
        "연차휴가 신청 안내 > 1. 신청 방법"),
    doc(LEAVE, "2. 당일 연차", SAME_DAY, "연차휴가 신청 안내 > 2. 당일 연차"),
    doc("doc:docs/it/contacts.md", "Contact kim@hanbit.example", "Mail the helpdesk.", "IT contacts"),
    row("qa", LEAVE, "당일 연차는 어떻게 하나요?", "당일 09:30까지 팀장에게 보고합니다."),
    row("qa", LEAVE, "질문이 있습니다. 당일 연차는 어떻게 하나요?", "당일 09:30까지 팀장에게 보고합니다.",
        ["augmented"]),
    row("qa", "qa:q9", "Who approves a KRW 20 million PO?", "The Head of Procurement, release code R2."),
    row("chat", "chat:c1", "How do I reset my HERP password?", "Use self-service SY200."),
]


def test_pairs_cover_headings_qa_and_chat_in_both_languages():
    pairs = build_pairs(RECORDS)
    by_kind = {}
    for pair in pairs:
        by_kind.setdefault(pair.kind, []).append(pair)
    assert set(by_kind) == {"heading", "heading_path", "qa", "qa_section", "chat"}
    # A heading (numbering stripped) and its path both point at the section as the KB embeds it.
    assert Pair("당일 연차", f"연차휴가 신청 안내 > 2. 당일 연차\n{SAME_DAY}", "heading", LEAVE) in pairs
    assert any(p.query == "연차휴가 신청 안내 > 1. 신청 방법" for p in by_kind["heading_path"])
    # The QA answer is found inside the second section of its source document.
    [section] = by_kind["qa_section"]
    assert section.query == "당일 연차는 어떻게 하나요?"
    assert section.passage.startswith("연차휴가 신청 안내 > 2. 당일 연차")
    # No PII from headings, no augmented variants, a QA pair without a source document keeps only its answer.
    assert not any("kim@hanbit.example" in p.query for p in pairs)
    assert not any(p.query.startswith("질문이 있습니다") for p in pairs)
    assert [p.passage for p in pairs if p.group == "qa:q9"] == ["The Head of Procurement, release code R2."]
    assert len(pairs) == len({(p.query, p.passage) for p in pairs})


def test_eval_pairs_seen_in_training_are_dropped():
    train = [Pair("Approval limits", "PO limits passage", "heading", "doc:a")]
    evaluation = [Pair("Approval limits", "another doc's limits", "heading", "doc:b"),
                  Pair("Who signs?", "PO limits passage", "qa", "doc:b"),
                  Pair("Emergency POs", "within one working day", "heading", "doc:b")]
    kept, dropped = remove_overlap(evaluation, train)
    assert dropped == 2 and [p.query for p in kept] == ["Emergency POs"]


def test_pair_set_gold_is_every_passage_of_a_query():
    pairs = [Pair("q1", "p1", "qa", "g"), Pair("q1", "p2", "qa_section", "g"), Pair("q2", "p2", "chat", "h")]
    retrieval = pair_set(pairs)
    assert retrieval.queries == ["q1", "q2"] and retrieval.passages == ["p1", "p2"]
    assert retrieval.gold == [{0, 1}, {1}] and retrieval.kinds == ["qa", "chat"]


def test_probes_asked_in_training_are_left_out():
    sections = [doc("doc:docs/a.md", "A", "alpha", "A"), doc("doc:docs/b.md", "B", "beta", "B")]
    probes = [{"question": "Who approves a KRW 20 million PO?", "gold": "docs/a.md"},
              {"question": "What is beta?", "gold": "docs/b.md"},
              {"question": "Gone?", "gold": "docs/missing.md"}]
    retrieval, counts = probe_set(probes, sections, build_pairs(RECORDS))
    assert counts == {"probes": 3, "in_training": 1, "gold_not_in_corpus": 1}
    assert retrieval.queries == ["What is beta?"] and retrieval.gold == [{1}]


def test_rank_metrics_use_the_first_gold_rank():
    passages = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0, 0, 0], [0.1, 0.9, 0.5, 0], [0, 0, 0.2, 0.9]], dtype=np.float32)
    # ranks of the first gold passage: 1, 2 (passage 2 ranks second), 3 (passage 0 is below 3 and 2)
    result = rank_metrics(queries, passages, [{0}, {2}, {0, 1}], ks=[1, 2])
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(2 / 3)
    assert result["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def test_gate_keeps_the_adapted_embedder_only_when_it_beats_the_base_by_the_margin():
    base = {"recall@5": 0.60, "mrr": 0.50}
    assert gate(base, {"recall@5": 0.70, "mrr": 0.55}, 5, 0.01)[0]
    keep, reason = gate(base, {"recall@5": 0.605, "mrr": 0.52}, 5, 0.01)
    assert not keep and "base embedder kept" in reason and "0.605" in reason and "0.600" in reason
    assert not gate(base, {"recall@5": 0.55, "mrr": 0.45}, 5, 0.0)[0]
    assert not gate(base, base, 5, 0.01)[0]


def test_without_held_out_pairs_nothing_is_trained_and_the_base_stays(tmp_path):
    from appliance_build.embedder_adapt import adapt_embedder
    from appliance_build.recipe import DEFAULTS

    base = tmp_path / "base-embedder"  # never opened: the stage stops before loading a model
    summary = adapt_embedder(base, RECORDS, [], [], [], DEFAULTS["embedder_adapt"], tmp_path / "out", seed=0,
                             serve_max_length=256)
    assert summary["kept"] == "base" and summary["model_dir"] == str(base)
    assert "no held-out eval pairs" in summary["reason"] and "training" not in summary
    assert len(jsonl.read(tmp_path / "out" / "pairs" / "train.jsonl")) == summary["train_pairs"] > 0


def test_adaptation_trains_on_the_train_split_and_measures_both(tiny_run):
    _, outputs = tiny_run
    adapted = outputs["embedder_adapt"]
    summary = adapted.summary
    validated = outputs["validate"].path
    train_groups = {r["group"] for r in jsonl.read(validated / "train.jsonl")}
    eval_groups = {r["group"] for r in jsonl.read(validated / "eval.jsonl")}
    train_pairs = jsonl.read(adapted.path / "pairs" / "train.jsonl")
    eval_pairs = jsonl.read(adapted.path / "pairs" / "eval.jsonl")
    assert train_pairs and eval_pairs and summary["train_pairs"] == len(train_pairs)
    assert {p["group"] for p in train_pairs} <= train_groups
    assert {p["group"] for p in eval_pairs} <= eval_groups
    trained = {p["query"] for p in train_pairs} | {p["passage"] for p in train_pairs}
    assert not trained & ({p["query"] for p in eval_pairs} | {p["passage"] for p in eval_pairs})
    assert any(any("\uac00" <= ch <= "\ud7a3" for ch in p["query"]) for p in train_pairs)  # Korean included
    assert summary["training"]["steps"] == 2
    assert summary["probe_set"]["in_training"] == 0 and summary["probe_set"]["queries"] == 3
    for model in ("base", "adapted"):
        for name in ("eval pairs", "kb probes"):
            figures = summary["recall"][model][name]
            assert 0 <= figures["recall@1"] <= figures["recall@5"] <= 1 and 0 < figures["mrr"] <= 1
    recall = {model: summary["recall"][model]["eval pairs"]["recall@5"] for model in ("base", "adapted")}
    gain = recall["adapted"] - recall["base"]
    assert summary["kept"] == ("adapted" if gain >= summary["min_recall_gain"] else "base")
    assert summary["kept"] == "adapted"  # the tiny recipe accepts any adapted embedder
    report = (outputs["evaluate"].path / "report.md").read_text(encoding="utf-8")
    assert "## Embedder adaptation" in report
    assert "| eval pairs | adapted |" in report and "| kb probes | base |" in report


def test_adapted_embedder_is_exported_and_served(tiny_run):
    from sentence_transformers import SentenceTransformer

    from appliance import manifest
    from appliance.knowledge.embedder import OnnxEmbedder
    from appliance_build.embedder import OnnxEmbedder as ExportCheck

    _, outputs = tiny_run
    adapted = outputs["embedder_adapt"]
    exported = outputs["embedder"].summary
    assert exported["source"] == "adapted" and exported["name"] == f"all-minilm-l6-v2-adapted-{adapted.key[:8]}"
    # The fp32 export carries the adapted weights, not the base's.
    texts = ["연차 휴가는 어떻게 신청하나요?", "Who approves a KRW 20 million PO?"]
    onnx_vectors = ExportCheck(Path(exported["fp32_folder"])).embed(texts)
    tuned, base = (SentenceTransformer(adapted.summary[folder], device="cpu").encode(texts, normalize_embeddings=True)
                   for folder in ("adapted_dir", "base_dir"))
    assert np.abs(onnx_vectors - tuned).max() < 1e-4 < np.abs(onnx_vectors - base).max()

    version = Path(outputs["package"].summary["folder"])
    loaded = manifest.read(version)
    assert loaded.lineage["embedder_source"] == "adapted"
    assert loaded.metrics["embedder_adaptation"]["kept"] == "adapted"
    embedder = OnnxEmbedder(version / "embedder")
    vectors = embedder.embed(["연차 휴가는 어떻게 신청하나요?", "재고 이동은 MB1B로 합니다.", "purchase order"])
    assert embedder.name == exported["name"] and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) < 0.999  # two Korean texts embed apart


def test_gate_forced_to_keep_the_base(tiny_run):
    """A gain no embedder can reach (recall is at most 1) keeps the base, and the base is exported."""
    from appliance_build.pipeline import Pipeline
    from appliance_build.recipe import Recipe

    pipeline, outputs = tiny_run
    overrides = {**pipeline.recipe.settings}
    recipe = Recipe(pipeline.recipe.name, {
        **overrides, "embedder_adapt": {**overrides["embedder_adapt"], "min_recall_gain": 1.01},
        "embedder": {**overrides["embedder"], "quantization": "dynamic"}}, pipeline.recipe.root)
    forced = Pipeline(recipe, cache_dir=pipeline.cache.root, models_dir=pipeline.models_dir)
    result = forced.run(only="embedder")
    assert result["validate"].cached and not result["embedder_adapt"].cached
    summary = result["embedder_adapt"].summary
    assert summary["kept"] == "base" and summary["model_dir"] == summary["base_dir"]
    assert "base embedder kept" in summary["reason"]
    first = outputs["embedder_adapt"].summary
    assert summary["recall"]["base"]["eval pairs"] == first["recall"]["base"]["eval pairs"]
    exported = result["embedder"].summary
    assert exported["source"] == "base"
    assert json.loads((Path(exported["folder"]) / "embedder.json").read_text())["name"] == "all-minilm-l6-v2"
    # A re-run finds both stages in the cache.
    again = Pipeline(recipe, cache_dir=pipeline.cache.root, models_dir=pipeline.models_dir).run(only="embedder")
    assert again["embedder_adapt"].cached and again["embedder"].cached
