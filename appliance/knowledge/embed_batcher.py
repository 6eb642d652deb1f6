"""Micro-batching: concurrent embedding requests share one model call (up to N texts within a window)."""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from appliance.knowledge.embedder import Embedder
from appliance.threadnames import start_named_thread


class EmbeddingBatcher:
    """One thread owns the embedder; callers block on a future for their rows."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 32, window_ms: float = 100.0,
                 gap_ms: float = 5.0, cache_size: int = 4096):
        self.embedder = embedder
        # Vectors of recent texts: a question is embedded for search and again to re-score its
        # evidence, and the same passages' spans come back for many questions.
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.max_batch = max_batch
        self.window = window_ms / 1000
        self.gap = gap_ms / 1000
        self._queue: queue.Queue[tuple[list[str], Future] | None] = queue.Queue()
        self.batches = 0
        self.texts = 0
        self._closed = False
        self._closing = threading.Lock()
        self._thread = start_named_thread(self._run, "embedder")

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def submit(self, texts: Sequence[str]) -> Future:
        future: Future = Future()
        with self._closing:
            if not self._closed:
                self._queue.put((list(texts), future))
                return future
        # Replaced (an embedder switch) or shut down: a late caller embeds on its own thread.
        self._serve([(list(texts), future)])
        return future

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not self.cache_size or not texts:
            return self.submit(texts).result()
        with self._cache_lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            for t in found:
                self._cache.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vectors = self.submit(missing).result()
            with self._cache_lock:
                for t, v in zip(missing, vectors):
                    found[t] = v
                    self._cache[t] = v
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

    def forget(self) -> None:
        """Drop the cached vectors (a benchmark measuring first-time questions)."""
        with self._cache_lock:
            self._cache.clear()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions with the embedder's query prefix (a batcher serves one embedder)."""
        return self.embed([self.embedder.query_prefix + t for t in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed([self.embedder.passage_prefix + t for t in texts])

    def close(self, wait: bool = True) -> None:
        with self._closing:
            self._closed = True
            self._queue.put(None)  # requests queued before it are still served
        if wait:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pending = [item]
            count = len(item[0])
            deadline = time.monotonic() + self.window
            # Gather until the batch is full, the window closes, or arrivals pause for `gap`.
            while count < self.max_batch:
                wait = min(deadline - time.monotonic(), self.gap)
                if wait <= 0:
                    break
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                pending.append(item)
                count += len(item[0])
            self._serve(pending)

    def _serve(self, pending: list[tuple[list[str], Future]]) -> None:
        texts = [t for texts, _ in pending for t in texts]
        try:
            vectors = self.embedder.embed(texts)
        except Exception as exc:  # hand the failure to every caller in the batch
            for _, future in pending:
                future.set_exception(exc)
            return
        self.batches += 1
        self.texts += len(texts)
        start = 0
        for texts_, future in pending:
            future.set_result(vectors[start:start + len(texts_)])
            start += len(texts_)
