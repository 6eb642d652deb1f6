"""BM25 keyword search over a column-compressed term matrix, incremental and rebuilt from SQLite.

Written with numpy rather than a search library: queries must be filtered by access groups
before the top k, scored exactly as BM25, and mixed with the vector side in one process. A
query costs one vectorised pass over the posting lists of its terms, plus one over the slots.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from appliance.knowledge.access import AccessFilter
from appliance.knowledge.analyzer import has_hangul

# A chunk whose terms are at least this share Korean (and at most 1 - this) counts as written
# in both languages: the bilingual code lists.
BILINGUAL_SHARE = 0.2


def korean_share(terms: Sequence[str]) -> float:
    """Share of a chunk's words that are Korean; numbers and codes belong to no language."""
    korean = sum(map(has_hangul, terms))
    worded = korean + sum(1 for t in terms if not has_hangul(t) and not any(c.isdigit() for c in t))
    return korean / worded if worded else 0.0


def in_language(shares: np.ndarray, language: str) -> np.ndarray:
    """Which chunks, by their Korean share, have text in `language` (see KeywordIndex.search)."""
    if language == "ko":
        return shares >= BILINGUAL_SHARE
    if language == "en":
        return shares <= 1 - BILINGUAL_SHARE
    if language == "ko-only":
        return shares > 1 - BILINGUAL_SHARE
    if language == "en-only":
        return shares < BILINGUAL_SHARE
    raise ValueError(f"language must be one of ko, en, ko-only, en-only, not {language!r}")


class _Column:
    """A growable 1-D numpy array (amortised O(1) appends)."""

    def __init__(self, dtype, fill=0):
        self.data = np.full(16, fill, dtype=dtype)
        self.fill = fill
        self.size = 0

    def append(self, value) -> None:
        if self.size == len(self.data):
            grown = np.full(2 * len(self.data), self.fill, dtype=self.data.dtype)
            grown[: self.size] = self.data
            self.data = grown
        self.data[self.size] = value
        self.size += 1

    def extend(self, values: np.ndarray) -> None:
        if self.size + len(values) > len(self.data):
            grown = np.full(max(2 * len(self.data), self.size + len(values)), self.fill,
                            dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size:self.size + len(values)] = values
        self.size += len(values)

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]


