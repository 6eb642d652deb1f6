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

from appliance.answers.golden import percentile
from appliance.assistant import RequestOutcome
from appliance.settings import ReleasesSettings

log = logging.getLogger(__name__)

AlertHook = Callable[[str, str, str], None]  # (severity, title, detail)


def log_alert(severity: str, title: str, detail: str) -> None:
    """The default alert hook until the monitoring AlertManager is connected."""
    log.error("[%s] %s: %s", severity, title, detail)


class ProbationSignals(Protocol):
    """Health of one version over [since, until) (until None: up to now)."""

    source: str  # named in rollback reasons: where the figures come from

    def figures(self, version: str, since: float, until: float | None = None) -> dict[str, Any]:
        """{"requests", "errors", "error_rate", "latency_p95", "feedback", "feedback_positive"};
        a figure without data is None."""


class ObservedSignals:
    """Signals from the answers this process served (an Assistant observer), kept in memory; the
    fallback when monitoring is off (it sees no feedback)."""

    source = "answers observed in this process"

    def __init__(self, max_outcomes: int = 100_000):
        self._outcomes: deque[RequestOutcome] = deque(maxlen=max_outcomes)
        self._lock = threading.Lock()

    def __call__(self, outcome: RequestOutcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    def figures(self, version: str, since: float, until: float | None = None) -> dict[str, Any]:
        with self._lock:
            outcomes = [o for o in self._outcomes if o.version == version and o.at >= since
                        and (until is None or o.at < until)]
        errors = sum(1 for o in outcomes if not o.ok)
        latencies = sorted(o.latency for o in outcomes if o.ok)
        return {"requests": len(outcomes), "errors": errors,
                "error_rate": errors / len(outcomes) if outcomes else None,
                "latency_p95": percentile(latencies, 0.95) if latencies else None,
                "feedback": 0, "feedback_positive": None}


class MonitoringSignals:
    """Signals from the monitoring store's request and feedback records, so probation decides on
    the figures the admin sees on the dashboards."""

    source = "monitoring store"

    def __init__(self, store: Any):
        self.store = store

    def figures(self, version: str, since: float, until: float | None = None) -> dict[str, Any]:
        return self.store.version_figures(version, since, until)


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
    golden_detail: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)


class Probation:
    """Compares the signals every `probation_check_seconds` until the window closes."""

    def __init__(self, settings: ReleasesSettings, signals: ProbationSignals, *,
                 rollback: Callable[[Watch, str], Awaitable[None]],
                 passed: Callable[[Watch], None],
                 golden_score: Callable[[], Awaitable[dict[str, Any]]] | None = None):
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
                watch.golden_detail = await self._golden_score()
                watch.golden = watch.golden_detail["score"]
            while True:
                # The store is read under its lock, which its writer thread also takes.
                reason = await asyncio.to_thread(self.breach, watch)
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
        """The first way the new version is worse than the previous one, or None; the reason
        names the figures and where they come from."""
        s = self.settings
        if watch.golden is not None and watch.previous_golden is not None:
            if watch.golden < watch.previous_golden - s.golden_tolerance - 1e-9:
                g = watch.golden_detail
                run = f", golden run #{g['golden_run_id']} in the monitoring store" \
                    if g.get("golden_run_id") else ""
                asked = f" ({g['passed']} of {g['items']} passed{run})" if "items" in g else ""
                return (f"golden QA score {watch.golden:.2f}{asked} fell below the previous "
                        f"version's {watch.previous_golden:.2f} minus the tolerance "
                        f"{s.golden_tolerance:.2f}")
        # The previous version is judged over a window of the same length before the swap.
        before = watch.started - (watch.until - watch.started)
        new = self.signals.figures(watch.backend_version, watch.started)
        old = self.signals.figures(watch.previous_backend_version, before, watch.started)
        count = new["requests"]
        check: dict[str, Any] = {"at": time.time(), "source": self.signals.source, "requests": count,
                                 "previous_requests": old["requests"]}
        watch.checks.append(check)
        source = f"from the {self.signals.source}"
        if count >= s.probation_min_requests:
            rate, base = new["error_rate"] or 0.0, old["error_rate"] or 0.0
            check.update(error_rate=rate, previous_error_rate=base)
            if rate > base + s.max_error_rate_increase:
                return (f"error rate {rate:.1%} ({new['errors']} of {count} requests, {source}) "
                        f"exceeds the previous version's {base:.1%} ({old['errors']} of "
                        f"{old['requests']}) by more than {s.max_error_rate_increase:.1%}")
            p95, base_p95 = new["latency_p95"], old["latency_p95"]
            check.update(latency_p95=p95, previous_latency_p95=base_p95)
            if p95 is not None and base_p95 and p95 > base_p95 * s.max_latency_ratio:
                return (f"p95 latency {p95:.2f} s over {count} requests ({source}) is over "
                        f"{s.max_latency_ratio:g} x the previous version's {base_p95:.2f} s")
        score, base_score = new["feedback_positive"], old["feedback_positive"]
        check.update(feedback_positive=score, previous_feedback_positive=base_score)
        if score is not None and base_score is not None and score < base_score - s.max_feedback_drop:
            return (f"positive feedback fell to {score:.0%} of {new['feedback']} ratings ({source}) "
                    f"from the previous version's {base_score:.0%} of {old['feedback']}")
        return None
