"""Response cache: LRU with TTL over finished answers to deterministic requests."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache


@dataclass(frozen=True)
class CachedResponse:
    """A finished answer, enough to replay it as a whole response or as a stream."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


def cache_key(request: dict[str, Any], *, model_version: str, kb_version: str = "", scope: str = "") -> str:
    """Key for a normalized request: equal requests from the same scope on the same versions collide."""
    material = {"request": request, "model": model_version, "kb": kb_version, "scope": scope}
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Thread-safe LRU+TTL cache with hit/miss counters."""

    def __init__(self, max_entries: int = 10_000, ttl_seconds: float = 3600.0, enabled: bool = True,
                 timer=time.monotonic):
        self.enabled = enabled
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._entries: TTLCache[str, CachedResponse] = TTLCache(
            maxsize=max_entries, ttl=ttl_seconds, timer=timer
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedResponse | None:
        if not self.enabled:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def put(self, key: str, response: CachedResponse) -> None:
        if self.enabled:
            with self._lock:
                self._entries[key] = response

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._entries.expire()
            lookups = self.hits + self.misses
            return {
                "enabled": self.enabled,
                "entries": len(self._entries),
                "max_entries": self.max_entries,
                "ttl_seconds": self.ttl_seconds,
                "hits": self.hits,
                "misses": self.misses,
                "hit_rate": round(self.hits / lookups, 4) if lookups else 0.0,
            }
