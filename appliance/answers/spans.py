"""A passage cut into the units an answer can quote: sentences, list items, numbered steps, table
rows (each knowing its header row) and the headings between them, with character offsets."""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADING, SENTENCE, ITEM, STEP, ROW, HEADER = "heading", "sentence", "item", "step", "row", "header"

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*•·▪◦]\s+\S")
_STEP = re.compile(r"^\s*(?:\(?(\d{1,2})[.)]|([①-⑳])|([가-하])[.)]|Step\s+(\d{1,2})[:.])\s*\S", re.I)
# A spreadsheet or CSV row as the parsers write it: "Header: value; Header: value".
_LABELED = re.compile(r"^[^:;|\n]{1,60}: [^;\n]*(?:; [^:;|\n]{1,60}: [^;\n]*)+$")
_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
# Sentence ends: a full stop before a space and a capital, Hangul or quote; ! ? and 。 before a space.
_LABEL_ONLY = re.compile(r"^[*_]*[A-Z][.:]$")  # "Q.", "**A." opening a FAQ line
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z가-힣*])|(?<=[!?。])\s+")


@dataclass(frozen=True)
class Span:
    kind: str
    start: int  # character offsets into the passage text
    end: int
    text: str
    group: int = -1  # spans of one list, one table or one paragraph share a group number
    header: int = -1  # for a table row: the index of its header span
    number: str = ""  # a step's number as written ("3", "③", "나")
    section: str = ""  # the nearest heading above the span inside the passage, if any
    labeled: bool = False  # a row written as "Header: value; Header: value"


def _table_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_table_line(line: str) -> bool:
    stripped = line.strip()
    if stripped.startswith("|") and stripped.count("|") >= 2:
        return True
    return stripped.count(" | ") >= 1 and not stripped.endswith((".", "다"))


def _step_number(line: str) -> str:
    match = _STEP.match(line)
    if not match:
        return ""
    return next(g for g in match.groups() if g)


def split_spans(text: str) -> list[Span]:
    """Every quotable unit of `text` in order; empty lines and table rules are left out."""
    spans: list[Span] = []
    section = ""
    group = 0
    lines = text.split("\n")
    offset = 0
    previous_kind = ""
    table_header = -1
    for index, line in enumerate(lines):
        start, end = offset, offset + len(line)
        offset = end + 1
        stripped = line.strip()
        if not stripped:
            previous_kind = ""
            continue
        lead = len(line) - len(line.lstrip())
        start, end = start + lead, start + lead + len(stripped)
        heading = _MD_HEADING.match(line)
        if heading:
            section = heading.group(2).strip()
            spans.append(Span(HEADING, start, end, stripped, section=section))
            previous_kind = HEADING
            continue
        if _RULE.match(stripped):
            # A Markdown rule under a row makes that row the table's header.
            if spans and spans[-1].kind == ROW and spans[-1].header == -1:
                last = spans[-1]
                spans[-1] = Span(HEADER, last.start, last.end, last.text, last.group, section=section)
                table_header = len(spans) - 1
            continue
        if _LABELED.match(stripped):
            if previous_kind != "labeled":
                group += 1
            spans.append(Span(ROW, start, end, stripped, group, section=section, labeled=True))
            previous_kind = "labeled"
            continue
        if _is_table_line(stripped):
            if previous_kind not in (ROW, HEADER):
                group += 1
                table_header = -1
                following = lines[index + 1].strip() if index + 1 < len(lines) else ""
                # A table without a Markdown rule (DOCX, HTML): its first row is the header.
                if not _RULE.match(following) and not stripped.startswith("|"):
                    spans.append(Span(HEADER, start, end, stripped, group, section=section))
                    table_header = len(spans) - 1
                    previous_kind = HEADER
                    continue
            spans.append(Span(ROW, start, end, stripped, group, table_header, section=section))
            previous_kind = ROW
            continue
        number = _step_number(stripped)
        if number or _BULLET.match(stripped):
            kind = STEP if number else ITEM
            if previous_kind not in (STEP, ITEM):
                group += 1
            spans.append(Span(kind, start, end, stripped, group, number=number, section=section))
            previous_kind = kind
            continue
        previous_kind = SENTENCE
        group += 1  # the sentences of one paragraph share a group
        for at, end in _sentences(stripped):
            piece = stripped[at:end]
            if piece.strip():
                spans.append(Span(SENTENCE, start + at, start + end, piece.strip(),
                                  group, section=section))
    return spans


def _sentences(text: str) -> list[tuple[int, int]]:
    """Where a paragraph's sentences start and end; a label such as the "Q." of a FAQ line ("**Q. 사고 직후 …**")
    stays with the sentence it opens."""
    bounds: list[list[int]] = []
    position = 0
    for separator in _SENTENCE_END.finditer(text):
        bounds.append([position, separator.start()])
        position = separator.end()
    bounds.append([position, len(text)])
    merged: list[list[int]] = []
    for bound in bounds:
        if merged and _LABEL_ONLY.match(text[merged[-1][0]:merged[-1][1]]):
            merged[-1][1] = bound[1]
        else:
            merged.append(bound)
    return [(a, b) for a, b in merged if b > a]


def cells(span: Span) -> list[str]:
    """A table row's (or header's) cells; a labeled row's values."""
    if span.labeled:
        return [value for _, value in labeled_cells(span)]
    return _table_cells(span.text)


def labeled_cells(span: Span) -> list[tuple[str, str]]:
    """(header, value) pairs of a labeled row."""
    pairs = []
    for part in span.text.split("; "):
        label, _, value = part.partition(": ")
        pairs.append((label.strip(), value.strip()))
    return pairs
