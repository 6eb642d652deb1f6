"""The BM25 keyword index: exact BM25, incremental writes, rebuilds, Korean, group filtering."""

import math
import random
from collections import Counter

import numpy as np
import pytest

from appliance.knowledge.access import AccessIndex
from appliance.knowledge.analyzer import Analyzer
from appliance.knowledge.keyword import KeywordIndex

WORDS = ("purchase order approval vendor invoice payment release limit stock transfer warehouse "
         "leave overtime payroll password account role printer backup batch expiry").split()


def reference_bm25(docs: dict[int, list[str]], query: list[str], k1=1.2, b=0.75) -> dict[int, float]:
    """Textbook BM25 (Lucene's IDF), one document at a time."""
    n = len(docs)
    average = sum(len(t) for t in docs.values()) / n
    scores = {}
    for doc_id, terms in docs.items():
        counts = Counter(terms)
        score = 0.0
        for term in dict.fromkeys(query):
            df = sum(1 for t in docs.values() if term in t)
            tf = counts[term]
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(terms) / average))
        if score > 0:
            scores[doc_id] = score
    return scores


def random_corpus(seed: int, size: int) -> dict[int, list[str]]:
    rng = random.Random(seed)
    return {i: [rng.choice(WORDS) for _ in range(rng.randint(3, 30))] for i in range(1, size + 1)}


def assert_matches_reference(index: KeywordIndex, docs: dict[int, list[str]], query: list[str]):
    expected = reference_bm25(docs, query)
    found = index.search(query, len(docs))
    assert {i for i, _, _ in found} == set(expected)
    for chunk_id, score, _ in found:
        assert score == pytest.approx(expected[chunk_id], rel=1e-5)
    scores = [s for _, s, _ in found]
    assert scores == sorted(scores, reverse=True)


def test_scores_equal_a_reference_bm25():
    docs = random_corpus(1, 200)
    index = KeywordIndex()
    index.rebuild((i, " ".join(t)) for i, t in docs.items())
    for query in (["purchase", "order"], ["leave", "payroll", "nowhere"], ["batch"] * 3, ["x"]):
        assert_matches_reference(index, docs, query)


def test_coverage_is_the_share_of_query_weight_a_chunk_holds():
    index = KeywordIndex()
    index.rebuild([(1, "vendor invoice"), (2, "vendor"), (3, "stock")])
    coverage = {i: c for i, _, c in index.search(["vendor", "invoice"], 3)}
    assert coverage[1] == pytest.approx(1.0)
    assert 0 < coverage[2] < 0.5  # "vendor" is the commoner, lighter term


@pytest.mark.parametrize("merge_min", [3, 10_000])  # with and without folding into the main segment
def test_incremental_adds_and_removes_equal_a_fresh_build(merge_min):
    docs = random_corpus(2, 120)
    index = KeywordIndex(merge_min=merge_min)
    index.rebuild((i, " ".join(t)) for i, t in list(docs.items())[:40])
    rng = random.Random(3)
    live = dict(list(docs.items())[:40])
    for chunk_id, terms in list(docs.items())[40:]:
        index.add(chunk_id, terms)
        live[chunk_id] = terms
        if rng.random() < 0.3:
            gone = rng.choice(sorted(live))
            index.remove([gone])
            del live[gone]
    replaced = next(iter(live))
    live[replaced] = ["payroll", "payroll", "backup"]
    index.add(replaced, live[replaced])  # re-adding an id replaces its terms
    assert index.ids() == set(live)
    for query in (["purchase", "order"], ["payroll", "backup"], ["expiry", "role", "vendor"]):
        assert_matches_reference(index, live, query)
    index.merge()
    assert_matches_reference(index, live, ["payroll", "backup"])


def test_removed_chunks_never_come_back():
    index = KeywordIndex()
    index.rebuild([(1, "bonus pool"), (2, "bonus coffee")])
    index.remove([1])
    assert [i for i, _, _ in index.search(["bonus", "pool"], 5)] == [2]
    index.merge()
    assert [i for i, _, _ in index.search(["bonus", "pool"], 5)] == [2]
    assert len(index) == 1


