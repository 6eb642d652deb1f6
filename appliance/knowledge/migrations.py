"""Append-only named migrations for the knowledge database; never edit one that shipped."""

from __future__ import annotations

import sqlite_utils

from appliance.migrations import Migrations

migration = Migrations()


@migration
def m001_documents_and_chunks(db: sqlite_utils.Database) -> None:
    db["documents"].create(
        {
            "id": int,
            "source": str,
            "title": str,
            "format": str,
            "content_hash": str,
            "groups": str,
            "size": int,
            "chunk_count": int,
            "ingested_at": float,
        },
        pk="id",
        not_null={"source", "content_hash"},
    )
    db["documents"].create_index(["source"], unique=True)
    db["chunks"].create(
        {
            "id": int,
            "document_id": int,
            "ordinal": int,
            "text": str,
            "heading": str,
            "page": int,
            "sheet": str,
            "terms": str,
        },
        pk="id",
        foreign_keys=[("document_id", "documents", "id")],
    )
    db["chunks"].create_index(["document_id"])
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["meta"].insert({"key": "version", "value": "0"})


@migration
def m002_document_origin_and_ocr(db: sqlite_utils.Database) -> None:
    # origin: the watched source a document came from ("" for uploads and the CLI), so a source
    # run removes only its own documents; modified: the file's mtime then, to skip unchanged
    # files without reading them; ocr: per OCR'd page, its confidence or why it was not read.
    db["documents"].add_column("origin", str, not_null_default="")
    db["documents"].add_column("modified", float)
    db["documents"].add_column("ocr", str, not_null_default="[]")
    db["documents"].create_index(["origin"])


@migration
def m003_source_runs(db: sqlite_utils.Database) -> None:
    # One row per run of a watched source, appended when it starts and completed when it ends.
    db["source_runs"].create(
        {
            "id": int,
            "source": str,
            "trigger": str,
            "state": str,
            "started_at": float,
            "finished_at": float,
            "added": int,
            "updated": int,
            "unchanged": int,
            "removed": int,
            "skipped": int,
            "failed": int,
            "errors": str,
            "warnings": str,
            "message": str,
        },
        pk="id",
        not_null={"source", "state", "started_at"},
        defaults={"added": 0, "updated": 0, "unchanged": 0, "removed": 0, "skipped": 0,
                  "failed": 0, "errors": "[]", "warnings": "[]", "message": ""},
    )
    db["source_runs"].create_index(["source", "started_at"])


@migration
def m004_document_sections(db: sqlite_utils.Database) -> None:
    """Each document's parsed sections (JSON) and the chunker that cut its chunks, so a chunker
    change re-chunks from SQLite; a document without a row predates it (or was never re-chunked)."""
    db["document_sections"].create(
        {"document_id": int, "chunker": str, "sections": str},
        pk="document_id",
        foreign_keys=[("document_id", "documents", "id")],
    )


def migrate(db: sqlite_utils.Database) -> list[str]:
    return migration.apply(db)
