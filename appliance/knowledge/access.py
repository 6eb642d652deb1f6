"""Which chunks a caller may see: each chunk's access groups in memory, as a filter per caller.

SQLite stays the source of truth (the knowledge base rebuilds this on start); this copy lets
the indexes filter by groups before their top k without a query per search.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np


class AccessFilter:
    """The chunks one caller may see, by chunk id."""

    def __init__(self, mask: np.ndarray, codes: np.ndarray):
        self.mask = mask  # bool per chunk id: visible
        self._codes = codes
        present = codes >= 0
        self.share = float(mask.sum()) / max(1, int(present.sum()))  # visible share of chunks
        self._present = present

    def allows(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Bool per id; ids the filter never heard of are not visible."""
        inside = chunk_ids < len(self.mask)
        out = np.zeros(len(chunk_ids), dtype=bool)
        out[inside] = self.mask[chunk_ids[inside]]
        return out

    def hidden(self) -> list[int]:
        """Ids of existing chunks the caller may not see (for stores that filter by id list)."""
        return np.flatnonzero(self._present & ~self.mask).tolist()


class AccessIndex:
    """Chunk id -> its document's group set (interned: bases have few distinct sets)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._set_codes: dict[frozenset[str], int] = {}
        self._sets: list[frozenset[str]] = []
        self._codes = np.full(1024, -1, dtype=np.int32)  # chunk id -> group-set code, -1 none
        self._version = 0
        self._cache: dict[frozenset[str], tuple[int, AccessFilter | None]] = {}

    def set(self, chunk_ids: Iterable[int], groups: Iterable[str]) -> None:
        ids = np.fromiter(chunk_ids, dtype=np.int64)
        if not len(ids):
            return
        key = frozenset(groups)
        with self._lock:
            code = self._set_codes.get(key)
            if code is None:
                code = self._set_codes[key] = len(self._sets)
                self._sets.append(key)
            top = int(ids.max())
            if top >= len(self._codes):
                grown = np.full(max(2 * len(self._codes), top + 1), -1, dtype=np.int32)
                grown[: len(self._codes)] = self._codes
                self._codes = grown
            self._codes[ids] = code
            self._version += 1

    def remove(self, chunk_ids: Iterable[int]) -> None:
        ids = np.fromiter(chunk_ids, dtype=np.int64)
        with self._lock:
            ids = ids[ids < len(self._codes)]
            self._codes[ids] = -1
            self._version += 1

    def clear(self) -> None:
        with self._lock:
            self._codes[:] = -1
            self._version += 1

    def filter(self, groups: Iterable[str] | None) -> AccessFilter | None:
        """The caller's filter; None when they may see every chunk (no filtering needed)."""
        if groups is None:
            return None
        caller = frozenset(groups)
        with self._lock:
            cached = self._cache.get(caller)
            if cached is not None and cached[0] == self._version:
                return cached[1]
            visible_sets = np.array([bool(s & caller) for s in self._sets] + [False])
            codes = self._codes
            used = np.bincount(codes[codes >= 0], minlength=len(self._sets)) > 0
            result = None
            if not visible_sets[:-1][used].all():
                # Code -1 (no chunk) indexes the trailing False.
                result = AccessFilter(visible_sets[codes], codes.copy())
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[caller] = (self._version, result)
            return result
