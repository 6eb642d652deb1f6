"""Charts of stored series as PNG (matplotlib, Agg backend: no display needed), for the admin UI
and for `appliance metrics chart`."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

from appliance.monitoring.store import MetricsStore


@dataclass(frozen=True)
class Panel:
    title: str
    metric: str
    aggregate: str
    scale: float = 1.0
    unit: str = ""


# The dashboard: latency, throughput, errors, memory, accuracy over time.
DASHBOARD = (
    Panel("Latency p95", "latency_seconds", "p95", unit="s"),
    Panel("Throughput", "requests", "rate", scale=60, unit="requests/min"),
    Panel("Error rate", "error", "avg", scale=100, unit="%"),
    Panel("Memory (process RSS)", "rss_bytes", "max", scale=1 / 2**20, unit="MiB"),
    Panel("Accuracy (golden QA)", "golden_accuracy", "last", scale=100, unit="%"),
)


def render_png(store: MetricsStore, panels: tuple[Panel, ...] | list[Panel], *, since: float,
               until: float | None = None, step: float = 300) -> bytes:
    # Figure without pyplot: no global state, so concurrent renders from server threads are safe.
    from datetime import datetime

    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    until = time.time() if until is None else until
    fig = Figure(figsize=(9, 2.2 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)
    for ax, panel in zip(axes[:, 0], panels):
        points = store.series(panel.metric, panel.aggregate, since, until, step)
        xs = [datetime.fromtimestamp(p["ts"]) for p in points if p["value"] is not None]
        ys = [p["value"] * panel.scale for p in points if p["value"] is not None]
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None, linewidth=1.2)
        ax.set_title(panel.title, fontsize=10, loc="left")
        ax.set_ylabel(panel.unit, fontsize=8)
        ax.grid(alpha=0.3)
        if not xs:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
    axes[-1, 0].set_xlim(datetime.fromtimestamp(since), datetime.fromtimestamp(until))
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    return out.getvalue()
