"""The answer service: response cache in front of the LLM backend. HTTP and CLI stay thin over it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass

from appliance.cache import CachedResponse, ResponseCache, cache_key
from appliance.errors import ApplianceError, ModelNotFound, NotReady
from appliance.llm.base import Event, Finished, Generation, GenerationRequest, LLMBackend, TextDelta

MODEL_ALIASES = ("default",)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestOutcome:
    """What one answer did, for observers such as release probation: which version, how it went."""

    version: str
    at: float  # wall-clock time the request started
    latency: float  # seconds until the last event (or the error)
    ok: bool
    error: str | None = None


Observer = Callable[[RequestOutcome], None]


class AnswerStream:
    """Events of one answer, live from the backend or replayed from the cache."""

    def __init__(self, *, generation: Generation | None = None, cached: CachedResponse | None = None,
                 on_complete=None, on_outcome=None, served_by: str = ""):
        self._generation = generation
        self.served_by = served_by  # the model version that produced these events
        self.cached = cached
        self.from_cache = cached is not None
        self._on_complete = on_complete
        self._on_outcome = on_outcome
        self.prompt_tokens = cached.prompt_tokens if cached else generation.prompt_tokens

    async def __aiter__(self) -> AsyncIterator[Event]:
        if self.cached is not None:
            if self.cached.text:
                yield TextDelta(self.cached.text)
            yield Finished(
                self.cached.finish_reason, self.cached.prompt_tokens, self.cached.completion_tokens,
                {"cache_hit": 1.0},
            )
            return
        parts: list[str] = []
        try:
            async for event in self._generation:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    if self._on_complete and event.finish_reason in ("stop", "length"):
                        self._on_complete("".join(parts), event)
                    if self._on_outcome and event.finish_reason != "cancelled":
                        self._on_outcome(None)
                yield event
        except ApplianceError as exc:
            if self._on_outcome:
                self._on_outcome(exc)
            raise

    def cancel(self) -> None:
        if self._generation is not None:
            self._generation.cancel()


class Assistant:
    def __init__(self, backend: LLMBackend | None, cache: ResponseCache):
        self.backend = backend
        self.cache = cache
        self.observers: list[Observer] = []  # called with every answer's RequestOutcome

    def require_backend(self) -> LLMBackend:
        if self.backend is None or not self.backend.ready:
            raise NotReady("The model is still loading; retry in a few seconds (see GET /ready).")
        return self.backend

    def check_model(self, name: str) -> LLMBackend:
        backend = self.require_backend()
        if name not in (backend.model_id, *MODEL_ALIASES):
            raise ModelNotFound(
                f"The model {name!r} does not exist here; this appliance serves "
                f"{backend.model_id!r} (see GET /v1/models).",
                param="model",
            )
        return backend

    async def answer(self, request: GenerationRequest, *, scope: str = "") -> AnswerStream:
        """Start an answer; raises (queue full, too long, not ready) before any event is produced."""
        backend = self.require_backend()
        key = None
        if request.params.deterministic and self.cache.enabled:
            key = cache_key(_normalized(request), model_version=backend.version, scope=scope)
            hit = self.cache.get(key)
            if hit is not None:
                return AnswerStream(cached=hit, served_by=backend.version)
        started_at, started = time.time(), time.perf_counter()
        try:
            generation = await backend.start(request)
        except NotReady:
            if self.backend is backend or self.backend is None:
                raise
            # A swap closed this backend between our lookup and start(): the new one answers.
            return await self.answer(request, scope=scope)
        except ApplianceError as exc:
            self._observe(backend.version, started_at, started, exc)
            raise
        served_by = getattr(generation, "served_by", backend.version)
        if getattr(generation, "served_by", backend.version) != backend.version:
            key = None  # a fallback answered: never cache it as the primary model's answer

        def store(text: str, finished: Finished) -> None:
            self.cache.put(
                key,
                CachedResponse(text, finished.finish_reason, finished.prompt_tokens,
                               finished.completion_tokens),
            )

        def outcome(error: ApplianceError | None) -> None:
            self._observe(served_by, started_at, started, error)

        return AnswerStream(generation=generation, on_complete=store if key else None,
                            on_outcome=outcome if self.observers else None, served_by=served_by)

    def _observe(self, version: str, at: float, started: float, error: ApplianceError | None) -> None:
        if not self.observers or (error is not None and error.status < 500):
            return  # a client mistake or a full queue says nothing about the model's health
        outcome = RequestOutcome(version, at, time.perf_counter() - started, error is None,
                                 error.message if error else None)
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:  # an observer must never break an answer
                log.exception("request observer failed")


def _normalized(request: GenerationRequest) -> dict:
    params = asdict(request.params)
    params["stop"] = sorted(params["stop"])
    return {
        "messages": [dict(m) for m in request.messages] if request.messages is not None else None,
        "prompt": request.prompt,
        "params": params,
    }
