"""The LLM backend seam: one abstract method, capability flags, and the request/event types."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens; temperature 0 means greedy."""

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    # DRY ("don't repeat yourself"): penalises tokens that would extend a sequence already in the
    # context; 0 turns it off. Grounded answers turn it on, so a small model cannot loop.
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None


@dataclass(frozen=True)
class GenerationRequest:
    """Either chat `messages` or a raw `prompt`, plus sampling parameters."""

    params: SamplingParams
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)


Event = TextDelta | Finished


class Generation(ABC):
    """An admitted request: iterate it for events; `cancel()` frees its resources at once."""

    prompt_tokens: int

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[Event]: ...

    @abstractmethod
    def cancel(self) -> None: ...


class LLMBackend(ABC):
    """A source of completions. `start` validates and admits, raising before any token streams."""

    supports_chat = True
    supports_completion = True

    @property
    @abstractmethod
    def model_id(self) -> str: ...

    @property
    def version(self) -> str:
        """What the response cache keys on; changes whenever the answers could change."""
        return self.model_id

    @property
    def unavailable(self) -> str | None:
        """Why this backend cannot answer right now (a failed engine restarting); None if it can."""
        return None

    @property
    def ready(self) -> bool:
        return self.unavailable is None

    def status(self) -> dict[str, Any]:
        return {"model": self.model_id, "ready": self.ready}

    @property
    def context_limit(self) -> int:
        """Prompt plus completion tokens one request may use (grounded prompts fit inside)."""
        return 2048

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in a prompt; backends with a tokenizer count exactly."""
        return len(text) // 3 + 1

    @abstractmethod
    async def start(self, request: GenerationRequest) -> Generation: ...

    async def close(self, drain_seconds: float = 0.0) -> None:
        """Stop admitting, let in-flight generations finish (up to `drain_seconds`), release
        resources. A serving backend is closed by its Serving, once no request holds a lease on it."""
