"""Structure-aware chunking: paragraphs packed per section up to a size, with overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.knowledge.parsers import ParsedDocument

HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    heading: str
    page: int | None = None
    sheet: str | None = None

    def context(self, title: str) -> str:
        """What gets embedded and indexed: the chunk under its title and heading path."""
        where = HEADING_SEPARATOR.join(p for p in (title, self.heading) if p)
        return f"{where}\n{self.text}" if where else self.text


def _split_long(paragraph: str, size: int) -> list[str]:
    """Break a paragraph longer than `size` at sentence ends, then hard."""
    if len(paragraph) <= size:
        return [paragraph]
    pieces, current = [], ""
    for sentence in re.split(r"(?<=[.!?。다])\s+", paragraph):
        while len(sentence) > size:
            pieces.append(sentence[:size])
            sentence = sentence[size:]
        if current and len(current) + 1 + len(sentence) > size:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def chunk_document(doc: ParsedDocument, *, size: int = 900, overlap: int = 150) -> list[Chunk]:
    """Chunks never cross a section (heading, page or sheet); neighbours share `overlap` chars."""
    chunks: list[Chunk] = []
    for section in doc.sections:
        heading = HEADING_SEPARATOR.join(section.heading[1:] if section.heading[:1] == (doc.title,)
                                         else section.heading)
        parts = [piece for p in section.paragraphs for piece in _split_long(p, size)]
        current: list[str] = []
        length = 0
        for part in parts:
            if current and length + len(part) + 1 > size:
                chunks.append(Chunk(len(chunks), "\n".join(current), heading, section.page, section.sheet))
                # Carry the tail paragraphs (up to `overlap` chars) into the next chunk.
                carried: list[str] = []
                for previous in reversed(current):
                    if sum(len(c) for c in carried) + len(previous) > overlap:
                        break
                    carried.insert(0, previous)
                current, length = carried, sum(len(c) + 1 for c in carried)
            current.append(part)
            length += len(part) + 1
        if current:
            chunks.append(Chunk(len(chunks), "\n".join(current), heading, section.page, section.sheet))
    return chunks
