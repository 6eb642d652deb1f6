"""Per-request metrics for /v1: an ASGI middleware times each request and records one event.

Handlers enrich the request's `RequestTrace` (model, cache hit, tokens, first token, retrieval
time, how a grounded answer was made). The event goes to the monitor's in-memory buffer only.
"""

from __future__ import annotations

import time

from litestar import Request

from appliance.errors import ApplianceError
from appliance.llm.base import Finished, LLMBackend, TextDelta
from appliance.monitoring.collector import RequestEvent
from appliance.server.auth import PRINCIPAL_KEY

TRACE_KEY = "appliance.trace"


class RequestTrace:
    """What a handler learned about its request, read by the middleware when the response ends."""

    __slots__ = ("started", "first_token_at", "finished_at", "finished", "cache_hit", "model_version",
                 "backend", "response_id", "error_type", "retrieval_s", "stream", "answer")

    def __init__(self, started: float):
        self.started = started
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.finished: Finished | None = None
        self.cache_hit = False
        self.model_version: str | None = None
        self.backend: str | None = None
        self.response_id: str | None = None
        self.error_type: str | None = None
        self.retrieval_s: float | None = None
        self.stream = False
        self.answer = None  # the AnswerStream: how a grounded answer was made, once it ended

    def use_backend(self, backend: LLMBackend) -> None:
        self.model_version = backend.version
        self.backend = type(backend).__name__.removesuffix("Backend").lower()

    def watch(self, answer, response_id: str, stream: bool) -> None:
        """Follow an AnswerStream's events: first token, usage, in-band errors."""
        self.response_id = response_id
        self.stream = stream
        self.cache_hit = answer.from_cache
        self.retrieval_s = answer.retrieval_seconds
        self.answer = answer
        answer.on_event = self.on_event

    def on_event(self, event) -> None:
        now = time.perf_counter()
        if isinstance(event, TextDelta):
            if self.first_token_at is None:
                self.first_token_at = now
        elif isinstance(event, Finished):
            self.finished, self.finished_at = event, now
            if self.first_token_at is None:
                self.first_token_at = now
            if event.finish_reason == "cancelled":
                self.error_type = self.error_type or "cancelled"
        elif isinstance(event, ApplianceError):
            self.error_type = event.code

    def event(self, route: str, status: int, ended: float) -> RequestEvent:
        f = self.finished
        tokens_per_s = None
        if f is not None and not self.cache_hit and f.completion_tokens > 1:
            decoding = (self.finished_at or ended) - (self.first_token_at or self.started)
            if decoding > 0:
                tokens_per_s = (f.completion_tokens - 1) / decoding
        error_type = self.error_type or (f"http_{status}" if status >= 400 else None)
        return RequestEvent(
            ts=time.time(), route=route, status=status, latency_s=ended - self.started,
            response_id=self.response_id, error_type=error_type,
            ttft_s=(self.first_token_at - self.started) if self.first_token_at else None,
            tokens_per_s=tokens_per_s,
            prompt_tokens=f.prompt_tokens if f else None,
            completion_tokens=f.completion_tokens if f else None,
            cache_hit=self.cache_hit, retrieval_s=self.retrieval_s, model_version=self.model_version,
            backend=self.backend, stream=self.stream, **self._answer_fields(),
        )

    def _answer_fields(self) -> dict:
        if self.answer is None:
            return {}
        made = {**self.answer.grounding, **self.answer.outcome}
        return {"answer_mode": made.get("answer_mode"), "support": made.get("support"),
                "removed": made.get("removed")}


def trace_of(request: Request) -> RequestTrace:
    """This request's trace; a throwaway one when monitoring is off."""
    trace = request.scope.get(TRACE_KEY)  # type: ignore[call-overload]
    return trace if trace is not None else RequestTrace(time.perf_counter())


def note_error(scope, error: ApplianceError) -> None:
    """Called by the exception handler, which sees the error before it becomes a status code."""
    trace = scope.get(TRACE_KEY)
    if trace is not None:
        trace.error_type = error.code


class RequestMetricsMiddleware:
    """Times every /v1 request, whatever its outcome (answer, cache hit, 4xx, 429, 5xx, disconnect)."""

    def __init__(self, app, monitor):
        self.app = app
        self.monitor = monitor

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        trace = RequestTrace(time.perf_counter())
        scope[TRACE_KEY] = trace
        status = 0

        async def send_and_watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException as exc:
            trace.error_type = trace.error_type or type(exc).__name__
            raise
        finally:
            if not status:  # no response started: the client left, or the server failed
                status = 499 if trace.error_type == "CancelledError" else 500
            event = trace.event(scope["path"], status, time.perf_counter())
            principal = scope.get(PRINCIPAL_KEY)  # set by the auth middleware, inside this one
            if principal is not None and not principal.open:
                event.user_id = principal.user.id
            self.monitor.record_request(event)
