"""A degraded version is rolled back automatically within its probation window (real models)."""

from __future__ import annotations

import asyncio
import time

import pytest

from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.releases import ReleaseManager
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
        while manager.registry.active().key != "erp/v1" and time.monotonic() - started < 280:
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
