"""The answer service: response cache in front of the LLM backend. HTTP and CLI stay thin over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict

from appliance.cache import CachedResponse, ResponseCache, cache_key
from appliance.errors import ModelNotFound, NotReady
from appliance.llm.base import Event, Finished, Generation, GenerationRequest, LLMBackend, TextDelta

MODEL_ALIASES = ("default",)


class AnswerStream:
    """Events of one answer, live from the backend or replayed from the cache."""

    def __init__(self, *, generation: Generation | None = None, cached: CachedResponse | None = None,
                 on_complete=None):
        self._generation = generation
        self.cached = cached
        self.from_cache = cached is not None
        self._on_complete = on_complete
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
        async for event in self._generation:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif self._on_complete and event.finish_reason in ("stop", "length"):
                self._on_complete("".join(parts), event)
            yield event

    def cancel(self) -> None:
        if self._generation is not None:
            self._generation.cancel()


class Assistant:
    def __init__(self, backend: LLMBackend | None, cache: ResponseCache):
        self.backend = backend
        self.cache = cache

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
                return AnswerStream(cached=hit)
        generation = await backend.start(request)

        def store(text: str, finished: Finished) -> None:
            self.cache.put(
                key,
                CachedResponse(text, finished.finish_reason, finished.prompt_tokens,
                               finished.completion_tokens),
            )

        return AnswerStream(generation=generation, on_complete=store if key else None)


def _normalized(request: GenerationRequest) -> dict:
    params = asdict(request.params)
    params["stop"] = sorted(params["stop"])
    return {
        "messages": [dict(m) for m in request.messages] if request.messages is not None else None,
        "prompt": request.prompt,
        "params": params,
    }
