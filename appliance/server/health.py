"""Liveness, readiness and status."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.response import Response

from appliance.assistant import Assistant
from appliance.server.auth import OpenOperation, admin_only
from appliance.server.errors import error_body


class HealthController(Controller):
    tags = ["Operations"]

    @get("/health", summary="Liveness: the process answers", operation_class=OpenOperation)
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", summary="Readiness: 503 (with the reason) until the model is loaded and while its "
         "engine restarts; says whether retrieval is",
         operation_class=OpenOperation)
    async def ready(self, request: Request, assistant: NamedDependency[Assistant], model_error: NamedDependency[str | None]) -> Response:
        backend = assistant.backend
        retrieval = _retrieval(request, assistant)
        if backend is not None and backend.ready:
            return Response({"status": "ready", "model": backend.model_id, "version": backend.version,
                             "retrieval": retrieval})
        if backend is not None:
            body = error_body(503, "engine_failed", backend.unavailable or "The model is not serving.")
        elif model_error:
            body = error_body(503, "model_load_failed", model_error)
        else:
            body = error_body(503, "not_ready", "The model is still loading.")
        body["retrieval"] = retrieval
        return Response(body, status_code=503, headers={"Retry-After": "5"})

    @get("/api/status", summary="Engine, queue, response-cache, knowledge-base and monitoring figures",
         guards=[admin_only])
    async def status(self, assistant: NamedDependency[Assistant], state: State) -> dict[str, Any]:
        backend = assistant.backend
        kb = assistant.knowledge
        monitor = state.get("monitor")
        return {
            "model": backend.status() if backend is not None else None,
            "cache": assistant.cache.stats(),
            "knowledge": kb.status() if kb is not None else None,
            "monitoring": monitor.collector.stats() if monitor is not None else None,
        }


def _retrieval(request: Request, assistant: NamedDependency[Assistant]) -> dict[str, Any]:
    """Retrieval readiness: opening, ingesting (the first-start sample), ready or unavailable."""
    status = request.app.state.get("knowledge_status", "opening")
    body: dict[str, Any] = {"status": status}
    if status == "unavailable":
        body["message"] = assistant.knowledge_error
    elif assistant.knowledge is not None:
        body["version"] = assistant.knowledge.version
    return body
