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

    def as_dict(self) -> dict:
        return {**self.__dict__, "groups": list(self.groups)}


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


def _document(row: dict) -> DocumentRecord:
    return DocumentRecord(**{**row, "groups": tuple(json.loads(row["groups"]))})


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

    def iter_terms(self) -> Iterator[tuple[int, str]]:
        with self._lock:
            rows = self.db.execute("select id, terms from chunks").fetchall()
        yield from rows

    # -- writes --------------------------------------------------------------------------------
    def replace_document(
        self, *, source: str, title: str, format: str, content_hash: str, groups: Sequence[str],
        size: int, chunks: Sequence[Chunk], terms: Sequence[str],
    ) -> tuple[int, list[int], list[int]]:
        """Insert or replace a document and its chunks in one transaction.

        Returns (document id, new chunk ids, removed chunk ids).
        """
        # Plain SQL: sqlite-utils' write helpers commit on their own, which would split the
        # document's transaction and let a crash leave half of it behind.
        record = (source, title, format, content_hash, json.dumps(sorted(set(groups))), size,
                  len(chunks), time.time())
        with self._transaction() as db:
            old = self.by_source(source)
            removed: list[int] = []
            if old is None:
                document_id = db.execute(
                    "insert into documents (source, title, format, content_hash, groups, size, "
                    "chunk_count, ingested_at) values (?, ?, ?, ?, ?, ?, ?, ?)", record).lastrowid
            else:
                document_id = old.id
                removed = [r[0] for r in db.execute(
                    "select id from chunks where document_id = ?", [old.id])]
                db.execute("delete from chunks where document_id = ?", [old.id])
                db.execute(
                    "update documents set source = ?, title = ?, format = ?, content_hash = ?, "
                    "groups = ?, size = ?, chunk_count = ?, ingested_at = ? where id = ?",
                    (*record, old.id))
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
            self._bump(db)
        return document_id, ids, removed

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

    def delete_document(self, document_id: int) -> list[int]:
        """Delete a document and its chunks; returns the removed chunk ids."""
        with self._transaction() as db:
            self.document(document_id)
            removed = [r[0] for r in db.execute(
                "select id from chunks where document_id = ?", [document_id])]
            db.execute("delete from chunks where document_id = ?", [document_id])
            db.execute("delete from documents where id = ?", [document_id])
            self._bump(db)
        return removed

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
