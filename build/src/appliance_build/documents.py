"""Knowledge-base documents as sections, read by the appliance's own parsers, so the model trains
on exactly the text the knowledge base ingests."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from appliance.knowledge.chunking import HEADING_SEPARATOR
from appliance.knowledge.parsers import PARSERS, parse

FORMATS = tuple(sorted(PARSERS))


class Section(NamedTuple):
    heading: str  # the innermost heading, "" where the format has none
    body: str
    where: str  # "title > heading path", the prefix the knowledge base embeds a chunk under


def read_sections(path: Path) -> list[Section]:
    """Sections of one document, in order."""
    doc = parse(path.read_bytes(), path.name)
    sections = []
    for section in doc.sections:
        # Same heading path as appliance.knowledge.chunking.chunk_document gives a chunk.
        path_parts = section.heading[1:] if section.heading[:1] == (doc.title,) else section.heading
        where = HEADING_SEPARATOR.join(p for p in (doc.title, HEADING_SEPARATOR.join(path_parts)) if p)
        sections.append(Section(section.heading[-1] if section.heading else "",
                                "\n".join(p.strip() for p in section.paragraphs if p.strip()), where))
    return sections
