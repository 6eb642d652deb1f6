"""The sha256 of model files the appliance did not build, remembered by path, size and mtime."""

from __future__ import annotations

import os
from pathlib import Path

import sqlite_utils

from appliance import manifest as manifests
from appliance.releases.registry import now_iso


class ChecksumCache:
    """Hashing a multi-GiB GGUF takes seconds to minutes, so each file is hashed once; a changed
    size or mtime (the file was replaced or edited) hashes it again."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    def sha256(self, path: Path) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        key = str(path)
        rows = list(self.db["file_checksums"].rows_where("path = ?", [key]))
        if rows and (rows[0]["size"], rows[0]["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return rows[0]["sha256"]
        digest = manifests.sha256_file(path)
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            # Kept only if the file did not change while it was read.
            self.db["file_checksums"].upsert(
                {"path": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest,
                 "computed_at": now_iso()}, pk="path")
        return digest
