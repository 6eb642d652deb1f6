"""Monitoring over HTTP: /metrics (Prometheus), the admin UI's JSON series, alerts, charts, feedback."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.response import Response
from msgspec import Meta, Struct

from appliance.accounts import Conversations
from appliance.errors import InvalidRequest, MonitoringDisabled, NotFound
from appliance.monitoring.charts import DASHBOARD, Panel, render_png
from appliance.monitoring.monitor import Monitor
from appliance.monitoring.store import check_aggregate, describe_metrics, metric
from appliance.monitoring.timespec import parse_duration, parse_time
from appliance.server.auth import (
    OptionalCredentialsOperation,
    admin_only,
    metrics_reader,
    require_principal,
    signed_in,
)


class FeedbackRequest(Struct, forbid_unknown_fields=True):
    response_id: Annotated[str, Meta(min_length=1, max_length=200)]
    rating: Literal["up", "down"]
    comment: Annotated[str, Meta(max_length=4000)] | None = None


def _monitor(state: State) -> Monitor:
    monitor = state.get("monitor")
    if monitor is None:
        raise MonitoringDisabled()
    return monitor


def _range(since: str | None, until: str | None, default_since: str = "1h") -> tuple[float, float]:
    now = time.time()
    start = parse_time(since or default_since, now=now, param="since")
    end = parse_time(until, now=now, param="until") or now
    if start >= end:
        raise InvalidRequest("since must be earlier than until.", param="since")
    return start, end


class MonitoringController(Controller):
    tags = ["Monitoring"]

    @get("/metrics", summary="Prometheus metrics (text exposition format); open unless "
         "auth.protect_metrics", sync_to_thread=True, guards=[metrics_reader],
         operation_class=OptionalCredentialsOperation)
    def prometheus(self, state: State) -> Response:
        body = _monitor(state).prometheus.render()
        # The 0.0.4 text format: what every Prometheus version scrapes.
        return Response(body, media_type="text/plain; version=0.0.4")

    @get("/api/metrics", summary="Metrics that series, charts and alert rules can use",
         sync_to_thread=True, guards=[admin_only])
    def catalog(self, state: State) -> dict[str, Any]:
        monitor = _monitor(state)
        return {"metrics": describe_metrics(), "status": monitor.status()}

    @get("/api/metrics/summary", summary="Headline figures over a period", sync_to_thread=True,
         guards=[admin_only])
    def summary(self, state: State, since: FromQuery[str | None] = None,
                until: FromQuery[str | None] = None) -> dict[str, Any]:
        start, end = _range(since, until, "24h")
        return _monitor(state).store.summary(start, end)

    @get("/api/metrics/series", summary="One metric over time, aggregated per step",
         sync_to_thread=True, guards=[admin_only])
    def series(
        self, state: State, metric_name: Annotated[str, QueryParameter(name="metric")],
        aggregate: FromQuery[str] = "avg", since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None, step: FromQuery[str] = "60",
    ) -> dict[str, Any]:
        metric(metric_name)
        check_aggregate(aggregate)
        start, end = _range(since, until)
        seconds = parse_duration(step)
        points = _monitor(state).store.series(metric_name, aggregate, start, end, seconds)
        return {"metric": metric_name, "aggregate": aggregate, "since": start, "until": end,
                "step": seconds, "points": points}

    @get("/api/metrics/chart.png", summary="PNG chart of one metric, or of the dashboard",
         sync_to_thread=True, guards=[admin_only], media_type="image/png")
    def chart(
        self, state: State, metric_name: Annotated[str | None, QueryParameter(name="metric")] = None,
        aggregate: FromQuery[str] = "avg", since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None, step: FromQuery[str] = "300",
    ) -> Response:
        monitor = _monitor(state)
        start, end = _range(since, until, "24h")
        if metric_name:
            m = metric(metric_name)
            panels = [Panel(f"{aggregate}({m.name})", m.name, check_aggregate(aggregate))]
        else:
            panels = list(DASHBOARD)
        png = render_png(monitor.store, panels, since=start, until=end, step=parse_duration(step))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @get("/api/alerts", summary="Alerts, newest first, with their history", sync_to_thread=True,
         guards=[admin_only])
    def alerts(
        self, state: State, alert_state: Annotated[Literal["firing", "resolved"] | None,
                                                   QueryParameter(name="state")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        monitor = _monitor(state)
        return {"alerts": monitor.store.alerts(alert_state, limit),
                "rules": [r.model_dump() for r in monitor.alerts.rules]}

    @post("/api/feedback", summary="Rate an answer you got: thumbs up or down, by its response id",
          status_code=201, sync_to_thread=True, guards=[signed_in])
    def feedback(self, state: State, request: Request, data: JSONBody[FeedbackRequest]) -> dict[str, Any]:
        monitor = _monitor(state)
        principal = require_principal(request)
        user_id = principal.user.id
        saved = Conversations(state.accounts).rate(user_id, data.response_id, data.rating)
        if not (saved or principal.open or _answered(monitor, data.response_id, user_id)):
            raise NotFound("No answer with this id was given to you; rate answers by the `id` of a "
                           "response you received (recent ones, or ones saved in your conversations).",
                           param="response_id")
        return monitor.record_feedback(data.response_id, data.rating, data.comment,
                                       user_id=None if principal.open else user_id,
                                       username=principal.name)


def _answered(monitor: Monitor, response_id: str, user_id: int) -> bool:
    if monitor.store.answered(response_id, user_id):
        return True
    monitor.collector.flush()  # the answer's event may still wait in the write buffer
    return monitor.store.answered(response_id, user_id)
