"""Keyword search: BM25 over Korean morphemes (kiwipiepy) and English words."""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import cached_property

import numpy as np

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
# Content morphemes: nouns, verb/adjective stems, roots, foreign words, numbers, hanja
# (bound nouns, numerals and pronouns such as 개, 몇, 언제 only add noise).
_KEEP_TAGS = ("NNG", "NNP", "VV", "VA", "XR", "SL", "SN", "SH")
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it me my of on or the this to "
    "what when where which who why will with you your we our not no if then than there their "
    "should would could must may have has had was were been being into out up about after before".split()
)


_KOREAN_STOPWORDS = frozenset(
    "하다 되다 있다 없다 어떻다 이다 않다 같다 그렇다 알다 주다 보다 것 수 등 때 무엇 어디 언제 "
    "누구 왜 나 저 우리 경우 방법 어떤".split()
)


def is_korean(text: str) -> bool:
    hangul = len(_HANGUL.findall(text))
    return hangul > 0 and hangul >= 0.2 * len(re.sub(r"\s", "", text))


class Analyzer:
    """Text to index terms: Kiwi morphemes for Hangul runs, lower-cased words otherwise."""

    version = "kiwi-2"  # bump when terms change: stored terms are then recomputed on start

    _lock = threading.Lock()

    @cached_property
    def kiwi(self):
        from kiwipiepy import Kiwi

        return Kiwi()

    def terms(self, text: str) -> list[str]:
        text = text.lower()
        if not _HANGUL.search(text):
            return [w for w in _WORD.findall(text) if w not in _STOPWORDS and len(w) > 1 or w.isdigit()]
        out = []
        with self._lock:  # one Kiwi instance; its tokenizer is not documented as thread-safe
            tokens = self.kiwi.tokenize(text)
        for token in tokens:
            if token.tag.startswith(_KEEP_TAGS):
                form = token.form
                if token.tag == "SL":
                    form = form.lower()
                    if form in _STOPWORDS:
                        continue
                elif token.tag.startswith(("VV", "VA")):
                    form += "다"
                if form not in _KOREAN_STOPWORDS:
                    out.append(form)
        # Kiwi splits codes like "PO-1001" apart; keep the whole codes too.
        out.extend(w for w in _WORD.findall(text) if "-" in w or "_" in w)
        return out


class KeywordIndex:
    """In-memory BM25 over an inverted index, rebuilt from the terms SQLite stores per chunk.

    Written by hand because rank-bm25 scores every document for every query; here each query
    touches only the posting lists of its terms, summed into one array over chunk slots.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, max_df_share: float = 0.25):
        self.k1, self.b = k1, b
        self.max_df_share = max_df_share
        self._lock = threading.RLock()
        self._postings: dict[str, dict[int, int]] = defaultdict(dict)  # term -> {slot: tf}
        self._slots: dict[int, int] = {}  # chunk id -> slot
        self._ids: list[int] = []  # slot -> chunk id, -1 once removed
        self._lengths: list[int] = []
        self._korean: list[bool] = []  # chunks written mostly in Korean
        self._total = 0
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._frozen: tuple[np.ndarray, np.ndarray] | None = None  # slot ids, korean flags

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, chunk_id: int, terms: Sequence[str]) -> None:
        with self._lock:
            if chunk_id in self._slots:
                self.remove([chunk_id])
            slot = len(self._ids)
            self._slots[chunk_id] = slot
            self._ids.append(chunk_id)
            self._lengths.append(len(terms))
            self._korean.append(bool(terms) and
                                sum(1 for t in terms if _HANGUL.search(t)) * 2 >= len(terms))
            for term, count in Counter(terms).items():
                self._postings[term][slot] = count
                self._arrays.pop(term, None)
            self._total += len(terms)
            self._frozen = None

    def add_many(self, items: Iterable[tuple[int, str]]) -> None:
        for chunk_id, joined in items:
            self.add(chunk_id, joined.split() if joined else [])

    def remove(self, chunk_ids: Iterable[int]) -> None:
        with self._lock:
            gone = {self._slots.pop(c) for c in chunk_ids if c in self._slots}
            if not gone:
                return
            for term in [t for t, p in self._postings.items() if not gone.isdisjoint(p)]:
                postings = self._postings[term]
                for slot in gone & postings.keys():
                    del postings[slot]
                self._arrays.pop(term, None)
                if not postings:
                    del self._postings[term]
            for slot in gone:
                self._total -= self._lengths[slot]
                self._ids[slot] = -1
            self._frozen = None

    def ids(self) -> set[int]:
        with self._lock:
            return set(self._slots)

    def _posting_arrays(self, term: str):
        cached = self._arrays.get(term)
        if cached is None:
            postings = self._postings.get(term)
            if not postings:
                return None
            slots = np.fromiter(postings.keys(), dtype=np.int64, count=len(postings))
            tfs = np.fromiter(postings.values(), dtype=np.float32, count=len(postings))
            lengths = np.fromiter((self._lengths[s] for s in slots.tolist()), dtype=np.float32,
                                  count=len(slots))
            cached = self._arrays[term] = (slots, tfs, lengths)
        return cached

    def search(self, terms: Sequence[str], k: int, exclude: Sequence[int] = (),
               korean: bool | None = None) -> list[tuple[int, float, float]]:
        """Best `k` (chunk id, BM25 score, share of the query's term weight (IDF) it contains).

        `korean` keeps only chunks written mostly in Korean (True) or not (False).
        """
        with self._lock:
            n = len(self._slots)
            if not n or not terms:
                return []
            if self._frozen is None:
                self._frozen = (np.asarray(self._ids, dtype=np.int64), np.asarray(self._korean))
            ids, korean_flags = self._frozen
            average = self._total / n
            scores = np.zeros(len(ids), dtype=np.float64)
            matched = np.zeros(len(ids), dtype=np.float64)
            total_idf = 1e-9
            for term in dict.fromkeys(terms):
                arrays = self._posting_arrays(term)
                df = 0 if arrays is None else len(arrays[0])
                if df > self.max_df_share * n and n >= 1000:
                    continue  # in most chunks: near-zero weight, and the longest posting lists
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                total_idf += idf  # terms the base never saw weigh most: they are what is missing
                if arrays is None:
                    continue
                slots, tfs, lengths = arrays
                norm = tfs + self.k1 * (1 - self.b + self.b * lengths / average)
                scores[slots] += idf * tfs * (self.k1 + 1) / norm  # slots are unique per term
                matched[slots] += idf
            for chunk_id in exclude:
                slot = self._slots.get(chunk_id)
                if slot is not None:
                    scores[slot] = 0.0
        if korean is not None:
            scores[korean_flags != korean] = 0.0
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-scores[candidates], k)[:k]]
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(int(ids[s]), float(scores[s]), float(matched[s]) / total_idf) for s in candidates]
