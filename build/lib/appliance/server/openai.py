"""OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar import Controller, Request, get, post
from litestar.response import Response, ServerSentEvent

from appliance.assistant import AnswerStream, Assistant
from appliance.errors import ApplianceError
from appliance.llm.base import Finished, GenerationRequest, TextDelta
from appliance.server.errors import openai_error_body
from appliance.server.schemas import ChatCompletionRequest, CompletionRequest, encode


class OpenAIController(Controller):
    path = "/v1"
    tags = ["OpenAI-compatible"]

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

    @post("/chat/completions", summary="Chat completion (streaming with SSE or not)", status_code=200)
    async def chat_completions(
        self, data: JSONBody[ChatCompletionRequest], request: Request, assistant: NamedDependency[Assistant]
    ) -> Response:
        backend = assistant.check_model(data.model)
        generation = GenerationRequest(
            params=data.sampling(data.max_completion_tokens), messages=data.chat_messages()
        )
        answer = await assistant.answer(generation)
        reply = _Reply("chat.completion", backend.model_id, answer)
        if data.stream:
            return _sse(reply.chat_chunks(data.include_usage), answer)
        return await _complete(request, answer, reply.chat_body)

    @post("/completions", summary="Text completion (streaming with SSE or not)", status_code=200)
    async def completions(
        self, data: JSONBody[CompletionRequest], request: Request, assistant: NamedDependency[Assistant]
    ) -> Response:
        backend = assistant.check_model(data.model)
        generation = GenerationRequest(params=data.sampling(), prompt=data.prompt_text())
        answer = await assistant.answer(generation)
        reply = _Reply("text_completion", backend.model_id, answer)
        if data.stream:
            return _sse(reply.text_chunks(data.include_usage), answer)
        return await _complete(request, answer, reply.text_body)


class _Reply:
    """Shapes engine events into OpenAI response bodies and stream chunks."""

    def __init__(self, kind: str, model: str, answer: AnswerStream):
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.answer = answer

    def _usage(self, finished: Finished) -> dict[str, int]:
        return {
            "prompt_tokens": finished.prompt_tokens,
            "completion_tokens": finished.completion_tokens,
            "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        }

    def _envelope(self, obj: str, choices: list, **extra) -> dict[str, Any]:
        body = {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices}
        body.update(extra)
        return body

    def chat_body(self, text: str, finished: Finished) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": finished.finish_reason, "logprobs": None}
        return self._envelope("chat.completion", [choice], usage=self._usage(finished))

    def text_body(self, text: str, finished: Finished) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "finish_reason": finished.finish_reason, "logprobs": None}
        return self._envelope("text_completion", [choice], usage=self._usage(finished))

    async def chat_chunks(self, include_usage: bool) -> AsyncIterator[bytes]:
        chunk = lambda delta, reason=None: self._envelope(  # noqa: E731
            "chat.completion.chunk", [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}]
        )
        yield encode(chunk({"role": "assistant", "content": ""}))
        async for event in self.answer:
            if isinstance(event, TextDelta):
                yield encode(chunk({"content": event.text}))
            else:
                yield encode(chunk({}, event.finish_reason))
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
    if work.cancelled():
        return Response(content=b"", status_code=499)
    headers = {"X-Cache": "hit" if answer.from_cache else "miss"}
    return Response(content=work.result(), headers=headers)
