"""Answer quality, scored the same way by the benchmark, the validation gate and the build.

- degenerate: a word 4-gram repeated three or more times, or an answer that restates the question;
- idk: the honest "not in the documents" reply;
- faithful: at least 80% of the answer's content units occur in the gold document or the
  retrieved passages;
- covers: at least 50% of the content units of the gold answer's first 200 characters occur in
  the answer;
- good: covers and faithful and not degenerate;
- invented: numbers or codes in the answer that are in neither the evidence nor the gold document.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from appliance.answers.text import (
    content_units,
    facts,
    plain,
    share_in,
    strip_citations,
    word_ngrams,
)

FAITHFUL_SHARE = 0.8
COVERS_SHARE = 0.5
GOLD_PREFIX_CHARS = 200
_IDK = re.compile(
    r"could not find|couldn't find|cannot find|can't find|do not know|don't know|no information|"
    r"not (?:in|covered by) the (?:knowledge base|documents|sources)|찾지 못|찾을 수 없|알 수 없|"
    r"정보가 없|내용이 없|답변드릴 수 없", re.I)


@dataclass(frozen=True)
class AnswerScore:
    degenerate: bool
    idk: bool
    faithful: bool
    covers: bool
    invented: tuple[str, ...] = ()

    @property
    def good(self) -> bool:
        return self.covers and self.faithful and not self.degenerate

    def as_dict(self) -> dict:
        return {**asdict(self), "good": self.good, "invented": list(self.invented)}


def repeats(text: str, n: int = 4, times: int = 3) -> bool:
    counts = Counter(word_ngrams(text, n))
    return bool(counts) and max(counts.values()) >= times


def restates(answer: str, question: str) -> bool:
    """The answer opens with (most of) the question itself."""
    head = re.split(r"(?<=[.!?])\s|\n", answer.strip(), maxsplit=1)[0]
    asked = content_units(question)
    if len(asked) < 2:
        return False
    opening = set(content_units(head))
    return share_in(asked, opening) >= 0.8 and len(opening) <= 1.5 * len(set(asked)) + 2


def is_idk(answer: str) -> bool:
    return bool(_IDK.search(answer[:300]))


def score_answer(answer: str, *, question: str, gold_answer: str, references: Iterable[str]) -> AnswerScore:
    """`references`: the gold document's text and the passages the answer was given."""
    references = list(references)
    text = plain(strip_citations(answer))
    reference_units = set()
    for ref in references:
        reference_units.update(content_units(plain(ref)))
    units = content_units(text)
    faithful = bool(units) and share_in(units, reference_units) >= FAITHFUL_SHARE
    gold = content_units(plain(gold_answer[:GOLD_PREFIX_CHARS]))
    covers = bool(gold) and share_in(gold, set(units)) >= COVERS_SHARE
    known = set()
    for ref in references:
        known |= facts(ref)
    idk = is_idk(text)
    # A decline states nothing ("ask your ERP administrator" names no fact of the documents).
    invented = () if idk else tuple(sorted(f[1:] for f in facts(text) - known))
    degenerate = repeats(text) or restates(text, question)
    return AnswerScore(degenerate, idk, faithful, covers, invented)


def summarize(scores: list[AnswerScore]) -> dict:
    """Rates over a list of scored answers (the benchmark's and the gate's figures)."""
    n = len(scores)
    if not n:
        return {"n": 0}
    rate = lambda flag: round(sum(1 for s in scores if flag(s)) / n, 4)  # noqa: E731
    return {"n": n, "good": rate(lambda s: s.good), "degenerate": rate(lambda s: s.degenerate),
            "idk": rate(lambda s: s.idk), "faithful": rate(lambda s: s.faithful),
            "covers": rate(lambda s: s.covers),
            "invented": sum(len(s.invented) for s in scores)}
