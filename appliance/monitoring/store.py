"""metrics.db: request events, system samples, rollups, feedback, golden runs and alerts (SQLite, WAL).

Every closed minute is rolled up per metric; hours are rolled up from minutes. Raw rows are kept
for `raw_retention_hours`, minute rollups for `minute_retention_days`, hour rollups for
`hour_retention_days`; queries read the finest data that still covers each part of their range.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from appliance.database import Database
from appliance.errors import InvalidRequest
from appliance.monitoring.aggregates import AGGREGATES, Aggregate
from appliance.monitoring.migrations import migrate

MINUTE, HOUR = 60, 3600
_LATE_SECONDS = 30  # events are written up to a flush interval after they end: roll up behind them
_REROLL_SECONDS = 300  # recompute the last minutes too, so a late batch still lands in its rollup
_ROLLUP_CHUNK_SECONDS = 6 * HOUR  # a backlog (after downtime) is rolled up a slice at a time


@dataclass(frozen=True)
class Metric:
    name: str
    table: str
    expression: str  # SQL over one row of `table`; NULL means "no value"
    help: str
    rolled_up: bool = True


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("requests", "requests", "1.0", "finished requests (use rate for requests per second)"),
    Metric("latency_seconds", "requests", "latency_s", "time from request to last byte"),
    Metric("ttft_seconds", "requests", "ttft_s", "time to first token"),
    Metric("tokens_per_second", "requests", "tokens_per_s", "completion tokens per second of decoding"),
    Metric("prompt_tokens", "requests", "prompt_tokens", "prompt tokens per request"),
    Metric("completion_tokens", "requests", "completion_tokens", "completion tokens per request"),
    Metric("error", "requests", "CASE WHEN status >= 500 OR status = 429 THEN 1.0 ELSE 0.0 END",
           "1 for a server error or a refusal (5xx, 429), else 0: avg is the error rate"),
    Metric("client_error", "requests",
           "CASE WHEN status >= 400 AND status < 500 AND status != 429 THEN 1.0 ELSE 0.0 END",
           "1 for a rejected request (4xx other than 429), else 0"),
    Metric("cache_hit", "requests", "cache_hit", "1 when the answer came from the response cache"),
    Metric("retrieval_seconds", "requests", "retrieval_s", "knowledge-base retrieval time"),
    Metric("answer_extractive", "requests",
           "CASE WHEN answer_mode = 'extractive' THEN 1.0 WHEN answer_mode IS NULL THEN NULL ELSE 0.0 END",
           "1 for a grounded answer quoted from the evidence, 0 for a generated one: avg is the share"),
    Metric("answer_support", "requests", "support",
           "how well a grounded answer rests on its evidence (0..1)"),
    Metric("answer_removed", "requests", "removed", "generated sentences removed by verification"),
    Metric("rss_bytes", "samples", "rss_bytes", "resident memory of the server process"),
    Metric("memory_used_percent", "samples", "memory_used_percent", "system memory in use"),
    Metric("cpu_percent", "samples", "cpu_percent", "system CPU use"),
    Metric("process_cpu_percent", "samples", "process_cpu_percent", "server process CPU use (100 = one core)"),
    Metric("queue_depth", "samples", "queue_depth", "requests waiting for a generation slot"),
    Metric("slots_busy", "samples", "slots_busy", "generation slots in use"),
    Metric("gpu_utilization_percent", "samples", "gpu_utilization_percent", "GPU use (absent without a GPU)"),
    Metric("gpu_memory_used_bytes", "samples", "gpu_memory_used_bytes", "GPU memory in use (absent without a GPU)"),
    Metric("feedback_positive", "feedback", "CASE WHEN rating = 'up' THEN 1.0 ELSE 0.0 END",
           "1 per thumbs up, 0 per thumbs down: avg is the approval rate", rolled_up=False),
    Metric("golden_accuracy", "golden_runs", "score", "score of a golden QA run (0..1)", rolled_up=False),
]}


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidRequest(
            f"Unknown metric {name!r}; use one of: {', '.join(METRICS)}.", param="metric"
        ) from None


def check_aggregate(name: str) -> str:
    if name not in AGGREGATES:
        raise InvalidRequest(
            f"Unknown aggregate {name!r}; use one of: {', '.join(AGGREGATES)}.", param="aggregate"
        )
    return name


@dataclass(frozen=True)
class Retention:
    raw_seconds: float = 48 * HOUR
    minute_seconds: float = 14 * 86400
    hour_seconds: float = 400 * 86400
    max_bytes: int = 512 * 1024 * 1024

    @classmethod
    def from_settings(cls, monitoring) -> Retention:
        return cls(monitoring.raw_retention_hours * HOUR, monitoring.minute_retention_days * 86400,
                   monitoring.hour_retention_days * 86400, int(monitoring.max_db_mb * 1024 * 1024))


def _floor(ts: float, step: int) -> int:
    return int(math.floor(ts / step) * step)


class MetricsStore:
    """All reads and writes of metrics.db; safe to share between threads (see appliance.database)."""

    def __init__(self, path: str | Path, retention: Retention | None = None):
        self.path = Path(path)
        self.retention = retention or Retention()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as first:
            if first.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
                # Must precede the first table: lets the size bound give pages back to the disk.
                first.execute("PRAGMA auto_vacuum = INCREMENTAL")
                first.execute("VACUUM")
        self.db = Database(self.path)
        migrate(self.db)

    def close(self) -> None:
        self.db.close()

    # -- writes --------------------------------------------------------------------------------

    def insert(self, table: str, rows: Iterable[dict]) -> int:
        rows = list(rows)
        if rows:
            with self.db.write():
                self.db[table].insert_all(rows, batch_size=500)
        return len(rows)

    def add_feedback(self, response_id: str, rating: str, comment: str | None = None,
                     ts: float | None = None, *, user_id: int | None = None,
                     username: str | None = None) -> dict:
        with self.db.write():
            found = self.db.execute(
                "SELECT model_version FROM requests WHERE response_id = ? LIMIT 1", [response_id]
            ).fetchone()
            row = {"ts": ts or time.time(), "response_id": response_id, "rating": rating,
                   "comment": comment, "model_version": found[0] if found else None,
                   "user_id": user_id, "username": username}
            row["id"] = self.db["feedback"].insert(row).last_pk
        return row

    def answered(self, response_id: str, user_id: int) -> bool:
        """Whether this answer went to this user (kept as long as raw request rows are)."""
        return self.db.execute(
            "SELECT 1 FROM requests WHERE response_id = ? AND user_id = ? LIMIT 1",
            [response_id, user_id]).fetchone() is not None

    def add_golden_run(self, row: dict) -> dict:
        with self.db.write():
            row = dict(row)
            row["id"] = self.db["golden_runs"].insert(row).last_pk
        return row

    # -- reads ---------------------------------------------------------------------------------

    def _raw(self, m: Metric, since: float, until: float) -> Iterable[tuple[float, float]]:
        sql = (f"SELECT ts, v FROM (SELECT ts, {m.expression} AS v FROM {m.table} "
               "WHERE ts >= ? AND ts < ?) WHERE v IS NOT NULL")
        return self.db.execute(sql, [since, until]).fetchall()

    def _rolled(self, m: Metric, resolution: int, since: float, until: float) -> list[dict]:
        return list(self.db.query(
            "SELECT bucket, count, sum, min, max, hist FROM rollups WHERE resolution = ? "
            "AND metric = ? AND bucket >= ? AND bucket < ?",
            [resolution, m.name, _floor(since, resolution), until],
        ))

    def _watermark(self, key: str) -> float:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", [key]).fetchone()
        return row[0] if row else 0.0

    def _sources(self, step: float, now: float) -> list[tuple[str, float, float]]:
        """Which data covers which time range, finest first among what still exists."""
        minute_wm, hour_wm = self._watermark("rolled_minutes_until"), self._watermark("rolled_hours_until")
        minute_cut = _floor(now - self.retention.minute_seconds, HOUR)
        raw_cut = _floor(now - self.retention.raw_seconds, MINUTE)
        hour_until = hour_wm if step >= HOUR else min(hour_wm, minute_cut)
        minute_until = max(hour_until, minute_wm if step >= MINUTE else min(minute_wm, raw_cut))
        return [("hour", -math.inf, hour_until), ("minute", hour_until, minute_until),
                ("raw", minute_until, math.inf)]

    def buckets(self, name: str, since: float, until: float, step: float,
                now: float | None = None) -> dict[int, Aggregate]:
        """Aggregates of `name` per step-wide bucket (epoch-aligned) in [since, until)."""
        m = metric(name)
        now = time.time() if now is None else now
        out: dict[int, Aggregate] = {}

        def slot(ts: float) -> Aggregate:
            key = _floor(ts, step) if step > 0 else int(since)
            return out.setdefault(key, Aggregate())

        sources = self._sources(step, now) if m.rolled_up else [("raw", -math.inf, math.inf)]
        for kind, start, end in sources:
            lo, hi = max(since, start), min(until, end)
            if lo >= hi:
                continue
            if kind == "raw":
                for ts, value in self._raw(m, lo, hi):
                    slot(ts).add(value, ts)
            else:
                resolution = HOUR if kind == "hour" else MINUTE
                for row in self._rolled(m, resolution, lo, hi):
                    slot(row["bucket"]).merge(Aggregate.from_row(row, row["bucket"] + resolution))
        return out

    def aggregate(self, name: str, aggregate: str, since: float, until: float | None = None,
                  now: float | None = None) -> tuple[float | None, int]:
        """One figure over [since, until): (value, number of data points)."""
        until = time.time() if until is None else until
        check_aggregate(aggregate)
        parts = self.buckets(name, since, until, 0, now=now or until)
        total = Aggregate()
        for part in parts.values():
            total.merge(part)
        return total.value(aggregate, until - since), total.count

    def series(self, name: str, aggregate: str, since: float, until: float, step: float,
               now: float | None = None) -> list[dict]:
        """[{"ts", "value", "count"}] per bucket with data; `step` >= 60 is rounded to whole minutes."""
        check_aggregate(aggregate)
        if step <= 0:
            raise InvalidRequest("step must be a positive number of seconds.", param="step")
        if step >= MINUTE:
            step = round(step / MINUTE) * MINUTE
        if (until - since) / step > 10_000:
            raise InvalidRequest("That asks for more than 10,000 points; use a larger step.",
                                 param="step")
        parts = self.buckets(name, since, until, step, now=now)
        return [{"ts": ts, "value": parts[ts].value(aggregate, step), "count": parts[ts].count}
                for ts in sorted(parts)]

    def version_figures(self, version: str, since: float, until: float | None = None) -> dict:
        """One model version's requests, error rate, p95 latency and feedback over [since, until),
        defined as the dashboards define them (release probation judges a new version on these)."""
        until = time.time() if until is None else until
        where = "model_version = ? AND ts >= ? AND ts < ?"
        params = [version, since, until]
        latency = Aggregate()
        count, errors = self.db.execute(
            f"SELECT count(*), sum({METRICS['error'].expression}) FROM requests WHERE {where}",
            params).fetchone()
        for (value,) in self.db.execute(
                f"SELECT {METRICS['latency_seconds'].expression} FROM requests WHERE {where} "
                "AND latency_s IS NOT NULL", params):
            latency.add(value)
        ratings, positive = self.db.execute(
            f"SELECT count(*), sum({METRICS['feedback_positive'].expression}) FROM feedback "
            f"WHERE {where}", params).fetchone()
        return {
            "requests": count, "errors": int(errors or 0),
            "error_rate": (errors or 0) / count if count else None,
            "latency_p95": latency.percentile(95) if latency.count else None,
            "feedback": ratings, "feedback_positive": (positive or 0) / ratings if ratings else None,
        }

    # -- maintenance ---------------------------------------------------------------------------

    def rollup(self, now: float | None = None) -> int:
        """Roll up closed minutes (and hours from them); returns rollup rows written."""
        now = time.time() if now is None else now
        closed = _floor(now - _LATE_SECONDS, MINUTE)
        minute_wm = self._watermark("rolled_minutes_until")
        if not minute_wm:
            first = self.db.execute(
                "SELECT min(t) FROM (SELECT min(ts) AS t FROM requests UNION ALL "
                "SELECT min(ts) FROM samples)").fetchone()[0]
            if first is None:
                return 0
            minute_wm = _floor(first, MINUTE)
        start = minute_wm
        if self._watermark("rolled_minutes_until"):  # re-roll recent minutes whose raw rows remain
            start = max(minute_wm - _REROLL_SECONDS,
                        min(minute_wm, _floor(now - self.retention.raw_seconds, MINUTE) + MINUTE))
        written = 0
        for chunk_start in range(int(start), int(closed), _ROLLUP_CHUNK_SECONDS):
            chunk_end = min(chunk_start + _ROLLUP_CHUNK_SECONDS, closed)
            rows = []
            for m in METRICS.values():
                if not m.rolled_up:
                    continue
                per_minute: dict[int, Aggregate] = {}
                for ts, value in self._raw(m, chunk_start, chunk_end):
                    per_minute.setdefault(_floor(ts, MINUTE), Aggregate(values=None)).add(value, ts)
                rows += [{"resolution": MINUTE, "metric": m.name, "bucket": b, **agg.to_row()}
                         for b, agg in per_minute.items()]
            with self.db.write():
                if rows:
                    self.db["rollups"].upsert_all(rows, pk=("resolution", "metric", "bucket"))
                self.db["state"].upsert({"key": "rolled_minutes_until", "value": chunk_end}, pk="key")
            written += len(rows)
        written += self._rollup_hours(max(closed, minute_wm))
        return written

    def _rollup_hours(self, minutes_until: float) -> int:
        # An hour is rolled up once, when its minutes can no longer be re-rolled (see rollup).
        closed = _floor(minutes_until - _REROLL_SECONDS, HOUR)
        hour_wm = self._watermark("rolled_hours_until")
        if not hour_wm:
            first = self.db.execute(
                "SELECT min(bucket) FROM rollups WHERE resolution = ?", [MINUTE]).fetchone()[0]
            if first is None:
                return 0
            hour_wm = _floor(first, HOUR)
        if hour_wm >= closed:
            return 0
        per_hour: dict[tuple[str, int], Aggregate] = {}
        for row in self.db.query(
            "SELECT metric, bucket, count, sum, min, max, hist FROM rollups "
            "WHERE resolution = ? AND bucket >= ? AND bucket < ?", [MINUTE, hour_wm, closed]
        ):
            key = (row["metric"], _floor(row["bucket"], HOUR))
            per_hour.setdefault(key, Aggregate(values=None)).merge(Aggregate.from_row(row, row["bucket"]))
        rows = [{"resolution": HOUR, "metric": metric_name, "bucket": b, **agg.to_row()}
                for (metric_name, b), agg in per_hour.items()]
        with self.db.write():
            if rows:
                self.db["rollups"].upsert_all(rows, pk=("resolution", "metric", "bucket"))
            self.db["state"].upsert({"key": "rolled_hours_until", "value": closed}, pk="key")
        return len(rows)

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Drop what is past its retention; raw rows only once their minutes are rolled up."""
        now = time.time() if now is None else now
        # Cut-offs aligned as in _sources, so a query never finds a hole between two sources.
        raw_cut = min(_floor(now - self.retention.raw_seconds, MINUTE),
                      self._watermark("rolled_minutes_until"))
        minute_cut = min(_floor(now - self.retention.minute_seconds, HOUR),
                         self._watermark("rolled_hours_until"))
        hour_cut = _floor(now - self.retention.hour_seconds, HOUR)
        deleted = {}
        with self.db.write():
            for table in ("requests", "samples"):
                deleted[table] = self.db.execute(f"DELETE FROM {table} WHERE ts < ?", [raw_cut]).rowcount
            for resolution, cut in ((MINUTE, minute_cut), (HOUR, hour_cut)):
                deleted[f"rollups_{resolution}"] = self.db.execute(
                    "DELETE FROM rollups WHERE resolution = ? AND bucket < ?", [resolution, cut]
                ).rowcount
        return deleted

    def size_bytes(self) -> int:
        """Bytes in use (free pages excluded): what the size bound is checked against."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * page_size

    def enforce_size(self) -> int:
        """Over `max_bytes`: delete the oldest tenth (by time) of raw rows, then of minute rollups,
        then of hour rollups, until under. Returns rows deleted."""
        tiers = [(("requests", "ts", ""), ("samples", "ts", "")),
                 (("rollups", "bucket", f"resolution = {MINUTE}"),),
                 (("rollups", "bucket", f"resolution = {HOUR}"),)]
        deleted = 0
        for tier in tiers:
            for _ in range(100):
                if self.size_bytes() <= self.retention.max_bytes:
                    break
                with self.db.write():
                    spans = [self.db.execute(
                        f"SELECT min({col}), max({col}) FROM {table} WHERE {where or 1}").fetchone()
                        for table, col, where in tier]
                    spans = [span for span in spans if span[0] is not None]
                    if not spans:
                        break
                    oldest, newest = min(a for a, _ in spans), max(b for _, b in spans)
                    cut = oldest + max((newest - oldest) / 10, 1)
                    for table, col, where in tier:
                        deleted += self.db.execute(
                            f"DELETE FROM {table} WHERE {where or 1} AND {col} < ?", [cut]).rowcount
                self.compact()
        return deleted

    def compact(self) -> None:
        """Give free pages back to the file system and fold the WAL into the database file."""
        # executescript runs the pragma to completion; execute() would free a single page.
        self.db.conn.executescript("PRAGMA incremental_vacuum;")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def maintain(self, now: float | None = None) -> dict:
        """The periodic job: roll up, prune by age, bound the size."""
        rolled = self.rollup(now)
        deleted = self.prune(now)
        if any(deleted.values()):
            self.compact()
        trimmed = self.enforce_size()
        return {"rolled_up": rolled, "deleted": deleted, "trimmed_for_size": trimmed}

    # -- alerts --------------------------------------------------------------------------------

    def firing_alerts(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM alerts WHERE state = 'firing' ORDER BY id"))

    def open_alert(self, row: dict) -> dict:
        with self.db.write():
            row = {**row, "state": "firing"}
            row["id"] = self.db["alerts"].insert(row).last_pk
            self._event(row["id"], "fired", row.get("message"), row["started_at"])
        return row

    def touch_alert(self, alert_id: int, value: float) -> None:
        with self.db.write():
            self.db["alerts"].update(alert_id, {"value": value})

    def resolve_alert(self, alert_id: int, value: float | None, ts: float, message: str) -> dict:
        with self.db.write():
            self.db["alerts"].update(alert_id, {"state": "resolved", "resolved_at": ts,
                                                "value": value})
            self._event(alert_id, "resolved", message, ts)
            return self.db["alerts"].get(alert_id)

    def alert_event(self, alert_id: int, kind: str, detail: str | None = None) -> None:
        with self.db.write():
            self._event(alert_id, kind, detail, time.time())

    def _event(self, alert_id: int, kind: str, detail: str | None, ts: float) -> None:
        self.db["alert_events"].insert({"alert_id": alert_id, "ts": ts, "kind": kind, "detail": detail})

    def alerts(self, state: str | None = None, limit: int = 100) -> list[dict]:
        where, args = ("WHERE state = ?", [state]) if state else ("", [])
        alerts = list(self.db.query(
            f"SELECT * FROM alerts {where} ORDER BY id DESC LIMIT ?", [*args, limit]))
        for alert in alerts:
            alert["history"] = list(self.db.query(
                "SELECT ts, kind, detail FROM alert_events WHERE alert_id = ? ORDER BY id",
                [alert["id"]]))
        return alerts

    # -- summaries -----------------------------------------------------------------------------

    def summary(self, since: float, until: float | None = None) -> dict:
        """The figures `appliance metrics` and the admin UI's overview show."""
        until = time.time() if until is None else until
        figure = lambda name, agg: self.aggregate(name, agg, since, until)[0]  # noqa: E731
        requests = self.aggregate("requests", "count", since, until)[0] or 0
        latest = self.db.execute("SELECT * FROM samples ORDER BY ts DESC LIMIT 1").fetchone()
        columns = [d[0] for d in self.db.execute("SELECT * FROM samples LIMIT 0").description]
        golden = self.db.execute(
            "SELECT ts, score, questions, passed, model_version FROM golden_runs "
            "ORDER BY ts DESC LIMIT 1").fetchone()
        ratings = dict(self.db.execute(
            "SELECT rating, count(*) FROM feedback WHERE ts >= ? AND ts < ? GROUP BY rating",
            [since, until]).fetchall())
        return {
            "since": since, "until": until,
            "requests": int(requests),
            "requests_per_second": figure("requests", "rate"),
            "error_rate": figure("error", "avg"),
            "client_error_rate": figure("client_error", "avg"),
            "cache_hit_rate": figure("cache_hit", "avg"),
            "latency_p50_seconds": figure("latency_seconds", "p50"),
            "latency_p95_seconds": figure("latency_seconds", "p95"),
            "ttft_p95_seconds": figure("ttft_seconds", "p95"),
            "tokens_per_second_avg": figure("tokens_per_second", "avg"),
            "completion_tokens": figure("completion_tokens", "sum"),
            "feedback": {"up": ratings.get("up", 0), "down": ratings.get("down", 0)},
            "golden": dict(zip(("ts", "score", "questions", "passed", "model_version"), golden))
            if golden else None,
            "latest_sample": dict(zip(columns, latest)) if latest else None,
            "db_bytes": self.size_bytes(),
        }


def describe_metrics() -> list[dict]:
    return [{"name": m.name, "source": m.table, "help": m.help} for m in METRICS.values()]


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
