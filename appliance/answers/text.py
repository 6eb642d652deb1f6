"""Text measures shared by evidence selection, verification and answer scoring.

Content units are what "the same content" means everywhere here: Latin words of two or more
characters without stop words, and Hangul syllable bigrams (Korean attaches particles and endings
to words, so whole words rarely match across a question, a passage and an answer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_HANGUL_RUN = re.compile(r"[\uac00-\ud7a3]+")
_LATIN_WORD = re.compile(r"[A-Za-z0-9]+(?:[-_.,/'][A-Za-z0-9]+)*")
_CITATION = re.compile(r"\s*\[\d{1,2}(?:\s*,\s*\d{1,2})*\]")
_MARKUP = re.compile(r"\*\*|__|`|^\s*#{1,6}\s+|^\s*[-*•·]\s+|^\s*\|?[-:| ]{3,}\|?\s*$", re.M)

STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it its me my of on or the this that "
    "to what when where which who whom why will with you your we our us not no if then than there "
    "their they them these those should would could must may might have has had was were been being "
    "into out up about after before so such also any all each per via just only very too more most "
    "other some here get got let please thanks thank yes".split()
)


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text)


def plain(text: str) -> str:
    """Text without Markdown emphasis, table rules, list bullets and heading marks."""
    text = _MARKUP.sub(" ", text)
    return re.sub(r"[ \t]*\|[ \t]*", " ", text)


def content_units(text: str) -> list[str]:
    """Latin words (2+ characters, lower-cased, no stop words) and Hangul syllable bigrams."""
    units: list[str] = []
    for word in _LATIN_WORD.findall(text):
        word = word.lower().strip(".,/'")
        if len(word) >= 2 and word not in STOPWORDS:
            units.append(word)
    for run in _HANGUL_RUN.findall(text):
        units.extend(run[i:i + 2] for i in range(len(run) - 1))
    return units


def stemmed_units(text: str) -> list[str]:
    """Content units with English words reduced to their stems ("approves" and "approval" meet)."""
    from appliance.knowledge.analyzer import stem

    return [stem(u) if u.isascii() else u for u in content_units(text)]


def unit_set(texts: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for text in texts:
        out.update(content_units(text))
    return out


def share_in(units: Iterable[str], reference: set[str]) -> float:
    """Share of `units` (with repeats) found in `reference`; 1.0 for no units."""
    units = list(units)
    if not units:
        return 1.0
    return sum(1 for u in units if u in reference) / len(units)


def word_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = [w.lower() for w in re.findall(r"\w+", text)]
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def estimate_tokens(text: str) -> int:
    """A model-independent token estimate: about 4 Latin characters or 1.5 Hangul syllables each."""
    hangul = sum(len(run) for run in _HANGUL_RUN.findall(text))
    return int((len(text) - hangul) / 4 + hangul / 1.5) + 1


_NUMBER = re.compile(r"(?<![A-Za-z0-9_-])\d[\d,.]*\d|(?<![A-Za-z0-9_-])\d")
_CODE = re.compile(r"\b[A-Za-z]+[A-Za-z_-]*\d[A-Za-z0-9_-]*\b|\b[A-Z][A-Z0-9]*[_-][A-Z0-9_-]+\b")
_ACRONYM = re.compile(r"\b[A-Z]{2,}s?\b")
_NAME = re.compile(r"(?<![.!?:\n]\s)(?<!^)\b[A-Z][a-z]{2,}\b", re.M)
_COMMON_CAPITALS = frozenset(
    "The This That These Those There Then When Where What Which Who Why How If In On At For From "
    "To With Your You Our Please Note Yes No After Before Once Each Every All Any Also And But Or "
    "Step Steps Sources Source Answer Question".split()
)


_KOREAN_MAGNITUDE = re.compile(r"\d[\d,.]*\s*(?:[조억만천백십]+\s*\d*[\d,.]*)*[조억만천백십]")
_ENGLISH_MAGNITUDE = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(thousand|million|billion|trillion)\b", re.I)
_SMALL_UNITS = {"십": 10, "백": 100, "천": 1000}
_BIG_UNITS = {"만": 10**4, "억": 10**8, "조": 10**12}
_ENGLISH_UNITS = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
# "a thousand dollars", "one million", "천만 원", "백만원": amounts said without digits.
_ENGLISH_WORD_MAGNITUDE = re.compile(
    r"\b(a|one|two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|a hundred|one hundred)"
    r"\s+(thousand|million|billion|trillion)\b", re.I)
# Number words as values (amounts above, and the periods evidence reads: "three months").
ENGLISH_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                        "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "twenty": 20,
                        "fifty": 50, "a hundred": 100, "one hundred": 100}
_KOREAN_WORD_MAGNITUDE = re.compile(  # before a currency, not before 원래, 원칙, 원하다 ...
    r"(?<![\d가-힣])(?:[십백천]?[만억조]|[백천])"
    r"(?=\s*(?:원(?![래인칙본장격리천활형료가하할해한])|달러|불|유로|엔))")


def _korean_amount(expression: str) -> int | None:
    """1억5천만 -> 150000000, 5,000만 -> 50000000, 3천만 -> 30000000."""
    total, section, number = 0, 0, None
    for digits, unit in re.findall(r"(\d[\d,.]*)?\s*([조억만천백십])", expression):
        value = float(digits.replace(",", "")) if digits else None
        if unit in _SMALL_UNITS:
            section += (value if value is not None else 1) * _SMALL_UNITS[unit]
        else:
            total += (section + (value or 0) or 1) * _BIG_UNITS[unit]
            section = 0
        number = total + section
    return int(number) if number else None


def _digits(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def numbers(text: str) -> set[str]:
    """Numbers as digit strings: 5,000,000, 5000000, 500만 and "5 million" are one number."""
    out = set()

    def korean(match: re.Match) -> str:
        amount = _korean_amount(match.group(0))
        if amount is not None:
            out.add(str(amount))
        return " "

    def english(match: re.Match) -> str:
        out.add(_digits(float(match.group(1).replace(",", "")) * _ENGLISH_UNITS[match.group(2).lower()]))
        return " "

    def english_words(match: re.Match) -> str:
        value = ENGLISH_NUMBER_WORDS[" ".join(match.group(1).lower().split())]
        out.add(_digits(value * _ENGLISH_UNITS[match.group(2).lower()]))
        return " "

    text = _KOREAN_WORD_MAGNITUDE.sub(korean, _KOREAN_MAGNITUDE.sub(korean, text))
    text = _ENGLISH_WORD_MAGNITUDE.sub(english_words, _ENGLISH_MAGNITUDE.sub(english, text))
    for raw in _NUMBER.findall(text):
        raw = raw.rstrip(".,")
        if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", raw):
            raw = raw.replace(",", "")
        out.update(p for p in re.split(r",(?!\d{3})", raw) if p)
    return out


def codes(text: str) -> set[str]:
    """Transaction, document and error codes (PO150, R2, WF-PO-01, HB_PUR_APPROVER) and acronyms."""
    found = {c.upper() for c in _CODE.findall(text) if any(ch.isalpha() for ch in c)}
    found.update(a.removesuffix("s") if a.endswith("s") and a[:-1].isupper() else a
                 for a in _ACRONYM.findall(text))
    return found


def names(text: str) -> set[str]:
    """Capitalised words inside English sentences (roles, departments, systems), lower-cased."""
    return {w.lower() for w in _NAME.findall(text) if w not in _COMMON_CAPITALS}


def facts(text: str) -> set[str]:
    """Numbers and codes: what an answer may only repeat, never invent."""
    return {f"#{n}" for n in numbers(text)} | {f"@{c}" for c in codes(text)}
