"""Threshold rules (from settings.alerts.rules) evaluated against the metrics store."""

from __future__ import annotations

import operator
from dataclasses import dataclass

from appliance.errors import ConfigError
from appliance.monitoring.store import METRICS, MetricsStore
from appliance.settings import AlertRule

COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Verdict:
    rule: AlertRule
    value: float | None
    samples: int
    breached: bool | None  # None: too few data points in the window to say

    def describe(self) -> str:
        r = self.rule
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        return (f"{r.name}: {r.aggregate}({r.metric}) over {r.window_seconds:g}s is {shown} "
                f"(threshold {r.comparison} {r.value:g}, {self.samples} points)")


def check_rules(rules: list[AlertRule]) -> list[AlertRule]:
    """Fail at start-up, not at the first evaluation, on unknown metrics or duplicate names."""
    names = set()
    for rule in rules:
        if rule.metric not in METRICS:
            raise ConfigError(f"Alert rule {rule.name!r} uses unknown metric {rule.metric!r}; "
                              f"use one of: {', '.join(METRICS)}.")
        if rule.name in names:
            raise ConfigError(f"Two alert rules are named {rule.name!r}; give each a unique name.")
        names.add(rule.name)
    return rules


def evaluate(rule: AlertRule, store: MetricsStore, now: float) -> Verdict:
    value, samples = store.aggregate(rule.metric, rule.aggregate, now - rule.window_seconds, now)
    if value is None or samples < rule.min_samples:
        return Verdict(rule, value, samples, None)
    return Verdict(rule, value, samples, COMPARISONS[rule.comparison](value, rule.value))
