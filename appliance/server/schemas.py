"""Request bodies of the OpenAI-compatible API, as msgspec Structs (validated by Litestar)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from appliance.errors import InvalidRequest
from appliance.llm.base import SamplingParams

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
TokenCount = Annotated[int, Meta(ge=1, le=1_000_000)]
Seed = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
StopList = Annotated[list[Annotated[str, Meta(max_length=256)]], Meta(max_length=4)]


class ContentPart(Struct, forbid_unknown_fields=False):
    type: str
    text: str | None = None


class ChatMessage(Struct, forbid_unknown_fields=False):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text":
                raise InvalidRequest(
                    f"Content parts of type {part.type!r} are not supported; send text only.",
                    param="messages",
                )
            parts.append(part.text or "")
        return "".join(parts)


class StreamOptions(Struct, forbid_unknown_fields=False):
    include_usage: bool = False


class SamplingFields(Struct, forbid_unknown_fields=False, kw_only=True):
    """Fields shared by chat and text completions; top_k, min_p and repeat_penalty are extensions."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    temperature: Temperature | None = None
    top_p: Probability | None = None
    top_k: Annotated[int, Meta(ge=0, le=1000)] | None = None
    min_p: Probability | None = None
    repeat_penalty: Annotated[float, Meta(gt=0.0, le=5.0)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    max_tokens: TokenCount | None = None
    seed: Seed | None = None
    stop: Annotated[str, Meta(max_length=256)] | StopList | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Meta(ge=1, le=128)] = 1
    user: str | None = None

    def sampling(self, max_tokens: int | None = None) -> SamplingParams:
        if self.n != 1:
            raise InvalidRequest("Only n=1 is supported; send separate requests.", param="n")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        defaults = SamplingParams()
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return SamplingParams(
            temperature=pick(self.temperature, defaults.temperature),
            top_p=pick(self.top_p, defaults.top_p),
            top_k=pick(self.top_k, defaults.top_k),
            min_p=pick(self.min_p, defaults.min_p),
            repeat_penalty=pick(self.repeat_penalty, defaults.repeat_penalty),
            presence_penalty=pick(self.presence_penalty, 0.0),
            frequency_penalty=pick(self.frequency_penalty, 0.0),
            seed=self.seed,
            stop=tuple(s for s in stop if s),
            max_tokens=max_tokens or self.max_tokens,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


GroupList = Annotated[list[Annotated[str, Meta(min_length=1, max_length=128)]], Meta(max_length=64)]


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=1000)]
    max_completion_tokens: TokenCount | None = None
    # Extensions: `rag: false` answers without the knowledge base; `groups` narrows the caller's
    # access groups to some of its own (see appliance/server/scope.py).
    rag: bool | None = None
    groups: GroupList | None = None

    def chat_messages(self) -> tuple[dict[str, str], ...]:
        messages = []
        for message in self.messages:
            role = "system" if message.role == "developer" else message.role
            if role == "tool":
                raise InvalidRequest("Tool messages are not supported by this model.", param="messages")
            messages.append({"role": role, "content": message.text()})
        if not any(m["content"].strip() for m in messages if m["role"] == "user"):
            raise InvalidRequest(
                "The conversation has no user message with text; add one.", param="messages"
            )
        return tuple(messages)


class CompletionRequest(SamplingFields, kw_only=True):
    prompt: Annotated[str, Meta(max_length=2_000_000)] | Annotated[list[str], Meta(min_length=1, max_length=1)]
    echo: bool = False
    suffix: str | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    best_of: Annotated[int, Meta(ge=1, le=1)] | None = None

    def prompt_text(self) -> str:
        if self.echo or self.suffix or self.logprobs:
            raise InvalidRequest("echo, suffix and logprobs are not supported.", param="prompt")
        text = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        if not text:
            raise InvalidRequest("The prompt is empty; send some text.", param="prompt")
        return text


class EmbeddingRequest(Struct, forbid_unknown_fields=False, kw_only=True):
    input: Annotated[str, Meta(max_length=100_000)] | Annotated[
        list[Annotated[str, Meta(max_length=100_000)] | int | list[int]],
        Meta(min_length=1, max_length=2048),
    ]
    model: Annotated[str, Meta(min_length=1, max_length=256)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    # Not in OpenAI's API: embedders trained with "query: " / "passage: " prefixes get theirs.
    input_type: Literal["query", "passage"] | None = None

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        if not all(isinstance(item, str) for item in self.input):
            raise InvalidRequest("Token-id input is not supported; send text.", param="input")
        return list(self.input)


class SearchRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    query: Annotated[str, Meta(min_length=1, max_length=10_000)]
    k: Annotated[int, Meta(ge=1, le=100)] = 5
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    groups: GroupList | None = None


def encode(value) -> bytes:
    return msgspec.json.encode(value)
