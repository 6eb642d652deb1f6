"""Monitor: builds the monitoring parts from settings and runs their schedule in the server process.

Jobs (APScheduler, in-process): system samples, alert rule evaluation, rollup/retention, and the
golden QA accuracy run. Request events come in through `record_request`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from appliance.answers.golden import accuracy_run, golden_path, load_golden
from appliance.monitoring.alerts import AlertManager
from appliance.monitoring.channels import build_channels
from appliance.monitoring.collector import Collector, RequestEvent
from appliance.monitoring.delivery import Dispatcher
from appliance.monitoring.prometheus import PrometheusMetrics
from appliance.monitoring.sampler import GpuProbe, Sampler
from appliance.monitoring.store import MetricsStore, Retention
from appliance.settings import Settings
from appliance.threadnames import name_native_thread

log = logging.getLogger(__name__)

GOLDEN_FIRST_RUN_SECONDS = 300  # after start-up, once the model has loaded and warmed up


def metrics_db_path(settings: Settings):
    return settings.resolved_data_dir() / "metrics.db"


class Monitor:
    def __init__(self, settings: Settings, assistant=None, *, gpu: GpuProbe | None = None):
        self.settings = settings
        self.assistant = assistant
        m = settings.monitoring
        self.store = MetricsStore(metrics_db_path(settings), Retention.from_settings(m))
        self.prometheus = PrometheusMetrics(self.gauges)
        self.collector = Collector(self.store, buffer_size=m.buffer_size, flush_seconds=m.flush_seconds,
                                   observers=[self.prometheus.observe_request])
        self.sampler = Sampler(self._engine_status, gpu=gpu)
        self.alerts = AlertManager(self.store, settings.alerts.rules)
        self.dispatcher = Dispatcher(build_channels(settings.alerts), attempts=settings.alerts.retry_attempts,
                                     base_delay=settings.alerts.retry_base_seconds,
                                     on_result=self.alerts.record_delivery)
        self.alerts.dispatcher = self.dispatcher
        self.scheduler: AsyncIOScheduler | None = None
        # Why the accuracy run should wait now (a model version being validated or swapped in,
        # whose timings a golden run on the same cores would distort), or None; set by create_app.
        self.golden_deferred_by: Callable[[], str | None] | None = None

    # -- lifecycle (inside the server's event loop) ---------------------------------------------

    def start(self) -> None:
        m, a = self.settings.monitoring, self.settings.alerts
        self.collector.start()
        self.dispatcher.start()
        # The synchronous jobs (system sample, alert rules, rollup and retention) run in a small
        # pool of named threads, so their CPU time shows up under "monitor-jobs" in `top -H`;
        # the golden run is a coroutine and runs on the event loop (the default executor).
        pool = ThreadPoolExecutor(2, pool_kwargs={"initializer": name_native_thread,
                                                  "initargs": ("monitor-jobs",)})
        self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(),
                                          executors={"default": AsyncIOExecutor(), "threads": pool})
        now = datetime.now()
        job = dict(trigger="interval", max_instances=1, coalesce=True, misfire_grace_time=None)
        sync = dict(job, executor="threads")
        self.scheduler.add_job(self.sample, seconds=m.sample_seconds, next_run_time=now, id="sample", **sync)
        self.scheduler.add_job(self.alerts.evaluate, seconds=a.evaluate_seconds, id="alerts", **sync)
        self.scheduler.add_job(self.store.maintain, seconds=m.maintenance_seconds, id="maintenance", **sync)
        if m.golden_interval_hours > 0:
            self.scheduler.add_job(
                self.golden_run, hours=m.golden_interval_hours, id="golden",
                next_run_time=now + timedelta(seconds=GOLDEN_FIRST_RUN_SECONDS), **job)
        self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await asyncio.to_thread(self.collector.stop)
        await asyncio.to_thread(self.dispatcher.stop)
        self.store.close()

    # -- inputs --------------------------------------------------------------------------------

    def record_request(self, event: RequestEvent) -> None:
        self.collector.record_request(event)

    def record_feedback(self, response_id: str, rating: str, comment: str | None, *,
                        user_id: int | None = None, username: str | None = None) -> dict:
        self.collector.flush()  # the rated answer's event (its model version) may still be buffered
        row = self.store.add_feedback(response_id, rating, comment, user_id=user_id, username=username)
        self.prometheus.feedback.labels(rating).inc()
        return row

    def sample(self) -> dict:
        row = self.sampler.sample()
        self.collector.record_sample(row)
        return row

    async def golden_run(self) -> dict | None:
        """Score the golden QA set; skipped (with a log line) without the file or the model."""
        configured = self.settings.monitoring.golden_qa_path
        path = golden_path(self.settings.resolve(configured) if configured else "")
        if not path.is_file():
            log.info("golden QA set %s not found; skipping the accuracy run", path)
            return None
        backend = getattr(self.assistant, "backend", None)
        if backend is None or not backend.ready:
            log.info("the model is not ready; skipping the golden QA run")
            return None
        busy = self.golden_deferred_by() if self.golden_deferred_by is not None else None
        if busy:
            log.info("golden QA run deferred by %d s: %s", GOLDEN_FIRST_RUN_SECONDS, busy)
            if self.scheduler is not None:
                self.scheduler.add_job(self.golden_run, trigger="date", id="golden-deferred",
                                       replace_existing=True, misfire_grace_time=None,
                                       run_date=datetime.now() + timedelta(
                                           seconds=GOLDEN_FIRST_RUN_SECONDS))
            return None
        items = await asyncio.to_thread(load_golden, path)
        row = await accuracy_run(self.assistant, items, max_tokens=self.settings.monitoring.golden_max_tokens)
        row["set_path"] = str(path)
        row = await asyncio.to_thread(self.store.add_golden_run, row)
        log.info("golden QA run: %d of %d passed (score %.2f)", row["passed"], row["questions"],
                 row["score"] or 0)
        return row

    # -- outputs -------------------------------------------------------------------------------

    def _engine_status(self) -> dict | None:
        backend = getattr(self.assistant, "backend", None)
        return backend.status().get("engine") if backend is not None else None

    def gauges(self) -> dict:
        backend = getattr(self.assistant, "backend", None)
        firing: dict[str, int] = {}
        for alert in self.store.firing_alerts():
            firing[alert["severity"]] = firing.get(alert["severity"], 0) + 1
        return {
            "engine": self._engine_status(),
            "model_ready": int(backend is not None and backend.ready),
            "cache": self.assistant.cache.stats() if self.assistant is not None else None,
            "collector": self.collector.stats(),
            "sample": self.sampler.last,
            "alerts_firing": {s: firing.get(s, 0) for s in ("info", "warning", "critical")},
        }

    def status(self) -> dict:
        return {"collector": self.collector.stats(), "gpu": self.sampler.gpu.source,
                "db_bytes": self.store.size_bytes(), "alerts_delivered": self.dispatcher.delivered,
                "alerts_failed": self.dispatcher.failed, "checked_at": time.time()}
