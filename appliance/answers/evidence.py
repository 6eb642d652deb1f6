"""Evidence selection: from the retrieved passages, the few spans that answer the question.

Spans (sentences, list items, numbered steps, table rows with their header) are scored with the
analyzers the keyword index uses (Kiwi morphemes, stemmed English, the glossary's translations),
weighted by the corpus' IDF, plus Hangul syllable bigrams for Korean inflection the morphemes miss.
The best span brings its context along (a table row its header, a step its whole list, a list its
lead-in sentence); more spans join while they score close to the best and the budget allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from appliance.answers.spans import HEADER, HEADING, ITEM, ROW, SENTENCE, STEP, Span, split_spans
from appliance.answers.text import content_units, estimate_tokens
from appliance.knowledge.analyzer import Analyzer, is_korean
from appliance.knowledge.retrieval import Hit

# Questions that ask for a procedure get whole step lists.
_PROCEDURE = re.compile(
    r"\bhow (do|can|should|to)\b|\bsteps?\b|\bprocedure\b|\bprocess\b|어떻게|절차|방법|순서|하려면|하나요|신청",
    re.I)
_TOKEN_BUDGET_FLOOR = 60
SMALL_TABLE = 5  # a table of at most this many rows is quoted whole when it fits
PARAGRAPH_SHARE = 0.6  # a paragraph up to this share of the budget is quoted whole


@dataclass(frozen=True)
class Quote:
    """A run of spans from one source, shown together (a table, a list, a few sentences)."""

    source: int  # index into Evidence.sources
    spans: tuple[Span, ...]
    score: float
    focus: int = 0  # the span (index into spans) chosen for itself; the others are its context

    @property
    def section(self) -> str:
        return next((s.section for s in self.spans if s.section), "")


@dataclass
class Evidence:
    question: str
    korean: bool
    sources: list[Hit] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    support: float = 0.0  # how well the best span matches the question's key terms (0..1)
    matched: int = 0  # distinct terms of the question the best span (or its headings) has
    asked: int = 0  # distinct terms of the question

    def answers(self, min_support: float) -> bool:
        """Whether the evidence answers at all: enough of the question's weight is matched, by
        more than one lucky word unless the question has only one."""
        return bool(self.quotes) and self.support >= min_support and \
            (self.matched >= 2 or self.matched >= self.asked)

    def __bool__(self) -> bool:
        return bool(self.quotes)

    def spans_of(self, source: int) -> list[tuple[int, int]]:
        """Character ranges quoted from source `source` (for highlighting the passage)."""
        return sorted((s.start, s.end) for q in self.quotes if q.source == source for s in q.spans)

    def texts(self) -> list[str]:
        return [s.text for q in self.quotes for s in q.spans]

    def texts_of(self, source: int) -> list[str]:
        return [s.text for q in self.quotes if q.source == source for s in q.spans]


@dataclass(frozen=True)
class _Scored:
    hit_index: int
    index: int  # position in the hit's span list
    span: Span
    score: float
    matched: int = 0  # distinct question terms the span or its headings have


class EvidenceSelector:
    """Scores spans of retrieved hits against a question and picks the evidence set."""

    def __init__(self, analyzer: Analyzer, *, idf: Callable[[Sequence[str]], dict[str, float]],
                 unseen_idf: Callable[[], float] = lambda: float("inf"), glossary=None, next_passage: Callable[[int], Hit | None] | None = None,
                 budget_tokens: int = 200, max_quotes: int = 3, follow_share: float = 0.75, fill_share: float = 0.7,
                 translated_weight: float = 0.8):
        self.analyzer = analyzer
        self.idf = idf
        self.unseen_idf = unseen_idf
        self.glossary = glossary
        self.next_passage = next_passage or (lambda chunk_id: None)
        self.budget_tokens = max(budget_tokens, _TOKEN_BUDGET_FLOOR)
        self.max_quotes = max_quotes
        self.follow_share = follow_share
        self.fill_share = fill_share
        self.translated_weight = translated_weight

    # -- scoring ---------------------------------------------------------------------------------
    def question_weights(self, question: str, context: Sequence[str] = ()) -> dict[str, float]:
        """IDF weights of the question's terms (and their glossary translations). A word no
        passage has (a colloquial verb, a typo) weighs like an average word: it cannot be
        matched, but the question may still be answerable."""
        terms = list(dict.fromkeys(self.analyzer.query_terms(question)))
        weights = self.idf(terms)
        unseen = self.unseen_idf()
        seen = [w for w in weights.values() if w < unseen - 1e-9]
        typical = sum(seen) / len(seen) if seen else 1.0
        weights = {t: (w if w < unseen - 1e-9 else _unseen_share(t) * typical)
                   for t, w in weights.items()}
        if self.glossary is not None:
            translated = [t for t in self.glossary.translate(question, terms) if t not in weights]
            for term, weight in self.idf(translated).items():
                weights[term] = weight * self.translated_weight
        if context:  # earlier turns of a follow-up carry its topic, at half weight
            for term, weight in self.question_weights(" ".join(context)).items():
                weights.setdefault(term, 0.5 * weight)
        return weights

    def _span_score(self, weights: dict[str, float], total: float, bigrams: set[str],
                    span_terms: set[str], context_terms: set[str], span_units: set[str]) -> float:
        own = sum(w for t, w in weights.items() if t in span_terms)
        around = sum(w for t, w in weights.items() if t in context_terms and t not in span_terms)
        lexical = (own + 0.4 * around) / total if total else 0.0
        if not bigrams:
            return lexical
        overlap = len(bigrams & span_units) / len(bigrams)
        return 0.75 * lexical + 0.25 * overlap

    def select(self, question: str, hits: Sequence[Hit], *, context: Sequence[str] = ()) -> Evidence:
        """The evidence for `question` from `hits`; `context` holds earlier turns of a follow-up."""
        korean = is_korean(question)
        evidence = Evidence(question, korean)
        weights = self.question_weights(question, context)
        own = set(self.analyzer.query_terms(question))
        evidence.asked = len(own)
        total = sum(weights.values())
        bigrams = {u for u in content_units(question) if len(u) == 2 and not u.isascii()}
        parsed: list[list[Span]] = []
        scored: list[_Scored] = []
        for h, hit in enumerate(hits):
            spans = split_spans(hit.text)
            parsed.append(spans)
            around_hit = set(self.analyzer.terms(f"{hit.title} {hit.heading}"))
            for i, span in enumerate(spans):
                if span.kind == HEADING:
                    continue
                terms = set(self.analyzer.terms(span.text))
                local = around_hit | set(self.analyzer.terms(span.section)) if span.section else around_hit
                if span.kind == ROW and span.header >= 0:
                    local = local | set(self.analyzer.terms(spans[span.header].text))
                score = self._span_score(weights, total, bigrams, terms, local,
                                         set(content_units(span.text)))
                # Earlier hits ranked better on the whole passage: a small prior breaks ties.
                score += 0.02 / (1 + h)
                scored.append(_Scored(h, i, span, score, len(own & (terms | local))))
        if not scored:
            return evidence
        scored.sort(key=lambda s: -s.score)
        best = scored[0]
        evidence.support = min(1.0, best.score)
        evidence.matched = best.matched
        used_tokens = 0
        taken: set[tuple[int, int]] = set()
        quotes: list[tuple[int, list[int], float]] = []
        procedure = bool(_PROCEDURE.search(question))
        for candidate in scored:
            if len(quotes) >= self.max_quotes or used_tokens >= self.budget_tokens:
                break
            if (candidate.hit_index, candidate.index) in taken:
                continue
            if quotes and candidate.score < self.follow_share * best.score:
                break
            spans = parsed[candidate.hit_index]
            room = self.budget_tokens - used_tokens
            indexes = self._context(spans, candidate.index, procedure and not quotes, room)
            indexes = [i for i in indexes if (candidate.hit_index, i) not in taken]
            if not indexes:
                continue
            cost = sum(estimate_tokens(spans[i].text) for i in indexes)
            if quotes and cost > room:
                continue
            taken.update((candidate.hit_index, i) for i in indexes)
            used_tokens += cost
            quotes.append((candidate.hit_index, indexes, candidate.score, candidate.index))
        self._finish(evidence, hits, parsed, quotes)
        return evidence

    # -- context around the best spans -------------------------------------------------------------
    def _context(self, spans: list[Span], index: int, procedure: bool, room: int) -> list[int]:
        """The span with what it needs to be read (its table header, its list, the sentence that
        introduces it), then what follows it in its section while the budget's share allows."""
        cost = lambda ids: sum(estimate_tokens(spans[i].text) for i in ids)  # noqa: E731
        chosen = self._unit(spans, index, procedure, room)
        fill = int(room * self.fill_share)
        section = spans[index].section
        j = max(chosen) + 1
        while j < len(spans) and spans[j].kind != HEADING and spans[j].section == section:
            unit = self._unit(spans, j, procedure, fill - cost(chosen))
            if not unit or cost(sorted(set(chosen) | set(unit))) > fill:
                break
            chosen = sorted(set(chosen) | set(unit))
            j = max(chosen) + 1
        return chosen

    def _unit(self, spans: list[Span], index: int, procedure: bool, room: int) -> list[int]:
        """The smallest readable unit around span `index`."""
        span = spans[index]
        cost = lambda ids: sum(estimate_tokens(spans[i].text) for i in ids)  # noqa: E731
        if span.kind in (ROW, HEADER):
            members = [i for i, s in enumerate(spans) if s.group == span.group]
            header = [i for i in members if spans[i].kind == HEADER]
            rows = [i for i in members if spans[i].kind == ROW]
            whole = self._intro(spans, members) + members
            if len(rows) <= SMALL_TABLE and cost(whole) <= room:
                return whole
            chosen = [index] if span.kind == ROW else rows[:1]
            # Neighbouring rows often complete the answer (ranges, sequences): add while cheap.
            for i in sorted(rows, key=lambda i: abs(i - index))[:3]:
                if i not in chosen and cost(header + chosen + [i]) <= room // 2:
                    chosen.append(i)
            return sorted(set(header + chosen))
        if span.kind in (STEP, ITEM):
            members = [i for i, s in enumerate(spans) if s.group == span.group]
            whole = self._intro(spans, members) + members
            if (procedure or span.kind == STEP or cost(whole) <= room // 2) and cost(whole) <= room:
                return whole
            window = [i for i in members if abs(i - index) <= 1]
            intro = self._intro(spans, members)
            return intro + window if cost(intro + window) <= room else [index]
        if span.kind == SENTENCE:
            following = spans[index + 1] if index + 1 < len(spans) else None
            if following is not None and following.kind in (STEP, ITEM, ROW, HEADER) and \
                    following.section == span.section and following.group != span.group:
                members = [i for i, s in enumerate(spans) if s.group == following.group]
                paragraph = [i for i, s in enumerate(spans) if s.group == span.group and i <= index]
                if cost(paragraph + members) <= room:
                    return paragraph + members
            # The whole paragraph when it fits: a sentence leans on the ones around it.
            paragraph = [i for i, s in enumerate(spans) if s.group == span.group]
            if cost(paragraph) <= room * PARAGRAPH_SHARE:
                return paragraph
            return [i for i in paragraph if abs(i - index) <= 1 and cost([i]) <= room // 3] or [index]
        return [index]

    @staticmethod
    def _intro(spans: list[Span], members: list[int]) -> list[int]:
        """The sentence right before a list or table, in its section, introduces it."""
        lead = members[0] - 1
        if lead >= 0 and spans[lead].kind == SENTENCE and \
                spans[lead].section == spans[members[0]].section:
            return [lead]
        return []

    def _finish(self, evidence: Evidence, hits: Sequence[Hit], parsed: list[list[Span]],
                quotes: list[tuple[int, list[int], float, int]]) -> None:
        order: dict[int, int] = {}
        for hit_index, _, _, _ in quotes:
            order.setdefault(hit_index, len(order))
        evidence.sources = [hits[h] for h in order]
        merged: dict[int, set[int]] = {}
        focus: dict[tuple[int, int], float] = {}  # (hit, span) -> score of a span chosen for itself
        for hit_index, indexes, score, best in quotes:
            merged.setdefault(hit_index, set()).update(indexes)
            focus[(hit_index, best)] = score
        for hit_index, ids in sorted(merged.items(), key=lambda kv: order[kv[0]]):
            spans = parsed[hit_index]
            # Runs of adjacent spans become one quote each, in passage order.
            runs: list[list[int]] = []
            for i in sorted(ids):
                if runs and i != runs[-1][-1] + 1 and not _same_block(spans, runs[-1][-1], i):
                    runs.append([])
                if not runs:
                    runs.append([])
                runs[-1].append(i)
            for run in runs:
                scores = [(focus.get((hit_index, i), -1.0), n) for n, i in enumerate(run)]
                score, at = max(scores)
                evidence.quotes.append(Quote(order[hit_index], tuple(spans[j] for j in run),
                                             max(score, 0.0), at))
        self._follow_lists(evidence)

    def _follow_lists(self, evidence: Evidence) -> None:
        """A numbered list that runs to the end of its passage continues in the next one."""
        for q, quote in enumerate(list(evidence.quotes)):
            last = quote.spans[-1]
            source = evidence.sources[quote.source]
            if last.kind != STEP or source.text.rstrip()[-1:] == "" or \
                    last.end < len(source.text.rstrip()):
                continue
            following = self.next_passage(source.chunk_id)
            if following is None:
                continue
            more = []
            for span in split_spans(following.text):
                if span.kind != STEP:
                    break
                more.append(span)
            if not more:
                continue
            evidence.sources.append(following)
            evidence.quotes.insert(q + 1, Quote(len(evidence.sources) - 1, tuple(more), quote.score, 0))


def _unseen_share(term: str) -> float:
    """How much a term no passage has counts: a noun the documents never use suggests the
    question is about something they do not cover; a verb or an English word may just be
    phrased differently (Korean verb and adjective stems end in 다 in the analyzer's terms)."""
    if term.isascii():
        return 0.6
    return 0.3 if term.endswith("다") else 1.0


def _same_block(spans: list[Span], a: int, b: int) -> bool:
    """Rows of one table (its header and rows need not be adjacent) stay one quote."""
    return spans[a].group >= 0 and spans[a].group == spans[b].group


def is_procedure_question(question: str) -> bool:
    return bool(_PROCEDURE.search(question))


__all__ = ["Evidence", "EvidenceSelector", "Quote", "HEADER", "ITEM", "ROW", "SENTENCE", "STEP",
           "is_procedure_question"]
