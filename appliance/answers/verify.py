"""Verification of generated answers against their evidence, sentence by sentence.

A sentence stays only if every number, amount, date and code it contains occurs in the evidence,
the capitalised names it uses are there too, most of its content units are supported, and it does
not merely restate the question. Streaming works sentence by sentence: the model's text is held
until a sentence ends, checked, then sent or dropped, so an employee never sees an unsupported
sentence and still sees the first one as soon as it is verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from appliance.answers.quality import restates
from appliance.answers.text import (
    codes,
    content_units,
    names,
    numbers,
    plain,
    share_in,
    stemmed_units,
    strip_citations,
)

# A sentence ends at . ! ? (not inside a number like 2.5), at a line break, or after a Korean
# final ending.
_SENTENCE_END = re.compile(r"(?<!\d)[.!?。](?=\s)|(?<=\d)[.](?=\s+[^\d\s])|\n")


@dataclass(frozen=True)
class Check:
    sentence: str
    kept: bool
    reason: str = ""  # why it was removed


@dataclass
class Verifier:
    """Checks sentences against the evidence text (and the question they must not parrot)."""

    evidence: str
    question: str
    min_support: float = 0.6
    checks: list[Check] = field(default_factory=list)

    def __post_init__(self):
        text = plain(self.evidence)
        self._units = set(stemmed_units(text))
        self._numbers = numbers(text)
        self._codes = {c.upper() for c in codes(text)}
        self._words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}

    def check(self, sentence: str) -> Check:
        text = plain(strip_citations(sentence)).strip()
        if not text or not re.search(r"\w", text):
            return self._record(Check(sentence, True))
        if not self.checks and restates(text, self.question):
            return self._record(Check(sentence, False, "restates the question"))
        missing = sorted(numbers(text) - self._numbers)
        if missing:
            return self._record(Check(sentence, False, f"number not in the sources: {missing[0]}"))
        missing = sorted(c for c in codes(text) if c.upper() not in self._codes)
        if missing:
            return self._record(Check(sentence, False, f"code not in the sources: {missing[0]}"))
        missing = sorted(names(text) - self._words)
        if missing:
            return self._record(Check(sentence, False, f"name not in the sources: {missing[0]}"))
        units = stemmed_units(text)
        support = share_in(units, self._units)
        if support < self.min_support:
            return self._record(Check(sentence, False, f"only {support:.0%} supported"))
        return self._record(Check(sentence, True))

    def _record(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def removed(self) -> int:
        return sum(1 for c in self.checks if not c.kept)

    @property
    def support(self) -> float:
        """Share of the generated content units that survived verification."""
        total = sum(len(content_units(c.sentence)) for c in self.checks)
        kept = sum(len(content_units(c.sentence)) for c in self.checks if c.kept)
        return kept / total if total else 0.0

    def kept_text(self) -> str:
        return "".join(c.sentence for c in self.checks if c.kept)


class SentenceBuffer:
    """Collects streamed text and hands out whole sentences (with their trailing space)."""

    def __init__(self):
        self._text = ""

    def feed(self, delta: str) -> list[str]:
        self._text += delta
        out = []
        while True:
            match = _SENTENCE_END.search(self._text)
            if not match:
                break
            end = match.end()
            while end < len(self._text) and self._text[end] in " \t":
                end += 1
            # The space after the end mark must have arrived, or the sentence may go on (2.5).
            if end == len(self._text) and self._text[match.end() - 1] != "\n":
                break
            out.append(self._text[:end])
            self._text = self._text[end:]
        return out

    def flush(self) -> str:
        text, self._text = self._text, ""
        return text


def verify_text(text: str, evidence: str, question: str, *, min_support: float = 0.6) -> Verifier:
    """Verify a whole answer at once (the non-streaming path and the tests)."""
    verifier = Verifier(evidence, question, min_support)
    buffer = SentenceBuffer()
    for sentence in buffer.feed(text):
        verifier.check(sentence)
    tail = buffer.flush()
    if tail.strip():
        verifier.check(tail)
    return verifier
