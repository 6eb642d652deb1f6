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
def m006_directory_users(db: sqlite_utils.Database) -> None:
    # directory_dn marks a user who signs in through the LDAP directory (no password stored);
    # directory_state is why the directory's last answer shut them out (NULL: it did not).
    db.execute("ALTER TABLE users ADD COLUMN directory_dn TEXT")
    db.execute("ALTER TABLE users ADD COLUMN directory_state TEXT")
    db.execute("ALTER TABLE users ADD COLUMN directory_checked_at REAL")


@migration
def m007_quotas_and_usage(db: sqlite_utils.Database) -> None:
    # Overrides of the role's limits: NULL inherits, 0 means no limit.
    for owner, table in (("user", "users"), ("key", "api_keys")):
        db.execute(f"""
            CREATE TABLE {owner}_quotas (
                {owner}_id INTEGER PRIMARY KEY REFERENCES {table}(id) ON DELETE CASCADE,
                requests_per_minute INTEGER,
                tokens_per_day INTEGER,
                updated_at REAL NOT NULL
            )""")
    # One row per day (in quotas.timezone), user and key; key_id 0 is the web UI's session.
    db.execute("""
        CREATE TABLE daily_usage (
            day TEXT NOT NULL,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key_id INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            refused INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, user_id, key_id)
        )""")
    db.execute("CREATE INDEX daily_usage_user ON daily_usage(user_id, day)")
    # The last minute's admissions of each rate-limited user or key ("user:3", "key:7").
    db.execute("""
        CREATE TABLE quota_windows (
            subject TEXT PRIMARY KEY,
            stamps TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""")


@migration
def m008_message_answer_mode(db: sqlite_utils.Database) -> None:
    # How a saved answer was made and what was searched for it, so a reopened conversation shows
    # the same marks as the live one.
    db.execute("ALTER TABLE messages ADD COLUMN answer_mode TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN support REAL")
    db.execute("ALTER TABLE messages ADD COLUMN removed INTEGER")
    db.execute("ALTER TABLE messages ADD COLUMN retrieval_query TEXT")


def migrate(db: sqlite_utils.Database) -> list[str]:
    return migration.apply(db)
