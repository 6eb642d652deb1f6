"""Liveness, readiness and status."""

from __future__ import annotations

from typing import Any

from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar import Controller, get
from litestar.response import Response

from appliance.assistant import Assistant
from appliance.server.errors import error_body


class HealthController(Controller):
    tags = ["Operations"]

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", summary="Readiness: 503 until the model is loaded")
    async def ready(self, assistant: NamedDependency[Assistant], model_error: NamedDependency[str | None]) -> Response:
        backend = assistant.backend
        if backend is not None and backend.ready:
            return Response({"status": "ready", "model": backend.model_id, "version": backend.version})
        if model_error:
            body = error_body(503, "model_load_failed", model_error)
        else:
            body = error_body(503, "not_ready", "The model is still loading.")
        return Response(body, status_code=503, headers={"Retry-After": "5"})

    @get("/api/status", summary="Engine, queue and response-cache figures")
    async def status(self, assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        backend = assistant.backend
        return {
            "model": backend.status() if backend is not None else None,
            "cache": assistant.cache.stats(),
        }