class KeywordIndex:
    """BM25 (k1, b) over chunks' index terms.

    Postings live in a compressed column matrix (per term: ascending slots and term
    frequencies) plus a small segment of recent additions; removals are tombstones. Once the
    recent segment or the tombstones grow past `merge_share` of the base, both are folded in.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, max_df_share: float = 0.25,
                 merge_share: float = 0.05, merge_min: int = 2_000):
        self.k1, self.b = k1, b
        self.max_df_share = max_df_share
        self.merge_share, self.merge_min = merge_share, merge_min
        self._lock = threading.RLock()
        self._clear()

    def _clear(self) -> None:
        self._vocab: dict[str, int] = {}
        self._indptr = np.zeros(1, dtype=np.int64)  # main segment: term id -> posting range
        self._postings = np.zeros(0, dtype=np.int32)  # slots, ascending within each term
        self._tfs = np.zeros(0, dtype=np.float32)
        self._recent: dict[int, tuple[list[int], list[float]]] = {}  # term id -> (slots, tfs)
        self._recent_arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._recent_slots = 0
        self._ids = _Column(np.int64, -1)  # slot -> chunk id
        self._lengths = _Column(np.float32)
        self._alive = _Column(np.bool_, False)
        self._korean = _Column(np.float32)  # share of a chunk's terms that are Korean
        self._slots: dict[int, int] = {}  # chunk id -> slot
        self._dead = 0
        self._total = 0.0
        self._norms: np.ndarray | None = None  # per slot: k1 * (1 - b + b * length / average)

    def __len__(self) -> int:
        return len(self._slots)

    def ids(self) -> set[int]:
        with self._lock:
            return set(self._slots)

    # -- writes ----------------------------------------------------------------------------------
    def add(self, chunk_id: int, terms: Sequence[str]) -> None:
        with self._lock:
            if chunk_id in self._slots:
                self._tombstone(self._slots.pop(chunk_id))
            slot = self._new_slot(chunk_id, terms)
            for term, count in Counter(terms).items():
                column = self._vocab.setdefault(term, len(self._vocab))
                slots, tfs = self._recent.setdefault(column, ([], []))
                slots.append(slot)
                tfs.append(float(count))
                self._recent_arrays.pop(column, None)
            self._recent_slots += 1
            self._maybe_merge()

    def remove(self, chunk_ids: Iterable[int]) -> None:
        with self._lock:
            for chunk_id in chunk_ids:
                slot = self._slots.pop(chunk_id, None)
                if slot is not None:
                    self._tombstone(slot)
            self._maybe_merge()

    def rebuild(self, items: Iterable[tuple[int, str]]) -> None:
        """Replace the whole index with (chunk id, space-joined terms) rows."""
        rows = list(items)
        ids = np.fromiter((chunk_id for chunk_id, _ in rows), dtype=np.int64, count=len(rows))
        texts = [joined or "" for _, joined in rows]
        del rows
        # Vectorised: one split and one dict lookup per token, then numpy for the rest (a
        # per-chunk Counter loop takes several times longer at 100k chunks).
        lengths = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
        tokens = " ".join(texts).split()
        del texts
        with self._lock:
            self._clear()
            vocab = self._vocab
            columns = np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens),
                                  dtype=np.int64, count=len(tokens))
            del tokens
            terms = list(vocab)
            hangul = np.fromiter(map(has_hangul, terms), dtype=bool, count=len(terms))
            worded = hangul | ~np.fromiter((any(c.isdigit() for c in t) for t in terms),
                                           dtype=bool, count=len(terms))
            slots = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
            korean = np.bincount(slots, weights=hangul[columns], minlength=len(ids))
            words = np.bincount(slots, weights=worded[columns], minlength=len(ids))
            # One sort by (term, slot) gives the column order with ascending slots per term.
            keys, counts = np.unique(columns * max(1, len(ids)) + slots, return_counts=True)
            del columns, slots
            for name, values in (("_ids", ids), ("_lengths", lengths.astype(np.float32)),
                                 ("_alive", np.ones(len(ids), dtype=bool)),
                                 ("_korean", np.divide(korean, words, out=np.zeros(len(ids)),
                                                       where=words > 0).astype(np.float32))):
                getattr(self, name).extend(values)
            self._slots = dict(zip(ids.tolist(), range(len(ids))))
            self._total = float(lengths.sum())
            self._norms = None
            self._set_main(keys % max(1, len(ids)), keys // max(1, len(ids)),
                           counts.astype(np.float32))

    def _new_slot(self, chunk_id: int, terms: Sequence[str]) -> int:
        slot = self._ids.size
        self._slots[chunk_id] = slot
        self._ids.append(chunk_id)
        self._lengths.append(len(terms))
        self._alive.append(True)
        self._korean.append(korean_share(terms))
        self._total += len(terms)
        self._norms = None
        return slot

    def _tombstone(self, slot: int) -> None:
        self._alive.data[slot] = False
        self._total -= float(self._lengths.data[slot])
        self._dead += 1
        self._norms = None

    def _set_main(self, slots: np.ndarray, columns: np.ndarray, tfs: np.ndarray) -> None:
        order = np.argsort(columns, kind="stable")  # stable: slots stay ascending per term
        self._postings = slots[order].astype(np.int32)
        self._tfs = tfs[order]
        self._indptr = np.zeros(len(self._vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(columns, minlength=len(self._vocab)), out=self._indptr[1:])
        self._recent.clear()
        self._recent_arrays.clear()
        self._recent_slots = 0

    def _maybe_merge(self) -> None:
        base = max(len(self._slots), self.merge_min)
        if max(self._recent_slots, self._dead) > max(self.merge_min, self.merge_share * base):
            self.merge()

    def merge(self) -> None:
        """Fold recent additions into the main segment and drop removed chunks (new slot numbers)."""
        with self._lock:
            old_alive = self._alive.view.copy()
            keep = np.flatnonzero(old_alive)
            renumber = np.full(len(old_alive), -1, dtype=np.int64)
            renumber[keep] = np.arange(len(keep))
            parts_slots, parts_columns, parts_tfs = [], [], []
            counts = np.diff(self._indptr)
            parts_slots.append(self._postings.astype(np.int64))
            parts_columns.append(np.repeat(np.arange(len(counts)), counts))
            parts_tfs.append(self._tfs)
            for column, (slots, tfs) in self._recent.items():
                parts_slots.append(np.asarray(slots, dtype=np.int64))
                parts_columns.append(np.full(len(slots), column, dtype=np.int64))
                parts_tfs.append(np.asarray(tfs, dtype=np.float32))
            slots = renumber[np.concatenate(parts_slots)]
            columns = np.concatenate(parts_columns)
            tfs = np.concatenate(parts_tfs)
            live = slots >= 0
            ids, lengths, korean = (self._ids.view[keep].copy(), self._lengths.view[keep].copy(),
                                    self._korean.view[keep].copy())
            for name, values, dtype, fill in (("_ids", ids, np.int64, -1),
                                              ("_lengths", lengths, np.float32, 0),
                                              ("_alive", np.ones(len(keep), bool), np.bool_, False),
                                              ("_korean", korean, np.float32, 0)):
                column = _Column(dtype, fill)
                column.data = np.concatenate([values, np.full(max(16, len(values)), fill, dtype)])
                column.size = len(values)
                setattr(self, name, column)
            self._slots = {int(c): i for i, c in enumerate(ids.tolist())}
            self._dead = 0
            self._norms = None
            # Terms whose every chunk is gone keep their column: ids stay stable, lists are empty.
            self._set_main(slots[live], columns[live], tfs[live])

    # -- reads -----------------------------------------------------------------------------------
    def in_language(self, chunk_ids: Sequence[int], language: str) -> list[int]:
        """The given chunks (in order) that pass the `language` test of `search`."""
        with self._lock:
            slots = np.fromiter((self._slots.get(c, -1) for c in chunk_ids), dtype=np.int64,
                                count=len(chunk_ids))
            keep = (slots >= 0) & in_language(self._korean.data[slots], language)
        return [c for c, ok in zip(chunk_ids, keep.tolist()) if ok]

    def unseen_idf(self) -> float:
        """The IDF a term no chunk has gets (the largest there is)."""
        n = len(self._slots)
        return math.log(1 + (n + 0.5) / 0.5)

    def idf(self, terms: Sequence[str]) -> dict[str, float]:
        """BM25's IDF of each term over the live chunks; a term no chunk has weighs the most."""
        with self._lock:
            n = len(self._slots)
            out = {}
            for term in terms:
                column = self._vocab.get(term)
                postings = [] if column is None else self._term_postings(column)
                df = sum(len(s) if not self._dead else int(np.count_nonzero(self._alive.view[s]))
                         for s, _ in postings)
                out[term] = math.log(1 + (n - df + 0.5) / (df + 0.5))
            return out

    def _term_postings(self, column: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        if column + 1 < len(self._indptr):
            start, end = self._indptr[column], self._indptr[column + 1]
            if end > start:
                out.append((self._postings[start:end], self._tfs[start:end]))
        if column in self._recent:
            arrays = self._recent_arrays.get(column)
            if arrays is None:
                slots, tfs = self._recent[column]
                arrays = self._recent_arrays[column] = (np.asarray(slots, dtype=np.int32),
                                                        np.asarray(tfs, dtype=np.float32))
            out.append(arrays)
        return out

    def search(self, terms: Sequence[str], k: int, *, visible: AccessFilter | None = None,
               language: str | None = None) -> list[tuple[int, float, float]]:
        """Best `k` (chunk id, BM25 score, share of the query's term weight (IDF) it contains).

        `visible` filters before the top k; `language` keeps only chunks with text in it
        ("ko", "en": bilingual ones in both) or only in it ("ko-only", "en-only").
        """
        return self.search_many([(terms, language)], k, visible=visible)[0]

    def search_many(self, queries: Sequence[tuple[Sequence[str], str | None]], k: int, *,
                    visible: AccessFilter | None = None) -> list[list[tuple[int, float, float]]]:
        """`search` for several (terms, language) queries; a term they share is scored once
        (a question's own terms, and the same terms with their glossary translations)."""
        with self._lock:
            n = len(self._slots)
            if not n:
                return [[] for _ in queries]
            if self._norms is None:
                average = self._total / n if self._total else 1.0
                self._norms = self.k1 * (1 - self.b + self.b * self._lengths.view / average)
            wanted = [set(terms) for terms, _ in queries]
            # Terms grouped by the queries that hold them: one score array per group.
            groups: dict[frozenset[int], np.ndarray] = {}
            weights: list[list[tuple[float, list[tuple[np.ndarray, np.ndarray]]]]] = [[] for _ in queries]
            total_idf = [1e-9] * len(queries)
            for term in dict.fromkeys(t for terms, _ in queries for t in terms):
                members = frozenset(i for i, terms in enumerate(wanted) if term in terms)
                column = self._vocab.get(term)
                postings = [] if column is None else self._term_postings(column)
                df = sum(len(s) if not self._dead else int(np.count_nonzero(self._alive.view[s]))
                         for s, _ in postings)
                if df > self.max_df_share * n and n >= 1000:
                    continue  # in most chunks: near-zero weight, and the longest posting lists
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                for i in members:
                    total_idf[i] += idf  # terms the base never saw weigh most: they are missing
                    if postings:
                        weights[i].append((idf, postings))
                if postings:
                    scores = groups.get(members)
                    if scores is None:
                        scores = groups[members] = np.zeros(self._ids.size, dtype=np.float32)
                    for slots, tfs in postings:
                        # Slots are unique within one posting list, so fancy-index += is exact.
                        scores[slots] += idf * tfs * (self.k1 + 1) / (tfs + self._norms[slots])
            results = []
            for i, (_, language) in enumerate(queries):
                parts = [scores for members, scores in groups.items() if i in members]
                scores = parts[0] if len(parts) == 1 else sum(parts) if parts else None
                results.append([] if scores is None else self._top(
                    scores, k, language, visible, weights[i], total_idf[i]))
            return results

    def _top(self, scores: np.ndarray, k: int, language: str | None, visible: AccessFilter | None,
             weights: list[tuple[float, list[tuple[np.ndarray, np.ndarray]]]], total_idf: float
             ) -> list[tuple[int, float, float]]:
        ids = self._ids.view
        candidates = np.flatnonzero(scores)
        keep = self._alive.view[candidates]
        if language is not None:
            keep &= in_language(self._korean.view[candidates], language)
        candidates = candidates[keep]
        if visible is not None:
            candidates = candidates[visible.allows(ids[candidates])]
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-scores[candidates], k)[:k]]
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        matched = np.zeros(len(candidates), dtype=np.float64)
        for idf, postings in weights:
            for slots, _ in postings:
                where = np.searchsorted(slots, candidates)
                where[where == len(slots)] = 0
                matched += idf * (slots[where] == candidates)
        return [(int(ids[s]), float(scores[s]), float(m) / total_idf)
                for s, m in zip(candidates, matched)]
