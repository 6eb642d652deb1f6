"""Knowledge-base documents as (heading, text) sections, read by the appliance's own parsers, so
the model trains on exactly the text the knowledge base ingests."""

from __future__ import annotations

from pathlib import Path

from appliance.knowledge.parsers import PARSERS, parse

FORMATS = tuple(sorted(PARSERS))

Section = tuple[str, str]  # (heading, body)


def read_sections(path: Path) -> list[Section]:
    """Sections of one document; the heading is "" where the format has none."""
    doc = parse(path.read_bytes(), path.name)
    return [(section.heading[-1] if section.heading else "",
             "\n".join(p.strip() for p in section.paragraphs if p.strip()))
            for section in doc.sections]
