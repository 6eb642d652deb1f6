"""Swaps at a time or in the next maintenance window, via APScheduler; schedules live in SQLite.

APScheduler's own SQLAlchemy job store would pickle callables; a row per schedule in the releases
database is simpler to query, and every pending row is registered again when the process starts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from appliance.errors import ConfigError, InvalidRequest, NotFound
from appliance.releases.registry import Registry, now_iso
from appliance.settings import ReleasesSettings

log = logging.getLogger(__name__)

MISFIRE_GRACE_SECONDS = 300  # a swap missed by more than this (server was down) is not run late


def window_trigger(cron: str, tz: str) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(cron, timezone=ZoneInfo(tz))
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"releases.maintenance_cron {cron!r} is not a crontab expression "
            f"(minute hour day month weekday, e.g. '0 3 * * *'): {exc}"
        ) from exc


def next_window(cron: str, tz: str, after: datetime | None = None) -> datetime:
    after = after or datetime.now(UTC)
    fire = window_trigger(cron, tz).get_next_fire_time(None, after)
    if fire is None:
        raise ConfigError(f"releases.maintenance_cron {cron!r} never fires; choose another expression.")
    return fire


class SwapScheduler:
    """Owns the AsyncIOScheduler; `activate(ref, actor, reason)` does the actual swap."""

    def __init__(self, registry: Registry, settings: ReleasesSettings,
                 activate: Callable[[str, str, str], Awaitable[Any]]):
        self.registry = registry
        self.settings = settings
        self._activate = activate
        self.scheduler: AsyncIOScheduler | None = None

    @property
    def table(self):
        return self.registry.db["model_schedules"]

    def start(self) -> None:
        """Start the scheduler on the running loop and register every pending schedule again."""
        self.scheduler = AsyncIOScheduler(timezone=ZoneInfo(self.settings.timezone))
        self.scheduler.start()
        for row in self.table.rows_where("state = 'pending'", order_by="run_at"):
            run_at = datetime.fromisoformat(row["run_at"])
            if run_at < datetime.now(UTC) - timedelta(seconds=MISFIRE_GRACE_SECONDS):
                self._finish(row["id"], "missed", "the appliance was not running at the scheduled time")
                continue
            self._register(row["id"], run_at)

    def shutdown(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None

    def add(self, name: str, version: str, *, at: datetime | None = None, actor: str = "cli") -> dict:
        """Schedule activation at `at`, or (None) at the next maintenance window."""
        cron = ""
        if at is None:
            cron = self.settings.maintenance_cron
            at = next_window(cron, self.settings.timezone)
        elif at.tzinfo is None:
            at = at.replace(tzinfo=ZoneInfo(self.settings.timezone))
        if at < datetime.now(UTC) - timedelta(seconds=1):
            raise InvalidRequest(f"{at.isoformat()} is in the past; give a future time, or activate now.")
        self.registry.get(name, version)  # raises for an unknown version
        row = {"id": uuid.uuid4().hex[:12], "name": name, "version": version,
               "run_at": at.astimezone(UTC).isoformat(), "cron": cron, "state": "pending",
               "created_at": now_iso(), "updated_at": now_iso(), "reason": ""}
        self.table.insert(row)
        self.registry.record("scheduled", name, version, actor=actor,
                             reason=f"activation scheduled for {row['run_at']}"
                             + (f" (maintenance window {cron})" if cron else ""))
        if self.scheduler is not None:
            self._register(row["id"], at)
        return row

    def cancel(self, schedule_id: str, *, actor: str = "cli") -> dict:
        row = self.get(schedule_id)
        if row["state"] != "pending":
            raise InvalidRequest(f"Schedule {schedule_id} is {row['state']}, not pending; nothing to cancel.")
        if self.scheduler is not None and self.scheduler.get_job(schedule_id):
            self.scheduler.remove_job(schedule_id)
        self._finish(schedule_id, "cancelled", f"cancelled by {actor}")
        self.registry.record("schedule_cancelled", row["name"], row["version"], actor=actor)
        return self.get(schedule_id)

    def get(self, schedule_id: str) -> dict:
        rows = list(self.table.rows_where("id = ?", [schedule_id]))
        if not rows:
            raise NotFound(f"No schedule {schedule_id}; `appliance models schedule --list` shows them.")
        return rows[0]

    def list(self, pending_only: bool = False) -> list[dict]:
        where = "state = 'pending'" if pending_only else None
        return list(self.table.rows_where(where, order_by="run_at desc"))

    def _register(self, schedule_id: str, run_at: datetime) -> None:
        self.scheduler.add_job(self._run, DateTrigger(run_at), args=[schedule_id], id=schedule_id,
                               replace_existing=True, misfire_grace_time=MISFIRE_GRACE_SECONDS)

    async def _run(self, schedule_id: str) -> None:
        row = self.get(schedule_id)
        if row["state"] != "pending":
            return
        self._finish(schedule_id, "running", "")
        try:
            await self._activate(f"{row['name']}/{row['version']}", "scheduler",
                                 f"scheduled activation {schedule_id}")
        except Exception as exc:  # recorded on the schedule; the registry history has the details
            log.error("scheduled activation %s failed: %s", schedule_id, exc)
            self._finish(schedule_id, "failed", getattr(exc, "message", str(exc)))
            return
        self._finish(schedule_id, "done", "")

    def _finish(self, schedule_id: str, state: str, reason: str) -> None:
        self.table.update(schedule_id, {"state": state, "reason": reason, "updated_at": now_iso()})
