"""The answer service: response cache, the retrieval query, retrieval, evidence selection, and
then a quoted (extractive) or a generated-and-verified answer from the LLM backend.

HTTP and CLI stay thin over it; how answers are made lives in appliance/answers/.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, replace

import anyio

from appliance.answers import modes as answer_modes
from appliance.answers.compose import compose, no_answer
from appliance.answers.evidence import Evidence, EvidenceSelector
from appliance.answers.generation import VerifiedGeneration
from appliance.answers.prompt import evidence_block, evidence_messages
from appliance.answers.query import RetrievalQuery, conversation_query, question_of
from appliance.answers.verify import Verifier
from appliance.cache import CachedResponse, ResponseCache, cache_key
from appliance.errors import ApplianceError, ModelNotFound, NotReady
from appliance.knowledge.retrieval import Hit, snippet
from appliance.llm.base import (
    Event,
    Finished,
    Generation,
    GenerationRequest,
    LLMBackend,
    SamplingParams,
    TextDelta,
)
from appliance.llm.serving import Lease, Serving
from appliance.settings import AnswerSettings, KnowledgeSettings

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
    """Events of one answer, live from the backend or replayed from the cache.

    It holds the request's lease on its backend until the answer ends: its last event, an
    error, `cancel()`, or (never read) its garbage collection."""

    def __init__(self, *, generation: Generation | None = None, cached: CachedResponse | None = None,
                 on_complete=None, from_cache: bool | None = None, on_outcome=None,
                 served_by: str = "", grounding: dict | None = None, lease: Lease | None = None):
        self._generation = generation
        self._lease = lease
        self._reading = False
        if lease is not None:
            weakref.finalize(self, lease.release)
            lease.on_cancel(self.cancel)  # the drain time of a swap or shutdown is up
        self.served_by = served_by  # the model version that produced these events
        self.cached = cached
        self.from_cache = cached is not None if from_cache is None else from_cache
        self._on_complete = on_complete
        self._on_outcome = on_outcome
        self.prompt_tokens = cached.prompt_tokens if cached else generation.prompt_tokens
        # Grounding: sources, whether the answer rests on them, how it was made (extension fields).
        self.extra: dict = dict(cached.extra if cached else grounding or {})
        self.passages: list[str] = self.extra.pop("passages", [])  # what retrieval gave (scoring)
        retrieval = self.extra.pop("retrieval_seconds", None)
        # A replayed answer searched nothing now: the cached figure belongs to the first answer.
        self.retrieval_seconds: float | None = None if self.from_cache else retrieval
        # Sees every event and any error raised mid-answer (request metrics set it).
        self.on_event: Callable[[Event | ApplianceError], None] | None = None

    @property
    def sources(self) -> list[dict] | None:
        return self.extra.get("sources")

    @property
    def grounded(self) -> bool | None:
        return self.extra.get("grounded")

    @property
    def answer_mode(self) -> str | None:
        verified = self._generation if isinstance(self._generation, VerifiedGeneration) else None
        if verified is not None and verified.answer_mode:
            return verified.answer_mode
        return self.extra.get("answer_mode")

    @property
    def grounding(self) -> dict:
        """Extension fields known before the answer streams; empty for plain (rag: false) answers."""
        if "sources" not in self.extra and "grounded" not in self.extra:
            return {}
        body = {"sources": self.extra.get("sources") or [], "grounded": bool(self.extra.get("grounded"))}
        for name in ("retrieval_notice", "retrieval_query", "answer_mode", "support", "removed"):
            if self.extra.get(name) is not None:
                body[name] = self.extra[name]
        return body

    @property
    def outcome(self) -> dict:
        """Extension fields known once the answer ended: how a generated answer was verified."""
        verified = self._generation if isinstance(self._generation, VerifiedGeneration) else None
        if verified is None or verified.answer_mode is None:
            return {}
        return {"answer_mode": verified.answer_mode, "support": round(verified.support, 3),
                "removed": verified.removed}

    async def __aiter__(self) -> AsyncIterator[Event]:
        self._reading = True
        try:
            async for event in self._events():
                if self.on_event is not None:
                    self.on_event(event)
                yield event
        except ApplianceError as exc:
            if self.on_event is not None:
                self.on_event(exc)
            raise
        finally:
            self._reading = False
            self._release()

    async def _events(self) -> AsyncIterator[Event]:
        if self.cached is not None:
            if self.cached.text:
                yield TextDelta(self.cached.text)
            yield Finished(
                self.cached.finish_reason, self.cached.prompt_tokens, self.cached.completion_tokens,
                {"cache_hit": 1.0} if self.from_cache else {},
            )
            return
        parts: list[str] = []
        try:
            async for event in self._generation:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    if self._on_complete and event.finish_reason in ("stop", "length"):
                        self._on_complete("".join(parts), event, self.outcome)
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
        if not self._reading:  # else the reader releases the lease as the answer ends
            self._release()

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()


@dataclass
class _Grounding:
    """What retrieval and evidence selection found for one question."""

    query: RetrievalQuery
    hits: list[Hit]
    evidence: Evidence
    seconds: float


class Assistant:
    def __init__(self, backend: LLMBackend | None, cache: ResponseCache, *,
                 knowledge=None, knowledge_settings: KnowledgeSettings | None = None,
                 answer_settings: AnswerSettings | None = None,
                 figures: Callable[[str], dict | None] | None = None):
        # The one owner of what is serving now: requests lease from it, swaps replace through it.
        self.serving = Serving(backend)
        self.cache = cache
        self.knowledge = knowledge  # a KnowledgeBase once it is open; None while unavailable
        self.knowledge_settings = knowledge_settings or KnowledgeSettings()
        self.answer_settings = answer_settings or AnswerSettings()
        # The golden figures of a model version ({"ko": {"extractive": {...}, ...}}), for auto mode.
        self.figures: Callable[[str], dict | None] = figures or (lambda version: None)
        self.knowledge_error: str | None = None
        self.observers: list[Observer] = []  # called with every answer's RequestOutcome
        self._selectors: dict[int, EvidenceSelector] = {}

    @property
    def backend(self) -> LLMBackend | None:
        """The backend serving now, to look at; a request that uses it takes a lease (`answer` does)."""
        return self.serving.backend

    def require_backend(self) -> LLMBackend:
        """The serving backend, to look at (its name, limits); raises NotReady without one."""
        with self.serving.lease() as lease:
            return lease.backend

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

    def modes(self, version: str | None = None) -> dict[str, str]:
        """The answer mode each language gets with `version` (the serving one by default)."""
        if version is None:
            version = self.backend.version if self.backend is not None else ""
        return answer_modes.summary(self.figures(version), self.answer_settings.mode)

    async def answer(self, request: GenerationRequest, *, scope: str = "",
                     groups: Sequence[str] | None = None, rag: bool | None = None,
                     mode: str | None = None, use_cache: bool = True) -> AnswerStream:
        """Start an answer; raises (queue full, too long, not ready) before any event is produced.

        Chat requests are grounded in the knowledge base unless `rag` is False; `groups` are the
        caller's access groups (None: the default groups), and with `scope` they key the cache.
        `mode` overrides answers.mode (the golden runs score both). The answer holds a lease on
        the backend it started with until it ends, so a swap or shutdown never closes it under it.
        """
        lease = self.serving.lease()
        try:
            return await self._answer(lease, request, scope=scope, groups=groups, rag=rag, mode=mode,
                                      use_cache=use_cache)
        except BaseException:
            lease.release()
            raise

    async def _answer(self, lease: Lease, request: GenerationRequest, *, scope: str,
                      groups: Sequence[str] | None, rag: bool | None, mode: str | None,
                      use_cache: bool) -> AnswerStream:
        backend = lease.backend
        original = request
        use_rag = (self.knowledge_settings.enabled if rag is None else rag) and \
            request.messages is not None
        groups = self.caller_groups(groups)
        kb = self.knowledge
        key = None
        if use_cache and request.params.deterministic and self.cache.enabled:
            key = cache_key(
                {**_normalized(request), "rag": use_rag, "mode": mode or self.answer_settings.mode},
                model_version=backend.version,
                kb_version=kb.version if use_rag and kb is not None else "",
                scope=f"{scope}|{','.join(groups)}" if use_rag else scope,
            )
            hit = self.cache.get(key)
            if hit is not None:
                return AnswerStream(cached=hit, served_by=backend.version, lease=lease)
        grounding: dict = {}
        verify = None
        if use_rag:
            if kb is None:
                notice = self.knowledge_error or "The knowledge base is still opening."
                grounding = {"sources": [], "grounded": False,
                             "retrieval_notice": f"Answered without the knowledge base: {notice}"}
            else:
                found = await anyio.to_thread.run_sync(self._ground, request, groups)
                grounding = self._extra(found)
                language = "ko" if found.evidence.korean else "en"
                chosen = answer_modes.choose(mode or self.answer_settings.mode, language,
                                             self.figures(backend.version))
                if not found.evidence.answers(self.answer_settings.min_support):
                    # Nothing relevant: say so rather than quote or invent something unrelated.
                    grounding.update(sources=[], grounded=False,
                                     retrieval_notice="Nothing relevant was found in the knowledge base.")
                    return await self._finished(no_answer(found.query.question), grounding, key, lease)
                if chosen == answer_modes.EXTRACTIVE:
                    grounding["answer_mode"] = answer_modes.EXTRACTIVE
                    grounding["support"] = round(found.evidence.support, 3)
                    return await self._finished(compose(found.evidence), grounding, key, lease)
                request, verify = self._generative(request, found)
        started_at, started = time.time(), time.perf_counter()
        try:
            generation = await backend.start(request)
        except NotReady:
            if not lease.cancelled or self.backend is None:
                raise
            # A swap's drain time ran out before this request reached the model: the new one answers.
            lease.release()
            return await self.answer(original, scope=scope, groups=groups, rag=rag, mode=mode,
                                     use_cache=use_cache)
        except ApplianceError as exc:
            self._observe(backend.version, started_at, started, exc)
            raise
        served_by = getattr(generation, "served_by", None) or backend.version
        if served_by != backend.version:
            key = None  # a fallback answered: never cache it as the primary model's answer
        if verify is not None:
            generation = verify(generation)

        def store(text: str, finished: Finished, outcome: dict) -> None:
            self.cache.put(key, CachedResponse(text, finished.finish_reason, finished.prompt_tokens,
                                               finished.completion_tokens, {**grounding, **outcome}))

        def outcome(error: ApplianceError | None) -> None:
            self._observe(served_by, started_at, started, error)

        return AnswerStream(generation=generation, on_complete=store if key else None,
                            on_outcome=outcome if self.observers else None, served_by=served_by,
                            grounding=grounding, lease=lease)

    async def _finished(self, text: str, grounding: dict, key: str | None, lease: Lease) -> AnswerStream:
        """An answer made without the model (quoted, or "nothing found"): complete at once. Its
        tokens are counted with the model's tokenizer, on a worker thread, under the lease."""
        backend = lease.backend
        tokens = await anyio.to_thread.run_sync(backend.count_tokens, text) if text else 0
        reply = CachedResponse(text, "stop", 0, tokens, grounding)
        if key:
            self.cache.put(key, reply)
        return AnswerStream(cached=reply, from_cache=False, served_by=backend.version, lease=lease)

    def ground(self, messages: Sequence[dict[str, str]], groups: Sequence[str] | None = None) -> _Grounding:
        """Retrieval and evidence selection for a conversation, as an answer to it makes them (the
        build makes its training prompts with this, so they are the prompts the model is served)."""
        request = GenerationRequest(SamplingParams(), messages=tuple(messages))
        return self._ground(request, self.caller_groups(groups))

    def _ground(self, request: GenerationRequest, groups: list[str]) -> _Grounding:
        """Retrieval and evidence selection (blocking: runs on a worker thread)."""
        kb = self.knowledge
        settings = self.answer_settings
        started = time.perf_counter()
        if not settings.follow_ups:
            question = question_of(request.messages)
            return self._find(RetrievalQuery(question, question), groups, started)
        found = self._find(conversation_query(request.messages, kb.analyzer), groups, started)
        if found.query.carried or found.evidence.answers(settings.min_support):
            return found
        # A question that seemed to stand alone ("하루에 몇 장까지 뽑을 수 있어요?") but finds no
        # answer on its own is read with the conversation before it, unless it changes the topic.
        leaning = conversation_query(request.messages, kb.analyzer, lean=True)
        if not leaning.carried:
            return found
        again = self._find(leaning, groups, started)
        return again if again.evidence.answers(settings.min_support) else found

    def _find(self, query: RetrievalQuery, groups: list[str], started: float) -> _Grounding:
        kb = self.knowledge
        settings = self.answer_settings
        top_k = self.knowledge_settings.top_k
        selector = self._selector(kb)
        pool = max(top_k, settings.rerank_candidates, 2 * top_k if query.carried else 0)
        hits = kb.search(query.text, pool, groups=groups)
        topic: frozenset[str] = frozenset()
        if query.previous_answer:
            hits, topic = _favour_cited(hits, query.previous_answer)
            if query.leaning:  # it names a topic of its own: the previous one only joins the search
                topic = frozenset()
        if settings.rerank_candidates:
            # Second stage: passages re-ranked by the span that would answer in them.
            hits = selector.rerank(query.question, hits, context=query.earlier)
        hits = hits[:top_k]
        evidence = selector.select(query.question, hits, context=query.earlier, topic=topic,
                                   next_passage=lambda i: kb.next_passage(i, groups))
        return _Grounding(query, hits, evidence, time.perf_counter() - started)

    def _selector(self, kb) -> EvidenceSelector:
        """One selector per knowledge base, so its cache of passage terms lasts."""
        selector = self._selectors.get(id(kb))
        if selector is None or selector.analyzer is not kb.analyzer:
            settings = self.answer_settings
            selector = EvidenceSelector(
                kb.analyzer, idf=kb.keywords.idf, unseen_idf=kb.keywords.unseen_idf,
                glossary=kb.retriever.glossary, budget_tokens=settings.evidence_tokens,
                max_quotes=settings.max_quotes, embed=kb.embed,
                dense_weight=self.knowledge_settings.dense_weight,
                korean_dense_weight=self.knowledge_settings.korean_dense_weight)
            self._selectors = {id(kb): selector}
        return selector

    @staticmethod
    def _extra(found: _Grounding) -> dict:
        evidence = found.evidence
        sources = []
        for i, hit in enumerate(evidence.sources):
            source = hit.source()
            source["snippet"] = snippet(" ".join(evidence.texts_of(i))) or source["snippet"]
            source["spans"] = [list(r) for r in evidence.spans_of(i)]
            sources.append(source)
        extra = {"sources": sources, "grounded": bool(sources),
                 # What the answer may rest on, with the titles and headings its lead lines name.
                 "passages": [f"{h.title}\n{h.heading}\n{h.text}" for h in found.hits],
                 "retrieval_seconds": found.seconds}
        if found.query.carried:
            extra["retrieval_query"] = found.query.shown
        return extra

    def _generative(self, request: GenerationRequest, found: _Grounding):
        """The request with the evidence prompt, and how to wrap its generation for verification."""
        settings = self.answer_settings
        evidence = found.evidence
        params = replace(
            request.params,
            dry_multiplier=max(request.params.dry_multiplier, settings.dry_multiplier),
            max_tokens=request.params.max_tokens or settings.max_answer_tokens)
        grounded = replace(request, params=params, messages=tuple(evidence_messages(request.messages, evidence)))
        fallback = compose(evidence)
        block = evidence_block(evidence)

        def verify(generation: Generation) -> VerifiedGeneration:
            verifier = Verifier(block, found.query.question, settings.verify_support)
            return VerifiedGeneration(generation, verifier, fallback,
                                      min_support=settings.min_generated_support)

        return grounded, verify

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


CITED_BOOST = 1.3  # a follow-up's passages from documents the previous answer named rank higher


def _favour_cited(hits: list[Hit], previous_answer: str) -> tuple[list[Hit], frozenset[str]]:
    """Re-rank a follow-up's hits: documents whose title the previous answer names (its lead
    lines do) keep the topic, without shutting out a document the follow-up moves on to.
    Returns the hits and those documents."""
    cited = frozenset(h.document for h in hits if h.title and h.title in previous_answer)
    if not cited:
        return hits, cited
    return sorted(hits, key=lambda h: -h.score * (CITED_BOOST if h.document in cited else 1.0)), cited


def _normalized(request: GenerationRequest) -> dict:
    params = asdict(request.params)
    params["stop"] = sorted(params["stop"])
    return {
        "messages": [dict(m) for m in request.messages] if request.messages is not None else None,
        "prompt": request.prompt,
        "params": params,
    }
