"""Text to index terms: Kiwi morphemes for Korean, Snowball-stemmed words for English."""

from __future__ import annotations

import re
import threading
from functools import cached_property, lru_cache

import snowballstemmer

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
_STEMMER = snowballstemmer.stemmer("english")


def is_korean(text: str) -> bool:
    hangul = len(_HANGUL.findall(text))
    return hangul > 0 and hangul >= 0.2 * len(re.sub(r"\s", "", text))


def has_hangul(term: str) -> bool:
    return _HANGUL.search(term) is not None


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    # Codes (PO-1001, FI300, r3) stay whole: a stemmer would only mangle them.
    if any(c.isdigit() or c in "-_." for c in word):
        return word
    return _STEMMER.stemWord(word)


def _is_code(word: str) -> bool:
    return any(c.isdigit() for c in word) and any(c.isalpha() for c in word)


def english_terms(text: str) -> list[str]:
    """Lower-cased, stemmed words without stop words (numbers are kept)."""
    return [_stem(w) for w in _WORD.findall(text.lower())
            if w not in _STOPWORDS and len(w) > 1 or w.isdigit()]


class Analyzer:
    """Text to index terms: Kiwi morphemes for Hangul runs, stemmed lower-cased words otherwise."""

    version = "kiwi-3"  # bump when terms change: stored terms are then recomputed on start

    _lock = threading.Lock()

    @cached_property
    def kiwi(self):
        from kiwipiepy import Kiwi

        return Kiwi()

    def terms(self, text: str) -> list[str]:
        if not _HANGUL.search(text):
            return english_terms(text)
        text = text.lower()
        out = []
        with self._lock:  # one Kiwi instance; its tokenizer is not documented as thread-safe
            tokens = self.kiwi.tokenize(text)
        for token in tokens:
            if token.tag.startswith(_KEEP_TAGS):
                form = token.form
                if token.tag == "SL":
                    if form in _STOPWORDS:
                        continue
                    form = _stem(form)
                elif token.tag.startswith(("VV", "VA")):
                    form += "다"
                if form not in _KOREAN_STOPWORDS:
                    out.append(form)
        # Kiwi splits codes like "PO-1001" or "HR300" apart; keep the whole codes too, as
        # English text has them, so a code matches across languages.
        out.extend(w for w in _WORD.findall(text) if "-" in w or "_" in w or _is_code(w))
        return out
