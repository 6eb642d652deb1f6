"""SQLite (WAL) as the source of truth for documents and chunks; one transaction per document."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from appliance.database import Database
from appliance.errors import NotFound
from appliance.knowledge.chunking import Chunk
from appliance.knowledge.migrations import migrate
from appliance.knowledge.sections import OldChunk


@dataclass(frozen=True)
class DocumentRecord:
    id: int
    source: str
    title: str
    format: str
    content_hash: str
    groups: tuple[str, ...]
    size: int
    chunk_count: int
    ingested_at: float
    origin: str = ""  # the watched source it came from; "" for uploads and the CLI
    modified: float | None = None  # the file's mtime when a watched source read it
    ocr: tuple[dict, ...] = ()  # per OCR'd page: {"page", "confidence", "error"}

    def as_dict(self) -> dict:
        return {**self.__dict__, "groups": list(self.groups), "ocr": list(self.ocr)}

    @property
    def needs_ocr(self) -> bool:
        """Some page had no text and could not be read (OCR was missing or failed)."""
        return any(page.get("error") for page in self.ocr)


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    document_id: int
    source: str
    title: str
    heading: str
    page: int | None
    sheet: str | None
    text: str
    groups: tuple[str, ...]


RUN_COUNTS = ("added", "updated", "unchanged", "removed", "skipped", "failed")


def _document(row: dict) -> DocumentRecord:
    return DocumentRecord(**{**row, "groups": tuple(json.loads(row["groups"])),
                             "ocr": tuple(json.loads(row["ocr"] or "[]"))})


def _run(row: dict) -> dict:
    return {**row, "errors": json.loads(row["errors"]), "warnings": json.loads(row["warnings"])}


def visible(doc_groups: Iterable[str], caller_groups: Iterable[str] | None) -> bool:
    """None means unrestricted (the operator's CLI); otherwise the groups must intersect."""
    return caller_groups is None or bool(set(doc_groups) & set(caller_groups))


class DocumentStore:
    """Documents and chunks; safe to share between threads (see appliance.database)."""

    def __init__(self, path: Path):
        self.db = Database(path)
        self._lock = nullcontext()  # reads need no lock: each thread has its own connection
        migrate(self.db)

    def close(self) -> None:
        self.db.close()

    # -- reads ---------------------------------------------------------------------------------
    def version(self) -> int:
        with self._lock:
            return int(self.db["meta"].get("version")["value"])

    def meta(self, key: str) -> str | None:
        with self._lock:
            rows = list(self.db.query("select value from meta where key = ?", [key]))
            return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.set_metas({key: value})

    def set_metas(self, values: dict[str, str | None]) -> None:
        """Set several keys in one transaction; None deletes a key."""
        with self._transaction() as db:
            for key, value in values.items():
                if value is None:
                    db.execute("delete from meta where key = ?", [key])
                else:
                    db.execute("insert or replace into meta (key, value) values (?, ?)", [key, value])

    def documents(self) -> list[DocumentRecord]:
        with self._lock:
            return [_document(r) for r in self.db.query("select * from documents order by source")]

    def document(self, document_id: int) -> DocumentRecord:
        with self._lock:
            rows = list(self.db.query("select * from documents where id = ?", [document_id]))
        if not rows:
            raise NotFound(f"No document with id {document_id}; GET /api/documents lists them.")
        return _document(rows[0])

    def documents_from(self, origin: str) -> list[DocumentRecord]:
        """The documents a watched source ingested."""
        with self._lock:
            return [_document(r) for r in self.db.query(
                "select * from documents where origin = ? order by source", [origin])]

    def origin_counts(self) -> dict[str, int]:
        with self._lock:
            return {r["origin"]: r["n"] for r in self.db.query(
                "select origin, count(*) as n from documents where origin != '' group by origin")}

    def by_source(self, source: str) -> DocumentRecord | None:
        with self._lock:
            rows = list(self.db.query("select * from documents where source = ?", [source]))
        return _document(rows[0]) if rows else None

    def chunk_count(self) -> int:
        with self._lock:
            return self.db["chunks"].count

    def chunk_ids(self) -> set[int]:
        with self._lock:
            return {row[0] for row in self.db.execute("select id from chunks")}

    def chunk_texts(self, ids: Sequence[int]) -> dict[int, str]:
        """The embedding input of each chunk (title and heading path, then text)."""
        out: dict[int, str] = {}
        with self._lock:
            for batch in _batches(list(ids), 500):
                marks = ",".join("?" * len(batch))
                for row in self.db.query(
                    f"select c.id, c.text, c.heading, d.title from chunks c join documents d "
                    f"on d.id = c.document_id where c.id in ({marks})", batch
                ):
                    out[row["id"]] = Chunk(0, row["text"], row["heading"] or "").context(row["title"])
        return out

    def chunks(self, ids: Sequence[int], groups: Iterable[str] | None = None) -> dict[int, ChunkRecord]:
        """Chunk rows by id, leaving out those the caller's groups may not see."""
        groups = None if groups is None else set(groups)
        out: dict[int, ChunkRecord] = {}
        with self._lock:
            for batch in _batches(list(ids), 500):
                marks = ",".join("?" * len(batch))
                for row in self.db.query(
                    f"select c.id, c.document_id, c.text, c.heading, c.page, c.sheet, d.source, "
                    f"d.title, d.groups from chunks c join documents d on d.id = c.document_id "
                    f"where c.id in ({marks})", batch
                ):
                    doc_groups = tuple(json.loads(row["groups"]))
                    if visible(doc_groups, groups):
                        out[row["id"]] = ChunkRecord(
                            row["id"], row["document_id"], row["source"], row["title"],
                            row["heading"] or "", row["page"], row["sheet"], row["text"], doc_groups,
                        )
        return out

    def passage(self, chunk_id: int, groups: Iterable[str] | None = None) -> dict | None:
        """A chunk with its neighbours' text, as a cited source opens it; None if absent or hidden."""
        record = self.chunks([chunk_id], groups).get(chunk_id)
        if record is None:
            return None
        with self._lock:
            rows = list(self.db.query(
                "select n.id, n.ordinal - c.ordinal as offset, n.heading, n.page, n.sheet, n.text "
                "from chunks c join chunks n on n.document_id = c.document_id "
                "and n.ordinal in (c.ordinal - 1, c.ordinal + 1) where c.id = ?", [chunk_id]))
        around = {row.pop("offset"): {**row, "chunk_id": row.pop("id")} for row in rows}
        return {"chunk_id": record.id, "document_id": record.document_id, "document": record.source,
                "title": record.title, "heading": record.heading, "page": record.page,
                "sheet": record.sheet, "text": record.text,
                "previous": around.get(-1), "next": around.get(1)}

    def next_chunk(self, chunk_id: int, groups: Iterable[str] | None = None) -> ChunkRecord | None:
        """The chunk after `chunk_id` in its document (None at the end, or if hidden)."""
        with self._lock:
            rows = list(self.db.query(
                "select n.id from chunks c join chunks n on n.document_id = c.document_id "
                "and n.ordinal = c.ordinal + 1 where c.id = ?", [chunk_id]))
        if not rows:
            return None
        return self.chunks([rows[0]["id"]], groups).get(rows[0]["id"])

    def document_text(self, source: str) -> str:
        """A document's title, headings and text in order (what answers are checked against)."""
        with self._lock:
            rows = list(self.db.query(
                "select d.title, c.heading, c.text from chunks c join documents d on d.id = c.document_id "
                "where d.source = ? order by c.ordinal", [source]))
        if not rows:
            return ""
        parts = [rows[0]["title"]]
        for row in rows:
            parts += [row["heading"] or "", row["text"]]
        return "\n".join(p for p in parts if p)

    def iter_chunk_groups(self) -> Iterator[tuple[tuple[str, ...], list[int]]]:
        """(groups, chunk ids) per document."""
        with self._lock:
            docs = [(r["id"], tuple(json.loads(r["groups"])))
                    for r in self.db.query("select id, groups from documents")]
            chunks: dict[int, list[int]] = {}
            for chunk_id, document_id in self.db.execute("select id, document_id from chunks"):
                chunks.setdefault(document_id, []).append(chunk_id)
        for document_id, groups in docs:
            yield groups, chunks.get(document_id, [])

    def document_chunk_ids(self, document_id: int) -> list[int]:
        with self._lock:
            return [r[0] for r in self.db.execute(
                "select id from chunks where document_id = ?", [document_id])]

    def stale_documents(self, chunker: str) -> list[int]:
        """Ids of the documents whose chunks another chunker (or chunk setting) cut."""
        with self._lock:
            return [r[0] for r in self.db.execute(
                "select d.id from documents d left join document_sections s on s.document_id = d.id "
                "where s.chunker is null or s.chunker != ? order by d.id", [chunker])]

    def rechunk_input(self, document_id: int) -> tuple[str, str | None, str | None, list[int],
                                                        list[OldChunk]] | None:
        """What re-chunking a document starts from, read at one moment: (title, stored sections
        JSON or None, the chunker that cut its chunks or None, chunk ids, chunks in order); None
        if the document is gone."""
        with self._lock:
            rows = list(self.db.query("select title from documents where id = ?", [document_id]))
            if not rows:
                return None
            stored = list(self.db.query("select sections, chunker from document_sections "
                                        "where document_id = ?", [document_id]))
            chunks = list(self.db.query(
                "select id, text, heading, page, sheet from chunks where document_id = ? "
                "order by ordinal", [document_id]))
        return (rows[0]["title"], stored[0]["sections"] if stored else None,
                stored[0]["chunker"] if stored else None, [c["id"] for c in chunks],
                [OldChunk(c["text"], c["heading"] or "", c["page"], c["sheet"]) for c in chunks])

    def iter_terms(self) -> Iterator[tuple[int, str]]:
        with self._lock:
            rows = self.db.execute("select id, terms from chunks").fetchall()
        yield from rows

    # -- writes --------------------------------------------------------------------------------
    def replace_document(
        self, *, source: str, title: str, format: str, content_hash: str, groups: Sequence[str],
        size: int, chunks: Sequence[Chunk], terms: Sequence[str], origin: str = "",
        modified: float | None = None, ocr: Sequence[dict] = (), sections: str | None = None,
        chunker: str | None = None,
    ) -> tuple[int, list[int], list[int]]:
        """Insert or replace a document and its chunks in one transaction; `sections` (JSON) and
        `chunker` (what cut the chunks) let it be re-chunked later without the file.

        Returns (document id, new chunk ids, removed chunk ids).
        """
        # Plain SQL: sqlite-utils' write helpers commit on their own, which would split the
        # document's transaction and let a crash leave half of it behind.
        record = (source, title, format, content_hash, json.dumps(sorted(set(groups))), size,
                  len(chunks), time.time(), origin, modified, json.dumps(list(ocr)))
        with self._transaction() as db:
            old = self.by_source(source)
            removed: list[int] = []
            if old is None:
                document_id = db.execute(
                    "insert into documents (source, title, format, content_hash, groups, size, "
                    "chunk_count, ingested_at, origin, modified, ocr) "
                    "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", record).lastrowid
            else:
                document_id = old.id
                removed = [r[0] for r in db.execute(
                    "select id from chunks where document_id = ?", [old.id])]
                db.execute("delete from chunks where document_id = ?", [old.id])
                db.execute(
                    "update documents set source = ?, title = ?, format = ?, content_hash = ?, "
                    "groups = ?, size = ?, chunk_count = ?, ingested_at = ?, origin = ?, "
                    "modified = ?, ocr = ? where id = ?", (*record, old.id))
            ids = self._insert_chunks(db, document_id, chunks, terms)
            self._set_sections(db, document_id, sections, chunker)
            self._bump(db)
        return document_id, ids, removed

    def rechunk_document(self, document_id: int, replaces: Sequence[int], chunks: Sequence[Chunk],
                         terms: Sequence[str], sections: str,
                         chunker: str) -> tuple[list[int], list[int], list[str]] | None:
        """Swap a document's chunks for new ones in one transaction, if its chunks are still
        `replaces` (None if it was changed or deleted meanwhile: that write re-chunked it).

        Returns (new chunk ids, removed chunk ids, the document's groups).
        """
        with self._transaction() as db:
            row = db.execute("select groups from documents where id = ?", [document_id]).fetchone()
            current = [r[0] for r in db.execute(
                "select id from chunks where document_id = ? order by id", [document_id])]
            if row is None or current != sorted(replaces):
                return None
            db.execute("delete from chunks where document_id = ?", [document_id])
            ids = self._insert_chunks(db, document_id, chunks, terms)
            db.execute("update documents set chunk_count = ? where id = ?", [len(chunks), document_id])
            self._set_sections(db, document_id, sections, chunker)
            self._bump(db)
        return ids, current, json.loads(row[0])

    def _insert_chunks(self, db: sqlite3.Connection, document_id: int, chunks: Sequence[Chunk],
                       terms: Sequence[str]) -> list[int]:
        start = int(self._meta_in(db, "next_chunk_id") or 1)
        ids = list(range(start, start + len(chunks)))
        db.executemany(
            "insert into chunks (id, document_id, ordinal, text, heading, page, sheet, terms) "
            "values (?, ?, ?, ?, ?, ?, ?, ?)",
            [(i, document_id, c.ordinal, c.text, c.heading, c.page, c.sheet, t)
             for i, c, t in zip(ids, chunks, terms)])
        # Chunk ids are never reused, so a stale vector can never be taken for a new chunk.
        db.execute("insert or replace into meta (key, value) values ('next_chunk_id', ?)",
                   [str(start + len(chunks))])
        return ids

    @staticmethod
    def _set_sections(db: sqlite3.Connection, document_id: int, sections: str | None,
                      chunker: str | None) -> None:
        db.execute("delete from document_sections where document_id = ?", [document_id])
        if sections is not None:
            db.execute("insert into document_sections (document_id, chunker, sections) "
                       "values (?, ?, ?)", [document_id, chunker, sections])

    def set_terms(self, terms: dict[int, str]) -> None:
        with self._transaction() as db:
            db.executemany("update chunks set terms = ? where id = ?",
                           [(t, i) for i, t in terms.items()])

    def set_groups(self, document_id: int, groups: Sequence[str]) -> None:
        with self._transaction() as db:
            self.document(document_id)
            db.execute("update documents set groups = ? where id = ?",
                       [json.dumps(sorted(set(groups))), document_id])
            self._bump(db)

    def set_origin(self, document_id: int, origin: str, modified: float | None) -> None:
        """Record which watched source holds an unchanged document, and its file's mtime."""
        with self._transaction() as db:
            db.execute("update documents set origin = ?, modified = ? where id = ?",
                       [origin, modified, document_id])

    def delete_document(self, document_id: int) -> list[int]:
        """Delete a document and its chunks; returns the removed chunk ids."""
        with self._transaction() as db:
            self.document(document_id)
            removed = [r[0] for r in db.execute(
                "select id from chunks where document_id = ?", [document_id])]
            db.execute("delete from chunks where document_id = ?", [document_id])
            db.execute("delete from document_sections where document_id = ?", [document_id])
            db.execute("delete from documents where id = ?", [document_id])
            self._bump(db)
        return removed

    # -- watched-source runs (append-only history) ---------------------------------------------
    def start_source_run(self, source: str, trigger: str) -> dict:
        with self._transaction() as db:
            run_id = db.execute(
                "insert into source_runs (source, trigger, state, started_at) values (?, ?, ?, ?)",
                [source, trigger, "running", time.time()]).lastrowid
        return self.source_run(run_id)

    def finish_source_run(self, run_id: int, state: str, counts: dict[str, int],
                          errors: list[dict], warnings: list[dict], message: str = "") -> dict:
        fields = {**{k: int(counts.get(k, 0)) for k in RUN_COUNTS}, "state": state,
                  "finished_at": time.time(), "errors": json.dumps(errors, ensure_ascii=False),
                  "warnings": json.dumps(warnings, ensure_ascii=False), "message": message}
        with self._transaction() as db:
            db.execute(f"update source_runs set {', '.join(f'{k} = ?' for k in fields)} where id = ?",
                       [*fields.values(), run_id])
        return self.source_run(run_id)

    def source_run(self, run_id: int) -> dict:
        with self._lock:
            rows = list(self.db.query("select * from source_runs where id = ?", [run_id]))
        if not rows:
            raise NotFound(f"No watched-source run {run_id}.")
        return _run(rows[0])

    def source_runs(self, source: str | None = None, limit: int = 20) -> list[dict]:
        """Runs newest first, of one source or all."""
        where, args = ("where source = ?", [source]) if source else ("", [])
        with self._lock:
            return [_run(r) for r in self.db.query(
                f"select * from source_runs {where} order by id desc limit ?", [*args, limit])]

    def last_source_runs(self) -> dict[str, dict]:
        """Each source's latest run."""
        with self._lock:
            return {r["source"]: _run(r) for r in self.db.query(
                "select * from source_runs where id in (select max(id) from source_runs group by source)")}

    def abandon_source_runs(self, message: str) -> int:
        """Mark runs still 'running' (their process ended mid-run) as failed."""
        with self._transaction() as db:
            return db.execute("update source_runs set state = 'failed', finished_at = ?, message = ? "
                              "where state = 'running'", [time.time(), message]).rowcount

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE)."""
        with self.db.write() as conn:
            yield conn

    @staticmethod
    def _meta_in(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("select value from meta where key = ?", [key]).fetchone()
        return row[0] if row else None

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute("update meta set value = cast(value as integer) + 1 where key = 'version'")


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
