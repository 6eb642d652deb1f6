"""The knowledge base: opens its parts from settings, keeps the indexes true to SQLite."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from appliance.knowledge.access import AccessIndex
from appliance.knowledge.analyzer import Analyzer
from appliance.knowledge.embed_batcher import EmbeddingBatcher
from appliance.knowledge.embedder import Embedder, load_embedder
from appliance.knowledge.glossary import Glossary
from appliance.knowledge.ingest import IngestReport, Ingestor
from appliance.knowledge.keyword import KeywordIndex
from appliance.knowledge.retrieval import Hit, Retriever
from appliance.knowledge.store import DocumentStore
from appliance.knowledge.vectors import VectorStore, open_vector_store
from appliance.settings import KnowledgeSettings, Settings

log = logging.getLogger(__name__)


def embedder_path(settings: Settings) -> Path:
    path = settings.knowledge.embedder_path
    return Path(path).expanduser() if path else settings.resolved_data_dir() / "models" / "embedder"


def sample_kb_path() -> Path:
    return Path(str(resources.files("appliance") / "data" / "sample_kb" / "docs"))


class KnowledgeBase:
    """Documents in SQLite, vectors in a VectorStore, terms in a KeywordIndex, one embedder."""

    def __init__(self, store: DocumentStore, vectors: VectorStore, embedder: Embedder,
                 settings: KnowledgeSettings, *, analyzer: Analyzer | None = None):
        self.settings = settings
        self.store = store
        self.vectors = vectors
        self.embedder = embedder
        self.analyzer = analyzer or Analyzer()
        self.keywords = KeywordIndex()
        self.access = AccessIndex()
        self.batcher = EmbeddingBatcher(embedder, max_batch=settings.embed_batch,
                                        window_ms=settings.embed_window_ms)
        self.retriever = Retriever(
            store, vectors, self.keywords, self.access, self.batcher.embed, self.analyzer,
            candidates=settings.candidates, rrf_k=settings.rrf_k,
            dense_weight=settings.dense_weight, korean_dense_weight=settings.korean_dense_weight,
            min_similarity=settings.min_similarity, min_keyword_coverage=settings.min_keyword_coverage,
            glossary=Glossary(self.analyzer) if settings.glossary else None,
            translated_weight=settings.translated_weight,
        )
        self.ingestor = Ingestor(self, chunk_chars=settings.chunk_chars,
                                 chunk_overlap=settings.chunk_overlap)
        # Index updates follow SQLite commits in the same order; one writer at a time.
        self._write_lock = threading.Lock()
        self.repair()

    @classmethod
    def open(cls, settings: Settings, *, embedder: Embedder | None = None) -> KnowledgeBase:
        """Open (or create) the knowledge base under data_dir; raises EmbedderMissing if needed."""
        ks = settings.knowledge
        folder = settings.resolved_data_dir() / "knowledge"
        embedder = embedder or load_embedder(ks.embedder, embedder_path(settings),
                                             threads=ks.embedder_threads)
        store = DocumentStore(folder / "knowledge.db")
        vectors = open_vector_store(ks.vector_store, embedder.dim, folder, ks)
        return cls(store, vectors, embedder, ks)

    # -- consistency -----------------------------------------------------------------------------
    def repair(self) -> dict[str, int]:
        """Make the indexes match SQLite: re-embed missing chunks, drop orphans, rebuild BM25
        and the access groups."""
        with self._write_lock:
            fingerprint = f"{self.embedder.name}/{self.embedder.dim}"
            have = self.vectors.ids()
            if self.store.meta("embedder") not in (None, fingerprint):
                log.warning("embedder changed to %s: re-embedding every chunk", fingerprint)
                self.vectors.remove(sorted(have))
                have = set()
            want = self.store.chunk_ids()
            orphans = sorted(have - want)
            missing = sorted(want - have)
            self.vectors.remove(orphans)
            for start in range(0, len(missing), 256):
                batch = missing[start:start + 256]
                texts = self.store.chunk_texts(batch)
                self.vectors.add(batch, self.embedder.embed([texts[i] for i in batch]))
            if self.store.meta("analyzer") != self.analyzer.version:
                self._reanalyze()
            self.keywords.rebuild(self.store.iter_terms())
            self.access.clear()
            for groups, chunk_ids in self.store.iter_chunk_groups():
                self.access.set(chunk_ids, groups)
            self.store.set_meta("embedder", fingerprint)
            if orphans or missing:
                log.info("repaired the vector index: %d missing re-embedded, %d orphans removed",
                         len(missing), len(orphans))
                self.vectors.persist()
        return {"missing": len(missing), "orphans": len(orphans)}

    def _reanalyze(self) -> None:
        """Recompute every chunk's stored terms after the analyzer changed."""
        ids = sorted(self.store.chunk_ids())
        for start in range(0, len(ids), 500):
            texts = self.store.chunk_texts(ids[start:start + 500])
            self.store.set_terms({i: " ".join(self.analyzer.terms(t)) for i, t in texts.items()})
        self.store.set_meta("analyzer", self.analyzer.version)

    def apply(self, new_ids: Sequence[int], vectors: np.ndarray, terms: Sequence[str],
              removed: Sequence[int], groups: Sequence[str]) -> None:
        """Bring the indexes up to a committed document change."""
        with self._write_lock:
            self.access.remove(removed)
            self.vectors.remove(removed)
            self.keywords.remove(removed)
            self.access.set(new_ids, groups)
            self.vectors.add(new_ids, vectors)
            for chunk_id, joined in zip(new_ids, terms):
                self.keywords.add(chunk_id, joined.split())

    def regroup(self, document_id: int, groups: Sequence[str]) -> None:
        """Change a document's access groups (SQLite first, then the in-memory filter)."""
        self.store.set_groups(document_id, groups)
        with self._write_lock:
            self.access.set(self.store.document_chunk_ids(document_id), sorted(set(groups)))

    def persist(self) -> None:
        with self._write_lock:
            self.vectors.persist()

    # -- operations ------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """Changes whenever a document is added, changed, re-grouped or deleted."""
        return f"kb{self.store.version()}"

    def ingest(self, paths: Iterable[Path], groups: Sequence[str] | None = None, *,
               progress=None) -> IngestReport:
        return self.ingestor.ingest_paths(paths, groups or self.settings.default_groups,
                                          progress=progress)

    def ingest_bytes(self, source: str, data: bytes, groups: Sequence[str] | None = None) -> IngestReport:
        report = IngestReport()
        self.ingestor.ingest_bytes(source, data, groups or self.settings.default_groups, report)
        self.persist()
        return report

    def delete(self, document_id: int) -> None:
        removed = self.store.delete_document(document_id)
        with self._write_lock:
            self.access.remove(removed)
            self.vectors.remove(removed)
            self.keywords.remove(removed)
        self.persist()

    def search(self, query: str, k: int = 5, *, groups: Iterable[str] | None = None,
               mode: str = "hybrid") -> list[Hit]:
        return self.retriever.search(query, k, groups=groups, mode=mode)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed through the micro-batcher (concurrent callers share model calls)."""
        return self.batcher.embed(texts)

    def status(self) -> dict:
        return {"documents": len(self.store.documents()), "chunks": self.store.chunk_count(),
                "vectors": len(self.vectors), "version": self.version,
                "embedder": self.embedder.name, "vector_store": self.settings.vector_store,
                "embed_batches": self.batcher.batches}

    def close(self) -> None:
        self.batcher.close()
        self.persist()
        self.vectors.close()
        self.store.close()
        self.embedder.close()
