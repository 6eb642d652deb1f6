"""The knowledge base: opens its parts from settings, keeps the indexes true to SQLite."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, Conflict
from appliance.knowledge import sections
from appliance.knowledge.access import AccessIndex
from appliance.knowledge.analyzer import Analyzer
from appliance.knowledge.chunking import Chunk
from appliance.knowledge.embed_batcher import EmbeddingBatcher
from appliance.knowledge.embedder import Embedder, artifact_fingerprint, load_embedder
from appliance.knowledge.glossary import Glossary
from appliance.knowledge.ingest import Ingestor, IngestReport, index_terms
from appliance.knowledge.keyword import KeywordIndex
from appliance.knowledge.ocr import Tesseract
from appliance.knowledge.rechunk import Rechunk
from appliance.knowledge.reembed import IndexBuild, IndexRecord, ReembedCancelled
from appliance.knowledge.retrieval import Hit, Retriever
from appliance.knowledge.sources import WatchedSources
from appliance.knowledge.store import DocumentStore
from appliance.knowledge.vectors import (
    VectorStore,
    drop_vector_store,
    faiss_file_name,
    open_vector_store,
)
from appliance.settings import KnowledgeSettings, Settings
from appliance.threadnames import start_named_thread

log = logging.getLogger(__name__)


def embedder_path(settings: Settings) -> Path:
    path = settings.knowledge.embedder_path
    return settings.resolve(path) if path else settings.resolved_data_dir() / "models" / "embedder"


def sample_kb_path() -> Path:
    return Path(str(resources.files("appliance") / "data" / "sample_kb" / "docs"))


class KnowledgeBase:
    """Documents in SQLite, vectors in a VectorStore, terms in a KeywordIndex, one embedder.

    `index` records which embedder built the vector index (None: not recorded yet); `folder`
    holds the indexes, and without it the base cannot re-embed into a new one.
    """

    def __init__(self, store: DocumentStore, vectors: VectorStore, embedder: Embedder,
                 settings: KnowledgeSettings, *, analyzer: Analyzer | None = None,
                 index: IndexRecord | None = None, folder: Path | None = None):
        self.settings = settings
        self.store = store
        self.vectors = vectors
        self.embedder = embedder
        self.index = index
        self.folder = folder
        self._build: IndexBuild | None = None  # a re-embedding in progress
        self.last_build: IndexBuild | None = None
        self.rechunking: Rechunk | None = None  # the current (or last) re-chunking
        self.analyzer = analyzer or Analyzer()
        self.keywords = KeywordIndex()
        self.access = AccessIndex()
        self.batcher = EmbeddingBatcher(embedder, max_batch=settings.embed_batch,
                                        window_ms=settings.embed_window_ms)
        self.retriever = Retriever(
            store, vectors, self.keywords, self.access, self.batcher.embed_queries, self.analyzer,
            candidates=settings.candidates, rrf_k=settings.rrf_k,
            dense_weight=settings.dense_weight, korean_dense_weight=settings.korean_dense_weight,
            min_similarity=settings.min_similarity, min_keyword_coverage=settings.min_keyword_coverage,
            glossary=Glossary(self.analyzer) if settings.glossary else None,
            translated_weight=settings.translated_weight,
        )
        self.ocr = Tesseract.from_settings(settings)
        self.ingestor = Ingestor(self, chunk_tokens=settings.chunk_tokens,
                                 chunk_max_tokens=settings.chunk_max_tokens,
                                 heading_weight=settings.heading_weight, ocr=self.ocr,
                                 ocr_min_confidence=settings.ocr_min_confidence)
        self.sources = WatchedSources(self, settings.sources)
        # Index updates follow SQLite commits in the same order; one writer at a time.
        self._write_lock = threading.Lock()
        self.repair()

    @classmethod
    def open(cls, settings: Settings, *, embedder: Embedder | None = None) -> KnowledgeBase:
        """Open (or create) the knowledge base under data_dir; raises EmbedderMissing if needed.

        The vector index opens with the embedder that built it (recorded in SQLite), which after
        a model version brought its own embedder is that version's, not the configured one.
        """
        ks = settings.knowledge
        folder = settings.resolved_data_dir() / "knowledge"
        store = DocumentStore(folder / "knowledge.db")
        try:
            record = IndexRecord.from_json(store.meta("index"))
            if embedder is None:
                path = embedder_path(settings)
                built_with = Path(record.embedder_path) if record and record.embedder_path else path
                if built_with != path and built_with.is_dir():
                    path = built_with
                elif built_with != path:
                    log.warning("the embedder that built the index (%s) is gone; re-embedding with %s",
                                built_with, path)
                embedder = load_embedder(ks.embedder, path, threads=ks.embedder_threads)
            name = record.name if record is not None else ""
            previous = IndexRecord.from_json(store.meta("previous_index"))
            if ks.vector_store == "faiss":
                _remove_stale_indexes(folder, {name, previous.name if previous else name})
            vectors = open_vector_store(ks.vector_store, embedder.dim, folder, ks, name=name)
        except BaseException:
            store.close()
            raise
        return cls(store, vectors, embedder, ks, index=record, folder=folder)

    # -- consistency -----------------------------------------------------------------------------
    def repair(self) -> dict[str, int]:
        """Make the indexes match SQLite: re-embed missing chunks, drop orphans, rebuild BM25
        and the access groups."""
        with self._write_lock:
            current = IndexRecord.for_embedder(self.embedder,
                                               name=self.index.name if self.index else "")
            have = self.vectors.ids()
            if self.index is not None:
                changed = self.index.fingerprint != current.fingerprint
            else:  # a base from before index records: only the embedder's name and size were kept
                changed = self.store.meta("embedder") not in (None, current.embedder)
            if changed:
                log.warning("embedder changed to %s: re-embedding every chunk", current.embedder)
                self.vectors.remove(sorted(have))
                have = set()
            want = self.store.chunk_ids()
            orphans = sorted(have - want)
            missing = sorted(want - have)
            self.vectors.remove(orphans)
            for start in range(0, len(missing), 256):
                batch = missing[start:start + 256]
                texts = self.store.chunk_texts(batch)
                self.vectors.add(batch, self.embedder.embed_passages([texts[i] for i in batch]))
            if self.store.meta("analyzer") != self.analyzer.version:
                self._reanalyze()
            self.keywords.rebuild(self.store.iter_terms())
            self.access.clear()
            for groups, chunk_ids in self.store.iter_chunk_groups():
                self.access.set(chunk_ids, groups)
            self.index = current
            self.store.set_metas({"embedder": current.embedder, "index": current.to_json()})
            if orphans or missing:
                log.info("repaired the vector index: %d missing re-embedded, %d orphans removed",
                         len(missing), len(orphans))
                self.vectors.persist()
        return {"missing": len(missing), "orphans": len(orphans)}

    def _reanalyze(self) -> None:
        """Recompute every chunk's stored terms after the analyzer changed."""
        ids = sorted(self.store.chunk_ids())
        weight = self.settings.heading_weight
        for start in range(0, len(ids), 500):
            rows = self.store.chunks(ids[start:start + 500])
            self.store.set_terms({i: " ".join(index_terms(
                self.analyzer, r.title, Chunk(0, r.text, r.heading), weight)) for i, r in rows.items()})
        self.store.set_meta("analyzer", self.analyzer.version)

    def embed_for_write(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of new chunks for every index being written: the live one, and the one a
        re-embedding is building (keyed by index name; `apply` takes them)."""
        with self._write_lock:
            targets = [(self.index.name, self.embedder)]
            if self._build is not None:
                targets.append((self._build.record.name, self._build.embedder))
        return {name: embedder.embed_passages(texts) for name, embedder in targets}

    def apply(self, new_ids: Sequence[int], vectors: Mapping[str, np.ndarray], terms: Sequence[str],
              removed: Sequence[int], texts: Sequence[str], groups: Sequence[str]) -> None:
        """Bring the indexes up to a committed document change (`texts`: the chunks' embedding
        input; `groups`: the document's access groups)."""
        with self._write_lock:
            self._apply_locked(new_ids, vectors, terms, removed, texts, groups)

    def _apply_locked(self, new_ids: Sequence[int], vectors: Mapping[str, np.ndarray],
                      terms: Sequence[str], removed: Sequence[int], texts: Sequence[str],
                      groups: Sequence[str]) -> None:
        self._remove_locked(removed)
        self.access.set(new_ids, groups)
        # An embedder switch (or a build that started) since `embed_for_write` leaves an index
        # without its vectors: embed those few chunks here rather than leave them out.
        live = vectors.get(self.index.name)
        self.vectors.add(new_ids, live if live is not None else self.embedder.embed_passages(texts))
        build = self._build
        if build is not None:
            extra = vectors.get(build.record.name)
            build.vectors.add(new_ids, extra if extra is not None
                              else build.embedder.embed_passages(texts))
        for chunk_id, joined in zip(new_ids, terms):
            self.keywords.add(chunk_id, joined.split())

    def regroup(self, document_id: int, groups: Sequence[str]) -> None:
        """Change a document's access groups (SQLite first, then the in-memory filter)."""
        self.store.set_groups(document_id, groups)
        with self._write_lock:
            self.access.set(self.store.document_chunk_ids(document_id), sorted(set(groups)))

    def _remove_locked(self, removed: Sequence[int]) -> None:
        self.access.remove(removed)
        self.vectors.remove(removed)
        self.keywords.remove(removed)
        if self._build is not None and len(removed):
            self._build.removed.update(removed)
            self._build.vectors.remove(removed)

    def persist(self) -> None:
        with self._write_lock:
            self.vectors.persist()

    # -- re-embedding for another embedder ---------------------------------------------------------
    def begin_reembed(self, path: Path) -> IndexBuild | None:
        """Prepare a new index for the embedder artifact at `path` (blocking: loads the model).

        None when the live index already uses that embedder. The previous index is reused (and
        caught up) when it was built by that embedder; `run_reembed` does the work.
        """
        if self.folder is None:
            raise ApplianceError("This knowledge base has no index folder, so it cannot re-embed.")
        if self._build is not None:
            raise Conflict("The knowledge base is already being re-embedded; wait for it to finish.")
        if artifact_fingerprint(Path(path)) == self.index.fingerprint:
            return None  # decided before loading the model: most swaps keep the embedder
        embedder = load_embedder(self.settings.embedder, Path(path),
                                 threads=self.settings.embedder_threads)
        previous = IndexRecord.from_json(self.store.meta("previous_index"))
        reused = previous is not None and previous.fingerprint == embedder.fingerprint
        name = previous.name if reused else embedder.fingerprint[:12]
        if not reused and name in ("", self.index.name):  # the live file must never be reopened
            name = f"{name}-{int(time.time())}"
        record = IndexRecord.for_embedder(embedder, name=name)
        vectors = open_vector_store(self.settings.vector_store, embedder.dim, self.folder,
                                    self.settings, name=name)
        build = IndexBuild(record, embedder, vectors, reused=reused)
        with self._write_lock:
            if self._build is not None:
                raise Conflict("The knowledge base is already being re-embedded; wait for it to finish.")
            self._build = build  # from here on, every write reaches the new index too
        self.last_build = build
        return build

    def run_reembed(self, build: IndexBuild) -> None:
        """Fill the new index (blocking; a worker thread). On failure it is discarded and raises."""
        try:
            build.run(self.store, self._write_lock)
        except ReembedCancelled as exc:
            self.discard(build, "cancelled", exc.message)
            raise
        except Exception as exc:
            self.discard(build, "failed", getattr(exc, "message", None) or repr(exc))
            raise

    def install(self, build: IndexBuild) -> None:
        """Serve from the new index and its embedder from now on; the replaced index is kept
        (as the previous index, for a rollback) until `drop_previous_index`."""
        with self._write_lock:
            if self._build is not build or build.state != "ready":
                raise ApplianceError(f"The re-embedded index is {build.state}, not ready to install.")
            build.vectors.persist()
            stale = IndexRecord.from_json(self.store.meta("previous_index"))
            # One transaction: after a crash the base opens with either pair, never a mix.
            self.store.set_metas({"index": build.record.to_json(),
                                  "previous_index": self.index.to_json(),
                                  "embedder": build.record.embedder})
            old_vectors, old_batcher = self.vectors, self.batcher
            self.vectors, self.embedder, self.index = build.vectors, build.embedder, build.record
            self.batcher = EmbeddingBatcher(build.embedder, max_batch=self.settings.embed_batch,
                                            window_ms=self.settings.embed_window_ms)
            self.retriever.use_dense(self.vectors, self.batcher.embed_queries)
            self._build = None
            build.finish("installed")
        old_batcher.close(wait=False)  # what it queued is still served; late callers embed inline
        old_vectors.persist()
        if stale is not None and stale.name != build.record.name:  # at most one index kept
            drop_vector_store(self.settings.vector_store, self.folder, self.settings, name=stale.name)
        log.info("now searching with %s (index %r)", self.index.embedder, self.index.name or "vectors")

    def discard(self, build: IndexBuild, state: str = "cancelled", error: str | None = None) -> None:
        """Forget a build that will not be installed; a new index is deleted, a reused one kept."""
        with self._write_lock:
            if self._build is build:
                self._build = None
        if build.state in ("installed", "failed", "cancelled"):
            return
        build.cancel()
        build.finish(state, error)
        if not build.reused:
            build.vectors.drop()
        build.embedder.close()

    def drop_previous_index(self) -> IndexRecord | None:
        """Delete the index kept for a rollback (the new embedder has proven itself)."""
        with self._write_lock:
            previous = IndexRecord.from_json(self.store.meta("previous_index"))
            if previous is None or previous.name == self.index.name or (
                    self._build is not None and self._build.record.name == previous.name):
                return None
            self.store.set_metas({"previous_index": None})
        drop_vector_store(self.settings.vector_store, self.folder, self.settings, name=previous.name)
        log.info("dropped the index of %s kept for a rollback", previous.embedder)
        return previous

    def reembed_status(self) -> dict | None:
        build = self._build or self.last_build
        return build.status() if build is not None else None

    # -- re-chunking after the chunker changed ---------------------------------------------------
    def begin_rechunk(self) -> Rechunk | None:
        """A job for every document another chunker (or other chunk settings) cut; None when
        all are current. `Rechunk.run(kb)` does the work, or `start_rechunk` in the background."""
        chunker = self.ingestor.chunker
        with self._write_lock:
            if self.rechunking is not None and self.rechunking.state == "running":
                raise Conflict("The knowledge base is already being re-chunked; wait for it to finish.")
            stale = self.store.stale_documents(chunker)
            if not stale:
                self.note_chunker()
                return None
            self.rechunking = Rechunk(chunker, stale, self.store.meta("chunker"))
        log.info("re-chunking %d documents with %s (their chunks were cut by another chunker or "
                 "other chunk settings)", len(stale), chunker)
        return self.rechunking

    def start_rechunk(self) -> Rechunk | None:
        """Re-chunk in a background thread whatever needs it; search serves meanwhile."""
        job = self.begin_rechunk()
        if job is not None:
            job.thread = start_named_thread(lambda: self._rechunk_in_background(job), "rechunk")
        return job

    def _rechunk_in_background(self, job: Rechunk) -> None:
        try:
            job.run(self)
        except Exception:
            log.exception("re-chunking stopped after %d of %d documents; the next start resumes it",
                          job.done, job.total)

    def rechunk_document(self, document_id: int) -> tuple[int, int] | None:
        """Cut one document again with the current chunker and swap it in (SQLite in one
        transaction, then the indexes, under the write lock). Returns (chunks before, after),
        or None when it was deleted or re-ingested meanwhile."""
        found = self.store.rechunk_input(document_id)
        if found is None or found[2] == self.ingestor.chunker:
            return None
        title, stored, _, old_ids, old_chunks = found
        doc = sections.from_json(title, stored) if stored is not None \
            else sections.from_chunks(title, old_chunks)
        chunks, contexts, terms = self.ingestor.chunks(doc)
        vectors = self.embed_for_write(contexts)
        with self._write_lock:
            swapped = self.store.rechunk_document(document_id, old_ids, chunks, terms,
                                                  sections.to_json(doc), self.ingestor.chunker)
            if swapped is None:
                return None
            new_ids, removed, groups = swapped
            self._apply_locked(new_ids, vectors, terms, removed, contexts, groups)
        return len(removed), len(new_ids)

    def note_chunker(self) -> None:
        """Record the chunker as the knowledge base's once no document waits for it."""
        chunker = self.ingestor.chunker
        if self.store.meta("chunker") != chunker and not self.store.stale_documents(chunker):
            self.store.set_meta("chunker", chunker)

    def rechunk_status(self) -> dict | None:
        return self.rechunking.status() if self.rechunking is not None else None

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

    def delete(self, document_id: int, *, persist: bool = True) -> None:
        """Delete a document everywhere; `persist=False` leaves writing the vector index to a
        later `persist()` (a batch of deletions)."""
        removed = self.store.delete_document(document_id)
        with self._write_lock:
            self._remove_locked(removed)
        if persist:
            self.persist()

    def search(self, query: str, k: int = 5, *, groups: Iterable[str] | None = None,
               mode: str = "hybrid") -> list[Hit]:
        return self.retriever.search(query, k, groups=groups, mode=mode)

    def next_passage(self, chunk_id: int, groups: Iterable[str] | None = None) -> Hit | None:
        """The passage after `chunk_id` in its document, as a hit (a list continues there)."""
        row = self.store.next_chunk(chunk_id, groups)
        if row is None:
            return None
        return Hit(row.id, row.document_id, row.source, row.title, row.heading, row.page, row.sheet,
                   row.text, 0.0, None, None, 0.0)

    def document_text(self, source: str) -> str:
        return self.store.document_text(source)

    def embed(self, texts: Sequence[str], input_type: str | None = None) -> np.ndarray:
        """Embed through the micro-batcher (concurrent callers share model calls): as they are,
        or as questions ("query") or passages ("passage") with the embedder's prefix."""
        batcher = self.batcher
        if input_type == "query":
            return batcher.embed_queries(texts)
        if input_type == "passage":
            return batcher.embed_passages(texts)
        return batcher.embed(texts)

    def status(self) -> dict:
        return {"documents": len(self.store.documents()), "chunks": self.store.chunk_count(),
                "vectors": len(self.vectors), "version": self.version,
                "embedder": self.embedder.name, "embedder_dim": self.embedder.dim,
                "index": self.index.name or "vectors", "vector_store": self.settings.vector_store,
                "embed_batches": self.batcher.batches, "reembed": self.reembed_status(),
                "chunker": self.ingestor.chunker, "rechunk": self.rechunk_status()}

    def close(self) -> None:
        if self._build is not None:
            self._build.cancel()
        job = self.rechunking
        if job is not None and job.thread is not None:
            job.cancel()  # it stops after the document in hand; the next start resumes it
            job.thread.join(timeout=60)
        self.batcher.close()
        self.persist()
        self.vectors.close()
        self.store.close()
        self.embedder.close()


def _remove_stale_indexes(folder: Path, keep: set[str]) -> None:
    """FAISS files of builds that never got installed (a crash, a failed swap) only take disk."""
    wanted = {faiss_file_name(name) for name in keep}
    for path in folder.glob("vectors-*.faiss*"):
        if path.name not in wanted:
            log.info("removing %s, an index no embedder serves", path.name)
            path.unlink(missing_ok=True)
