"""Append-only, named schema migrations for the releases tables (never edit one that shipped)."""

from __future__ import annotations

import sqlite_utils

from appliance.migrations import Migrations

migration = Migrations("_releases_migrations")


@migration
def m001_versions_history_schedules(db: sqlite_utils.Database) -> None:
    db["model_versions"].create(
        {
            "name": str,
            "version": str,
            "kind": str,
            "path": str,
            "manifest": str,
            "state": str,
            "validation": str,
            "reason": str,
            "created_at": str,
            "updated_at": str,
        },
        pk=("name", "version"),
        not_null={"name", "version", "state"},
        defaults={"kind": "local", "state": "staged", "validation": "{}", "reason": ""},
    )
    db["model_history"].create(
        {
            "id": int,
            "at": str,
            "event": str,
            "name": str,
            "version": str,
            "previous": str,
            "reason": str,
            "actor": str,
            "detail": str,
        },
        pk="id",
    )
    db["model_history"].create_index(["at"])
    db["model_schedules"].create(
        {
            "id": str,
            "name": str,
            "version": str,
            "run_at": str,
            "cron": str,
            "state": str,
            "created_at": str,
            "updated_at": str,
            "reason": str,
        },
        pk="id",
        defaults={"state": "pending", "cron": "", "reason": ""},
    )


@migration
def m002_activation_job(db: sqlite_utils.Database) -> None:
    # The activation running or last run on a version: its step, figures and outcome.
    db["model_versions"].add_column("activation", str, not_null_default="{}")


@migration
def m003_file_checksums(db: sqlite_utils.Database) -> None:
    # The sha256 of a model file the appliance serves without a build's manifest (the bundled or
    # configured GGUF), computed once per path, size and mtime: hashing it at every start is slow.
    # The next start registers that model as a version (as active when no version was activated),
    # so data folders from before keep serving what they served.
    db["file_checksums"].create(
        {"path": str, "size": int, "mtime_ns": int, "sha256": str, "computed_at": str},
        pk="path",
    )


def migrate(db: sqlite_utils.Database) -> list[str]:
    return migration.apply(db)
