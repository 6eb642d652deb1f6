"""Re-chunking: after the chunker or its settings changed, every document is cut again from its
stored sections (or, for documents stored before sections were kept, from its old chunks).

Each document is swapped in on its own (new chunks, terms and vectors in, old ones out) while
search keeps serving the documents not reached yet. A document's chunker is stored with it, so
a job that stops (a crash, a shutdown) resumes where it stopped on the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PERSIST_SECONDS = 60.0  # the vector index is written at most this often while a job runs


class Rechunk:
    """One re-chunking job: progress, cancellation."""

    def __init__(self, chunker: str, documents: list[int], previous: str | None):
        self.chunker = chunker
        self.previous = previous  # the knowledge base's chunker before (None: before passages)
        self.documents = documents
        self.state = "running"  # -> done, failed or cancelled
        self.total = len(documents)
        self.done = 0
        self.chunks_before = 0
        self.chunks_after = 0
        self.started = time.time()
        self.finished: float | None = None
        self.error: str | None = None
        self.thread: threading.Thread | None = None
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def status(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"state": self.state, "chunker": self.chunker, "previous_chunker": self.previous,
                "documents_total": self.total, "documents_done": self.done,
                "chunks_before": self.chunks_before, "chunks_after": self.chunks_after,
                "started_at": self.started, "seconds": round(end - self.started, 3),
                "error": self.error}

    def run(self, kb, progress: Callable[[Rechunk], None] | None = None) -> None:
        """Re-chunk each document in turn (blocking); raises what stops it, after recording it."""
        written = time.monotonic()
        try:
            for document_id in self.documents:
                if self._cancel.is_set():
                    kb.persist()
                    self._finish("cancelled", f"Re-chunking stopped after {self.done} of "
                                 f"{self.total} documents; the next start resumes it.")
                    return
                counts = kb.rechunk_document(document_id)
                if counts is not None:
                    self.chunks_before += counts[0]
                    self.chunks_after += counts[1]
                self.done += 1
                if progress is not None:
                    progress(self)
                if time.monotonic() - written > PERSIST_SECONDS:
                    kb.persist()
                    written = time.monotonic()
            kb.persist()
            kb.note_chunker()
        except Exception as exc:
            self._finish("failed", getattr(exc, "message", None) or repr(exc))
            raise
        self._finish("done")
        log.info("re-chunked %d documents with %s: %d chunks became %d in %.1f s", self.total,
                 self.chunker, self.chunks_before, self.chunks_after, time.time() - self.started)

    def _finish(self, state: str, error: str | None = None) -> None:
        self.state = state
        self.error = error
        self.finished = time.time()
