"""Schema of metrics.db as append-only named migrations: never edit one, add the next."""

from __future__ import annotations

import sqlite_utils

from appliance.migrations import Migrations

migration = Migrations()


@migration
def m001_requests(db: sqlite_utils.Database) -> None:
    db["requests"].create(
        {
            "ts": float,  # when the response ended, Unix seconds
            "response_id": str,
            "route": str,
            "status": int,
            "error_type": str,
            "latency_s": float,
            "ttft_s": float,
            "tokens_per_s": float,
            "prompt_tokens": int,
            "completion_tokens": int,
            "cache_hit": int,
            "retrieval_s": float,
            "model_version": str,
            "backend": str,
            "stream": int,
        }
    )
    db["requests"].create_index(["ts"])
    db["requests"].create_index(["response_id"])


@migration
def m002_samples(db: sqlite_utils.Database) -> None:
    db["samples"].create(
        {
            "ts": float,
            "rss_bytes": int,
            "memory_used_percent": float,
            "memory_used_bytes": int,
            "cpu_percent": float,
            "process_cpu_percent": float,
            "queue_depth": int,
            "slots_busy": int,
            "slots_total": int,
            "gpu_utilization_percent": float,
            "gpu_memory_used_bytes": int,
            "gpu_memory_total_bytes": int,
        }
    )
    db["samples"].create_index(["ts"])


@migration
def m003_rollups(db: sqlite_utils.Database) -> None:
    # WITHOUT ROWID: the primary key is the table, which halves the size of a rollup row.
    db.execute("""
        CREATE TABLE rollups (
            resolution INTEGER NOT NULL,  -- bucket width in seconds: 60 or 3600
            metric TEXT NOT NULL,
            bucket INTEGER NOT NULL,      -- bucket start, Unix seconds
            count INTEGER NOT NULL,
            sum REAL NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            hist TEXT NOT NULL,           -- JSON {log-bucket index: count}; merges for percentiles
            PRIMARY KEY (resolution, metric, bucket)
        ) WITHOUT ROWID
    """)
    db["state"].create({"key": str, "value": float}, pk="key")


@migration
def m004_feedback(db: sqlite_utils.Database) -> None:
    db["feedback"].create(
        {
            "id": int,
            "ts": float,
            "response_id": str,
            "rating": str,
            "comment": str,
            "model_version": str,
        },
        pk="id",
    )
    db["feedback"].create_index(["ts"])
    db["feedback"].create_index(["response_id"])


@migration
def m005_golden_runs(db: sqlite_utils.Database) -> None:
    db["golden_runs"].create(
        {
            "id": int,
            "ts": float,
            "set_path": str,
            "questions": int,
            "passed": int,
            "score": float,
            "model_version": str,
            "duration_s": float,
            "detail": str,
        },
        pk="id",
    )
    db["golden_runs"].create_index(["ts"])


@migration
def m006_alerts(db: sqlite_utils.Database) -> None:
    db["alerts"].create(
        {
            "id": int,
            "rule": str,
            "metric": str,
            "severity": str,
            "state": str,
            "started_at": float,
            "resolved_at": float,
            "value": float,
            "threshold": float,
            "message": str,
        },
        pk="id",
    )
    db["alerts"].create_index(["state"])
    db["alert_events"].create(
        {"id": int, "alert_id": int, "ts": float, "kind": str, "detail": str},
        pk="id",
        foreign_keys=[("alert_id", "alerts", "id")],
    )
    db["alert_events"].create_index(["alert_id"])


@migration
def m007_users(db: sqlite_utils.Database) -> None:
    # Who got each answer (so only they can rate it) and who rated it; empty with auth off.
    db["requests"].add_column("user_id", int)
    db["feedback"].add_column("user_id", int)
    db["feedback"].add_column("username", str)


@migration
def m008_answer_modes(db: sqlite_utils.Database) -> None:
    # How each grounded answer was made: quoted or generated, and how much of it verification kept.
    db["requests"].add_column("answer_mode", str)
    db["requests"].add_column("support", float)
    db["requests"].add_column("removed", int)


def migrate(db: sqlite_utils.Database) -> list[str]:
    return migration.apply(db)
