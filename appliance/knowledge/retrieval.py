"""Hybrid retrieval: vector and BM25 candidates fused by reciprocal rank, filtered by access groups."""

from __future__ import annotations

import re
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
        return snippet(self.text)

    def source(self) -> dict:
        """The citation shown to users: enough to find the passage again."""
        return {"chunk_id": self.chunk_id, "document_id": self.document_id,
                "document": self.document, "title": self.title, "heading": self.heading,
                "page": self.page, "sheet": self.sheet, "snippet": self.snippet,
                "score": round(self.score, 6)}

    def as_dict(self) -> dict:
        return {**asdict(self), "snippet": self.snippet}


_RULE_LINE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$", re.M)


def snippet(text: str, limit: int = 240) -> str:
    """Text for a source card: one line, without Markdown table pipes, rules and emphasis."""
    text = _RULE_LINE.sub(" ", text)
    text = re.sub(r"^\s*#{1,6}\s+", "", text, flags=re.M)
    text = re.sub(r"\s*\|\s*", " · ", text.replace("**", "").replace("__", ""))
    flat = " ".join(text.split()).strip(" ·")
    flat = re.sub(r"(?:· )+", "· ", flat)
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def reciprocal_rank_fusion(rankings: Sequence[tuple[float, Sequence[int]]], k: int = 60) -> dict[int, float]:
    """Sum of weight / (k + rank) over the rankings each id appears in."""
    fused: dict[int, float] = {}
    for weight, ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


class Retriever:
    def __init__(self, store: DocumentStore, vectors: VectorStore, keywords: KeywordIndex,
                 access: AccessIndex, embed, analyzer: Analyzer, *, candidates: int = 50, rrf_k: int = 10,
                 dense_weight: float = 0.3, korean_dense_weight: float = 0.15, min_similarity: float = 0.35,
                 min_keyword_coverage: float = 0.5, glossary=None, translated_weight: float = 0.8,
                 ):
        self.store = store
        self.use_dense(vectors, embed)
        self.keywords = keywords
        self.access = access
        self.analyzer = analyzer
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self.korean_dense_weight = korean_dense_weight
        self.min_similarity = min_similarity
        self.min_keyword_coverage = min_keyword_coverage
        self.glossary = glossary
        self.translated_weight = translated_weight

    def use_dense(self, vectors: VectorStore, embed) -> None:
        """Switch the vector index and its embedder (texts -> unit vectors) together."""
        # One attribute: a search that started before the switch keeps a matching pair, so a
        # query vector never meets an index of another embedder (or dimension).
        self._dense = (vectors, embed)

    @property
    def vectors(self) -> VectorStore:
        return self._dense[0]

    @property
    def embed(self):
        return self._dense[1]

    def search(self, query: str, k: int = 5, *, groups: Iterable[str] | None = None,
               mode: str = "hybrid") -> list[Hit]:
        """Top `k` chunks the caller's `groups` may see (None: everything), best first."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        vectors, embed = self._dense
        groups = None if groups is None else list(groups)
        visible = self.access.filter(groups)
        korean_query = is_korean(query)
        # The question's pool holds chunks with text in its language (bilingual code lists too);
        # the other pool, chunks it cannot match in its own language.
        languages = {True: "ko", False: "en-only"} if korean_query else {True: "en", False: "ko-only"}
        dense: dict[int, float] = {}
        keyword: dict[int, tuple[float, float]] = {}
        own_best = 0.0  # BM25 score of the best chunk in the question's language
        # Rankings per pool: chunks in the question's language, and chunks in the other one.
        pools: dict[bool, list[tuple[float, list[int]]]] = {True: [], False: []}
        if mode in ("hybrid", "dense"):
            vector = embed([query])[0]
            # Over-fetched: the ranking is split by language below, and each part needs depth.
            dense = dict(vectors.search(vector, 4 * self.candidates, visible))
            if mode == "dense":
                pools[True].append((1.0, list(dense)[: self.candidates]))
            else:
                # The English-centric embedder cannot compare a question with text in the
                # other language, so the vectors vote in the question's own pool only.
                weight = self.korean_dense_weight if korean_query else self.dense_weight
                ranking = self.keywords.in_language(list(dense), languages[True])
                pools[True].append((weight, ranking[: self.candidates]))
        if mode in ("hybrid", "keyword"):
            terms = self.analyzer.query_terms(query)
            translated = self.glossary.translate(query, terms) if self.glossary else []
            # The words manuals use for the question's everyday words ("lost" -> "loss").
            rephrased = self.glossary.rephrase(query, terms) if self.glossary else []
            # The other language's chunks match the question's glossary translations, and its
            # codes and loan words.
            same, other = self.keywords.search_many(
                [([*terms, *rephrased], languages[True]), ([*terms, *translated], languages[False])],
                self.candidates, visible=visible)
            pools[True].append((1.0, [i for i, _, _ in same]))
            pools[False].append((1.0, [i for i, _, _ in other]))
            keyword = {i: (s, c) for i, s, c in [*same, *other]}
            own_best = max((s for _, s, _ in same), default=0.0)
        # Each pool is fused on its own and scaled to the same range, so the other language's
        # best chunk competes with this language's best instead of being outvoted by chunks
        # that both rankings of the question's own language agree on; translated_weight < 1
        # lets the question's own language win ties.
        fused: dict[int, float] = {}
        for same, rankings in pools.items():
            total = sum(w for w, _ in rankings) or 1.0
            scale = (1.0 if same else self.translated_weight) / total
            for chunk_id, score in reciprocal_rank_fusion(rankings, self.rrf_k).items():
                if not same and own_best > 0:
                    # A chunk in the other language competes as far as its match (BM25 of the
                    # question's translations, codes and loan words) reaches the best match in
                    # the question's language: one shared word does not earn it a top-5 place.
                    score *= min(1.0, keyword[chunk_id][0] / own_best)
                fused[chunk_id] = max(fused.get(chunk_id, 0.0), score * scale)
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
