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

    Written by hand because rank-bm25 scores every document for every query; posting lists keep
    a query at 100k chunks well under a millisecond per term.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self._lock = threading.RLock()
        self._postings: dict[str, dict[int, int]] = defaultdict(dict)
        self._lengths: dict[int, int] = {}
        self._korean: set[int] = set()  # chunks written mostly in Korean
        self._total = 0
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, chunk_id: int, terms: Sequence[str]) -> None:
        with self._lock:
            if chunk_id in self._lengths:
                self.remove([chunk_id])
            for term, count in Counter(terms).items():
                self._postings[term][chunk_id] = count
                self._arrays.pop(term, None)
            self._lengths[chunk_id] = len(terms)
            self._total += len(terms)
            if terms and sum(1 for t in terms if _HANGUL.search(t)) * 2 >= len(terms):
                self._korean.add(chunk_id)

    def add_many(self, items: Iterable[tuple[int, str]]) -> None:
        for chunk_id, joined in items:
            self.add(chunk_id, joined.split() if joined else [])

    def remove(self, chunk_ids: Iterable[int]) -> None:
        with self._lock:
            gone = {c for c in chunk_ids if c in self._lengths}
            if not gone:
                return
            for term in [t for t, p in self._postings.items() if not gone.isdisjoint(p)]:
                postings = self._postings[term]
                for chunk_id in gone & postings.keys():
                    del postings[chunk_id]
                self._arrays.pop(term, None)
                if not postings:
                    del self._postings[term]
            for chunk_id in gone:
                self._total -= self._lengths.pop(chunk_id)
                self._korean.discard(chunk_id)

    def ids(self) -> set[int]:
        with self._lock:
            return set(self._lengths)

    def _posting_arrays(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        cached = self._arrays.get(term)
        if cached is None:
            postings = self._postings.get(term)
            if not postings:
                return None
            ids = np.fromiter(postings.keys(), dtype=np.int64, count=len(postings))
            tfs = np.fromiter(postings.values(), dtype=np.float32, count=len(postings))
            lengths = np.fromiter((self._lengths[i] for i in ids), dtype=np.float32, count=len(ids))
            cached = self._arrays[term] = (ids, tfs, lengths)
        return cached

    def search(self, terms: Sequence[str], k: int, exclude: Sequence[int] = (),
               korean: bool | None = None) -> list[tuple[int, float, float]]:
        """Best `k` (chunk id, BM25 score, share of the query's term weight (IDF) it contains).

        `korean` keeps only chunks written mostly in Korean (True) or not (False).
        """
        with self._lock:
            n = len(self._lengths)
            if not n or not terms:
                return []
            average = self._total / n
            unique = list(dict.fromkeys(terms))
            all_ids, all_parts, all_idf = [], [], []
            total_idf = 0.0
            for term in unique:
                arrays = self._posting_arrays(term)
                df = 0 if arrays is None else len(arrays[0])
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                total_idf += idf  # terms the base never saw weigh most: they are what is missing
                if arrays is None:
                    continue
                ids, tfs, lengths = arrays
                norm = tfs + self.k1 * (1 - self.b + self.b * lengths / average)
                all_ids.append(ids)
                all_parts.append(idf * tfs * (self.k1 + 1) / norm)
                all_idf.append(np.full(len(ids), idf))
        if not all_ids:
            return []
        found, position = np.unique(np.concatenate(all_ids), return_inverse=True)
        scores = np.bincount(position, weights=np.concatenate(all_parts))
        matched = np.bincount(position, weights=np.concatenate(all_idf))
        if len(exclude):
            scores[np.isin(found, np.asarray(exclude, dtype=np.int64))] = -1.0
        if korean is not None:
            with self._lock:
                in_korean = np.fromiter((i in self._korean for i in found.tolist()), dtype=bool,
                                        count=len(found))
            scores[in_korean != korean] = -1.0
        top = np.argsort(-scores)[:k] if len(scores) <= 4 * k else \
            (lambda part: part[np.argsort(-scores[part])])(np.argpartition(-scores, k)[:k])
        return [(int(found[i]), float(scores[i]), float(matched[i]) / total_idf)
                for i in top if scores[i] >= 0]
