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
# Words that say how a question is asked, not what it is about. They are left out of queries
# only (documents keep them), so the index does not change with this list.
_QUESTION_STOPWORDS = frozenset(
    "about above after again against all also am any anyone anything anyway are around ask because "
    "been before being below between both but by can cannot could did do does doing done down during "
    "each either else enough even ever every few for from further get gets getting go goes going gone "
    "got had has have having he her here hers him his how however if in into is it its itself just "
    "keep kind know let like likely made make many may maybe me might mine more most much must my "
    "myself need needs never next no nor not now of off often ok okay on once one only or other our "
    "out over own per perhaps please quite rather really right same say says see seem seems shall she "
    "should since so some someone something sometimes soon still such sure take tell than thank thanks "
    "that the their them themselves then there these they thing things this those though through thus "
    "to today too tried try trying under until up upon us use used using usually very want wants was "
    "way we well went were what whatever when where whether which while who whole whom whose why will "
    "with within without would yes yet you your yours yourself anybody somebody another don doesn "
    "didn isn aren wasn weren won wouldn couldn shouldn can't cant dont long anyway else okay".split()
) | frozenset(
    "이번 지난 다음 오늘 내일 어제 요즘 지금 아직 아침 저녁 오전 오후 혹시 그냥 제일 먼저 정도 쯤 따로 같이 "
    "다시 계속 전부 모두 좀 뭐 무슨 어느 몇 얼마 얼마나 며칠 누가 거 것 게 건 걸 때문 관련 내용 부분 문의 질문 답변 "
    "확인 가능 필요 상황 이상하다 괜찮다 알다 모르다 싶다 보다 주다 나오다 들다 가다 오다 받다 하다 되다 "
    "있다 없다 같다 그렇다 이렇다 어떻다 원래 보통 대충 혹은 또는 그런데 근데 그럼 그러면 그리고".split()
)
_STEMMERS = threading.local()  # a Snowball stemmer keeps per-word state: one per thread


def is_korean(text: str) -> bool:
    hangul = len(_HANGUL.findall(text))
    return hangul > 0 and hangul >= 0.2 * len(re.sub(r"\s", "", text))


def has_hangul(term: str) -> bool:
    return _HANGUL.search(term) is not None


def stem(word: str) -> str:
    """An English word's Snowball stem (codes stay whole)."""
    return _stem(word)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    # Codes (PO-1001, FI300, r3) stay whole: a stemmer would only mangle them.
    if any(c.isdigit() or c in "-_." for c in word):
        return word
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def _is_code(word: str) -> bool:
    return any(c.isdigit() for c in word) and any(c.isalpha() for c in word)


def english_terms(text: str) -> list[str]:
    """Lower-cased, stemmed words without stop words (numbers are kept)."""
    return [_stem(w) for w in _WORD.findall(text.lower())
            if w not in _STOPWORDS and len(w) > 1 or w.isdigit()]


_QUESTION_STEMS = frozenset(_stem(w) for w in _QUESTION_STOPWORDS if w.isascii())


class Analyzer:
    """Text to index terms: Kiwi morphemes for Hangul runs, stemmed lower-cased words otherwise."""

    version = "kiwi-3"  # bump when terms change: stored terms are then recomputed on start

    _lock = threading.Lock()

    @cached_property
    def kiwi(self):
        from kiwipiepy import Kiwi

        return Kiwi()

    def query_terms(self, text: str) -> list[str]:
        """A question's search terms: its index terms without the words of asking."""
        terms = self.terms(text)
        kept = [t for t in terms if t not in _QUESTION_STOPWORDS and t not in _QUESTION_STEMS]
        return kept or terms  # a question made only of such words still searches something

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
