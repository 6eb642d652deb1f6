"""Extractive answers: the evidence itself, under a lead line naming the document and section.

No word is made up except the lead line's template: steps stay a numbered list, table rows keep
their header, and every quote ends with the citation of its source.
"""

from __future__ import annotations

import re

from appliance.answers.evidence import Evidence, Quote
from appliance.answers.spans import HEADER, ROW, SENTENCE, cells
from appliance.knowledge.analyzer import is_korean

SECTION_MARK = " › "
_HEADING_NUMBER = re.compile(r"^\s*#{1,6}\s*")
# What a lead line adds when the source is in the other language than the question.
_OTHER_LANGUAGE = {True: " (영문 원문)", False: " (Korean source)"}


def lead_line(evidence: Evidence, quote: Quote) -> str:
    source = evidence.sources[quote.source]
    section = quote.section or (source.heading.split(" > ")[-1] if source.heading else "")
    where = SECTION_MARK.join(p for p in dict.fromkeys((source.title or source.document, section)) if p)
    if source.page:
        where += f" (p. {source.page})"
    elif source.sheet and source.sheet not in where:
        where += f" ({source.sheet})"
    foreign = is_korean(source.title + " " + source.text[:400]) != evidence.korean
    return f"{where}{_OTHER_LANGUAGE[evidence.korean] if foreign else ''}:"


def _table(quote: Quote, cite: str) -> list[str]:
    header = next((s for s in quote.spans if s.kind == HEADER), None)
    rows = [s for s in quote.spans if s.kind == ROW]
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
        return [" ".join(s.text for s in quote.spans) + cite]
    lines = [s.text for s in quote.spans]
    lines[-1] += cite
    return lines


def compose(evidence: Evidence) -> str:
    """The extractive answer: one lead line per source section, then its quotes."""
    blocks: list[str] = []
    current_lead = None
    for quote in evidence.quotes:
        lead = lead_line(evidence, quote)
        lines = render_quote(quote, quote.source + 1)
        if lead != current_lead:
            blocks.append("\n".join([lead, *lines]))
            current_lead = lead
        else:
            blocks[-1] += "\n" + "\n".join(lines)
    return "\n\n".join(blocks)
