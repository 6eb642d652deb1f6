"""Append-only, named schema migrations for the releases tables (never edit one that shipped)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlite_utils

MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]):
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_versions_history_schedules(db: sqlite_utils.Database) -> None:
    db["model_versions"].create(
        {
            "name": str, "version": str, "kind": str, "path": str, "manifest": str, "state": str,
            "validation": str, "reason": str, "created_at": str, "updated_at": str,
        },
        pk=("name", "version"),
        not_null={"name", "version", "state"},
        defaults={"kind": "local", "state": "staged", "validation": "{}", "reason": ""},
    )
    db["model_history"].create(
        {
            "id": int, "at": str, "event": str, "name": str, "version": str, "previous": str,
            "reason": str, "actor": str, "detail": str,
        },
        pk="id",
    )
    db["model_history"].create_index(["at"])
    db["model_schedules"].create(
        {
            "id": str, "name": str, "version": str, "run_at": str, "cron": str, "state": str,
            "created_at": str, "updated_at": str, "reason": str,
        },
        pk="id",
        defaults={"state": "pending", "cron": "", "reason": ""},
    )


def migrate(db: sqlite_utils.Database) -> None:
    """Apply every migration not yet recorded in `_releases_migrations`, in order."""
    table = db["_releases_migrations"]
    if not table.exists():
        table.create({"name": str, "applied_at": str}, pk="name")
    done = {row["name"] for row in table.rows}
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        with db.conn:
            fn(db)
            table.insert({"name": name, "applied_at": datetime.now(UTC).isoformat()})
