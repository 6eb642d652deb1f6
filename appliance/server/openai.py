"""OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.response import Response, ServerSentEvent

from appliance.assistant import AnswerStream, Assistant
from appliance.errors import ApplianceError, InvalidRequest
from appliance.llm.base import Finished, GenerationRequest, TextDelta
from appliance.server.auth import signed_in
from appliance.server.errors import openai_error_body
from appliance.server.quotas import meter
from appliance.server.request_metrics import trace_of
from appliance.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    encode,
)
from appliance.server.scope import caller_groups


class OpenAIController(Controller):
    path = "/v1"
    tags = ["OpenAI-compatible"]
    guards = [signed_in]

    @get("/models", summary="List the served models")
    async def models(self, assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        backend = assistant.require_backend()
        return {
            "object": "list",
            "data": [
                {
                    "id": backend.model_id,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "appliance",
                    "version": backend.version,
                }
            ],
        }

    @post("/chat/completions", summary="Chat completion (streaming with SSE or not)", status_code=200,
          opt={"quota": "tokens"})
    async def chat_completions(
        self, data: JSONBody[ChatCompletionRequest], request: Request, assistant: NamedDependency[Assistant]
    ) -> Response:
        backend = assistant.check_model(data.model)
        trace = trace_of(request)
        trace.use_backend(backend)
        generation = GenerationRequest(
            params=data.sampling(data.max_completion_tokens), messages=data.chat_messages()
        )
        answer = await assistant.answer(
            generation, groups=caller_groups(request, data.groups), rag=data.rag
        )
        reply = _Reply("chat.completion", backend.model_id, answer)
        trace.watch(answer, reply.id, data.stream)
        meter(request).watch(answer)
        if data.stream:
            return _sse(reply.chat_chunks(data.include_usage), answer)
        return await _complete(request, answer, reply.chat_body)

    @post("/completions", summary="Text completion (streaming with SSE or not)", status_code=200,
          opt={"quota": "tokens"})
    async def completions(
        self, data: JSONBody[CompletionRequest], request: Request, assistant: NamedDependency[Assistant]
    ) -> Response:
        backend = assistant.check_model(data.model)
        trace = trace_of(request)
        trace.use_backend(backend)
        generation = GenerationRequest(params=data.sampling(), prompt=data.prompt_text())
        answer = await assistant.answer(generation)
        reply = _Reply("text_completion", backend.model_id, answer)
        trace.watch(answer, reply.id, data.stream)
        meter(request).watch(answer)
        if data.stream:
            return _sse(reply.text_chunks(data.include_usage), answer)
        return await _complete(request, answer, reply.text_body)


    @post("/embeddings", summary="Embed texts with the knowledge base's embedder", status_code=200,
          opt={"quota": "tokens"})
    async def embeddings(self, data: JSONBody[EmbeddingRequest], request: Request,
                         assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        kb = assistant.require_knowledge()
        texts = data.texts()
        vectors = await anyio.to_thread.run_sync(kb.embed, texts, data.input_type)
        if data.dimensions is not None and data.dimensions != vectors.shape[1]:
            raise InvalidRequest(
                f"This embedder returns {vectors.shape[1]} dimensions; drop `dimensions` or set it "
                f"to {vectors.shape[1]}.", param="dimensions")
        if data.encoding_format == "base64":
            values = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            values = vectors.tolist()
        tokens = sum(len(t.split()) for t in texts)
        meter(request).count(tokens)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(values)],
            "model": kb.embedder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class _Reply:
    """Shapes engine events into OpenAI response bodies and stream chunks."""

    def __init__(self, kind: str, model: str, answer: AnswerStream):
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.answer = answer
        # OpenAI's field for "which backend configuration answered": here the model version, so a
        # client (and the swap tests) can tell which version served every chunk.
        self.fingerprint = answer.served_by

    def _usage(self, finished: Finished) -> dict[str, int]:
        return {
            "prompt_tokens": finished.prompt_tokens,
            "completion_tokens": finished.completion_tokens,
            "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        }

    def _envelope(self, obj: str, choices: list, **extra) -> dict[str, Any]:
        body = {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": self.fingerprint, "choices": choices}
        body.update(extra)
        return body

    def chat_body(self, text: str, finished: Finished) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": finished.finish_reason, "logprobs": None}
        return self._envelope("chat.completion", [choice], usage=self._usage(finished),
                              **self.answer.grounding, **self.answer.outcome)

    def text_body(self, text: str, finished: Finished) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "finish_reason": finished.finish_reason, "logprobs": None}
        return self._envelope("text_completion", [choice], usage=self._usage(finished))

    async def chat_chunks(self, include_usage: bool) -> AsyncIterator[bytes]:
        chunk = lambda delta, reason=None: self._envelope(  # noqa: E731
            "chat.completion.chunk", [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}]
        )
        # The first chunk carries the sources, so a UI can show them while the answer streams.
        first = chunk({"role": "assistant", "content": ""})
        first.update(self.answer.grounding)
        yield encode(first)
        async for event in self.answer:
            if isinstance(event, TextDelta):
                yield encode(chunk({"content": event.text}))
            else:
                last = chunk({}, event.finish_reason)
                # How a generated answer was verified is known only now: the last chunk says it.
                last.update(self.answer.outcome)
                yield encode(last)
                if include_usage:
                    yield encode(self._envelope("chat.completion.chunk", [], usage=self._usage(event)))

    async def text_chunks(self, include_usage: bool) -> AsyncIterator[bytes]:
        chunk = lambda text, reason=None: self._envelope(  # noqa: E731
            "text_completion", [{"index": 0, "text": text, "finish_reason": reason, "logprobs": None}]
        )
        async for event in self.answer:
            if isinstance(event, TextDelta):
                yield encode(chunk(event.text))
            else:
                yield encode(chunk("", event.finish_reason))
                if include_usage:
                    yield encode(self._envelope("text_completion", [], usage=self._usage(event)))


def _sse(chunks: AsyncIterator[bytes], answer: AnswerStream) -> ServerSentEvent:
    async def events() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        except ApplianceError as exc:  # headers are gone: report in-band, as OpenAI does
            yield encode(openai_error_body(exc))
        finally:
            answer.cancel()  # the client left, or we are done: free the slot now
        yield b"[DONE]"

    headers = {"X-Cache": "hit" if answer.from_cache else "miss", "Cache-Control": "no-cache"}
    return ServerSentEvent(events(), headers=headers)


async def _complete(request: Request, answer: AnswerStream, shape) -> Response:
    """Collect a whole answer, cancelling it if the client disconnects meanwhile."""

    async def collect():
        parts: list[str] = []
        async for event in answer:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                return shape("".join(parts), event)

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work = asyncio.ensure_future(collect())
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            answer.cancel()
            work.cancel()
            # Wait for the cancellation to land: result() of a task still being cancelled raises.
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled():
        return Response(content=b"", status_code=499)
    headers = {"X-Cache": "hit" if answer.from_cache else "miss"}
    return Response(content=work.result(), headers=headers)
