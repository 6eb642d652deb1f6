"""Monitoring in the live server (real model, real HTTP on loopback): every /v1 request becomes an
event, /metrics parses, feedback is stored, the JSON API and charts answer, a dead webhook is harmless."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import LiveServer, free_port

pytestmark = pytest.mark.timeout(300)
TIMEOUT = 180  # seconds per HTTP call: the 2-core machine is shared, answers can queue for long

FIRES_AT_ONCE = {"name": "any_traffic", "metric": "requests", "aggregate": "count",
                 "window_seconds": 600, "comparison": ">", "value": 0, "severity": "info"}


def chat(content: str = "Name one ERP module.", **extra) -> dict:
    return {"model": "default", "messages": [{"role": "user", "content": content}], "max_tokens": 16,
            **extra}


@pytest.fixture(scope="module")
def live(tmp_path_factory, model_path):
    """One server for the module: max_queue=0 so a burst gets 429s; a webhook nobody answers."""
    from appliance.settings import AlertRule, Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("live") / "data")
    for key, value in {"model_path": model_path, "slots": 4, "max_request_tokens": 512,
                       "default_max_tokens": 32, "max_queue": 0}.items():
        setattr(settings.engine, key, value)
    for key, value in {"flush_seconds": 0.1, "sample_seconds": 0.5, "golden_interval_hours": 0}.items():
        setattr(settings.monitoring, key, value)
    settings.alerts.rules = [AlertRule(**FIRES_AT_ONCE)]
    settings.alerts.evaluate_seconds = 0.3
    settings.alerts.channels = ["log", "webhook"]
    settings.alerts.webhook_url = f"http://127.0.0.1:{free_port()}/dead"
    settings.alerts.webhook_timeout_seconds = 1
    settings.alerts.retry_attempts = 3
    settings.alerts.retry_base_seconds = 0.2
    server = LiveServer(settings).start()
    yield server
    server.stop()


def rows(server, sql: str, args=()) -> list[dict]:
    server.monitor.collector.flush()
    return list(server.monitor.store.db.query(sql, args))


def rows_when(server, count: int, sql: str, args=(), timeout: float = 10) -> list[dict]:
    """The query's rows once there are `count` of them (an event is recorded just after its
    response has gone out, so a client can be a moment ahead of it)."""
    deadline = time.monotonic() + timeout
    found = rows(server, sql, args)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.02)
        found = rows(server, sql, args)
    return found


def test_every_v1_request_is_recorded(live):
    url = live.url
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        ok = client.post("/v1/chat/completions", json=chat(temperature=0))
        again = client.post("/v1/chat/completions", json=chat(temperature=0))  # cache hit
        with client.stream("POST", "/v1/completions", json={"model": "default", "prompt": "ERP stands for",
                                                            "max_tokens": 12, "stream": True}) as stream:
            assert stream.status_code == 200 and "[DONE]" in stream.read().decode()
        bad = client.post("/v1/chat/completions", json={"model": "default", "messages": []})
        unknown = client.post("/v1/chat/completions", json=chat(model="gpt-99"))
    assert (ok.status_code, again.status_code, bad.status_code, unknown.status_code) == (200, 200, 400, 404)
    assert again.headers["X-Cache"] == "hit"

    async def burst():  # more concurrent answers than slots, no queue: some get 429
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
            return await asyncio.gather(*(client.post("/v1/chat/completions", json=chat(
                f"Question {i}: what is an invoice?", max_tokens=24)) for i in range(10)))

    statuses = [r.status_code for r in asyncio.run(burst())]
    assert 429 in statuses and 200 in statuses

    recorded = rows_when(live, 15, "SELECT * FROM requests ORDER BY ts")
    by_status = {}
    for row in recorded:
        by_status.setdefault(row["status"], []).append(row)
    assert len(recorded) == 15
    assert len(by_status[429]) == statuses.count(429)
    assert {r["error_type"] for r in by_status[429]} == {"queue_full"}
    assert by_status[400][0]["error_type"] == "invalid_request"
    assert by_status[404][0]["error_type"] == "model_not_found"

    first, hit, streamed = by_status[200][:3]
    assert first["response_id"] == ok.json()["id"]
    assert first["cache_hit"] == 0 and hit["cache_hit"] == 1
    assert first["completion_tokens"] == ok.json()["usage"]["completion_tokens"]
    assert first["prompt_tokens"] == ok.json()["usage"]["prompt_tokens"]
    assert 0 < first["ttft_s"] <= first["latency_s"]
    assert first["tokens_per_s"] > 0 and hit["tokens_per_s"] is None
    assert first["model_version"].startswith("smollm2-135m-instruct.q8_0/") and first["backend"] == "local"
    assert first["retrieval_s"] is None  # no retrieval yet
    assert streamed["stream"] == 1 and streamed["route"] == "/v1/completions"
    assert streamed["completion_tokens"] > 0 and streamed["ttft_s"] < streamed["latency_s"]


def test_metrics_endpoint_parses_as_prometheus_text(live):
    httpx.post(live.url + "/v1/chat/completions", json=chat(), timeout=TIMEOUT)
    response = httpx.get(live.url + "/metrics", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("appliance_requests", "appliance_request_duration_seconds", "appliance_tokens",
                 "appliance_time_to_first_token_seconds", "appliance_queue_depth", "appliance_slots_busy",
                 "appliance_response_cache_hits", "appliance_alerts_firing", "process_resident_memory_bytes"):
        assert name in families, name
    requests = {(s.labels["route"], s.labels["status"]): s.value
                for s in families["appliance_requests"].samples if s.name == "appliance_requests_total"}
    assert requests[("/v1/chat/completions", "200")] >= 1
    durations = [s for s in families["appliance_request_duration_seconds"].samples
                 if s.name.endswith("_count")]
    assert sum(s.value for s in durations) == sum(requests.values())
    assert "appliance_gpu_utilization_percent" not in families  # no GPU here: absent, not zero


def test_feedback_is_stored_with_the_answer(live):
    answer = httpx.post(live.url + "/v1/chat/completions", json=chat(), timeout=TIMEOUT).json()
    rows_when(live, 1, "SELECT 1 FROM requests WHERE response_id = ?", [answer["id"]])
    stored = httpx.post(live.url + "/api/feedback", json={"response_id": answer["id"], "rating": "down",
                                                           "comment": "too vague"}, timeout=TIMEOUT)
    assert stored.status_code == 201
    assert stored.json()["model_version"].startswith("smollm2-135m-instruct.q8_0/")
    [row] = rows(live, "SELECT * FROM feedback WHERE response_id = ?", [answer["id"]])
    assert (row["rating"], row["comment"]) == ("down", "too vague")

    wrong = httpx.post(live.url + "/api/feedback", json={"response_id": answer["id"], "rating": "meh"}, timeout=TIMEOUT)
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "invalid_request"


def test_json_api_series_alerts_and_chart(live):
    answer = httpx.post(live.url + "/v1/chat/completions", json=chat(), timeout=TIMEOUT).json()
    rows_when(live, 1, "SELECT 1 FROM requests WHERE response_id = ?", [answer["id"]])
    series = httpx.get(live.url + "/api/metrics/series",
                       params={"metric": "latency_seconds", "aggregate": "p95", "since": "10m", "step": "60"}, timeout=TIMEOUT)
    assert series.status_code == 200
    points = series.json()["points"]
    assert points and all(p["value"] > 0 for p in points)
    rss = httpx.get(live.url + "/api/metrics/series", params={"metric": "rss_bytes", "since": "10m"}, timeout=TIMEOUT).json()
    assert rss["points"] and rss["points"][-1]["value"] > 50 * 2**20

    bad = httpx.get(live.url + "/api/metrics/series", params={"metric": "nope"}, timeout=TIMEOUT)
    assert bad.status_code == 400 and "use one of" in bad.json()["error"]["message"]

    summary = httpx.get(live.url + "/api/metrics/summary", params={"since": "1h"}, timeout=TIMEOUT).json()
    assert summary["requests"] >= 1 and summary["latest_sample"]["gpu_utilization_percent"] is None

    chart = httpx.get(live.url + "/api/metrics/chart.png", params={"since": "10m", "step": "60"}, timeout=TIMEOUT)
    assert chart.status_code == 200 and chart.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_dead_webhook_does_not_affect_requests(live):
    """The rule fires on any traffic and its webhook is dead: requests still answer, and the
    failed deliveries end in the alert's history after their retries."""
    deadline = time.monotonic() + 20
    alerts = []
    while time.monotonic() < deadline:
        alerts = httpx.get(live.url + "/api/alerts", timeout=TIMEOUT).json()["alerts"]
        if alerts and any(h["kind"] == "notify_failed" for h in alerts[0]["history"]):
            break
        r = httpx.post(live.url + "/v1/chat/completions", json=chat(), timeout=TIMEOUT)
        assert r.status_code == 200
    [alert] = alerts
    assert alert["rule"] == "any_traffic" and alert["state"] == "firing"
    kinds = [h["kind"] for h in alert["history"]]
    assert kinds.count("fired") == 1
    assert "notify_delivered" in kinds  # the log channel
    assert "notify_failed" in kinds  # the webhook, after 3 attempts
