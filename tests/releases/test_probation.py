"""A degraded version is rolled back automatically within its probation window (real models)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.monitoring.store import MetricsStore
from appliance.releases import ReleaseManager
from appliance.releases.probation import MonitoringSignals, ObservedSignals, Probation, Watch
from tests.releases.conftest import follow_activation
from tests.releases.test_swap import prepare


@pytest.mark.slow
def test_garbage_model_is_rolled_back_with_reason_and_alert(tmp_path, release_settings, gguf_files):
    settings = release_settings(probation_seconds=300, probation_check_seconds=0.5, golden_tolerance=0.1)
    prepare(settings, tmp_path, {"v1": gguf_files["q8_0"], "bad": gguf_files["garbage"]})
    alerts: list[tuple[str, str, str]] = []

    async def scenario():
        probe = ReleaseManager(settings)
        first = probe.factory(probe.registry.active())
        probe.close()
        assistant = Assistant(first, ResponseCache(100, 60, True))
        manager = ReleaseManager(settings, assistant, on_alert=lambda *alert: alerts.append(alert))
        manager.start()
        manager.registry.set_state("erp", "bad", "staged")  # as if nobody validated it
        started = time.monotonic()
        result = await manager.activate("erp/bad", force=True, reason="operator skipped the gate")
        assert result["version"] == "erp/bad" and assistant.backend.version == "erp/bad"
        # The alert follows the whole rollback (switch, then drain), a moment after the switch.
        while not alerts and time.monotonic() - started < 280:
            await asyncio.sleep(0.25)
        elapsed = time.monotonic() - started
        await manager.stop()
        await assistant.backend.close()
        return manager, assistant, elapsed

    manager, assistant, elapsed = asyncio.run(scenario())
    assert elapsed < settings.releases.probation_seconds
    assert manager.registry.active().key == "erp/v1"
    assert assistant.backend.version == "erp/v1"
    bad = manager.registry.get("erp", "bad")
    assert bad.state == "failed" and "golden QA score 0.00" in bad.reason
    events = [(h["event"], h["version"], h["actor"]) for h in reversed(manager.history())]
    assert events[-3:] == [("activated", "bad", "cli"), ("probation_failed", "bad", "system"),
                           ("rolled_back", "v1", "probation")]
    history = manager.history()
    assert "forced while staged" in history[2]["reason"]
    assert history[0]["previous"] == "erp/bad" and "automatic rollback" in history[0]["reason"]
    assert alerts and alerts[0][0] == "critical" and "erp/bad" in alerts[0][1]
    manager.close()


def test_with_monitoring_probation_judges_on_the_stores_figures(tmp_path, release_settings):
    settings = release_settings(probation_min_requests=10)
    store = MetricsStore(tmp_path / "metrics.db")
    now = time.time()
    row = {"route": "/v1/chat/completions", "latency_s": 0.4, "stream": 0, "cache_hit": 0}
    store.insert("requests", [{**row, "ts": now - 200 + i, "status": 200, "model_version": "erp/v1"}
                              for i in range(30)])
    store.insert("requests", [{**row, "ts": now - 40 + i, "status": 500 if i % 2 else 200,
                               "model_version": "erp/v2"} for i in range(20)])
    probation = Probation(settings.releases, MonitoringSignals(store), rollback=None, passed=None)
    watch = Watch("erp/v2", "erp/v2", "erp/v1", "erp/v1", started=now - 50, until=now + 250)
    reason = probation.breach(watch)
    assert reason.startswith("error rate 50.0% (10 of 20 requests, from the monitoring store) "
                             "exceeds the previous version's 0.0% (0 of 30)")
    assert watch.checks[-1]["source"] == "monitoring store"
    assert store.version_figures("erp/v2", now - 50)["error_rate"] == 0.5

    # The manager takes the store when monitoring is on, and then observes nothing itself.
    assistant = Assistant(None, ResponseCache(10, 60, True))
    manager = ReleaseManager(settings, assistant, monitoring_store=store)
    assert isinstance(manager.signals, MonitoringSignals) and assistant.observers == []
    manager.close()
    fallback = ReleaseManager(settings, assistant)
    assert isinstance(fallback.signals, ObservedSignals) and assistant.observers == [fallback.signals]
    fallback.close()
    store.close()


@pytest.mark.slow
def test_with_monitoring_on_a_degraded_version_is_rolled_back_on_the_stores_figures(
        tmp_path, release_settings, gguf_files, live_server):
    settings = release_settings(probation_seconds=300, probation_check_seconds=0.5, golden_tolerance=0.1)
    settings.monitoring.flush_seconds = 0.1
    settings.monitoring.golden_interval_hours = 0
    prepare(settings, tmp_path, {"v1": gguf_files["q8_0"], "bad": gguf_files["garbage"]})
    server = live_server(settings)
    server.wait_ready(120)
    started = time.monotonic()
    response = httpx.post(f"{server.url}/api/models/erp/bad/activate", json={"reason": "test"}, timeout=600)
    assert response.status_code == 202, response.text
    row, _ = follow_activation(server.url, "erp/bad")
    assert row["activation"]["ok"] is True, row["activation"]
    listing = httpx.get(f"{server.url}/api/models").json()
    while listing["active"] != "erp/v1" and time.monotonic() - started < 280:
        time.sleep(0.25)
        listing = httpx.get(f"{server.url}/api/models").json()
    assert time.monotonic() - started < settings.releases.probation_seconds
    assert (listing["active"], listing["serving"]) == ("erp/v1", "erp/v1")
    bad = next(v for v in listing["versions"] if v["version"] == "bad")
    store = server.app.state.monitor.store
    runs = {r["model_version"]: r for r in store.db.query("select * from golden_runs order by id")}
    assert runs["erp/bad"]["score"] == 0.0 and runs["erp/v1"]["score"] > 0.3
    assert bad["state"] == "failed" and bad["reason"].startswith(
        f"automatic rollback: golden QA score 0.00 (0 of 3 passed, golden run #{runs['erp/bad']['id']} "
        "in the monitoring store) fell below the previous version's")

    def rollback_alerts():
        alerts = httpx.get(f"{server.url}/api/alerts").json()["alerts"]
        return [a for a in alerts if "erp/bad" in a["message"] and a["severity"] == "critical"]

    deadline = time.monotonic() + 60  # the alert follows the whole rollback: switch, then drain
    while not rollback_alerts() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rollback_alerts()
