"""A document's parsed sections as SQLite keeps them, and rebuilt from the chunks of the
chunker before passages, so a knowledge base can be re-chunked without its original files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.knowledge.chunking import HEADING_SEPARATOR
from appliance.knowledge.parsers import ParsedDocument, Section

OLD_OVERLAP = 150  # characters the chunker before passages carried between chunks (its default)

_TABLE_ROW = re.compile(r"^\s*\|")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•·▪◦]|\(?\d{1,2}[.)]|[①-⑳])\s+")


def to_json(doc: ParsedDocument) -> str:
    return json.dumps([{"heading": list(s.heading), "page": s.page, "sheet": s.sheet,
                        "paragraphs": s.paragraphs} for s in doc.sections], ensure_ascii=False)


def from_json(title: str, text: str) -> ParsedDocument:
    return ParsedDocument(title, [Section(s["paragraphs"], tuple(s["heading"]), s["page"], s["sheet"])
                                  for s in json.loads(text)])


@dataclass(frozen=True)
class OldChunk:
    """A stored chunk, in document order."""

    text: str
    heading: str
    page: int | None
    sheet: str | None


def from_chunks(title: str, chunks: Iterable[OldChunk], overlap: int = OLD_OVERLAP) -> ParsedDocument:
    """The sections a document's old chunks were cut from.

    The old chunker never let a chunk cross a section, page or sheet, and started each chunk of
    a section with the last whole paragraphs (up to `overlap` characters) of the one before:
    consecutive chunks at one place are joined with those lines dropped. Paragraph boundaries
    inside a chunk were newlines, as were a table's rows, so table rows, list items and fenced
    code join back into one paragraph each; other lines become paragraphs of their own.
    """
    places: list[tuple[tuple, list[str]]] = []
    previous: list[str] = []
    for chunk in chunks:
        place = (chunk.heading, chunk.page, chunk.sheet)
        lines = chunk.text.split("\n")
        if places and places[-1][0] == place:
            places[-1][1].extend(lines[_carried(previous, lines, overlap):])
        else:
            places.append((place, list(lines)))
        previous = lines
    sections = []
    for (heading, page, sheet), lines in places:
        # The title leads the path so the chunker takes it off again, as it does after parsing.
        path = (title, *heading.split(HEADING_SEPARATOR)) if heading else (title,)
        sections.append(Section(_paragraphs(lines), path, page, sheet))
    return ParsedDocument(title, sections)


def _carried(previous: list[str], lines: list[str], overlap: int) -> int:
    """How many leading `lines` repeat the tail of the chunk before (0 if none)."""
    for count in range(min(len(previous), len(lines) - 1), 0, -1):
        head = lines[:count]
        if len("\n".join(head)) <= overlap + count and previous[-count:] == head:
            return count
    return 0


def _paragraphs(lines: list[str]) -> list[str]:
    out: list[str] = []
    kind_before, fenced = None, False
    for line in lines:
        if not line.strip():
            kind_before = None
            continue
        if fenced or line.lstrip().startswith("```"):
            kind = "code"
            if line.lstrip().startswith("```"):
                fenced = not fenced
        elif _TABLE_ROW.match(line):
            kind = "table"
        elif _LIST_ITEM.match(line):
            kind = "list"
        else:
            kind = None
        if out and kind is not None and kind == kind_before:
            out[-1] += "\n" + line
        else:
            out.append(line)
        kind_before = kind
    return out
