"""Hybrid retrieval: vector and BM25 candidates fused by reciprocal rank, filtered by access groups."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from appliance.knowledge.access import AccessIndex
from appliance.knowledge.analyzer import Analyzer, is_korean
from appliance.knowledge.keyword import KeywordIndex
from appliance.knowledge.store import DocumentStore
from appliance.knowledge.vectors import VectorStore

MODES = ("hybrid", "dense", "keyword")


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, naming its source."""

    chunk_id: int
    document_id: int
    document: str
    title: str
    heading: str
    page: int | None
    sheet: str | None
    text: str
    score: float
    dense_score: float | None
    keyword_score: float | None
    keyword_coverage: float

    @property
    def snippet(self) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= 240 else flat[:239] + "…"

    def source(self) -> dict:
        """The citation shown to users: enough to find the passage again."""
        return {"chunk_id": self.chunk_id, "document_id": self.document_id,
                "document": self.document, "title": self.title, "heading": self.heading,
                "page": self.page, "sheet": self.sheet, "snippet": self.snippet,
                "score": round(self.score, 6)}

    def as_dict(self) -> dict:
        return {**asdict(self), "snippet": self.snippet}


def reciprocal_rank_fusion(rankings: Sequence[tuple[float, Sequence[int]]], k: int = 60) -> dict[int, float]:
    """Sum of weight / (k + rank) over the rankings each id appears in."""
    fused: dict[int, float] = {}
    for weight, ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


class Retriever:
    def __init__(self, store: DocumentStore, vectors: VectorStore, keywords: KeywordIndex,
                 access: AccessIndex, embed, analyzer: Analyzer, *, candidates: int = 50, rrf_k: int = 60,
                 dense_weight: float = 1.0, korean_dense_weight: float = 0.15, min_similarity: float = 0.35,
                 min_keyword_coverage: float = 0.5, glossary=None, translated_weight: float = 1.0):
        self.store = store
        self.vectors = vectors
        self.keywords = keywords
        self.access = access
        self.embed = embed  # texts -> unit vectors (the micro-batcher in the server)
        self.analyzer = analyzer
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self.korean_dense_weight = korean_dense_weight
        self.min_similarity = min_similarity
        self.min_keyword_coverage = min_keyword_coverage
        self.glossary = glossary
        self.translated_weight = translated_weight

    def search(self, query: str, k: int = 5, *, groups: Iterable[str] | None = None,
               mode: str = "hybrid") -> list[Hit]:
        """Top `k` chunks the caller's `groups` may see (None: everything), best first."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        groups = None if groups is None else list(groups)
        visible = self.access.filter(groups)
        dense: dict[int, float] = {}
        keyword: dict[int, tuple[float, float]] = {}
        rankings = []
        if mode in ("hybrid", "dense"):
            vector = self.embed([query])[0]
            dense = dict(self.vectors.search(vector, self.candidates, visible))
            # The default embedder is English-centric: on Korean queries its ranking is weaker.
            weight = self.korean_dense_weight if is_korean(query) else self.dense_weight
            rankings.append((weight, list(dense)))
        if mode in ("hybrid", "keyword"):
            terms = self.analyzer.terms(query)
            found = self.keywords.search(terms, self.candidates, visible=visible)
            keyword = {i: (s, c) for i, s, c in found}
            rankings.append((1.0, list(keyword)))
            translated = self.glossary.translate(query, terms) if self.glossary else []
            if translated:
                # The question's key terms in the other language, ranked over the documents
                # written in that language only: reaching those is what translation is for.
                # Chunks the question already matched in its own language (bilingual code
                # lists, say) get no second vote.
                found = self.keywords.search(translated, self.candidates, visible=visible,
                                             exclude=keyword,
                                             korean=not is_korean(query))
                rankings.append((self.translated_weight, [i for i, _, _ in found]))
                for i, s, c in found:
                    if c > keyword.get(i, (0.0, 0.0))[1]:
                        keyword[i] = (keyword.get(i, (s, 0.0))[0], c)
        fused = reciprocal_rank_fusion(rankings, self.rrf_k)
        ranked = sorted(fused, key=lambda i: -fused[i])
        # Rows come through the group filter again: the index filter is not the only guard.
        rows = self.store.chunks(ranked[: k * 2], groups)
        hits = []
        for chunk_id in ranked:
            row = rows.get(chunk_id)
            if row is None:
                continue
            kw = keyword.get(chunk_id)
            hits.append(Hit(
                chunk_id, row.document_id, row.source, row.title, row.heading, row.page, row.sheet,
                row.text, fused[chunk_id], dense.get(chunk_id), kw[0] if kw else None,
                kw[1] if kw else 0.0,
            ))
            if len(hits) == k:
                break
        return hits

    def relevant(self, hit: Hit, query: str) -> bool:
        """Worth citing: sharing most of the question's key terms, or close in meaning.

        Similarity is not trusted for Korean: the English-centric embedder puts any two Korean
        texts fairly close together.
        """
        if hit.keyword_coverage >= self.min_keyword_coverage:
            return True
        return not is_korean(query) and hit.dense_score is not None and \
            hit.dense_score >= self.min_similarity
