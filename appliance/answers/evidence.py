"""Evidence selection: from the retrieved passages, the few spans that answer the question.

Spans (sentences, list items, numbered steps, table rows with their header) are scored with the
analyzers the keyword index uses (Kiwi morphemes, stemmed English, the glossary's translations),
weighted by the corpus' IDF, plus Hangul syllable bigrams for Korean inflection the morphemes miss.
The best span brings its context along (a table row its header, a step its whole list, a list its
lead-in sentence); more spans join while they score close to the best and the budget allows.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from math import fsum

from appliance.answers.spans import HEADER, HEADING, ITEM, ROW, SENTENCE, STEP, Span, split_spans
from appliance.answers.text import ENGLISH_NUMBER_WORDS, content_units, estimate_tokens, numbers
from appliance.knowledge.analyzer import Analyzer, is_korean
from appliance.knowledge.retrieval import Hit

# What a translation or rephrasing counts for in a span that also matched the question's own words.
MIXED_STAND_IN = 0.5
# Questions that ask for a procedure get whole step lists.
_PROCEDURE = re.compile(
    r"\bhow (do|can|should|to)\b|\bsteps?\b|\bprocedure\b|\bprocess\b|어떻게|절차|방법|순서|하려면|하나요|신청",
    re.I)
_TOKEN_BUDGET_FLOOR = 60
AMOUNT_BONUS = 0.25  # a span whose range or limit holds an amount the question asks about
# A matching span that states a period when the question states one ("40일 지난 물건" is answered by
# "30일이 지난 반품은 ..."), a little more when it is the same period ("한 달" = "30일").
PERIOD_BONUS = 0.25
SAME_PERIOD_BONUS = 0.1
KIND_BONUS = 0.25  # a matching span that states what the question asks for (a period, an amount)
TOPIC_BONUS = 0.2  # a follow-up's span in a document the previous answer cited keeps the topic
DENSE_POOL = 12  # the best lexical candidates the embedder re-scores
RERANK_PRIOR = 0.1  # how much of the first stage's order a re-ranked list keeps
SECTION_MATCH = 0.6  # share of the question's weight a heading must name to quote its section
TITLE_SHARE = 0.5  # what the document title's words count for in naming a section
TERM_CACHE = 50_000  # span texts whose terms are kept between questions
PASSAGE_CACHE = 2_000  # passages whose spans are kept between questions
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
    whole_section: bool = False  # the question names this span's section: quote its body
    bonus: float = 0.0  # the part of the score that ranks but is no match (the kind asked, the topic)


class _Passage:
    """A hit's spans with their token costs, content units and the members of each group,
    computed once (the selector keeps recent passages: re-ranking and selection read the same
    hits, and popular passages come back for many questions)."""

    def __init__(self, text: str):
        self.spans = split_spans(text)
        self.costs = [estimate_tokens(s.text) for s in self.spans]
        self.units = [frozenset(content_units(s.text)) for s in self.spans]
        self._groups: dict[int, list[int]] = {}
        for i, span in enumerate(self.spans):
            if span.group >= 0:
                self._groups.setdefault(span.group, []).append(i)

    def cost(self, indexes) -> int:
        return sum(self.costs[i] for i in indexes)

    def group(self, group: int) -> list[int]:
        return self._groups.get(group, [])


class EvidenceSelector:
    """Scores spans of retrieved hits against a question and picks the evidence set."""

    def __init__(self, analyzer: Analyzer, *, idf: Callable[[Sequence[str]], dict[str, float]],
                 unseen_idf: Callable[[], float] = lambda: float("inf"), glossary=None, next_passage: Callable[[int], Hit | None] | None = None,
                 budget_tokens: int = 200, max_quotes: int = 3, follow_share: float = 0.75, fill_share: float = 0.7,
                 translated_weight: float = 0.8, embed: Callable | None = None,
                 dense_weight: float = 0.3, korean_dense_weight: float = 0.05):
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
        # (texts, "query" | "passage") -> unit vectors; None scores by words alone
        self.embed = embed
        self.dense_weight = dense_weight
        self.korean_dense_weight = korean_dense_weight
        self._cache: dict[str, frozenset[str]] = {}
        self._passages: dict[str, _Passage] = {}
        self._cache_lock = threading.Lock()

    # -- scoring ---------------------------------------------------------------------------------
    def question_weights(self, question: str, context: Sequence[str] = ()
                         ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """IDF weights of the question's own terms; of the terms that may stand in for them
        (their glossary translations and the words manuals use for everyday ones); and of the
        earlier turns of a follow-up, which add their topic.

        Only the own terms make up how much there is to match, and a stand-in only counts for an
        own term not matched, so a bilingual row that holds a term and its translation does not
        beat a passage in the question's language. A word no passage has (a colloquial verb, a
        typo) weighs like an average word: it cannot be matched, but the question may still be
        answerable.
        """
        terms = list(dict.fromkeys(self.analyzer.query_terms(question)))
        weights = self.idf(terms)
        unseen = self.unseen_idf()
        seen = [w for w in weights.values() if w < unseen - 1e-9]
        typical = sum(seen) / len(seen) if seen else 1.0
        own = {t: (w if w < unseen - 1e-9 else _unseen_share(t) * typical) for t, w in weights.items()}
        if self.glossary is not None:
            # An everyday word no passage uses ("잃어버리다") is asked in the manuals' word for it
            # ("분실"): that word becomes the question's own term, with its weight.
            for term in [t for t, w in weights.items() if w >= unseen - 1e-9]:
                written = [w for w in self.glossary.rephrase(term, [term]) if w not in own]
                found = {w: v for w, v in self.idf(written).items() if v < unseen - 1e-9}
                if found:
                    del own[term]
                    own.update(found)
        alternatives: dict[str, float] = {}
        if self.glossary is not None:
            stand_ins = [t for t in (*self.glossary.translate(question, terms),
                                     *self.glossary.rephrase(question, terms)) if t not in own]
            for term, weight in self.idf(stand_ins).items():
                alternatives[term] = weight * self.translated_weight
        carried: dict[str, float] = {}
        if context:  # earlier turns of a follow-up carry its topic, at half weight
            earlier, earlier_alternatives, _ = self.question_weights(" ".join(context))
            for term, weight in {**earlier_alternatives, **earlier}.items():
                if term not in own and term not in alternatives:
                    carried.setdefault(term, 0.5 * weight)
        return own, alternatives, carried

    def stand_in_groups(self, question: str) -> list[tuple[frozenset[str], frozenset[str]]]:
        """(the question's terms, the terms that may stand in for them) per glossary entry the
        question uses: a translation or the manuals' word counts only for the terms it replaces."""
        if self.glossary is None:
            return []
        terms = list(dict.fromkeys(self.analyzer.query_terms(question)))
        return [(frozenset(source), frozenset(target))
                for source, target in (*self.glossary.translations(question, terms),
                                       *self.glossary.rephrasings(question, terms))]

    @staticmethod
    def _span_score(own: dict[str, float], alternatives: dict[str, float], carried: dict[str, float],
                    total: float, bigrams: set[str], span_terms: set[str], context_terms: set[str],
                    span_units: set[str], groups: Sequence[tuple[frozenset[str], frozenset[str]]] = ()
                    ) -> float:
        def weight(term: str, weights: dict[str, float]) -> float:
            if term in span_terms:
                return weights.get(term, 0.0)
            return 0.4 * weights.get(term, 0.0) if term in context_terms else 0.0

        def matched(weights: dict[str, float]) -> float:
            return sum(weight(t, weights) for t in weights)

        own_matched = matched(own)
        stand_in = 0.0
        for sources, targets in groups:  # each stand-in at most for the own terms it replaces
            missing = sum(w - weight(t, own) for t, w in own.items() if t in sources)
            if missing > 0:
                stand_in += min(fsum(weight(t, alternatives) for t in targets), missing)
        stand_in = min(stand_in, max(0.0, total - own_matched))
        if own_matched:  # a span read in the question's language needs no translation: a bilingual
            stand_in *= MIXED_STAND_IN  # row's other columns count for less than its own words
        lexical = (own_matched + stand_in + matched(carried)) / total if total else 0.0
        if not bigrams:
            return lexical
        overlap = len(bigrams & span_units) / len(bigrams)
        return 0.75 * lexical + 0.25 * overlap

    def select(self, question: str, hits: Sequence[Hit], *, context: Sequence[str] = (),
               topic: frozenset[str] = frozenset(),
               next_passage: Callable[[int], Hit | None] | None = None) -> Evidence:
        """The evidence for `question` from `hits`; `context` holds earlier turns of a follow-up
        and `topic` the documents its previous answer cited; `next_passage` (chunk id -> the
        following passage the caller may see) continues lists."""
        korean = is_korean(question)
        evidence = Evidence(question, korean)
        passages, scored, asked = self._score(question, hits, context, topic=topic)
        evidence.asked = asked
        if not scored:
            return evidence
        scored.sort(key=lambda s: -s.score)
        if self.embed is not None:
            scored = self._rescore_by_meaning(question, korean, scored, passages, hits)
        best = scored[0]
        # Whether the documents answer at all is judged on the best match alone: a bonus (the
        # period or topic asked) may rank another span first, but it neither opens nor closes
        # the gate ("두 달 넘어가면" ranks the "60일 경과" item first; the list's lead matches most).
        gate = max(scored, key=lambda c: c.score - c.bonus)
        evidence.support = min(1.0, gate.score - gate.bonus)
        evidence.matched = gate.matched
        used_tokens = 0
        taken: set[tuple[int, int]] = set()
        quotes: list[tuple[int, list[int], float]] = []
        procedure = bool(_PROCEDURE.search(question))
        named = {(c.hit_index, c.span.section): c.index for c in scored if c.whole_section}
        own_language_first = is_korean(best.span.text) == korean
        for candidate in scored:
            if len(quotes) >= self.max_quotes or used_tokens >= self.budget_tokens:
                break
            if (candidate.hit_index, candidate.index) in taken:
                continue
            if quotes and candidate.score < self.follow_share * best.score:
                break
            if quotes and own_language_first and is_korean(candidate.span.text) != korean:
                continue  # an answer quoted in the reader's language adds no other-language quote
            passage = passages[candidate.hit_index]
            room = self.budget_tokens - used_tokens
            # A span of a section the question names is read with its section from the start
            # (the limits table above the sentence that mentions limits).
            first = named.get((candidate.hit_index, candidate.span.section)) \
                if candidate.span.section else None
            if candidate.whole_section or first is not None:
                start = candidate.index if candidate.whole_section else first
                indexes = self._section_body(passage, start, int(room * self.fill_share))
                if not candidate.whole_section and candidate.index not in indexes:
                    indexes = self._context(passage, candidate.index, procedure and not quotes, room)
            else:
                indexes = self._context(passage, candidate.index, procedure and not quotes, room)
            indexes = [i for i in indexes if (candidate.hit_index, i) not in taken]
            if not indexes:
                continue
            cost = passage.cost(indexes)
            if quotes and cost > room:
                continue
            taken.update((candidate.hit_index, i) for i in indexes)
            used_tokens += cost
            quotes.append((candidate.hit_index, indexes, candidate.score, candidate.index))
        if quotes and korean:
            # A Korean question has few index terms (nouns and stems), often split across the
            # sentences of one paragraph: its first quote is read as a whole, and the best match
            # of its spans counts. (For English, where that let an out-of-scope question through
            # on the tune half, the best span alone must hold two of the question's terms.)
            first_hit, first_indexes = quotes[0][0], set(quotes[0][1])
            evidence.matched = max([gate.matched] + [c.matched for c in scored if c.hit_index == first_hit
                                                     and c.index in first_indexes and not c.whole_section])
        self._finish(evidence, hits, [p.spans for p in passages], quotes,
                     next_passage or self.next_passage)
        return evidence

    # -- context around the best spans -------------------------------------------------------------
    def _context(self, passage: _Passage, index: int, procedure: bool, room: int) -> list[int]:
        """The span with what it needs to be read (its table header, its list, the sentence that
        introduces it), then what follows it in its section while the budget's share allows."""
        spans = passage.spans
        chosen = self._unit(passage, index, procedure, room)
        if _is_record(spans[index]):
            return chosen
        fill = int(room * self.fill_share)
        section = spans[index].section
        used = passage.cost(chosen)
        j = max(chosen) + 1
        while j < len(spans) and spans[j].kind != HEADING and spans[j].section == section:
            unit = [i for i in self._unit(passage, j, procedure, fill - used) if i not in chosen]
            if not unit or used + passage.cost(unit) > fill:
                break
            chosen = sorted(chosen + unit)
            used += passage.cost(unit)
            j = max(chosen) + 1
        return chosen

    def _unit(self, passage: _Passage, index: int, procedure: bool, room: int) -> list[int]:
        """The smallest readable unit around span `index`."""
        spans, cost = passage.spans, passage.cost
        span = spans[index]
        if _is_record(span):
            return [index]
        if span.kind in (ROW, HEADER):
            members = passage.group(span.group)
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
            members = passage.group(span.group)
            intro = self._intro(spans, members)
            whole = intro + members
            if (procedure or span.kind == STEP or cost(whole) <= room // 2) and cost(whole) <= room:
                return whole
            window = [i for i in members if abs(i - index) <= 1]
            return intro + window if cost(intro + window) <= room else [index]
        if span.kind == SENTENCE:
            following = spans[index + 1] if index + 1 < len(spans) else None
            paragraph = passage.group(span.group)
            if following is not None and following.kind in (STEP, ITEM, ROW, HEADER) and \
                    following.section == span.section and following.group != span.group:
                members = passage.group(following.group)
                leading = [i for i in paragraph if i <= index]
                if cost(leading + members) <= room:
                    return leading + members
            # The whole paragraph when it fits: a sentence leans on the ones around it.
            if cost(paragraph) <= room * PARAGRAPH_SHARE:
                return paragraph
            return [i for i in paragraph if abs(i - index) <= 1 and cost([i]) <= room // 3] or [index]
        return [index]

    def rerank(self, question: str, hits: Sequence[Hit], *, context: Sequence[str] = (),
               prior: float = RERANK_PRIOR) -> list[Hit]:
        """Hits re-ordered by their best span's match (the second stage of retrieval): a passage
        that holds the sentence, row or step that answers rises above one that only shares
        words with the question here and there. `prior` keeps some of the first stage's order."""
        if len(hits) < 2:
            return list(hits)
        _, scored, _ = self._score(question, hits, context, prior_weight=0.0)
        best = [0.0] * len(hits)
        for candidate in scored:
            best[candidate.hit_index] = max(best[candidate.hit_index], candidate.score)
        order = sorted(range(len(hits)), key=lambda i: -(best[i] + prior / (1 + i)))
        return [hits[i] for i in order]

    def _score(self, question: str, hits: Sequence[Hit], context: Sequence[str],
               prior_weight: float = 0.02, topic: frozenset[str] = frozenset()
               ) -> tuple[list[_Passage], list[_Scored], int]:
        """Every span of every hit scored against the question (and the section candidates);
        returns the parsed passages, the scored candidates and how many terms the question has.
        A follow-up's spans in the documents of its `topic` score a little higher ("What status
        does it end up with?" after a question on lost quotations is answered by the quotation
        statuses, not by an attendance-status table that shares the words)."""
        own_weights, alternative_weights, carried_weights = self.question_weights(question, context)
        own = set(own_weights)
        # A follow-up's earlier turns count for its match too ("문의처는요?" after a question
        # about RMA returns is answered by the RMA document's contacts).
        carried = set(carried_weights)
        groups = self.stand_in_groups(question)
        total = sum(own_weights.values())
        if not total:  # "그건 얼마나 미리 해야 돼요?": the earlier turns are all there is to match
            total = sum(carried_weights.values())
        bigrams = {u for u in content_units(question) if len(u) == 2 and not u.isascii()}
        amounts = _asked_amounts(question)
        kinds = asked_kinds(question)
        periods = stated_periods(question)
        passages: list[_Passage] = []
        scored: list[_Scored] = []
        terms_of = self._terms

        def named_in(terms: frozenset[str]) -> set[str]:
            """The question's terms a heading or title names, in its words or through the
            glossary ("Corporate card" in "법인카드 발급 및 사용 규정")."""
            found = own & terms
            for sources, targets in groups:
                if targets <= terms:  # the whole phrase: "사용" alone is no "spending limit"
                    found = found | (sources & own)
            return found
        for h, hit in enumerate(hits):
            passage = self._passage(hit.text)
            passages.append(passage)
            spans = passage.spans
            around_hit = terms_of(f"{hit.title} {hit.heading}")
            own_section = hit.heading.split(" > ")[-1] if hit.heading else ""
            # Earlier hits ranked better on the whole passage: a small prior breaks ties.
            prior = prior_weight / (1 + h)
            on_topic = TOPIC_BONUS if hit.document in topic else 0.0
            sections: dict[str, int] = {}  # each section of the passage and its first span
            for i, span in enumerate(spans):
                if span.kind == HEADING:
                    continue
                sections.setdefault(span.section, i)
                terms = terms_of(span.text)
                local = around_hit | terms_of(span.section) if span.section else around_hit
                if span.kind == ROW and span.header >= 0:
                    local = local | terms_of(spans[span.header].text)
                score = self._span_score(own_weights, alternative_weights, carried_weights, total,
                                         bigrams, terms, local, passage.units[i], groups)
                if amounts and _covers_amount(span.text, amounts):
                    score += AMOUNT_BONUS
                bonus = on_topic
                if kinds and score > 0 and states_kind(span.text, kinds):
                    bonus += KIND_BONUS
                if periods and score > 0:
                    stated = stated_periods(span.text)
                    if stated:
                        bonus += PERIOD_BONUS + (SAME_PERIOD_BONUS if periods & stated else 0.0)
                present = terms | local
                # A question term counts as matched in its own words or through the glossary
                # entry that stands in for it ("일비" in a row under "Per diem").
                covered = own & present
                for sources, targets in groups:
                    if targets & present:
                        covered = covered | (sources & own)
                scored.append(_Scored(h, i, span, score + bonus + prior,
                                      len(covered) + min(2, len(carried & present)), bonus=bonus))
            # A question that names a section ("법인카드 사용 한도는?") is answered by the
            # section's body, whose own lines (a table of limits) need not repeat the name.
            title = terms_of(hit.title)
            in_title = named_in(title)
            for name, first in sections.items():
                heading = terms_of(name or own_section)
                in_heading = named_in(heading)
                named = fsum(own_weights[t] for t in in_heading)
                if in_heading - in_title:
                    # The section names what its document's title does not; the title, at half
                    # weight, may name the rest ("법인카드" for "7. 분실 및 도난").
                    named += TITLE_SHARE * fsum(own_weights[t] for t in in_title - in_heading)
                    named = min(named, total)
                if total and named / total >= SECTION_MATCH:
                    scored.append(_Scored(h, first, spans[first], 0.9 * named / total + on_topic + prior,
                                          len(in_heading | in_title), whole_section=True, bonus=on_topic))
        return passages, scored, len(own)

    def _rescore_by_meaning(self, question: str, korean: bool, scored: list[_Scored],
                            passages: list[_Passage], hits: Sequence[Hit]) -> list[_Scored]:
        """The best lexical candidates, re-scored with the embedder's similarity to the question
        (it tells "missing parts" from "all components available" where words tie)."""
        weight = self.korean_dense_weight if korean else self.dense_weight
        pool = [c for c in scored[:DENSE_POOL] if not c.whole_section]
        if weight <= 0 or len(pool) < 2:
            return scored
        texts = [f"{hits[c.hit_index].title}: {c.span.text}" for c in pool]
        query = self.embed([question], "query")[0]
        similarity = self.embed(texts, "passage") @ query
        # The embedder may not read the other language (the default one has no Hangul): a span
        # in it gets the typical similarity of the question's own-language spans, neither raised
        # nor sunk by a figure that measures nothing ("corporate card spending limit" is answered
        # by the Korean limits table, not by an English sentence that only names the card).
        readable = [is_korean(c.span.text) == korean for c in pool]
        own_language = sorted(float(sim) for sim, ok in zip(similarity, readable) if ok)
        if own_language:
            typical = own_language[len(own_language) // 2]
            similarity = [float(sim) if ok else typical for sim, ok in zip(similarity, readable)]
        rescored = {id(c): c.score + weight * float(sim) for c, sim in zip(pool, similarity)}
        updated = [replace(c, score=rescored.get(id(c), c.score)) for c in scored]
        return sorted(updated, key=lambda s: -s.score)

    @staticmethod
    def _section_body(passage: _Passage, first: int, room: int) -> list[int]:
        """A section's spans from its start, while they fit."""
        spans = passage.spans
        chosen: list[int] = []
        used = 0
        for i in range(first, len(spans)):
            if spans[i].kind == HEADING or spans[i].section != spans[first].section:
                break
            if chosen and used + passage.costs[i] > room:
                break
            chosen.append(i)
            used += passage.costs[i]
        return chosen

    def _terms(self, text: str) -> frozenset[str]:
        """Index terms of a text, cached: the same passages come back for many questions."""
        found = self._cache.get(text)
        if found is None:
            found = frozenset(self.analyzer.terms(text))
            with self._cache_lock:
                if len(self._cache) >= TERM_CACHE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[text] = found
        return found

    def _passage(self, text: str) -> _Passage:
        found = self._passages.get(text)
        if found is None:
            found = _Passage(text)
            with self._cache_lock:
                if len(self._passages) >= PASSAGE_CACHE:
                    self._passages.pop(next(iter(self._passages)))
                self._passages[text] = found
        return found

    @staticmethod
    def _intro(spans: list[Span], members: list[int]) -> list[int]:
        """The sentence right before a list or table, in its section, introduces it."""
        lead = members[0] - 1
        if lead >= 0 and spans[lead].kind == SENTENCE and \
                spans[lead].section == spans[members[0]].section:
            return [lead]
        return []

    def _finish(self, evidence: Evidence, hits: Sequence[Hit], parsed: list[list[Span]],
                quotes: list[tuple[int, list[int], float, int]],
                next_passage: Callable[[int], Hit | None]) -> None:
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
            # Runs of adjacent spans become one quote each.
            runs: list[list[int]] = []
            for i in sorted(ids):
                if runs and i != runs[-1][-1] + 1 and not _same_block(spans, runs[-1][-1], i):
                    runs.append([])
                if not runs:
                    runs.append([])
                runs[-1].append(i)
            found = []
            for run in runs:
                scores = [(focus.get((hit_index, i), -1.0), n) for n, i in enumerate(run)]
                score, at = max(scores)
                found.append(Quote(order[hit_index], tuple(spans[j] for j in run), max(score, 0.0), at))
            # The run that answers best comes first (a run quoted only as context, last).
            evidence.quotes.extend(sorted(found, key=lambda q: -q.score))
        self._follow_lists(evidence, next_passage)

    @staticmethod
    def _follow_lists(evidence: Evidence, next_passage: Callable[[int], Hit | None]) -> None:
        """A numbered list that runs to the end of its passage continues in the next one."""
        for q, quote in enumerate(list(evidence.quotes)):
            last = quote.spans[-1]
            source = evidence.sources[quote.source]
            if last.kind != STEP or source.text.rstrip()[-1:] == "" or \
                    last.end < len(source.text.rstrip()):
                continue
            following = next_passage(source.chunk_id)
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


_ABOVE = re.compile(r"초과|이상|넘|above|over|more than|exceed|from|at least", re.I)
_BELOW = re.compile(r"이하|미만|까지|up to|below|under|less than|at most|within", re.I)


def _amounts(text: str) -> list[float]:
    """Amounts a text states (at least a thousand: days and counts are not amounts)."""
    out = []
    for number in numbers(text):
        try:
            value = float(number)
        except ValueError:
            continue
        if value >= 1000:
            out.append(value)
    return out


def _asked_amounts(question: str) -> list[float]:
    """The amounts a question asks about; "over 30 million" asks about just above it."""
    amounts = _amounts(question)
    if _ABOVE.search(question) and not _BELOW.search(question):
        return [a + 1 for a in amounts]
    if re.search(r"미만|under|below|less than", question, re.I):
        return [a - 1 for a in amounts]
    return amounts


def _covers_amount(text: str, amounts: list[float]) -> bool:
    """Whether a span states a range or a limit the asked amount falls under: "30,000,001 –
    150,000,000" holds 60 million, "5억원 초과" holds 6억, "up to 5,000,000" holds 3 million."""
    values = sorted(v for v in _amounts(text))
    if not values:
        return False
    for amount in amounts:
        if len(values) >= 2 and values[0] <= amount <= values[-1]:
            return True
        if len(values) == 1:
            if _ABOVE.search(text) and amount > values[0]:
                return True
            if _BELOW.search(text) and amount <= values[0]:
                return True
    return False


# What a question asks for, and how a passage states it. "며칠 안에 나와요?" is answered by
# "5영업일 이내", "얼마까지 보관해요?" by "KRW 500,000", "what time ...?" by "06:30".
_ASKS = {
    "period": re.compile(r"며칠|몇\s*일|몇\s*(시간|주|달|개월|년)|얼마\s*(나|동안|만에|전에|후에)|언제까지|기한|"
                         r"how (long|soon|many (days|hours|weeks|months|years))|by when|deadline|"
                         r"how far in advance|within how", re.I),
    "time": re.compile(r"몇\s*시|언제|what time|\bwhen\b", re.I),
    "amount": re.compile(r"얼마|금액|한도|최대|최소|상한|how much|what amount|\b(limit|cap|maximum|minimum|"
                         r"smallest|largest|lowest|highest)\b", re.I),
    "count": re.compile(r"몇\s*(개|부|장|회|명|번|건|차례|대|곳|가지|줄|자|글자|권|통)|how many", re.I),
    "frequency": re.compile(r"얼마나\s*자주|주기|how often|how frequently", re.I),
}
_STATES = {
    "period": re.compile(r"\d+\s*(영업일|근무일|일|시간|주|개월|달|년|분)|하루|이틀|사흘|나흘|일주일|한\s*달|"
                         r"(\d+|\b(an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty|"
                         r"thirty|sixty|ninety))\s*(business |working |calendar )?"
                         r"(days?|hours?|weeks?|months?|years?|minutes?)\b", re.I),
    "time": re.compile(r"\d{1,2}:\d{2}|오전|오후|\d+\s*시\b|\d+월\s*\d+일|매월|매주|\b(a\.m\.|p\.m\.|am|pm)\b|"
                       r"\b(monday|tuesday|wednesday|thursday|friday|january|february|march|april|may|june|july|"
                       r"august|september|october|november|december)\b|\d+(st|nd|rd|th)\b", re.I),
    "amount": re.compile(r"\d[\d,.]*\s*(원|만\s*원|억|천\s*원|%)|\b(KRW|USD|EUR|won)\b|[$₩€]\s*\d|\d[\d,]{4,}", re.I),
    "count": re.compile(r"\d+\s*(개|부|장|회|명|번|건|차례|대|곳|가지|줄|자|권|통)|"
                        r"\d+\s*(times?|copies|pieces?|people|persons?|devices?|characters?|lines?)\b", re.I),
    "frequency": re.compile(r"\b(every|each|daily|weekly|monthly|quarterly|annually|yearly|once|twice)\b|"
                            r"매일|매주|매월|매달|매년|매 분기|분기마다|반기|연\s*\d+\s*회|월\s*\d+\s*회", re.I),
}


def asked_kinds(question: str) -> frozenset[str]:
    """What a question asks for: a period, a time or date, an amount, a count, a frequency (or
    nothing these patterns tell)."""
    kinds = {kind for kind, pattern in _ASKS.items() if pattern.search(question)}
    if _amounts(question):
        kinds.discard("amount")  # "300만원이면 누가 승인해요?" states the amount and asks who
    if "period" in kinds:
        kinds.add("time")  # a deadline ("언제까지", "by when") is stated as a period or as a date
    return frozenset(kinds)


def states_kind(text: str, kinds: frozenset[str]) -> bool:
    return any(_STATES[kind].search(text) for kind in kinds)


_PERIOD_NUMBER = re.compile(
    r"(?<![\d.:/-])(\d+|\b(?:an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve)\b)\s*"
    r"(영업일|근무일|일(?!자)|주일?|"
    r"개월|달|년|(?:business |working |calendar )?days?\b|weeks?\b|months?\b|years?\b)", re.I)
_PERIOD_WORDS = {"하루": 1, "이틀": 2, "사흘": 3, "나흘": 4, "일주일": 7, "보름": 15, "한 달": 30, "한달": 30,
                 "두 달": 60, "두달": 60, "석 달": 90, "세 달": 90, "반년": 180, "일 년": 360, "일년": 360,
                 "fortnight": 14}


def stated_periods(text: str) -> set[int]:
    """Periods a text states, in days: "한 달", "30일", "a month" and "30 days" are one period
    (a date such as "3월 30일" is none)."""
    out = set()
    for match in _PERIOD_NUMBER.finditer(text):
        count, unit = match.group(1), match.group(2).lower()
        if unit == "일" and re.search(r"월\s*$", text[:match.start()]) or len(count) == 4:
            continue  # a date: "3월 30일", "2024년"
        n = int(count) if count.isdigit() else ENGLISH_NUMBER_WORDS[count.lower()]
        if unit.startswith(("주", "week")):
            n *= 7
        elif unit.startswith(("개월", "달", "month")):
            n *= 30
        elif unit.startswith(("년", "year")):
            n *= 360
        out.add(n)
    for word, days in _PERIOD_WORDS.items():
        if word in text:
            out.add(days)
    return out


def _unseen_share(term: str) -> float:
    """How much a term no passage has counts: a noun the documents never use suggests the
    question is about something they do not cover; a verb or an English word may just be
    phrased differently (Korean verb and adjective stems end in 다 in the analyzer's terms)."""
    if term.isascii():
        return 0.6
    return 0.3 if term.endswith("다") else 1.0


def _is_record(span: Span) -> bool:
    """A "code: ...; area: ..." line (a row of a code list) says all it means: the records beside
    it (the next error code) are no part of its answer."""
    return span.kind == ROW and span.labeled and span.header < 0


def _same_block(spans: list[Span], a: int, b: int) -> bool:
    """Rows of one table (its header and rows need not be adjacent) stay one quote."""
    return spans[a].group >= 0 and spans[a].group == spans[b].group


def is_procedure_question(question: str) -> bool:
    return bool(_PROCEDURE.search(question))


__all__ = ["Evidence", "EvidenceSelector", "Quote", "HEADER", "ITEM", "ROW", "SENTENCE", "STEP",
           "is_procedure_question"]
