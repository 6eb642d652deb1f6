"""Mergeable aggregates: exact count/sum/min/max, and a log-bucket histogram for percentiles.

Rollups store one `Aggregate` per metric and bucket; merging rollups gives exact counts, sums,
averages and extremes, and percentiles within one histogram bucket (about 5%).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field

AGGREGATES = ("avg", "min", "max", "sum", "count", "rate", "p50", "p90", "p95", "p99", "last")
_BASE = 1.1  # histogram bucket ratio: a percentile is off by at most half of it (~5%)
_LOG_BASE = math.log(_BASE)


def _bucket_of(value: float) -> str:
    if value <= 0:
        return "z"  # zeros (and the odd negative) share one bucket, reported as the minimum
    return str(math.floor(math.log(value) / _LOG_BASE))


def _bucket_value(key: str) -> float:
    if key == "z":
        return 0.0
    k = int(key)
    return _BASE ** (k + 0.5)  # geometric middle of [BASE**k, BASE**(k+1))


@dataclass
class Aggregate:
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    hist: Counter = field(default_factory=Counter)
    values: list[float] | None = field(default_factory=list)  # raw values, while exact percentiles are possible
    last_ts: float = -math.inf
    last: float | None = None

    def add(self, value: float, ts: float = 0.0) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.hist[_bucket_of(value)] += 1
        if self.values is not None:
            self.values.append(value)
        if ts >= self.last_ts:
            self.last_ts, self.last = ts, value

    def merge(self, other: Aggregate) -> None:
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.hist.update(other.hist)
        if self.values is not None and other.values is not None:
            self.values.extend(other.values)
        else:
            self.values = None
        if other.last_ts >= self.last_ts:
            self.last_ts, self.last = other.last_ts, other.last

    def percentile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        if self.values is not None:
            ordered = sorted(self.values)
            rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)  # nearest-rank
            return ordered[rank]
        target = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for key in sorted(self.hist, key=lambda k: -math.inf if k == "z" else int(k)):
            seen += self.hist[key]
            if seen >= target:
                return min(max(_bucket_value(key), self.min), self.max)
        return self.max

    def value(self, aggregate: str, seconds: float) -> float | None:
        """The aggregate's value; `seconds` is the span that `rate` divides by."""
        if aggregate == "count":
            return float(self.count)
        if aggregate == "rate":
            return self.count / seconds if seconds > 0 else None
        if self.count == 0:
            return None
        if aggregate == "avg":
            return self.sum / self.count
        if aggregate == "sum":
            return self.sum
        if aggregate == "min":
            return self.min
        if aggregate == "max":
            return self.max
        if aggregate == "last":
            return self.last
        if aggregate.startswith("p") and aggregate[1:].isdigit():
            return self.percentile(float(aggregate[1:]))
        raise ValueError(f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}")

    # -- rollup rows ---------------------------------------------------------------------------

    def to_row(self) -> dict:
        return {"count": self.count, "sum": self.sum, "min": self.min, "max": self.max,
                "hist": json.dumps(dict(self.hist), separators=(",", ":"))}

    @classmethod
    def from_row(cls, row: dict, ts: float) -> Aggregate:
        # A rollup has no single last value: its average stands in for it.
        return cls(count=row["count"], sum=row["sum"], min=row["min"], max=row["max"],
                   hist=Counter(json.loads(row["hist"])), values=None, last_ts=ts,
                   last=row["sum"] / row["count"] if row["count"] else None)
