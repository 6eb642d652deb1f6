"""Ingestion: files to parsed sections, chunks, terms and vectors; one document at a time."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.knowledge import sections
from appliance.knowledge.chunking import HEADING_SEPARATOR, VERSION, Chunk, chunk_document
from appliance.knowledge.ocr import OcrPage, Tesseract
from appliance.knowledge.parsers import ParsedDocument, ParseError, parse, supported

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Ingested, with a caveat: pages OCR read with low confidence, or could not read.
    warnings: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "failed": [{"document": s, "reason": r} for s, r in self.failed],
                "warnings": [{"document": s, "message": m} for s, m in self.warnings],
                "chunks": self.chunks, "bytes": self.bytes, "seconds": round(self.seconds, 3)}

    def warnings_of(self, source: str) -> list[str]:
        return [m for s, m in self.warnings if s == source]


def iter_files(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """(file, source name) for each file, folders walked recursively; a folder's files are
    named relative to it, a file given directly by its name."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if not any(part.startswith(".") for part in file.relative_to(path).parts):
                    yield file, file.relative_to(path).as_posix()
        else:
            yield path, path.name


def index_terms(analyzer, title: str, chunk: Chunk, heading_weight: int) -> list[str]:
    """A chunk's keyword-index terms: its text's, then its title and heading path's, which
    count `heading_weight` times (a field weight: a question naming a section finds it)."""
    where = HEADING_SEPARATOR.join(p for p in (title, chunk.heading) if p)
    return analyzer.terms(chunk.text) + analyzer.terms(where) * heading_weight


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Ingestor:
    """Writes each document to SQLite in one transaction, then to the indexes.

    A crash between the two leaves SQLite ahead of the indexes; the knowledge base's repair
    on the next start re-embeds what is missing and drops what is orphaned.
    """

    def __init__(self, kb, *, chunk_tokens: int = 220, chunk_max_tokens: int = 380,
                 heading_weight: int = 2, ocr: Tesseract | None = None,
                 ocr_min_confidence: float = 70.0):
        self.kb = kb
        self.chunk_tokens = chunk_tokens
        self.chunk_max_tokens = chunk_max_tokens
        self.heading_weight = heading_weight
        self.ocr = ocr or Tesseract()
        self.ocr_min_confidence = ocr_min_confidence

    @property
    def chunker(self) -> str:
        """What cuts the chunks: the chunker's version and the settings that move boundaries."""
        return f"{VERSION}/{self.chunk_tokens}/{self.chunk_max_tokens}"

    def chunks(self, doc: ParsedDocument) -> tuple[list[Chunk], list[str], list[str]]:
        """A parsed document's chunks, their embedding inputs and their index terms."""
        chunks = chunk_document(doc, target=self.chunk_tokens, maximum=self.chunk_max_tokens)
        contexts = [c.context(doc.title) for c in chunks]
        terms = [" ".join(index_terms(self.kb.analyzer, doc.title, c, self.heading_weight))
                 for c in chunks]
        return chunks, contexts, terms

    def ingest_bytes(self, source: str, data: bytes, groups: Sequence[str], report: IngestReport,
                     *, origin: str = "", modified: float | None = None) -> None:
        """Ingest one document; a ParseError propagates for the caller to report.

        `origin` names the watched source it comes from, `modified` its file's mtime.
        """
        digest = content_hash(data)
        groups = sorted(set(groups))
        existing = self.kb.store.by_source(source)
        # A document whose scanned pages waited for OCR is read again once OCR is there.
        if existing is not None and existing.content_hash == digest and \
                not (existing.needs_ocr and self.ocr.available):
            if list(existing.groups) != groups:
                self.kb.regroup(existing.id, groups)
            if origin and (existing.origin, existing.modified) != (origin, modified):
                self.kb.store.set_origin(existing.id, origin, modified)
            report.unchanged.append(source)
            return
        doc = parse(data, source, self.ocr)
        chunks, contexts, terms = self.chunks(doc)
        vectors = self.kb.embed_for_write(contexts)
        _, new_ids, removed = self.kb.store.replace_document(
            source=source, title=doc.title, format=Path(source).suffix.lower().lstrip("."),
            content_hash=digest, groups=groups, size=len(data), chunks=chunks, terms=terms,
            origin=origin, modified=modified, ocr=[p.as_dict() for p in doc.ocr],
            sections=sections.to_json(doc), chunker=self.chunker,
        )
        self.kb.apply(new_ids, vectors, terms, removed, contexts, groups)
        (report.updated if existing is not None else report.added).append(source)
        report.warnings.extend((source, message) for message in self.ocr_warnings(doc.ocr))
        report.chunks += len(chunks)
        report.bytes += len(data)

    def ocr_warnings(self, pages: Sequence[OcrPage]) -> list[str]:
        """A line per page that OCR could not read, or read with low confidence."""
        out = []
        for page in pages:
            if page.error:
                out.append(f"page {page.page} {page.error}" if page.error.startswith("needs OCR")
                           else f"page {page.page}: {page.error}")
            elif page.confidence is not None and page.confidence < self.ocr_min_confidence:
                out.append(f"page {page.page}: low OCR confidence {page.confidence:.0f} (below "
                           f"{self.ocr_min_confidence:.0f}); check the text, or rescan the page at 300 dpi")
        return out

    def ingest_paths(self, paths: Iterable[Path], groups: Sequence[str], *,
                     progress: Callable[[str], None] | None = None) -> IngestReport:
        report = IngestReport()
        started = time.perf_counter()
        try:
            for file, source in iter_files(paths):
                if progress:
                    progress(source)
                if not supported(file.name):
                    report.failed.append((source, f"unsupported format {file.suffix or '(none)'}"))
                    continue
                try:
                    self.ingest_bytes(source, file.read_bytes(), groups, report)
                except (ParseError, OSError) as exc:
                    reason = getattr(exc, "message", None) or str(exc)
                    log.warning("skipped %s: %s", source, reason)
                    report.failed.append((source, reason))
        finally:
            self.kb.persist()
            report.seconds = time.perf_counter() - started
        return report
