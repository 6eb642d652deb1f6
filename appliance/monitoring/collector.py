"""Request events and samples, buffered in memory and written to the store by a background thread.

`record_*` never touches the disk: it appends to a bounded buffer (dropping and counting when it
is full), so a slow or locked disk never slows an answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

from appliance.monitoring.store import MetricsStore
from appliance.threadnames import start_named_thread

log = logging.getLogger(__name__)


@dataclass
class RequestEvent:
    """One finished /v1 request; fields a request did not reach stay None."""

    ts: float  # when it ended
    route: str
    status: int
    latency_s: float
    response_id: str | None = None
    error_type: str | None = None
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cache_hit: bool = False
    retrieval_s: float | None = None
    model_version: str | None = None
    backend: str | None = None
    stream: bool = False
    user_id: int | None = None  # the signed-in caller, with auth on
    answer_mode: str | None = None  # extractive, generated, generated_with_removals
    support: float | None = None  # share of the evidence match (quoted) or kept (generated)
    removed: int | None = None  # generated sentences verification removed

    def row(self) -> dict:
        row = asdict(self)
        row["cache_hit"] = int(self.cache_hit)
        row["stream"] = int(self.stream)
        return row


class Collector:
    """Bounded buffer + writer thread. `observers` see each request event as it is recorded."""

    def __init__(self, store: MetricsStore, *, buffer_size: int = 10_000, flush_seconds: float = 1.0,
                 observers: list[Callable[[RequestEvent], None]] | None = None):
        self.store = store
        self.buffer_size = buffer_size
        self.flush_seconds = flush_seconds
        self.observers = observers or []
        self._buffer: deque[tuple[str, dict]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.recorded = 0
        self.dropped = 0
        self.written = 0
        self.write_failures = 0

    def record_request(self, event: RequestEvent) -> bool:
        for observe in self.observers:
            try:
                observe(event)
            except Exception:  # an observer bug must not fail the request being recorded
                log.exception("metrics observer failed")
        return self._put("requests", event.row())

    def record_sample(self, sample: dict) -> bool:
        return self._put("samples", sample)

    def _put(self, table: str, row: dict) -> bool:
        with self._lock:
            if len(self._buffer) >= self.buffer_size:
                self.dropped += 1
                return False
            self._buffer.append((table, row))
            self.recorded += 1
            if len(self._buffer) >= self.buffer_size // 2:
                self._wake.set()  # half full: write now rather than wait for the timer
        return True

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._stop = False
        self._thread = start_named_thread(self._run, "metrics-writer")

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; on a store error the batch is counted as dropped."""
        with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
        if not batch:
            return 0
        by_table: dict[str, list[dict]] = {}
        for table, row in batch:
            by_table.setdefault(table, []).append(row)
        started = time.perf_counter()
        try:
            for table, rows in by_table.items():
                self.written += self.store.insert(table, rows)
        except Exception as exc:
            self.write_failures += 1
            self.dropped += len(batch)
            log.error("could not write %d metric rows to %s: %s", len(batch), self.store.path, exc)
            return 0
        slow = time.perf_counter() - started
        if slow > 1.0:
            log.warning("writing %d metric rows took %.1f s; is the disk slow?", len(batch), slow)
        return len(batch)

    def stats(self) -> dict:
        return {"recorded": self.recorded, "dropped": self.dropped, "written": self.written,
                "pending": self.pending, "write_failures": self.write_failures,
                "buffer_size": self.buffer_size}
