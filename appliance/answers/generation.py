"""A model's grounded answer, verified sentence by sentence while it streams.

Sentences are held until they end, checked against the evidence, then sent or dropped. A stream
whose recent words start to loop is stopped. When nothing survives, the extractive answer is sent
instead; when too little survives, the quoted evidence follows what did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from appliance.answers.modes import EXTRACTIVE, GENERATED, GENERATED_WITH_REMOVALS
from appliance.answers.quality import repeats
from appliance.answers.verify import SentenceBuffer, Verifier
from appliance.llm.base import Event, Finished, Generation, TextDelta

GUARD_WORDS = 60  # the repetition guard looks at this many most recent words


class VerifiedGeneration(Generation):
    def __init__(self, inner: Generation, verifier: Verifier, fallback: str, *,
                 min_support: float = 0.5):
        self.inner = inner
        self.verifier = verifier
        self.fallback = fallback
        self.min_support = min_support
        self.prompt_tokens = inner.prompt_tokens
        self.served_by = getattr(inner, "served_by", None)
        self.answer_mode: str | None = None  # known once the answer ended
        self.looped = False

    @property
    def support(self) -> float:
        return self.verifier.support

    @property
    def removed(self) -> int:
        return self.verifier.removed

    def cancel(self) -> None:
        self.inner.cancel()

    async def __aiter__(self) -> AsyncIterator[Event]:
        buffer = SentenceBuffer()
        recent: list[str] = []
        sent = False
        finished: Finished | None = None
        deltas = 0  # a local engine sends one per token: the count if the guard cuts it short
        async for event in self.inner:
            if isinstance(event, Finished):
                finished = event
                break
            deltas += 1
            recent = (recent + event.text.split())[-GUARD_WORDS:]
            if repeats(" ".join(recent)):
                self.looped = True
                self.inner.cancel()
                break
            for sentence in buffer.feed(event.text):
                if self.verifier.check(sentence).kept:
                    sent = True
                    yield TextDelta(sentence)
        if not self.looped:
            tail = buffer.flush()
            if tail.strip() and self.verifier.check(tail).kept:
                sent = True
                yield TextDelta(tail)
        if not sent:
            self.answer_mode = EXTRACTIVE
            yield TextDelta(self.fallback)
        elif self.verifier.support < self.min_support:
            self.answer_mode = GENERATED_WITH_REMOVALS
            yield TextDelta("\n\n" + self.fallback)
        else:
            self.answer_mode = GENERATED if not self.verifier.removed else GENERATED_WITH_REMOVALS
        if finished is None:  # the guard stopped a loop: the answer still ends normally
            finished = Finished("stop", self.prompt_tokens, deltas)
        yield Finished("stop" if finished.finish_reason == "cancelled" else finished.finish_reason,
                       finished.prompt_tokens, finished.completion_tokens, finished.timings)
