"""After a swap, watch the new version against the previous one; a breach rolls back and alerts."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from appliance.assistant import RequestOutcome
from appliance.releases.golden import percentile
from appliance.settings import ReleasesSettings

log = logging.getLogger(__name__)

AlertHook = Callable[[str, str, str], None]  # (severity, title, detail)


def log_alert(severity: str, title: str, detail: str) -> None:
    """The default alert hook until the monitoring AlertManager is connected."""
    log.error("[%s] %s: %s", severity, title, detail)


class ProbationSignals(Protocol):
    """Health of one version since a time (Unix seconds); None means "no data"."""

    def request_count(self, version: str, since: float) -> int: ...

    def error_rate(self, version: str, since: float) -> float | None: ...

    def latency_p95(self, version: str, since: float) -> float | None: ...

    def feedback_score(self, version: str, since: float) -> float | None: ...


class ObservedSignals:
    """Signals from the answers this process served (an Assistant observer), kept in memory."""

    def __init__(self, max_outcomes: int = 100_000):
        self._outcomes: deque[RequestOutcome] = deque(maxlen=max_outcomes)
        self._lock = threading.Lock()

    def __call__(self, outcome: RequestOutcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    def _select(self, version: str, since: float) -> list[RequestOutcome]:
        with self._lock:
            return [o for o in self._outcomes if o.version == version and o.at >= since]

    def request_count(self, version: str, since: float) -> int:
        return len(self._select(version, since))

    def error_rate(self, version: str, since: float) -> float | None:
        outcomes = self._select(version, since)
        return sum(1 for o in outcomes if not o.ok) / len(outcomes) if outcomes else None

    def latency_p95(self, version: str, since: float) -> float | None:
        latencies = sorted(o.latency for o in self._select(version, since) if o.ok)
        return percentile(latencies, 0.95) if latencies else None

    def feedback_score(self, version: str, since: float) -> float | None:
        return None  # the appliance itself sees no ratings; the monitoring store does


class MonitoringSignals:
    """Signals from the monitoring store's `requests` and `feedback` tables (duck-typed: any object
    with a sqlite-utils `db`), so probation sees the same figures as the dashboards."""

    def __init__(self, store: Any):
        self.db = store.db

    def _scalar(self, sql: str, params: list) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None

    def request_count(self, version: str, since: float) -> int:
        return self._scalar("select count(*) from requests where model_version = ? and ts >= ?",
                            [version, since]) or 0

    def error_rate(self, version: str, since: float) -> float | None:
        return self._scalar(
            "select avg(case when status >= 500 then 1.0 else 0.0 end) from requests "
            "where model_version = ? and ts >= ?", [version, since])

    def latency_p95(self, version: str, since: float) -> float | None:
        rows = [r[0] for r in self.db.execute(
            "select latency_s from requests where model_version = ? and ts >= ? and status < 400 "
            "and latency_s is not null order by latency_s", [version, since]).fetchall()]
        return percentile(rows, 0.95) if rows else None

    def feedback_score(self, version: str, since: float) -> float | None:
        return self._scalar(
            "select avg(case when rating = 'up' then 1.0 else 0.0 end) from feedback "
            "where model_version = ? and ts >= ?", [version, since])


@dataclass
class Watch:
    """One probation: the new version against the one it replaced."""

    version: str  # registry key, name/version
    backend_version: str  # what requests are tagged with
    previous: str
    previous_backend_version: str
    started: float
    until: float
    previous_golden: float | None = None
    golden: float | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)


class Probation:
    """Compares the signals every `probation_check_seconds` until the window closes."""

    def __init__(self, settings: ReleasesSettings, signals: ProbationSignals, *,
                 rollback: Callable[[Watch, str], Awaitable[None]],
                 passed: Callable[[Watch], None],
                 golden_score: Callable[[], Awaitable[float]] | None = None):
        self.settings = settings
        self.signals = signals
        self._rollback = rollback
        self._passed = passed
        self._golden_score = golden_score
        self.watch: Watch | None = None
        self._task: asyncio.Task | None = None

    def begin(self, watch: Watch) -> None:
        self.cancel()
        self.watch = watch
        self._task = asyncio.create_task(self._run(watch), name=f"probation {watch.version}")

    def cancel(self) -> None:
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        self.watch = None

    def status(self) -> dict[str, Any] | None:
        if self.watch is None:
            return None
        w = self.watch
        return {"version": w.version, "previous": w.previous, "until": w.until, "golden": w.golden,
                "previous_golden": w.previous_golden, "last_check": w.checks[-1] if w.checks else None}

    async def _run(self, watch: Watch) -> None:
        try:
            if self.settings.probation_golden and self._golden_score is not None:
                watch.golden = await self._golden_score()
            while True:
                reason = self.breach(watch)
                if reason:
                    log.error("probation of %s failed: %s", watch.version, reason)
                    self.watch = None
                    await self._rollback(watch, reason)
                    return
                if time.time() >= watch.until:
                    self.watch = None
                    self._passed(watch)
                    return
                await asyncio.sleep(min(self.settings.probation_check_seconds,
                                        max(0.0, watch.until - time.time())))
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken check must not leave a silent, unwatched version
            log.exception("probation of %s stopped by an error", watch.version)

    def breach(self, watch: Watch) -> str | None:
        """The first way the new version is worse than the previous one, or None."""
        s = self.settings
        if watch.golden is not None and watch.previous_golden is not None:
            if watch.golden < watch.previous_golden - s.golden_tolerance - 1e-9:
                return (f"golden QA score {watch.golden:.2f} fell below the previous version's "
                        f"{watch.previous_golden:.2f} minus the tolerance {s.golden_tolerance:.2f}")
        # The previous version is judged over a window of the same length before the swap.
        before = watch.started - (watch.until - watch.started)
        new, old = watch.backend_version, watch.previous_backend_version
        count = self.signals.request_count(new, watch.started)
        check: dict[str, Any] = {"at": time.time(), "requests": count}
        watch.checks.append(check)
        if count >= s.probation_min_requests:
            rate = self.signals.error_rate(new, watch.started) or 0.0
            base = self.signals.error_rate(old, before) or 0.0
            check.update(error_rate=rate, previous_error_rate=base)
            if rate > base + s.max_error_rate_increase:
                return (f"error rate {rate:.1%} over {count} requests exceeds the previous version's "
                        f"{base:.1%} by more than {s.max_error_rate_increase:.1%}")
            p95 = self.signals.latency_p95(new, watch.started)
            base_p95 = self.signals.latency_p95(old, before)
            check.update(latency_p95=p95, previous_latency_p95=base_p95)
            if p95 is not None and base_p95 and p95 > base_p95 * s.max_latency_ratio:
                return (f"p95 latency {p95:.2f} s is over {s.max_latency_ratio:g} x the previous "
                        f"version's {base_p95:.2f} s")
        score = self.signals.feedback_score(new, watch.started)
        base_score = self.signals.feedback_score(old, before)
        if score is not None and base_score is not None and score < base_score - s.max_feedback_drop:
            return (f"positive feedback fell to {score:.0%} from the previous version's {base_score:.0%}")
        return None
