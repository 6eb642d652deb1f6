"""Schedules persist in SQLite and run after a restart; probation judges the signals it is given."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from appliance.assistant import RequestOutcome
from appliance.releases import ReleaseManager
from appliance.releases.probation import ObservedSignals, Probation, Watch
from appliance.releases.scheduler import next_window
from tests.releases.conftest import write_version


@pytest.fixture
def ready_version(tmp_path, release_settings):
    """A settings object whose registry holds one ready version (no model is loaded: no assistant)."""
    settings = release_settings()
    gguf = tmp_path / "small.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1024))
    write_version(tmp_path / "models", "erp", "v2", gguf, copy=True)
    manager = ReleaseManager(settings)
    manager.registry.scan()
    manager.registry.set_state("erp", "v2", "ready")
    manager.close()
    return settings


def test_schedule_survives_a_restart(ready_version):
    settings = ready_version

    async def first_process():
        manager = ReleaseManager(settings)
        manager.start()
        row = manager.schedule("erp/v2", at=datetime.now(UTC) + timedelta(seconds=3))
        await manager.stop()  # the process goes down before the time comes
        manager.close()
        return row

    async def second_process():
        manager = ReleaseManager(settings)
        manager.start()  # re-registers the pending schedule from SQLite
        deadline = time.monotonic() + 20
        while manager.registry.active() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await manager.stop()
        return manager

    row = asyncio.run(first_process())
    manager = asyncio.run(second_process())
    assert manager.registry.active().key == "erp/v2"
    assert manager.scheduler.get(row["id"])["state"] == "done"
    events = [(h["event"], h["actor"]) for h in manager.history()]
    assert ("activated", "scheduler") in events and ("scheduled", "cli") in events
    manager.close()


def test_missed_schedule_is_not_run_late(ready_version):
    settings = ready_version
    manager = ReleaseManager(settings)
    manager.scheduler.table.insert({
        "id": "old", "name": "erp", "version": "v2", "state": "pending", "cron": "", "reason": "",
        "run_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "created_at": "", "updated_at": ""})

    async def start():
        manager.start()
        await manager.stop()

    asyncio.run(start())
    assert manager.scheduler.get("old")["state"] == "missed"
    assert manager.registry.active() is None
    manager.close()


def test_maintenance_window_schedule_uses_the_cron_setting(ready_version):
    settings = ready_version
    settings.releases.maintenance_cron = "30 2 * * *"
    manager = ReleaseManager(settings)
    row = manager.schedule("erp/v2")
    run_at = datetime.fromisoformat(row["run_at"])
    assert (run_at.hour, run_at.minute) == (2, 30) and row["cron"] == "30 2 * * *"
    assert run_at == next_window("30 2 * * *", "UTC")
    manager.close()


def _feed(signals, version, n, *, errors=0, latency=0.1, at=None):
    at = at or time.time()
    for i in range(n):
        signals(RequestOutcome(version, at, latency, i >= errors, "boom" if i < errors else None))


@pytest.mark.parametrize("errors, latency, expect", [
    (0, 0.1, None),
    (10, 0.1, "error rate"),
    (0, 1.0, "p95 latency"),
])
def test_probation_compares_with_the_previous_version(release_settings, errors, latency, expect):
    settings = release_settings(probation_min_requests=20)
    signals = ObservedSignals()
    now = time.time()
    _feed(signals, "old", 40, at=now - 10)
    _feed(signals, "new", 40, errors=errors, latency=latency, at=now + 1)
    probation = Probation(settings.releases, signals, rollback=None, passed=None)
    watch = Watch("erp/new", "new", "erp/old", "old", started=now, until=now + 60)
    reason = probation.breach(watch)
    assert (reason is None) if expect is None else (expect in reason)


def test_probation_waits_for_enough_requests(release_settings):
    settings = release_settings(probation_min_requests=20)
    signals = ObservedSignals()
    now = time.time()
    _feed(signals, "new", 5, errors=5, at=now + 1)
    probation = Probation(settings.releases, signals, rollback=None, passed=None)
    assert probation.breach(Watch("erp/new", "new", "erp/old", "old", started=now, until=now + 60)) is None
