"""Quotas and usage: requests per minute and tokens per day, for each user and each API key.

A user's limits are their role's defaults (`quotas.*` settings) unless an admin set an override;
a key has no limits of its own unless an admin set them, and a request through a key counts
against both the key and its user. 0 means no limit.

Admission is decided in memory under one lock, so concurrent requests are counted exactly and
no SQLite write sits on the request path: the counts are written behind to accounts.db every
`quotas.flush_seconds` and on close, and read back on open, so they hold across restarts (a
crash loses at most one flush interval). Requests per minute is a sliding window: at most N
admissions in any 60 seconds. Tokens per day follows the rule in `Quotas.admit`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from appliance.accounts.store import Accounts, User
from appliance.errors import ApplianceError, InvalidRequest, NotFound
from appliance.llm.base import Finished, TextDelta
from appliance.settings import QuotaSettings

WINDOW_SECONDS = 60.0
# Refused because answers in progress hold the rest of the day's tokens: they end within seconds.
HELD_RETRY_SECONDS = 2
MAX_LIMIT = 10**12

Subject = tuple[str, int]  # ("user", id) or ("key", id)


@dataclass(frozen=True)
class Limits:
    """What a user or key may do; 0 is no limit."""

    requests_per_minute: int = 0
    tokens_per_day: int = 0

    def public(self) -> dict[str, int]:
        return {"requests_per_minute": self.requests_per_minute, "tokens_per_day": self.tokens_per_day}


@dataclass(frozen=True)
class Override:
    """An admin's limits for one user or key; None inherits (the role's default, or none for a key)."""

    requests_per_minute: int | None = None
    tokens_per_day: int | None = None

    def over(self, base: Limits) -> Limits:
        return Limits(base.requests_per_minute if self.requests_per_minute is None else self.requests_per_minute,
                      base.tokens_per_day if self.tokens_per_day is None else self.tokens_per_day)

    def public(self) -> dict[str, int | None]:
        return {"requests_per_minute": self.requests_per_minute, "tokens_per_day": self.tokens_per_day}


class QuotaExceeded(ApplianceError):
    """429: `limit` is requests_per_minute or tokens_per_day; the code names it."""

    status = 429
    kind = "rate_limit_error"

    def __init__(self, limit: str, message: str, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.code = f"{limit}_exceeded"
        self.limit = limit
        self.retry_after = retry_after


class _Meter:
    """One user's or key's live counts: admissions of the last minute, tokens of `day`."""

    __slots__ = ("stamps", "day", "tokens", "held")

    def __init__(self, day: str):
        self.stamps: deque[float] = deque()
        self.day = day
        self.tokens = 0  # counted today: prompts of answers that started, whole finished ones
        self.held = 0  # reserved by requests in flight, not yet counted


def _subject_name(subject: Subject) -> str:
    return f"{subject[0]}:{subject[1]}"


def _duration(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


@dataclass
class Ticket:
    """One admitted request: what it reserved, and the tokens it used as they become known.

    `close()` (always, once the response is over) releases what is still held and counts the
    completion: from the answer's Finished event, or the text deltas streamed before the client
    left when there was none.
    """

    quotas: Quotas | None
    user_id: int
    key_id: int
    day: str
    holds: dict[Subject, int] = field(default_factory=dict)
    limits: dict[Subject, Limits] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int | None = None
    streamed: int = 0
    closed: bool = False

    def start(self, prompt_tokens: int) -> None:
        """Prompt tokens count as soon as the answer starts, whatever happens to it next."""
        if prompt_tokens > self.prompt_tokens and self.quotas is not None:
            self.quotas._count(self, prompt_tokens - self.prompt_tokens)
        self.prompt_tokens = max(self.prompt_tokens, prompt_tokens)

    def on_event(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            self.streamed += 1
        elif isinstance(event, Finished):
            self.start(event.prompt_tokens)
            self.completion_tokens = event.completion_tokens

    def watch(self, answer) -> None:
        """Follow an AnswerStream (after anything else that sets its `on_event`)."""
        self.start(answer.prompt_tokens or 0)
        previous = answer.on_event

        def on_event(event) -> None:
            if previous is not None:
                previous(event)
            self.on_event(event)

        answer.on_event = on_event

    def count(self, tokens: int) -> None:
        """Tokens known outright (embeddings: the texts sent)."""
        self.start(self.prompt_tokens + tokens)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.quotas is not None:
            completion = self.completion_tokens if self.completion_tokens is not None else self.streamed
            self.quotas._settle(self, completion)


class Quotas:
    """Limits, admission and usage over accounts.db; safe to share between threads."""

    def __init__(self, accounts: Accounts, settings: QuotaSettings | None = None, *,
                 clock: Callable[[], float] = time.time):
        self.accounts = accounts
        self.settings = settings or QuotaSettings()
        self.zone = ZoneInfo(self.settings.timezone)  # checked when the settings loaded
        self.clock = clock
        self._lock = threading.Lock()
        self._meters: dict[Subject, _Meter] = {}
        self._overrides: dict[Subject, Override] = {}
        self._pending: dict[tuple[str, int, int], list[int]] = {}  # requests, refused, prompt, completion
        self._dirty: dict[Subject, int] = {}  # windows to write, with their limit
        self._data_version = self._read_data_version()
        self._load()

    # -- time ------------------------------------------------------------------------------------

    def day(self, ts: float | None = None) -> str:
        return datetime.fromtimestamp(self.clock() if ts is None else ts, self.zone).date().isoformat()

    def seconds_to_midnight(self, ts: float | None = None) -> float:
        now = datetime.fromtimestamp(self.clock() if ts is None else ts, self.zone)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), self.zone)
        return max(1.0, (midnight - now).total_seconds())

    # -- limits ----------------------------------------------------------------------------------

    def role_limits(self, role: str) -> Limits:
        return Limits(getattr(self.settings, f"{role}_requests_per_minute", 0),
                      getattr(self.settings, f"{role}_tokens_per_day", 0))

    def defaults(self) -> dict[str, dict[str, int]]:
        from appliance.accounts.store import ROLES

        return {role: self.role_limits(role).public() for role in ROLES}

    def _read_override(self, subject: Subject) -> Override:
        kind, ident = subject
        rows = self.accounts.rows(f"SELECT requests_per_minute, tokens_per_day FROM {kind}_quotas "
                                  f"WHERE {kind}_id = ?", [ident])
        return Override(**rows[0]) if rows else Override()

    def override(self, subject: Subject) -> Override:
        """The override of one user or key (blocking on a cache miss: SQLite)."""
        found = self._overrides.get(subject)
        if found is None:
            found = self._overrides[subject] = self._read_override(subject)
        return found

    def cached_limits(self, user: User, key_id: int | None = None) -> dict[Subject, Limits] | None:
        """`limits()` when the overrides are in memory; None when they must be read first."""
        user_override = self._overrides.get(("user", user.id))
        key_override = self._overrides.get(("key", key_id)) if key_id else Override()
        if user_override is None or key_override is None:
            return None
        found = {("user", user.id): user_override.over(self.role_limits(user.role))}
        if key_id:
            found[("key", key_id)] = key_override.over(Limits())
        return found

    def limits(self, user: User, key_id: int | None = None) -> dict[Subject, Limits]:
        """The limits a request of `user` (through `key_id`) must pass, by subject."""
        found = {("user", user.id): self.override(("user", user.id)).over(self.role_limits(user.role))}
        if key_id:
            found[("key", key_id)] = self.override(("key", key_id)).over(Limits())
        return found

    def set_override(self, kind: str, ident: int, requests_per_minute: int | None,
                     tokens_per_day: int | None) -> Override:
        """Set (or, with both None, remove) the override of a user or key."""
        if kind not in ("user", "key"):
            raise InvalidRequest("Quotas are set for a 'user' or a 'key'.")
        for name, value in (("requests_per_minute", requests_per_minute), ("tokens_per_day", tokens_per_day)):
            if value is not None and not 0 <= value <= MAX_LIMIT:
                raise InvalidRequest(f"{name} must be 0 (no limit) or a positive whole number; leave "
                                     "it empty for the default.", param=name)
        table = "users" if kind == "user" else "api_keys"
        with self.accounts.write() as db:
            if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", [ident]).fetchone() is None:
                what = "user" if kind == "user" else "API key"
                raise NotFound(f"No {what} with id {ident}; `appliance quotas list` shows them.")
            if requests_per_minute is None and tokens_per_day is None:
                db.execute(f"DELETE FROM {kind}_quotas WHERE {kind}_id = ?", [ident])
            else:
                db.execute(f"INSERT INTO {kind}_quotas ({kind}_id, requests_per_minute, tokens_per_day, "
                           f"updated_at) VALUES (?, ?, ?, ?) ON CONFLICT ({kind}_id) DO UPDATE SET "
                           "requests_per_minute = excluded.requests_per_minute, "
                           "tokens_per_day = excluded.tokens_per_day, updated_at = excluded.updated_at",
                           [ident, requests_per_minute, tokens_per_day, time.time()])
        override = Override(requests_per_minute, tokens_per_day)
        self._overrides[(kind, ident)] = override
        return override

    def overrides(self, kind: str) -> dict[int, Override]:
        rows = self.accounts.rows(f"SELECT {kind}_id AS id, requests_per_minute, tokens_per_day "
                                  f"FROM {kind}_quotas")
        return {r["id"]: Override(r["requests_per_minute"], r["tokens_per_day"]) for r in rows}

    # -- admission -------------------------------------------------------------------------------

    def _meter(self, subject: Subject, day: str, now: float) -> _Meter:
        meter = self._meters.get(subject)
        if meter is None:
            meter = self._meters[subject] = _Meter(day)
        elif meter.day != day:  # a new day: yesterday's tokens and holds count for yesterday
            meter.day, meter.tokens, meter.held = day, 0, 0
        while meter.stamps and meter.stamps[0] <= now - WINDOW_SECONDS:
            meter.stamps.popleft()
        return meter

    def _pend(self, day: str, user_id: int, key_id: int, column: int, amount: int) -> None:
        row = self._pending.get((day, user_id, key_id))
        if row is None:
            row = self._pending[(day, user_id, key_id)] = [0, 0, 0, 0]
        row[column] += amount

    def admit(self, user: User, key_id: int | None = None, *, hold: int = 0,
              limits: dict[Subject, Limits] | None = None) -> Ticket:
        """Let a request in or raise QuotaExceeded (429), atomically for the user and the key.

        Requests per minute: refused once N were admitted in the last 60 seconds; refusals do not
        count. Tokens per day (only when `hold` > 0, i.e. the request uses tokens): let in while the
        day's tokens plus those held by requests in flight are below the limit. The request then
        holds `hold` (one request's most: the model's context) or what is left of the limit,
        whichever is smaller, until it ends; its prompt tokens count when the answer starts and
        its completion when it ends. An answer under way is never cut off, so the day's count can
        pass the limit by at most what one request uses beyond the room it was given.
        """
        limits = limits or self.limits(user, key_id)
        now = self.clock()
        day = self.day(now)
        key = key_id or 0
        with self._lock:
            meters = [(subject, limit, self._meter(subject, day, now)) for subject, limit in limits.items()]
            for subject, limit, meter in meters:
                refusal = self._refusal(subject, limit, meter, now, hold > 0)
                if refusal is not None:
                    self._pend(day, user.id, key, 1, 1)
                    raise refusal
            ticket = Ticket(self, user.id, key, day, limits=dict(limits))
            for subject, limit, meter in meters:
                meter.stamps.append(now)
                if limit.requests_per_minute:
                    self._dirty[subject] = limit.requests_per_minute
                if hold > 0:
                    room = limit.tokens_per_day - meter.tokens - meter.held
                    held = min(hold, room) if limit.tokens_per_day else hold
                    meter.held += held
                    ticket.holds[subject] = held
            self._pend(day, user.id, key, 0, 1)
        return ticket

    def _refusal(self, subject: Subject, limit: Limits, meter: _Meter, now: float,
                 uses_tokens: bool) -> QuotaExceeded | None:
        key = subject[0] == "key"
        rpm = limit.requests_per_minute
        if rpm and len(meter.stamps) >= rpm:
            wait = meter.stamps[len(meter.stamps) - rpm] + WINDOW_SECONDS - now
            who = "This API key has" if key else "You have"
            whose = "the key's" if key else "your"
            return QuotaExceeded(
                "requests_per_minute",
                f"{who} sent {len(meter.stamps)} requests in the last minute, the limit of {whose} "
                f"requests_per_minute ({rpm}); retry in {_duration(wait)}, or ask an admin to raise it.",
                max(1, math.ceil(wait)))
        tpd = limit.tokens_per_day
        if uses_tokens and tpd and meter.tokens + meter.held >= tpd:
            if meter.tokens < tpd:
                whose = "the key's" if key else "your"
                return QuotaExceeded(
                    "tokens_per_day", f"Requests in progress hold the rest of {whose} tokens_per_day "
                    f"({tpd:,}); retry when one of them ends.", HELD_RETRY_SECONDS)
            wait = self.seconds_to_midnight(now)
            who = "This API key has used" if key else "You have used"
            whose = "its" if key else "your"
            return QuotaExceeded(
                "tokens_per_day",
                f"{who} {meter.tokens:,} tokens today, the limit of {whose} tokens_per_day ({tpd:,}); "
                f"it resets at midnight ({self.settings.timezone}), in {_duration(wait)}. Ask an "
                "admin to raise it if more is needed.", math.ceil(wait))
        return None

    def _count(self, ticket: Ticket, tokens: int) -> None:
        """Count prompt tokens now, out of what the request holds."""
        with self._lock:
            for subject in ticket.limits:
                meter = self._meters.get(subject)
                if meter is None or meter.day != ticket.day:
                    continue
                meter.tokens += tokens
                moved = min(ticket.holds.get(subject, 0), tokens)
                if moved:
                    meter.held -= moved
                    ticket.holds[subject] -= moved
            self._pend(ticket.day, ticket.user_id, ticket.key_id, 2, tokens)

    def _settle(self, ticket: Ticket, completion: int) -> None:
        with self._lock:
            for subject in ticket.limits:
                meter = self._meters.get(subject)
                if meter is None or meter.day != ticket.day:
                    continue
                meter.tokens += completion
                meter.held -= ticket.holds.get(subject, 0)
            ticket.holds.clear()
            if completion:
                self._pend(ticket.day, ticket.user_id, ticket.key_id, 3, completion)

    def headers(self, ticket: Ticket) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the tightest limits this request passed."""
        out: dict[str, str] = {}
        now = self.clock()
        with self._lock:
            for subject, limit in ticket.limits.items():
                meter = self._meters.get(subject)
                if meter is None:
                    continue
                if limit.requests_per_minute:
                    left = max(0, limit.requests_per_minute - len(meter.stamps))
                    if "x-ratelimit-remaining-requests" not in out or \
                            left < int(out["x-ratelimit-remaining-requests"]):
                        reset = meter.stamps[0] + WINDOW_SECONDS - now if meter.stamps else 0
                        out.update({"x-ratelimit-limit-requests": str(limit.requests_per_minute),
                                    "x-ratelimit-remaining-requests": str(left),
                                    "x-ratelimit-reset-requests": f"{max(0, math.ceil(reset))}s"})
                if limit.tokens_per_day and meter.day == ticket.day:
                    left = max(0, limit.tokens_per_day - meter.tokens - meter.held)
                    if "x-ratelimit-remaining-tokens" not in out or \
                            left < int(out["x-ratelimit-remaining-tokens"]):
                        out.update({"x-ratelimit-limit-tokens": str(limit.tokens_per_day),
                                    "x-ratelimit-remaining-tokens": str(left),
                                    "x-ratelimit-reset-tokens": f"{math.ceil(self.seconds_to_midnight(now))}s"})
        return out

    # -- what is used ----------------------------------------------------------------------------

    def live(self, subject: Subject, limit: Limits) -> dict[str, Any]:
        """One user's or key's counts right now, from memory (exact, including unwritten ones)."""
        now = self.clock()
        day = self.day(now)
        with self._lock:
            meter = self._meter(subject, day, now)
            requests, tokens, held = len(meter.stamps), meter.tokens, meter.held
        reset = self.seconds_to_midnight(now)
        rpm, tpd = limit.requests_per_minute, limit.tokens_per_day
        return {"limits": limit.public(), "requests_last_minute": requests, "tokens_today": tokens,
                "tokens_held": held, "requests_left": max(0, rpm - requests) if rpm else None,
                "tokens_left": max(0, tpd - tokens - held) if tpd else None,
                "tokens_reset_seconds": math.ceil(reset)}

    def usage(self, since: str, until: str, *, user_id: int | None = None) -> list[dict[str, Any]]:
        """Rows of daily usage (days as YYYY-MM-DD, both included), oldest first, with names."""
        self.flush()
        where, params = "u.day BETWEEN ? AND ?", [since, until]
        if user_id is not None:
            where += " AND u.user_id = ?"
            params.append(user_id)
        return self.accounts.rows(
            "SELECT u.day, u.user_id, us.username, us.role, u.key_id, k.name AS key_name, "
            "k.prefix AS key_prefix, u.requests, u.refused, u.prompt_tokens, u.completion_tokens, "
            "u.prompt_tokens + u.completion_tokens AS total_tokens FROM daily_usage u "
            "JOIN users us ON us.id = u.user_id LEFT JOIN api_keys k ON k.id = u.key_id "
            f"WHERE {where} ORDER BY u.day, us.username, u.key_id", params)

    def today(self) -> dict[Subject, dict[str, int]]:
        """Today's requests, refusals and tokens per user and per key (from accounts.db, flushed)."""
        rows = self.usage(self.day(), self.day())
        totals: dict[Subject, dict[str, int]] = {}
        for row in rows:
            subjects = [("user", row["user_id"])] + ([("key", row["key_id"])] if row["key_id"] else [])
            for subject in subjects:
                total = totals.setdefault(subject, {"requests": 0, "refused": 0, "tokens": 0})
                total["requests"] += row["requests"]
                total["refused"] += row["refused"]
                total["tokens"] += row["total_tokens"]
        return totals

    def overview(self) -> dict[str, Any]:
        """Every user and key with limits, overrides and today's use (what the console shows)."""
        today = self.today()
        user_overrides, key_overrides = self.overrides("user"), self.overrides("key")
        users = []
        for user in self.accounts.users():
            override = user_overrides.get(user.id, Override())
            limit = override.over(self.role_limits(user.role))
            users.append({"id": user.id, "username": user.username, "display_name": user.display_name,
                          "role": user.role, "active": user.active, "override": override.public(),
                          **self._use(("user", user.id), limit, today)})
        keys = []
        for key in self.accounts.keys():
            override = key_overrides.get(key.id, Override())
            limit = override.over(Limits())
            keys.append({"id": key.id, "name": key.name, "prefix": key.prefix, "user_id": key.user_id,
                         "username": key.username, "active": key.revoked_at is None,
                         "override": override.public(), **self._use(("key", key.id), limit, today)})
        return {"day": self.day(), "timezone": self.settings.timezone, "defaults": self.defaults(),
                "users": users, "keys": keys}

    def _use(self, subject: Subject, limit: Limits, today: dict) -> dict[str, Any]:
        live = self.live(subject, limit)
        counted = today.get(subject, {"requests": 0, "refused": 0, "tokens": 0})
        return {"limits": limit.public(), "requests_last_minute": live["requests_last_minute"],
                "requests_today": counted["requests"], "refused_today": counted["refused"],
                "tokens_today": live["tokens_today"]}

    # -- persistence -----------------------------------------------------------------------------

    def _read_data_version(self) -> int:
        return self.accounts.rows("PRAGMA data_version")[0]["data_version"]

    def _load(self) -> None:
        """Today's tokens and the last minute's admissions, as the last run left them."""
        now = self.clock()
        day = self.day(now)
        for row in self.accounts.rows("SELECT user_id, key_id, prompt_tokens + completion_tokens AS "
                                      "tokens FROM daily_usage WHERE day = ?", [day]):
            subjects = [("user", row["user_id"])] + ([("key", row["key_id"])] if row["key_id"] else [])
            for subject in subjects:
                self._meter(subject, day, now).tokens += row["tokens"]
        for row in self.accounts.rows("SELECT subject, stamps FROM quota_windows WHERE updated_at > ?",
                                      [now - WINDOW_SECONDS]):
            kind, _, ident = row["subject"].partition(":")
            meter = self._meter((kind, int(ident)), day, now)
            meter.stamps.extend(sorted(s for s in json.loads(row["stamps"]) if s > now - WINDOW_SECONDS))

    def flush(self) -> int:
        """Write the counts gathered since the last flush; returns how many rows. If the write
        fails, they stay pending for the next one. Overrides changed by another process (the CLI)
        are read again from here on."""
        with self._lock:
            pending, self._pending = self._pending, {}
            dirty, self._dirty = self._dirty, {}
            windows = [(_subject_name(s), json.dumps(list(self._meters[s].stamps)[-limit:]))
                       for s, limit in dirty.items() if s in self._meters]
        now = self.clock()
        try:
            if pending or windows:
                with self.accounts.write() as db:
                    # A user deleted since (with their usage) is skipped, not a foreign-key error.
                    db.executemany(
                        "INSERT INTO daily_usage (day, user_id, key_id, requests, refused, prompt_tokens, "
                        "completion_tokens) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users "
                        "WHERE id = ?) ON CONFLICT (day, user_id, key_id) DO UPDATE SET "
                        "requests = requests + excluded.requests, refused = refused + excluded.refused, "
                        "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                        "completion_tokens = completion_tokens + excluded.completion_tokens",
                        [[day, user_id, key_id, *counts, user_id]
                         for (day, user_id, key_id), counts in pending.items()])
                    db.executemany(
                        "INSERT INTO quota_windows (subject, stamps, updated_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (subject) DO UPDATE SET stamps = excluded.stamps, "
                        "updated_at = excluded.updated_at", [[s, stamps, now] for s, stamps in windows])
                    db.execute("DELETE FROM quota_windows WHERE updated_at < ?", [now - WINDOW_SECONDS])
        except BaseException:
            with self._lock:  # keep them for the next try, merged with what came meanwhile
                for key, counts in pending.items():
                    for column, amount in enumerate(counts):
                        self._pend(*key, column, amount)
                for subject, limit in dirty.items():
                    self._dirty.setdefault(subject, limit)
            raise
        version = self._read_data_version()
        if version != self._data_version:
            self._data_version = version
            self._overrides.clear()
        return len(pending) + len(windows)
