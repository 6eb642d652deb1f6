"""metrics.db: migrations, persistence across restarts, rollups, retention and the size bound."""

from __future__ import annotations

import random

import pytest

from appliance.monitoring.collector import Collector, RequestEvent
from appliance.monitoring.migrations import migrate, migration
from appliance.monitoring.store import HOUR, MINUTE, MetricsStore, Retention

T0 = 1_700_000_000 - 1_700_000_000 % HOUR  # an hour boundary, so buckets line up predictably


def request(ts: float, latency: float, status: int = 200, **extra) -> dict:
    return RequestEvent(ts=ts, route="/v1/chat/completions", status=status, latency_s=latency,
                        completion_tokens=20, prompt_tokens=30, tokens_per_s=50.0, **extra).row()


def test_migrations_are_recorded_and_applied_once(store):
    names = [row["name"] for row in store.db["_migrations"].rows]
    assert names == migration.names
    assert migrate(store.db) == []
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_events_survive_a_restart(tmp_path):
    path = tmp_path / "metrics.db"
    first = MetricsStore(path)
    collector = Collector(first, flush_seconds=0.05)
    collector.start()
    for i in range(25):
        collector.record_request(RequestEvent(ts=T0 + i, route="/v1/completions", status=200,
                                              latency_s=0.5 + i / 100))
    collector.stop()  # flushes what is left
    first.close()

    reopened = MetricsStore(path)
    count, _ = reopened.aggregate("requests", "count", T0, T0 + 60)
    assert count == 25
    assert reopened.aggregate("latency_seconds", "max", T0, T0 + 60)[0] == pytest.approx(0.74)
    reopened.close()


def test_full_buffer_drops_and_counts_instead_of_blocking(store):
    collector = Collector(store, buffer_size=10, flush_seconds=60)  # writer not started
    accepted = [collector.record_request(RequestEvent(ts=T0, route="/v1/x", status=200, latency_s=1))
                for _ in range(15)]
    assert accepted.count(True) == 10 and collector.dropped == 5
    assert collector.flush() == 10


def _synthetic(store: MetricsStore, hours: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    rows = []
    for second in range(0, hours * HOUR, 7):
        latency = rng.lognormvariate(0, 0.8)
        rows.append(request(T0 + second + rng.random(), latency, 500 if rng.random() < 0.03 else 200))
    store.insert("requests", rows)
    store.insert("samples", [{"ts": T0 + s, "rss_bytes": 300_000_000 + 1000 * s, "queue_depth": s % 5}
                             for s in range(0, hours * HOUR, 10)])


@pytest.mark.parametrize("step", [MINUTE, 15 * MINUTE, HOUR])
def test_rollups_keep_aggregates_correct(tmp_path, step):
    store = MetricsStore(tmp_path / "metrics.db", Retention(raw_seconds=HOUR))
    _synthetic(store, hours=4)
    now = T0 + 4 * HOUR + 120
    query = dict(since=T0, until=T0 + 4 * HOUR, step=step, now=now)
    before = {agg: store.series("latency_seconds", agg, **query)
              for agg in ("count", "sum", "avg", "min", "max", "p95")}
    errors_before = store.series("error", "avg", **query)
    rss_before = store.series("rss_bytes", "max", **query)

    result = store.maintain(now=now)
    assert result["deleted"]["requests"] > 0  # raw rows past the hour's retention are gone
    assert store.db["requests"].count < sum(p["count"] for p in before["count"])

    for agg in ("count", "sum", "avg", "min", "max"):
        after = store.series("latency_seconds", agg, **query)
        assert [p["ts"] for p in after] == [p["ts"] for p in before[agg]]
        assert [p["value"] for p in after] == pytest.approx([p["value"] for p in before[agg]], rel=1e-9)
    for exact, approx in zip(before["p95"], store.series("latency_seconds", "p95", **query)):
        assert approx["value"] == pytest.approx(exact["value"], rel=0.06)  # one histogram bucket
    errors_after = store.series("error", "avg", **query)
    assert [p["value"] for p in errors_after] == pytest.approx([p["value"] for p in errors_before])
    assert store.series("rss_bytes", "max", **query) == rss_before
    store.close()


def test_hour_rollups_serve_ranges_past_minute_retention(tmp_path):
    store = MetricsStore(tmp_path / "metrics.db", Retention(raw_seconds=HOUR, minute_seconds=2 * HOUR))
    _synthetic(store, hours=6)
    now = T0 + 6 * HOUR + 120
    exact = store.aggregate("latency_seconds", "avg", T0, T0 + 6 * HOUR, now=now)
    store.maintain(now=now)
    assert store.db.execute("SELECT min(bucket) FROM rollups WHERE resolution = 60").fetchone()[0] >= T0 + 3 * HOUR
    value, count = store.aggregate("latency_seconds", "avg", T0, T0 + 6 * HOUR, now=now)
    assert count == exact[1]
    assert value == pytest.approx(exact[0], rel=1e-9)
    store.close()


def test_size_bound_trims_oldest_data(tmp_path):
    limit = 500_000
    store = MetricsStore(tmp_path / "metrics.db", Retention(raw_seconds=30 * 86400, max_bytes=limit))
    _synthetic(store, hours=6)
    store.rollup(now=T0 + 6 * HOUR + 120)
    assert store.size_bytes() > limit
    store.maintain(now=T0 + 6 * HOUR + 120)
    assert store.size_bytes() <= limit
    on_disk = sum(f.stat().st_size for f in tmp_path.glob("metrics.db*") if f.suffix != ".db-shm")
    assert on_disk <= limit  # freed pages went back to the file system
    assert store.db["rollups"].count > 0  # raw rows go first; the rollups still cover the period
    newest = store.db.execute("SELECT max(ts) FROM requests").fetchone()[0]
    assert newest > T0 + 5 * HOUR  # the newest rows are what was kept
    store.close()


def test_feedback_is_stored_with_the_answer(store):
    store.insert("requests", [request(T0, 1.0, response_id="chatcmpl-abc", model_version="m@1")])
    row = store.add_feedback("chatcmpl-abc", "down", "wrong VAT rate", ts=T0 + 5)
    assert row["model_version"] == "m@1"
    assert store.aggregate("feedback_positive", "avg", T0, T0 + 10) == (0.0, 1)
    assert list(store.db["feedback"].rows)[0]["comment"] == "wrong VAT rate"
