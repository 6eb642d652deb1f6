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
def m002_document_sections(db: sqlite_utils.Database) -> None:
    """Each document's parsed sections (JSON) and the chunker that cut its chunks, so a chunker
    change re-chunks from SQLite; a document without a row predates it (or was never re-chunked)."""
    db["document_sections"].create(
        {"document_id": int, "chunker": str, "sections": str},
        pk="document_id",
        foreign_keys=[("document_id", "documents", "id")],
    )


def migrate(db: sqlite_utils.Database) -> list[str]:
    return migration.apply(db)
