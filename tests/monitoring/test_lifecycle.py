"""Monitoring across restarts, switched off, the golden QA run, system samples and the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.monitoring.sampler import GpuProbe, Sampler

pytestmark = pytest.mark.timeout(300)
TIMEOUT = 180  # seconds per HTTP call: the 2-core machine is shared, answers can queue for long


def chat(content: str = "What is a purchase order?") -> dict:
    return {"model": "default", "messages": [{"role": "user", "content": content}], "max_tokens": 8}


def test_metrics_survive_a_server_restart(live_settings, serve):
    settings = live_settings()
    first = serve(settings)
    for _ in range(3):
        assert httpx.post(first.url + "/v1/chat/completions", json=chat(), timeout=TIMEOUT).status_code == 200
    first.stop()

    second = serve(live_settings())  # same data dir
    summary = httpx.get(second.url + "/api/metrics/summary", params={"since": "1h"}, timeout=TIMEOUT).json()
    assert summary["requests"] == 3
    assert summary["latency_p95_seconds"] > 0


def test_monitoring_can_be_switched_off(live_settings, serve):
    server = serve(live_settings(monitoring={"enabled": False}))
    assert httpx.post(server.url + "/v1/chat/completions", json=chat(), timeout=TIMEOUT).status_code == 200
    off = httpx.get(server.url + "/metrics", timeout=TIMEOUT)
    assert off.status_code == 503
    assert off.json()["error"]["code"] == "monitoring_disabled"
    assert "monitoring.enabled" in off.json()["error"]["message"]
    assert not (server.settings.resolved_data_dir() / "metrics.db").exists()


def test_golden_run_scores_keyword_matches(tmp_path, model_path, caplog):
    from appliance.assistant import Assistant
    from appliance.cache import ResponseCache
    from appliance.llm.local import LocalBackend
    from appliance.monitoring.monitor import Monitor
    from appliance.settings import Settings

    golden = tmp_path / "golden.jsonl"
    settings = Settings(data_dir=tmp_path / "data")
    settings.engine.model_path, settings.engine.slots, settings.engine.max_request_tokens = model_path, 4, 512
    settings.monitoring.golden_qa_path = str(golden)
    settings.monitoring.golden_max_tokens = 24

    monitor = Monitor(settings, Assistant(None, ResponseCache()))
    with caplog.at_level(logging.INFO, logger="appliance.monitoring.monitor"):
        assert asyncio.run(monitor.golden_run()) is None
    assert f"golden QA set {golden} not found; skipping" in caplog.text

    golden.write_text("\n".join(json.dumps(item) for item in [
        {"id": "q1", "lang": "en", "question": "Say the word invoice.", "answer": "invoice",
         "keywords": []},  # no keywords: always passes
        {"id": "q2", "lang": "en", "question": "Hello", "answer": "", "keywords": ["zqxjv-never"]},
    ]) + "\n")
    backend = LocalBackend(settings.engine)
    monitor.assistant.serving.install(backend)
    # While a model version is being timed on the same cores, the accuracy run waits its turn.
    monitor.golden_deferred_by = lambda: "erp/v2 is being validated"
    with caplog.at_level(logging.INFO, logger="appliance.monitoring.monitor"):
        assert asyncio.run(monitor.golden_run()) is None
    assert "golden QA run deferred by 300 s: erp/v2 is being validated" in caplog.text
    monitor.golden_deferred_by = lambda: None
    try:
        row = asyncio.run(monitor.golden_run())
    finally:
        asyncio.run(backend.close())
    assert (row["questions"], row["passed"], row["score"]) == (2, 1, 0.5)
    stored = monitor.store.aggregate("golden_accuracy", "last", time.time() - 60, time.time() + 1)
    assert stored == (0.5, 1)
    detail = json.loads(list(monitor.store.db["golden_runs"].rows)[0]["detail"])
    assert [d["id"] for d in detail] == ["q1", "q2"] and detail[0]["answer"]
    monitor.store.close()


def test_sampler_records_memory_and_cpu_and_gpu_only_when_present():
    gpu = GpuProbe()
    sampler = Sampler(lambda: {"queue_depth": 2, "slots_busy": 3, "slots_total": 4}, gpu=gpu)
    row = sampler.sample()
    assert row["rss_bytes"] > 10 * 2**20 and 0 < row["memory_used_percent"] < 100
    assert (row["queue_depth"], row["slots_busy"], row["slots_total"]) == (2, 3, 4)
    if gpu.available:
        assert row["gpu_memory_total_bytes"] > 0
    else:
        assert row["gpu_utilization_percent"] is None and row["gpu_memory_used_bytes"] is None


def test_cli_metrics_alerts_and_chart(tmp_path):
    from appliance.monitoring.alerts import AlertManager
    from appliance.monitoring.collector import RequestEvent
    from appliance.monitoring.store import MetricsStore
    from appliance.settings import AlertRule

    data = tmp_path / "data"
    store = MetricsStore(data / "metrics.db")
    now = time.time()
    store.insert("requests", [RequestEvent(ts=now - 100 + i, route="/v1/chat/completions", status=200,
                                           latency_s=40.0, ttft_s=0.5).row() for i in range(10)])
    store.insert("samples", [{"ts": now - 5, "rss_bytes": 400 * 2**20, "memory_used_percent": 40.0}])
    rule = AlertRule(name="latency_p95", metric="latency_seconds", aggregate="p95", value=30)
    AlertManager(store, [rule]).evaluate()
    store.close()

    runner = CliRunner()
    summary = runner.invoke(main, ["metrics", "--data-dir", str(data), "--since", "1h"])
    assert summary.exit_code == 0, summary.output
    assert "requests                  10" in summary.output and "40 s / 40 s" in summary.output
    assert "no GPU" in summary.output

    alerts = runner.invoke(main, ["alerts", "--data-dir", str(data)])
    assert alerts.exit_code == 0 and "1 firing" in alerts.output and "latency_p95" in alerts.output

    out = tmp_path / "dash.png"
    chart = runner.invoke(main, ["metrics", "--data-dir", str(data), "chart", "--out", str(out),
                                 "--since", "1h", "--step", "1m"])
    assert chart.exit_code == 0, chart.output
    assert out.read_bytes()[:4] == b"\x89PNG"

    missing = runner.invoke(main, ["alerts", "--data-dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "No metrics database" in missing.output


def test_configuration_docs_list_every_monitoring_setting():
    from pathlib import Path

    from appliance.settings import settings_markdown

    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    table = settings_markdown()
    assert table in docs, "docs/configuration.md is stale: paste `appliance settings docs` into it"
    assert "`monitoring.enabled`" in table and "`alerts.rules`" in table


def test_every_scheduled_job_runs(tmp_path, monkeypatch):
    """The golden run is a coroutine (it runs on the event loop); the other jobs are plain
    functions (they run in the named `monitor-jobs` threads). Each one has to actually run."""
    from datetime import datetime

    from appliance.assistant import Assistant
    from appliance.cache import ResponseCache
    from appliance.monitoring.alerts import AlertManager
    from appliance.monitoring.monitor import Monitor
    from appliance.monitoring.store import MetricsStore
    from appliance.settings import Settings

    ran: dict[str, str] = {}

    async def golden_run(self):
        ran["golden"] = "event loop" if asyncio.get_running_loop() else "?"

    def on_thread(name, original):
        def job(*args, **kwargs):
            ran[name] = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
            return original(*args, **kwargs)
        return job

    monkeypatch.setattr(Monitor, "golden_run", golden_run)
    monkeypatch.setattr(Monitor, "sample", on_thread("sample", Monitor.sample))
    monkeypatch.setattr(AlertManager, "evaluate", on_thread("alerts", AlertManager.evaluate))
    monkeypatch.setattr(MetricsStore, "maintain", on_thread("maintenance", MetricsStore.maintain))
    settings = Settings(data_dir=tmp_path / "data")
    monitor = Monitor(settings, Assistant(None, ResponseCache()))

    async def scenario():
        monitor.start()
        try:
            for job in monitor.scheduler.get_jobs():
                job.modify(next_run_time=datetime.now())
            deadline = time.monotonic() + 20
            while len(ran) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await monitor.stop()

    asyncio.run(scenario())
    assert ran == {"golden": "event loop", "sample": "monitor-jobs", "alerts": "monitor-jobs",
                   "maintenance": "monitor-jobs"}
