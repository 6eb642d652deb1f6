"""Knowledge bases as the chunker before passages left them: its chunk_document (copied as it
shipped) and a database holding only the first schema, for the migration tests."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import sqlite_utils

from appliance.knowledge.analyzer import Analyzer
from appliance.knowledge.chunking import HEADING_SEPARATOR, Chunk
from appliance.knowledge.ingest import content_hash, iter_files
from appliance.knowledge.migrations import m001_documents_and_chunks
from appliance.knowledge.parsers import ParsedDocument, parse
from appliance.migrations import Migrations


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


def old_chunk_document(doc: ParsedDocument, *, size: int = 900, overlap: int = 150) -> list[Chunk]:
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


def old_lines(doc: ParsedDocument, size: int = 900) -> list[str]:
    """A document's text lines as the old chunker saw them (long paragraphs broken), in order."""
    return [line for section in doc.sections for p in section.paragraphs
            for piece in _split_long(p, size) for line in piece.split("\n") if line.strip()]


def old_style_base(data_dir: Path, root: Path, groups: list[str] | None = None) -> list[str]:
    """Write <data_dir>/knowledge/knowledge.db as the old chunker left it: the first schema only,
    900-character chunks sharing 150 characters, terms from the embedding input, no vector
    index yet (the first open embeds every chunk, as repair does). Returns the sources."""
    path = data_dir / "knowledge" / "knowledge.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    first = Migrations()
    first(m001_documents_and_chunks)
    first.apply(db)
    analyzer = Analyzer()
    groups = json.dumps(sorted(groups or ["all"]))
    next_id, sources = 1, []
    conn = db.conn
    conn.execute("BEGIN")
    for file, source in iter_files([root]):
        data = file.read_bytes()
        doc = parse(data, source)
        chunks = old_chunk_document(doc)
        document_id = conn.execute(
            "insert into documents (source, title, format, content_hash, groups, size, chunk_count, "
            "ingested_at) values (?, ?, ?, ?, ?, ?, ?, ?)",
            (source, doc.title, file.suffix.lstrip("."), content_hash(data), groups, len(data),
             len(chunks), time.time())).lastrowid
        conn.executemany(
            "insert into chunks (id, document_id, ordinal, text, heading, page, sheet, terms) "
            "values (?, ?, ?, ?, ?, ?, ?, ?)",
            [(next_id + i, document_id, c.ordinal, c.text, c.heading, c.page, c.sheet,
              " ".join(analyzer.terms(c.context(doc.title)))) for i, c in enumerate(chunks)])
        next_id += len(chunks)
        sources.append(source)
    conn.executemany("insert or replace into meta (key, value) values (?, ?)",
                     [("next_chunk_id", str(next_id)), ("analyzer", analyzer.version),
                      ("version", str(len(sources)))])
    conn.execute("COMMIT")
    conn.close()
    return sources