def test_korean_terms_and_language_pools():
    analyzer = Analyzer()
    index = KeywordIndex()
    texts = {1: "연차휴가는 사용 3일 전까지 HR300에서 신청합니다.",
             2: "Annual leave is requested in HR300 three days ahead.",
             3: "출장비 정산은 TR200에서 합니다."}
    for chunk_id, text in texts.items():
        index.add(chunk_id, analyzer.terms(text))
    query = analyzer.terms("연차 신청은 어디서 하나요?")
    assert index.search(query, 3)[0][0] == 1
    assert [i for i, _, _ in index.search(["hr300"], 3, language="en")] == [2]
    assert [i for i, _, _ in index.search(["hr300"], 3, language="ko-only")] == [1]
    index.add(4, analyzer.terms("연차 Annual leave 휴가 request 신청"))  # a bilingual code list row
    assert {i for i, _, _ in index.search(["연차"], 3, language="en")} == {4}
    assert {i for i, _, _ in index.search(["연차"], 3, language="ko")} == {1, 4}
    assert {i for i, _, _ in index.search(["연차"], 3, language="ko-only")} == {1}


def test_the_group_filter_applies_before_the_top_k():
    access = AccessIndex()
    index = KeywordIndex()
    index.rebuild([(1, "bonus pool bonus"), (2, "bonus"), (3, "bonus canteen")])
    access.set([1], ["executives"])
    access.set([2, 3], ["all"])
    outsider = access.filter(["all"])
    assert outsider is not None and outsider.hidden() == [1]
    # A hidden chunk takes none of the k places.
    assert [i for i, _, _ in index.search(["bonus"], 2, visible=outsider)] == [2, 3]
    assert access.filter(["all", "executives"]) is None  # sees everything: no filter at all
    access.set([1], ["all"])  # regrouped: the cached filter is not reused
    assert access.filter(["all"]) is None


def test_the_group_filter_keeps_ivf_searches_full(tmp_path):
    from appliance.knowledge.vectors import FaissStore

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = FaissStore(16, None, ivf_threshold=1000, nprobe=2)
    store.add(range(1, 4001), vectors)
    assert store.kind == "ivf"
    access = AccessIndex()
    access.set(range(1, 4001), ["all"])
    access.set(range(1, 21), ["few"])  # a caller who sees 20 chunks of 4000
    visible = access.filter(["few"])
    found = store.search(vectors[0], 10, visible)
    assert len(found) == 10 and {i for i, _ in found} <= set(range(1, 21))


def test_the_index_is_rebuilt_from_sqlite_after_a_restart(kb, kb_settings, embedder):
    from appliance.knowledge.knowledge_base import KnowledgeBase

    kb.ingest_bytes("leave.md", "# 연차\n\n연차휴가는 HR300에서 사용 3일 전까지 신청합니다.\n".encode())
    kb.ingest_bytes("gr.md", b"# Goods receipt\n\nPost goods receipts with GR100; labels print at once.\n")
    kb.ingest_bytes("old.md", b"# Old\n\nGoods receipts used to be posted with GR050.\n")
    kb.delete(kb.store.by_source("old.md").id)
    queries = [kb.analyzer.terms(q) for q in ("연차 신청", "goods receipt GR100", "GR050")]
    before = [kb.keywords.search(q, 5) for q in queries]
    kb.close()
    reopened = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        assert reopened.keywords.ids() == reopened.store.chunk_ids()
        after = [reopened.keywords.search(q, 5) for q in queries]
        assert [[i for i, _, _ in r] for r in after] == [[i for i, _, _ in r] for r in before]
        for found, expected in zip(after, before):
            assert [s for _, s, _ in found] == pytest.approx([s for _, s, _ in expected], rel=1e-5)
        assert after[2] == []  # the deleted document stays gone
    finally:
        reopened.close()


def test_several_queries_at_once_equal_separate_searches():
    docs = random_corpus(4, 150)
    index = KeywordIndex()
    index.rebuild((i, " ".join(t)) for i, t in docs.items())
    own, translated = ["purchase", "order", "nowhere"], ["payroll", "backup"]
    together = index.search_many([(own, "en"), ([*own, *translated], None)], 20)
    apart = [index.search(own, 20, language="en"), index.search([*own, *translated], 20)]
    for found, expected in zip(together, apart):
        assert [i for i, _, _ in found] == [i for i, _, _ in expected]
        assert [s for _, s, _ in found] == pytest.approx([s for _, s, _ in expected], rel=1e-5)
        assert [c for _, _, c in found] == pytest.approx([c for _, _, c in expected], rel=1e-9)
