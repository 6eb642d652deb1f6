"""The answer service: response cache, retrieval and grounding in front of the LLM backend.

HTTP and CLI stay thin over it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, replace

import anyio

from appliance.cache import CachedResponse, ResponseCache, cache_key
from appliance.errors import ApplianceError, ModelNotFound, NotReady
from appliance.knowledge.grounding import grounded_messages, no_answer, question_of
from appliance.llm.base import Event, Finished, Generation, GenerationRequest, LLMBackend, TextDelta
from appliance.settings import KnowledgeSettings

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
                 on_complete=None, from_cache: bool | None = None, on_outcome=None,
                 served_by: str = ""):
        self._generation = generation
        self.served_by = served_by  # the model version that produced these events
        self.cached = cached
        self.from_cache = cached is not None if from_cache is None else from_cache
        self._on_complete = on_complete
        self._on_outcome = on_outcome
        self.prompt_tokens = cached.prompt_tokens if cached else generation.prompt_tokens
        extra = cached.extra if cached else {}
        # Grounding: the sources cited, whether the answer rests on them, and why not.
        self.sources: list[dict] | None = extra.get("sources")
        self.grounded: bool | None = extra.get("grounded")
        self.notice: str | None = extra.get("notice")
        self.retrieval_s: float | None = None  # seconds this answer spent retrieving, if it did
        # Sees every event and any error raised mid-answer (request metrics set it).
        self.on_event: Callable[[Event | ApplianceError], None] | None = None

    @property
    def grounding(self) -> dict:
        """Extension fields for responses; empty for plain (rag: false) answers."""
        if self.sources is None and self.grounded is None:
            return {}
        body = {"sources": self.sources or [], "grounded": bool(self.grounded)}
        if self.notice:
            body["retrieval_notice"] = self.notice
        return body

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            async for event in self._events():
                if self.on_event is not None:
                    self.on_event(event)
                yield event
        except ApplianceError as exc:
            if self.on_event is not None:
                self.on_event(exc)
            raise

    async def _events(self) -> AsyncIterator[Event]:
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
    def __init__(self, backend: LLMBackend | None, cache: ResponseCache, *,
                 knowledge=None, knowledge_settings: KnowledgeSettings | None = None):
        self.backend = backend
        self.cache = cache
        self.knowledge = knowledge  # a KnowledgeBase once it is open; None while unavailable
        self.knowledge_settings = knowledge_settings or KnowledgeSettings()
        self.knowledge_error: str | None = None
        self.observers: list[Observer] = []  # called with every answer's RequestOutcome

    def require_backend(self) -> LLMBackend:
        if self.backend is None:
            raise NotReady("The model is still loading; retry in a few seconds (see GET /ready).")
        if not self.backend.ready:
            raise NotReady(f"{self.backend.unavailable} Retry in a few seconds (see GET /ready).")
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

    def require_knowledge(self):
        if self.knowledge is None:
            raise NotReady(self.knowledge_error or
                           "The knowledge base is still opening; retry in a few seconds (see GET /ready).")
        return self.knowledge

    def caller_groups(self, groups: Sequence[str] | None) -> list[str]:
        """None means the default groups; an empty list is a caller in no group, who sees nothing."""
        return sorted(set(groups)) if groups is not None else list(self.knowledge_settings.default_groups)

    async def answer(self, request: GenerationRequest, *, scope: str = "",
                     groups: Sequence[str] | None = None, rag: bool | None = None) -> AnswerStream:
        """Start an answer; raises (queue full, too long, not ready) before any event is produced.

        Chat requests are grounded in the knowledge base unless `rag` is False; `groups` are the
        caller's access groups (None: the default groups), and with `scope` they key the cache.
        """
        backend = self.require_backend()
        original = request
        use_rag = (self.knowledge_settings.enabled if rag is None else rag) and \
            request.messages is not None
        groups = self.caller_groups(groups)
        kb = self.knowledge
        key = None
        if request.params.deterministic and self.cache.enabled:
            key = cache_key(
                {**_normalized(request), "rag": use_rag}, model_version=backend.version,
                kb_version=kb.version if use_rag and kb is not None else "",
                scope=f"{scope}|{','.join(groups)}" if use_rag else scope,
            )
            hit = self.cache.get(key)
            if hit is not None:
                return AnswerStream(cached=hit, served_by=backend.version)
        grounding: dict = {}
        retrieval_s: float | None = None
        if use_rag:
            request, grounding = await self._ground(request, backend, groups)
            retrieval_s = grounding.pop("retrieval_s", None)
            if request is None:  # nothing relevant: say so rather than let the model invent
                reply = CachedResponse(grounding.pop("text"), "stop", 0, 0, grounding)
                if key:
                    self.cache.put(key, reply)
                stream = AnswerStream(cached=reply, from_cache=False, served_by=backend.version)
                stream.retrieval_s = retrieval_s
                return stream
        started_at, started = time.time(), time.perf_counter()
        try:
            generation = await backend.start(request)
        except NotReady:
            if self.backend is backend or self.backend is None:
                raise
            # A swap closed this backend between our lookup and start(): the new one answers.
            return await self.answer(original, scope=scope, groups=groups, rag=rag)
        except ApplianceError as exc:
            self._observe(backend.version, started_at, started, exc)
            raise
        served_by = getattr(generation, "served_by", backend.version)
        if served_by != backend.version:
            key = None  # a fallback answered: never cache it as the primary model's answer

        def store(text: str, finished: Finished) -> None:
            self.cache.put(
                key,
                CachedResponse(text, finished.finish_reason, finished.prompt_tokens,
                               finished.completion_tokens, grounding),
            )

        def outcome(error: ApplianceError | None) -> None:
            self._observe(served_by, started_at, started, error)

        stream = AnswerStream(generation=generation, on_complete=store if key else None,
                              on_outcome=outcome if self.observers else None, served_by=served_by)
        stream.sources = grounding.get("sources")
        stream.grounded = grounding.get("grounded")
        stream.notice = grounding.get("notice")
        stream.retrieval_s = retrieval_s
        return stream

    async def _ground(self, request: GenerationRequest, backend: LLMBackend,
                      groups: list[str]) -> tuple[GenerationRequest | None, dict]:
        kb = self.knowledge
        if kb is None:
            notice = self.knowledge_error or "The knowledge base is still opening."
            return request, {"sources": [], "grounded": False,
                             "notice": f"Answered without the knowledge base: {notice}"}
        settings = self.knowledge_settings
        question = question_of(request.messages)
        started = time.perf_counter()
        hits = await anyio.to_thread.run_sync(
            lambda: kb.search(question, settings.top_k, groups=groups)
        )
        hits = [h for h in hits if kb.retriever.relevant(h, question)]
        retrieval_s = time.perf_counter() - started
        if not hits:
            return None, {"text": no_answer(question), "sources": [], "grounded": False,
                          "notice": "Nothing relevant was found in the knowledge base.",
                          "retrieval_s": retrieval_s}
        reserve = request.params.max_tokens or settings.answer_reserve_tokens
        budget = backend.context_limit - reserve
        messages, used = await anyio.to_thread.run_sync(
            lambda: grounded_messages(request.messages, hits, budget=budget,
                                      count=backend.count_tokens)
        )
        grounded_request = replace(request, messages=tuple(messages))
        return grounded_request, {"sources": [h.source() for h in used], "grounded": bool(used),
                                  "retrieval_s": retrieval_s}


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
