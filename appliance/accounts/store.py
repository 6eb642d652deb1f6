"""accounts.db: users, API keys, login sessions, login throttling and the audit log."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.accounts.directory import Directory, DirectoryRefusal, DirectoryUser
from appliance.accounts.migrations import migrate
from appliance.accounts.passwords import PasswordPolicy
from appliance.database import Database
from appliance.errors import (
    AuthenticationRequired,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TooManyLogins,
)
from appliance.settings import AuthSettings

ROLES = ("employee", "admin")
KEY_PREFIX = "erp-"
# The identity every request takes while auth is off. Its row is stored disabled, without a
# password or keys, so it can never sign in once auth is on; only its conversations need the row.
LOCAL_USER = "developer"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_GROUP = re.compile(r"^[\w.-]{1,64}$")
# Writes of "last seen" are skipped when the stored value is this recent: one write per minute,
# not one per request.
_TOUCH_SECONDS = 60.0
# A shared office address (NAT) sends many users' logins: it gets more failures than one name.
_ADDRESS_FACTOR = 4
WRONG_LOGIN = "Wrong user name or password."
DISABLED_LOGIN = "This account is disabled; ask an admin."
NOT_MAPPED_LOGIN = ("Your directory account is in none of the groups that may use this appliance; "
                    "ask an admin.")


def _digest(secret: str) -> str:
    # API keys and session tokens are 256-bit random: a fast hash is enough (unlike passwords).
    return hashlib.sha256(secret.encode()).hexdigest()


def clean_groups(groups: Iterable[str]) -> tuple[str, ...]:
    cleaned = sorted({g.strip() for g in groups if g and g.strip()})
    for group in cleaned:
        if not _GROUP.match(group):
            raise InvalidRequest(f"Group name {group!r} is not allowed: use up to 64 letters, digits, "
                                 "'_', '-' or '.'.", param="groups")
    return tuple(cleaned)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    groups: tuple[str, ...]
    active: bool
    created_at: float
    last_login_at: float | None
    has_password: bool = False
    directory_dn: str | None = None  # set for users who sign in through the directory
    directory_state: str | None = None  # not_found, disabled or not_mapped: shut out by it

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_local(self) -> bool:
        return self.username == LOCAL_USER

    @property
    def is_directory(self) -> bool:
        return self.directory_dn is not None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "role": self.role, "groups": list(self.groups), "active": self.active,
                "has_password": self.has_password, "created_at": self.created_at,
                "last_login_at": self.last_login_at,
                "source": "directory" if self.is_directory else "local",
                "directory_dn": self.directory_dn, "directory_state": self.directory_state}


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_id: int
    username: str
    name: str
    prefix: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "user_id": self.user_id, "username": self.username, "name": self.name,
                "prefix": self.prefix, "created_at": self.created_at,
                "last_used_at": self.last_used_at, "revoked_at": self.revoked_at,
                "active": self.revoked_at is None}


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_at: float


def _user(row: sqlite3.Row | dict) -> User:
    return User(id=row["id"], username=row["username"], display_name=row["display_name"],
                role=row["role"], groups=tuple(json.loads(row["groups"])), active=bool(row["active"]),
                created_at=row["created_at"], last_login_at=row["last_login_at"],
                has_password=row["password_hash"] is not None, directory_dn=row["directory_dn"],
                directory_state=row["directory_state"])


def _key(row: dict) -> ApiKey:
    return ApiKey(id=row["id"], user_id=row["user_id"], username=row["username"], name=row["name"],
                  prefix=row["prefix"], created_at=row["created_at"], last_used_at=row["last_used_at"],
                  revoked_at=row["revoked_at"])


class Accounts:
    """All reads and writes of accounts.db; safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str | Path, settings: AuthSettings | None = None):
        self.path = Path(path)
        self.settings = settings or AuthSettings()
        self.passwords = PasswordPolicy(self.settings.min_password_length)
        # First: settings that cannot work stop the start before anything is opened.
        self.directory = Directory.from_settings(self.settings.directory)
        for mapping in self.settings.directory.groups:
            try:
                clean_groups(mapping.access_groups)
            except InvalidRequest as exc:
                raise ConfigError(f"auth.directory.groups ({mapping.group}): {exc.message}") from None
        self.db = Database(self.path, row_factory=sqlite3.Row)
        migrate(self.db)

    @classmethod
    def open(cls, settings) -> Accounts:
        """The data dir's accounts.db, from the whole settings tree."""
        return cls(settings.resolved_data_dir() / "accounts.db", settings.auth)

    def close(self) -> None:
        self.db.close()

    def rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        return [dict(r) for r in self.db.execute(sql, list(params)).fetchall()]

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE; see appliance.database)."""
        with self.db.write() as conn:
            yield conn

    # -- users ---------------------------------------------------------------------------------

    def users(self) -> list[User]:
        return [_user(r) for r in self.rows("SELECT * FROM users ORDER BY username")]

    def user(self, user_id: int) -> User:
        rows = self.rows("SELECT * FROM users WHERE id = ?", [user_id])
        if not rows:
            raise NotFound(f"No user with id {user_id}; `appliance users list` shows them.")
        return _user(rows[0])

    def by_name(self, username: str) -> User | None:
        rows = self.rows("SELECT * FROM users WHERE username = ?", [username])
        return _user(rows[0]) if rows else None

    def find(self, name_or_id: str | int) -> User:
        """A user by name, or by id when given digits (what the CLI accepts)."""
        user = self.by_name(str(name_or_id))
        if user is None and str(name_or_id).isdigit():
            return self.user(int(name_or_id))
        if user is None:
            raise NotFound(f"No user named {name_or_id!r}; `appliance users list` shows them.")
        return user

    def admin_count(self) -> int:
        return self.rows("SELECT count(*) AS n FROM users WHERE role = 'admin' AND active = 1 "
                         "AND username != ?", [LOCAL_USER])[0]["n"]

    def create_user(self, username: str, password: str | None, *, role: str = "employee",
                    groups: Iterable[str] = (), display_name: str = "") -> User:
        """A new user; without a password it can only use API keys."""
        if not _NAME.match(username or ""):
            raise InvalidRequest("User names are 1-64 letters, digits, '.', '_', '@' or '-', starting "
                                 "with a letter or digit.", param="username")
        if username.lower() == LOCAL_USER:
            raise InvalidRequest(f"{LOCAL_USER!r} is reserved for local development with auth off; "
                                 "pick another name.", param="username")
        self._check_role(role)
        return self._insert_user(username, password, role, clean_groups(groups), display_name)

    def _insert_user(self, username: str, password: str | None, role: str, groups: tuple[str, ...],
                     display_name: str, active: bool = True) -> User:
        hashed = self.passwords.hash(password) if password is not None else None
        now = time.time()
        try:
            with self.write() as db:
                cursor = db.execute(
                    "INSERT INTO users (username, display_name, role, groups, password_hash, active, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [username, display_name.strip()[:200], role, json.dumps(list(groups)), hashed,
                     int(active), now, now])
        except sqlite3.IntegrityError:
            raise Conflict(f"A user named {username!r} exists already; pick another name or "
                           "update that user.", param="username") from None
        return self.user(cursor.lastrowid)

    def local_user(self, groups: Iterable[str] = ()) -> User:
        """The local developer every request acts as while auth is off (an admin, as returned)."""
        user = self.by_name(LOCAL_USER)
        if user is None:
            try:
                user = self._insert_user(LOCAL_USER, None, "admin", clean_groups(groups),
                                         "Local developer (auth off)", active=False)
            except Conflict:  # another process created it meanwhile
                user = self.by_name(LOCAL_USER)
        return replace(user, active=True, role="admin")

    def update_user(self, user_id: int, *, role: str | None = None, groups: Iterable[str] | None = None,
                    display_name: str | None = None, active: bool | None = None) -> User:
        user = self.user(user_id)
        if user.is_local and (active or role not in (None, "admin")):
            raise InvalidRequest(f"{LOCAL_USER!r} is the identity of local development with auth off; "
                                 "it cannot sign in. Create a user of your own instead.")
        if user.is_directory and ((role is not None and role != user.role)
                                  or (groups is not None and clean_groups(groups) != user.groups)):
            raise InvalidRequest(f"The role and groups of {user.username} come from the directory at "
                                 "every sign-in (auth.directory.groups); change their groups in the "
                                 "directory, or the mapping.")
        changes: dict[str, Any] = {}
        if role is not None:
            self._check_role(role)
            changes["role"] = role
        if groups is not None:
            changes["groups"] = json.dumps(list(clean_groups(groups)))
        if display_name is not None:
            changes["display_name"] = display_name.strip()[:200]
        if active is not None:
            changes["active"] = int(active)
        loses_admin = user.is_admin and user.active and (
            (role is not None and role != "admin") or active is False)
        with self.write() as db:
            if loses_admin and self.admin_count() <= 1:
                raise Conflict(f"{user.username} is the last active admin; make another user admin first.")
            if changes:
                changes["updated_at"] = time.time()
                sets = ", ".join(f"{k} = ?" for k in changes)
                db.execute(f"UPDATE users SET {sets} WHERE id = ?", [*changes.values(), user_id])
            if active is False or (role is not None and role != user.role):
                db.execute("DELETE FROM sessions WHERE user_id = ?", [user_id])
        return self.user(user_id)

    def check_password_change(self, user_id: int, password: str) -> User:
        """The user, if `password` may become their password (policy, an account of the
        appliance's own); raises otherwise."""
        user = self._own_password_user(user_id)
        self.passwords.check(password)
        return user

    def _own_password_user(self, user_id: int) -> User:
        user = self.user(user_id)
        if user.is_local:
            raise InvalidRequest(f"{LOCAL_USER!r} cannot have a password; create a user of your own.")
        if user.is_directory:
            raise InvalidRequest(f"{user.username} signs in with their directory password, which "
                                 "the appliance never stores; change it in the directory.")
        return user

    def set_password(self, user_id: int, password: str) -> None:
        """Change a password; every session of that user ends."""
        user = self.check_password_change(user_id, password)
        hashed = self.passwords.hash(password)
        with self.write() as db:
            db.execute("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                       [hashed, time.time(), user_id])
            db.execute("DELETE FROM sessions WHERE user_id = ?", [user_id])
            db.execute("DELETE FROM login_failures WHERE key = ?", [f"user:{user.username.lower()}"])

    def change_password(self, user_id: int, current: str, new: str) -> None:
        """A user's own change: the current password must be right."""
        self._own_password_user(user_id)
        rows = self.rows("SELECT password_hash FROM users WHERE id = ?", [user_id])
        if not rows or not self.passwords.verify(rows[0]["password_hash"], current):
            raise PermissionDenied("The current password is wrong.")
        self.set_password(user_id, new)

    def delete_user(self, user_id: int) -> User:
        """Delete a user with their keys, sessions and conversations."""
        user = self.user(user_id)
        with self.write() as db:
            if user.is_admin and user.active and self.admin_count() <= 1:
                raise Conflict(f"{user.username} is the last active admin; make another user admin first.")
            db.execute("DELETE FROM users WHERE id = ?", [user_id])
        return user

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLES:
            raise InvalidRequest(f"Unknown role {role!r}; use one of: {', '.join(ROLES)}.", param="role")

    # -- logins and sessions -------------------------------------------------------------------

    def login(self, username: str, password: str, *, ip: str = "", user_agent: str = "") -> tuple[str, Session]:
        """Check a password (throttled per name and per address); return a new session's token."""
        now = time.time()
        keys = [f"user:{username.lower()}", f"ip:{ip}"]
        self._check_throttle(keys, now)
        rows = self.rows("SELECT * FROM users WHERE username = ?", [username])
        row = rows[0] if rows else None
        rehashed = None
        # A local account keeps its name: the directory is asked only about other names.
        if self.directory is not None and (row is None or row["directory_dn"] is not None):
            try:
                user_id = self._directory_sign_in(username, password)
            except AuthenticationRequired:
                self._login_failed(keys, now)
                raise
        else:
            ok = self.passwords.verify(row["password_hash"] if row else None, password)
            if not ok or not row["active"]:
                self._login_failed(keys, now)
                raise AuthenticationRequired(WRONG_LOGIN if not ok else DISABLED_LOGIN)
            user_id = row["id"]
            # Outside the lock: hashing takes tens of milliseconds. Parameters changed since the
            # hash was made (a library upgrade) are applied now, while the password is at hand.
            if self.passwords.needs_rehash(row["password_hash"]):
                rehashed = self.passwords.hasher.hash(password)
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        with self.write() as db:
            db.execute("DELETE FROM login_failures WHERE key = ?", [keys[0]])
            db.execute("DELETE FROM sessions WHERE last_seen_at < ? OR created_at < ?",
                       [now - self.lifetime, now - self.max_lifetime])
            db.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, ip, "
                "user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_digest(token), user_id, csrf, now, now, ip, user_agent[:300]])
            db.execute("UPDATE users SET last_login_at = ? WHERE id = ?", [now, user_id])
            if rehashed:
                db.execute("UPDATE users SET password_hash = ? WHERE id = ?", [rehashed, user_id])
        return token, Session(self.user(user_id), csrf, self._expires(now, now))

    def _login_failed(self, keys: list[str], now: float) -> None:
        with self.write() as db:
            db.execute("INSERT INTO login_failures (key, ts) VALUES (?, ?), (?, ?)",
                       [keys[0], now, keys[1], now])
            db.execute("DELETE FROM login_failures WHERE ts < ?",
                       [now - self.settings.login_window_seconds])

    # -- directory users -----------------------------------------------------------------------

    def _directory_sign_in(self, username: str, password: str) -> int:
        """Check the password with the directory and bring the user's row in line with what it
        says now (role, groups, name); the user's id. Blocking: network and SQLite."""
        if not _NAME.match(username or "") or username.lower() == LOCAL_USER:
            raise AuthenticationRequired(WRONG_LOGIN)  # not a name the appliance can hold
        try:
            found = self.directory.authenticate(username, password)
        except DirectoryRefusal as refusal:
            if refusal.reason in ("not_found", "disabled"):
                self._directory_shut_out(username, refusal.reason)
            raise
        if not found.allowed:
            self._directory_shut_out(username, "not_mapped")
            raise AuthenticationRequired(NOT_MAPPED_LOGIN)
        user = self._sync_directory_user(username, found)
        if not user.active:
            raise AuthenticationRequired(DISABLED_LOGIN)
        return user.id

    def _sync_directory_user(self, username: str, found: DirectoryUser) -> User:
        """Create or update a directory user's row from the directory's answer; sessions end when
        the role changes. Changes are audited as the directory's doing."""
        groups = list(clean_groups(found.access_groups))
        now = time.time()
        with self.write() as db:
            row = db.execute("SELECT * FROM users WHERE username = ?", [username]).fetchone()
            if row is not None and row["directory_dn"] is None:
                raise AuthenticationRequired(WRONG_LOGIN)  # a local account took the name meanwhile
            if row is None:
                user_id = db.execute(
                    "INSERT INTO users (username, display_name, role, groups, password_hash, active, "
                    "created_at, updated_at, directory_dn, directory_checked_at) "
                    "VALUES (?, ?, ?, ?, NULL, 1, ?, ?, ?, ?)",
                    [username, found.display_name.strip()[:200], found.role, json.dumps(groups),
                     now, now, found.dn, now]).lastrowid
                changed = {"created": True, "role": found.role, "groups": groups}
            else:
                user_id = row["id"]
                changed = {k: v for k, v in (("role", found.role), ("groups", groups))
                           if v != (json.loads(row[k]) if k == "groups" else row[k])}
                if row["directory_state"] is not None:
                    changed["restored"] = True
                if "role" in changed:
                    db.execute("DELETE FROM sessions WHERE user_id = ?", [user_id])
                db.execute(
                    "UPDATE users SET display_name = ?, role = ?, groups = ?, directory_dn = ?, "
                    "directory_state = NULL, directory_checked_at = ?, updated_at = ? WHERE id = ?",
                    [found.display_name.strip()[:200], found.role, json.dumps(groups), found.dn, now,
                     now, user_id])
            if changed:
                db.execute("INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                           [now, "directory", "directory_user_synced", username,
                            json.dumps({**changed, "dn": found.dn})])
        return self.user(user_id)

    def _directory_shut_out(self, username: str, reason: str) -> bool:
        """Mark a directory user as shut out by the directory (`reason`); their sessions end and
        their keys stop working. False when no such directory user is stored."""
        now = time.time()
        with self.write() as db:
            row = db.execute("SELECT id, directory_state FROM users WHERE username = ? AND "
                             "directory_dn IS NOT NULL", [username]).fetchone()
            if row is None:
                return False
            db.execute("UPDATE users SET directory_state = ?, directory_checked_at = ? WHERE id = ?",
                       [reason, now, row["id"]])
            ended = db.execute("DELETE FROM sessions WHERE user_id = ?", [row["id"]]).rowcount
            if row["directory_state"] != reason or ended:
                db.execute("INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                           [now, "directory", "directory_access_ended", username,
                            json.dumps({"reason": reason, "sessions_ended": ended})])
        return True

    def check_directory_users(self) -> dict[str, int]:
        """Ask the directory (through its service account) about every directory user who could
        act now, with a session or a live API key: those removed, disabled or outside every
        mapped group are shut out, the others get their current role and groups. If the directory
        cannot answer, DirectoryUnavailable is raised and nothing changes on a guess."""
        counts = {"checked": 0, "shut_out": 0}
        if self.directory is None or not self.directory.can_check:
            return counts
        names = [r["username"] for r in self.rows(
            "SELECT username FROM users u WHERE directory_dn IS NOT NULL AND directory_state IS NULL "
            "AND active = 1 AND (EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id) OR "
            "EXISTS (SELECT 1 FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL)) "
            "ORDER BY username")]
        for name, found in self.directory.lookup_many(names).items():
            counts["checked"] += 1
            if found is None or not found.allowed:
                self._directory_shut_out(name, "not_found" if found is None else "not_mapped")
                counts["shut_out"] += 1
            else:
                self._sync_directory_user(name, found)
        return counts

    def directory_status(self, *, probe: bool = True) -> dict[str, Any]:
        """The directory's settings in short, whether it answers now, and its recent errors."""
        if self.directory is None:
            return {"configured": False}
        return self.directory.status(probe=probe)

    @property
    def lifetime(self) -> float:
        """Idle time after which a session ends (sliding)."""
        return self.settings.session_hours * 3600

    @property
    def max_lifetime(self) -> float:
        """Time after sign-in at which a session ends, however active."""
        return self.settings.session_max_hours * 3600

    def _expires(self, created_at: float, last_seen_at: float) -> float:
        return min(last_seen_at + self.lifetime, created_at + self.max_lifetime)

    def _check_throttle(self, keys: list[str], now: float) -> None:
        window = self.settings.login_window_seconds
        for key, limit in zip(keys, (self.settings.login_max_failures,
                                     self.settings.login_max_failures * _ADDRESS_FACTOR)):
            recent = [r["ts"] for r in self.rows(
                "SELECT ts FROM login_failures WHERE key = ? AND ts >= ? ORDER BY ts",
                [key, now - window])]
            if len(recent) >= limit:
                # Logins open again once fewer than `limit` failures remain in the window.
                reopens = recent[len(recent) - limit] + window
                raise TooManyLogins(max(1, int(reopens - now) + 1))

    def session(self, token: str) -> Session | None:
        """The live session of a token, sliding its expiry; None if unknown, expired or disabled."""
        now = time.time()
        rows = self.rows("SELECT s.csrf_token, s.created_at AS session_created_at, s.last_seen_at, "
                         "u.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
                         [_digest(token)])
        if not rows or not rows[0]["active"] or rows[0]["directory_state"]:
            return None
        row = rows[0]
        if self._expires(row["session_created_at"], row["last_seen_at"]) < now:
            self.logout(token)
            return None
        if now - row["last_seen_at"] > _TOUCH_SECONDS:
            with self.write() as db:
                db.execute("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?",
                           [now, _digest(token)])
        return Session(_user(row), row["csrf_token"], self._expires(row["session_created_at"], now))

    def logout(self, token: str) -> None:
        with self.write() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", [_digest(token)])

    def purge_sessions(self) -> int:
        """Delete expired sessions and stale login failures; returns how many sessions went."""
        now = time.time()
        with self.write() as db:
            cursor = db.execute("DELETE FROM sessions WHERE last_seen_at < ? OR created_at < ?",
                                [now - self.lifetime, now - self.max_lifetime])
            db.execute("DELETE FROM login_failures WHERE ts < ?",
                       [now - self.settings.login_window_seconds])
        return cursor.rowcount

    def prune_audit(self, now: float | None = None) -> int:
        """Delete audit entries older than `auth.audit_retention_days` (0 keeps all); returns how
        many went. The pruning itself is audited, so the log shows when history was cut."""
        days = self.settings.audit_retention_days
        if days <= 0:
            return 0
        cutoff = (now or time.time()) - days * 86400
        with self.write() as db:
            removed = db.execute("DELETE FROM audit WHERE ts < ?", [cutoff]).rowcount
            if removed:
                db.execute("INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                           [time.time(), "system", "audit_pruned", "audit",
                            json.dumps({"removed": removed, "retention_days": days, "before": cutoff})])
        return removed

    def housekeeping(self) -> dict[str, int]:
        """What the server runs periodically: expired sessions and old audit entries go."""
        return {"sessions": self.purge_sessions(), "audit": self.prune_audit()}

    # -- API keys ------------------------------------------------------------------------------

    def create_key(self, user_id: int, name: str) -> tuple[str, ApiKey]:
        """A new key for a user: the secret is returned once and only its hash is stored."""
        user = self.user(user_id)
        if user.is_local:
            raise InvalidRequest(f"{LOCAL_USER!r} cannot have API keys; create a user of your own.")
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise InvalidRequest("Name the key (1-100 characters), e.g. after the program that uses it.",
                                 param="name")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.write() as db:
            cursor = db.execute(
                "INSERT INTO api_keys (user_id, name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                [user.id, name, secret[:len(KEY_PREFIX) + 6], _digest(secret), time.time()])
        return secret, self.key(cursor.lastrowid)

    def key(self, key_id: int) -> ApiKey:
        rows = self.rows("SELECT k.*, u.username FROM api_keys k JOIN users u ON u.id = k.user_id "
                         "WHERE k.id = ?", [key_id])
        if not rows:
            raise NotFound(f"No API key with id {key_id}; `appliance keys list` shows them.")
        return _key(rows[0])

    def keys(self, user_id: int | None = None) -> list[ApiKey]:
        where, params = ("WHERE k.user_id = ?", [user_id]) if user_id is not None else ("", [])
        return [_key(r) for r in self.rows(
            f"SELECT k.*, u.username FROM api_keys k JOIN users u ON u.id = k.user_id {where} "
            "ORDER BY k.id", params)]

    def revoke_key(self, key_id: int) -> ApiKey:
        key = self.key(key_id)
        if key.revoked_at is None:
            with self.write() as db:
                db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [time.time(), key_id])
        return self.key(key_id)

    def key_user(self, secret: str) -> tuple[User, ApiKey] | None:
        """The user behind a live key; None for unknown, revoked, or a disabled user's key."""
        if not secret.startswith(KEY_PREFIX):
            return None
        rows = self.rows("SELECT k.id AS key_id, k.name, k.prefix, k.created_at AS key_created_at, "
                         "k.last_used_at, k.revoked_at, u.* FROM api_keys k JOIN users u "
                         "ON u.id = k.user_id WHERE k.key_hash = ?", [_digest(secret)])
        if (not rows or rows[0]["revoked_at"] is not None or not rows[0]["active"]
                or rows[0]["directory_state"]):
            return None
        row = rows[0]
        now = time.time()
        if row["last_used_at"] is None or now - row["last_used_at"] > _TOUCH_SECONDS:
            with self.write() as db:
                db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [now, row["key_id"]])
        user = _user(row)
        key = ApiKey(id=row["key_id"], user_id=user.id, username=user.username, name=row["name"],
                     prefix=row["prefix"], created_at=row["key_created_at"], last_used_at=now,
                     revoked_at=None)
        return user, key

    # -- audit log -----------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str = "", *, status: int | None = None,
              ip: str | None = None, **detail: Any) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO audit (ts, actor, action, target, status, ip, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [time.time(), actor, action, target, status, ip, json.dumps(detail, default=str)])

    def audit_log(self, *, limit: int = 200, actor: str | None = None, action: str | None = None,
                  since: float | None = None, before_id: int | None = None) -> list[dict[str, Any]]:
        """Entries newest first; `before_id` pages back from an earlier page's last id."""
        clauses, params = [], []
        for column, value in (("actor", actor), ("action", action)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.rows(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows
