"""Re-embedding: a new vector index for another embedder, built from SQLite beside the live one.

The build runs in a worker thread and never touches the live index. Documents ingested or
deleted meanwhile reach the new index too (the knowledge base writes to both while a build is
attached), so the new index is complete whenever it is installed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.knowledge.embedder import Embedder
from appliance.knowledge.vectors import VectorStore

log = logging.getLogger(__name__)

BATCH = 32  # chunks per step: progress and cancellation are seen between steps


class ReembedCancelled(ApplianceError):
    status = 409
    code = "reembed_cancelled"


@dataclass(frozen=True)
class IndexRecord:
    """Which embedder built which vector index; the knowledge base opens them only as a pair."""

    name: str  # "" for the first index (vectors.faiss), else derived from the fingerprint
    embedder_path: str  # the artifact folder the embedder was loaded from ("" if unknown)
    fingerprint: str  # sha256 over the artifact's files
    embedder: str  # "<name>/<dim>", as shown to people

    @classmethod
    def for_embedder(cls, embedder: Embedder, name: str | None = None) -> IndexRecord:
        fingerprint = embedder.fingerprint
        return cls(fingerprint[:12] if name is None else name,
                   str(Path(embedder.path).resolve()) if embedder.path is not None else "", fingerprint,
                   f"{embedder.name}/{embedder.dim}")

    @classmethod
    def from_json(cls, text: str | None) -> IndexRecord | None:
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            log.warning("unreadable index record %r; the configured embedder is used", text)
            return None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class IndexBuild:
    """One re-embedding: progress, cancellation, and the index it fills."""

    def __init__(self, record: IndexRecord, embedder: Embedder, vectors: VectorStore, *,
                 reused: bool):
        self.record = record
        self.embedder = embedder
        self.vectors = vectors
        self.reused = reused  # the index kept from before the last switch, caught up
        self.state = "building"  # -> ready -> installed, or failed / cancelled
        self.total = 0
        self.done = 0
        self.started = time.time()
        self.finished: float | None = None
        self.error: str | None = None
        self.removed: set[int] = set()  # chunks deleted while the build runs: never add them
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def status(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"state": self.state, "embedder": self.record.embedder,
                "embedder_path": self.record.embedder_path, "index": self.record.name,
                "reused_previous_index": self.reused, "chunks_total": self.total,
                "chunks_done": self.done, "started_at": self.started,
                "seconds": round(end - self.started, 3), "error": self.error}

    def run(self, store, lock: threading.Lock) -> None:
        """Embed every chunk SQLite holds that the index lacks, drop what SQLite no longer has.

        Blocking (run it in a worker thread); `lock` is the knowledge base's write lock, held
        only for index updates, never while embedding.
        """
        with lock:
            want = store.chunk_ids()
            have = self.vectors.ids()
            self.vectors.remove(sorted(have - want))
            todo = sorted(want - have)
            self.total = len(todo)
        for start in range(0, len(todo), BATCH):
            self._check_cancel()
            batch = todo[start:start + BATCH]
            texts = store.chunk_texts(batch)  # chunks deleted meanwhile are simply absent
            ids = [i for i in batch if i in texts]
            vectors = self.embedder.embed_passages([texts[i] for i in ids])
            with lock:
                keep = [k for k, chunk_id in enumerate(ids) if chunk_id not in self.removed]
                self.vectors.add([ids[k] for k in keep], vectors[keep])
            self.done += len(batch)
        self._check_cancel()
        self.vectors.persist()
        with lock:
            self.state = "ready"
        log.info("re-embedded %d chunks with %s in %.1f s", self.total, self.record.embedder,
                 time.time() - self.started)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise ReembedCancelled(f"Re-embedding was cancelled after {self.done} of {self.total} chunks.")

    def finish(self, state: str, error: str | None = None) -> None:
        self.state = state
        self.error = error
        self.finished = time.time()
