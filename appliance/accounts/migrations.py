"""Schema of accounts.db (append-only)."""

from __future__ import annotations

import sqlite_utils

from appliance.migrations import Migrations

migration = Migrations()


@migration
def m001_users(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL DEFAULT '',
            role TEXT NOT NULL,
            groups TEXT NOT NULL,
            password_hash TEXT,
            active INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            last_login_at REAL
        )""")


@migration
def m002_api_keys(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL
        )""")
    db.execute("CREATE INDEX api_keys_user ON api_keys(user_id)")


@migration
def m003_sessions(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            ip TEXT,
            user_agent TEXT
        )""")
    db.execute("CREATE INDEX sessions_user ON sessions(user_id)")
    db.execute("CREATE TABLE login_failures (id INTEGER PRIMARY KEY, key TEXT NOT NULL, ts REAL NOT NULL)")
    db.execute("CREATE INDEX login_failures_key ON login_failures(key, ts)")


@migration
def m004_audit(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            status INTEGER,
            ip TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )""")
    db.execute("CREATE INDEX audit_ts ON audit(ts)")


@migration
def m005_conversations(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""")
    db.execute("CREATE INDEX conversations_user ON conversations(user_id, updated_at)")
    db.execute("""
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            sources TEXT NOT NULL DEFAULT '[]',
            response_id TEXT,
            rating TEXT,
            created_at REAL NOT NULL
        )""")
    db.execute("CREATE INDEX messages_conversation ON messages(conversation_id, id)")
    db.execute("CREATE INDEX messages_response ON messages(response_id)")


@migration
def m006_message_answer_mode(db: sqlite_utils.Database) -> None:
    # How a saved answer was made and what was searched for it, so a reopened conversation shows
    # the same marks as the live one.
    db.execute("ALTER TABLE messages ADD COLUMN answer_mode TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN support REAL")
    db.execute("ALTER TABLE messages ADD COLUMN removed INTEGER")
    db.execute("ALTER TABLE messages ADD COLUMN retrieval_query TEXT")


def migrate(db: sqlite_utils.Database) -> list[str]:
    return migration.apply(db)
