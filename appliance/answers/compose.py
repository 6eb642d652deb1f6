"""Extractive answers: the evidence itself, under a lead line naming the document and section.

No word is made up except the lead line's template: steps stay a numbered list, table rows keep
their header, and every quote ends with the citation of its source.
"""

from __future__ import annotations

import re
from dataclasses import replace

from appliance.answers.evidence import Evidence, Quote
from appliance.answers.quality import repeats
from appliance.answers.spans import HEADER, ROW, SENTENCE, cells, labeled_cells
from appliance.knowledge.analyzer import is_korean

NO_ANSWER = {
    "en": "I could not find anything about this in the knowledge base, so I cannot answer it "
          "reliably. Try rephrasing the question, or ask your ERP administrator to add a "
          "document that covers it.",
    "ko": "지식 베이스에서 이 질문과 관련된 내용을 찾지 못해 정확히 답변드릴 수 없습니다. 질문을 "
          "다르게 표현해 보시거나, ERP 관리자에게 관련 문서 등록을 요청해 주세요.",
}
SECTION_MARK = " › "
_HEADING_NUMBER = re.compile(r"^\s*#{1,6}\s*")
# What a lead line adds when the source is in the other language than the question.
_OTHER_LANGUAGE = {True: " (영문 원문)", False: " (Korean source)"}


def no_answer(question: str) -> str:
    """The honest reply when nothing relevant was found, in the question's language."""
    return NO_ANSWER["ko" if is_korean(question) else "en"]


def lead_line(evidence: Evidence, quote: Quote, *, with_title: bool = True) -> str:
    """"Document › Section:" in the question's language; without the title for a further
    section of a document already named."""
    source = evidence.sources[quote.source]
    section = quote.section or (source.heading.split(" > ")[-1] if source.heading else "")
    title = source.title or source.document
    if not with_title and section:
        return f"{section}:"
    where = SECTION_MARK.join(p for p in dict.fromkeys((title, section)) if p)
    if source.page:
        where += f" (p. {source.page})"
    elif source.sheet and source.sheet not in where:
        where += f" ({source.sheet})"
    foreign = is_korean(source.title + " " + source.text[:400]) != evidence.korean
    return f"{where}{_OTHER_LANGUAGE[evidence.korean] if foreign else ''}:"


def _labeled_table(rows: list, cite: str) -> list[str]:
    if len(rows) == 1:
        return [" · ".join(f"{k}: {v}" for k, v in labeled_cells(rows[0]) if v) + cite]
    names = list(dict.fromkeys(k for row in rows for k, _ in labeled_cells(row)))
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for i, row in enumerate(rows):
        values = dict(labeled_cells(row))
        cells_ = [values.get(name, "") for name in names]
        if i == len(rows) - 1:
            cells_[-1] += cite
        lines.append("| " + " | ".join(cells_) + " |")
    return lines


def _table(quote: Quote, cite: str) -> list[str]:
    header = next((s for s in quote.spans if s.kind == HEADER), None)
    rows = [s for s in quote.spans if s.kind == ROW]
    if rows and all(r.labeled for r in rows):
        return _labeled_table(rows, cite)
    if header is not None and len(rows) == 1:
        # One row reads best as "Header: value" pairs.
        names, values = cells(header), cells(rows[0])
        pairs = [f"{n}: {v}" if n else v for n, v in zip(names, values) if v]
        pairs += values[len(names):]
        return [" · ".join(pairs) + cite]
    lines = []
    if header is not None:
        names = cells(header)
        lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for i, row in enumerate(rows):
        values = cells(row)
        if i == len(rows) - 1:
            values[-1] += cite
        lines.append("| " + " | ".join(values) + " |")
    return lines


def render_quote(quote: Quote, number: int) -> list[str]:
    cite = f" [{number}]"
    kinds = {s.kind for s in quote.spans}
    if kinds & {ROW, HEADER}:
        intro = [s.text for s in quote.spans if s.kind == SENTENCE]
        return intro + _table(quote, cite)
    if kinds == {SENTENCE}:
        # Sentences of one paragraph read as one line; each line of the source keeps its own
        # (a table a PDF gave as lines: "사원 ~ 대리 100만원").
        lines: list[str] = []
        group = None
        for span in quote.spans:
            if lines and span.group == group:
                lines[-1] += " " + span.text
            else:
                lines.append(span.text)
            group = span.group
        lines[-1] += cite
        return lines
    lines = [s.text for s in quote.spans]
    lines[-1] += cite
    return lines


def compose(evidence: Evidence) -> str:
    """The extractive answer: one lead line per source section, then its quotes.

    A quote that repeats itself (table rows sharing long phrases) would read as a loop, so
    spans far from the one that answers are dropped until no word 4-gram occurs three times.
    """
    quotes = list(evidence.quotes)
    text = _compose(evidence, quotes)
    while repeats(text):
        if len(quotes) > 1:
            quotes.pop()
        else:
            trimmed = _trim(quotes[0])
            if trimmed is None:
                break
            quotes = [trimmed]
        text = _compose(evidence, quotes)
    return text


def _trim(quote: Quote) -> Quote | None:
    """The quote without its span farthest from the focus (never a table header)."""
    candidates = [i for i, s in enumerate(quote.spans) if i != quote.focus and s.kind != HEADER]
    if not candidates:
        return None
    drop = max(candidates, key=lambda i: abs(i - quote.focus))
    spans = quote.spans[:drop] + quote.spans[drop + 1:]
    return replace(quote, spans=spans, focus=quote.focus - (drop < quote.focus))


def _compose(evidence: Evidence, quotes: list[Quote]) -> str:
    blocks: list[str] = []
    current_lead = None
    named: set[int] = set()  # documents whose title a lead line already gave
    for quote in quotes:
        document = evidence.sources[quote.source].document_id
        lead = lead_line(evidence, quote, with_title=document not in named)
        named.add(document)
        lines = render_quote(quote, quote.source + 1)
        if lead != current_lead:
            blocks.append("\n".join([lead, *lines]))
            current_lead = lead
        else:
            blocks[-1] += "\n" + "\n".join(lines)
    return "\n\n".join(blocks)
