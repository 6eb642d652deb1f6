"""AlertManager: turns rule verdicts into alerts that fire once, stay deduplicated, and resolve.

Firing alerts live in the store, so a restart neither forgets nor re-announces them.
"""

from __future__ import annotations

import logging
import threading
import time

from appliance.monitoring.channels import AlertNotice
from appliance.monitoring.delivery import Dispatcher
from appliance.monitoring.rules import Verdict, check_rules, evaluate
from appliance.monitoring.store import MetricsStore
from appliance.settings import AlertRule

log = logging.getLogger(__name__)

EVENT_METRIC = "event"  # alerts that components raise themselves, not metric rules


class AlertManager:
    def __init__(self, store: MetricsStore, rules: list[AlertRule], dispatcher: Dispatcher | None = None):
        self.store = store
        self.rules = check_rules(list(rules))
        self.dispatcher = dispatcher
        self._lock = threading.Lock()  # one evaluation at a time, whoever triggers it
        self.last_verdicts: dict[str, Verdict] = {}

    def evaluate(self, now: float | None = None) -> list[AlertNotice]:
        """Evaluate every rule once; return the notices sent (fired or resolved alerts)."""
        now = time.time() if now is None else now
        notices = []
        with self._lock:
            firing = {a["rule"]: a for a in self.store.firing_alerts()}
            for rule in self.rules:
                try:
                    verdict = evaluate(rule, self.store, now)
                except Exception:
                    log.exception("evaluating alert rule %s failed", rule.name)
                    continue
                self.last_verdicts[rule.name] = verdict
                active = firing.pop(rule.name, None)
                if verdict.breached and active is None:
                    alert = self.store.open_alert({
                        "rule": rule.name, "metric": rule.metric, "severity": rule.severity,
                        "started_at": now, "value": verdict.value, "threshold": rule.value,
                        "message": verdict.describe(),
                    })
                    notices.append(self._notice(alert, "firing", verdict.value, now, verdict.describe()))
                elif verdict.breached and active is not None:
                    self.store.touch_alert(active["id"], verdict.value)
                elif active is not None and (verdict.breached is False or verdict.samples == 0):
                    # No data at all (traffic stopped) also ends an alert, as in Prometheus;
                    # a few points short of min_samples keeps it as it is.
                    message = "back to normal: " + verdict.describe()
                    alert = self.store.resolve_alert(active["id"], verdict.value, now, message)
                    notices.append(self._notice(alert, "resolved", verdict.value, now, message))
            for name, active in firing.items():  # its rule was removed from the settings
                if active["metric"] == EVENT_METRIC:
                    continue  # raised by a component, resolved by it (set_condition)
                message = f"rule {name} no longer configured"
                alert = self.store.resolve_alert(active["id"], None, now, message)
                notices.append(self._notice(alert, "resolved", None, now, message))
        if self.dispatcher is not None:
            for notice in notices:
                self.dispatcher.submit(notice)
        return notices

    def set_condition(self, name: str, active: bool, message: str, *, severity: str = "critical",
                      value: float | None = None) -> AlertNotice | None:
        """Raise or resolve an alert a component detects itself (an upstream outage, a rollback):
        deduplicated and stored like rule alerts, and sent through the same channels."""
        now = time.time()
        notice = None
        with self._lock:
            current = next((a for a in self.store.firing_alerts() if a["rule"] == name), None)
            if active and current is None:
                alert = self.store.open_alert({
                    "rule": name, "metric": EVENT_METRIC, "severity": severity, "started_at": now,
                    "value": value, "threshold": None, "message": message,
                })
                notice = self._notice(alert, "firing", value, now, message)
            elif not active and current is not None:
                alert = self.store.resolve_alert(current["id"], value, now, message)
                notice = self._notice(alert, "resolved", value, now, message)
        if notice is not None and self.dispatcher is not None:
            self.dispatcher.submit(notice)
        return notice

    @staticmethod
    def _notice(alert: dict, state: str, value, now: float, message: str) -> AlertNotice:
        return AlertNotice(alert_id=alert["id"], rule=alert["rule"], state=state,
                           severity=alert["severity"], metric=alert["metric"], value=value,
                           threshold=alert["threshold"], message=message, ts=now)

    def record_delivery(self, notice: AlertNotice, channel: str, outcome: str, error: str | None) -> None:
        """Dispatcher callback: the alert's history shows where each notice went."""
        detail = f"{notice.state} via {channel}" + (f": {error}" if error else "")
        self.store.alert_event(notice.alert_id, f"notify_{outcome}", detail)
