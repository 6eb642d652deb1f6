"""Zero-downtime model swap: load beside, warm up, switch atomically, drain the old one, free it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from appliance.assistant import Assistant
from appliance.errors import ApplianceError
from appliance.llm.base import GenerationRequest, LLMBackend, SamplingParams, TextDelta
from appliance.releases.registry import ReleaseError

log = logging.getLogger(__name__)


class SwapFailed(ReleaseError):
    code = "swap_failed"
    status = 500


@dataclass
class SwapResult:
    previous_version: str | None
    version: str
    load_seconds: float
    warmup_seconds: float
    drain_seconds: float
    total_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def warm_up(backend: LLMBackend, timeout: float) -> str:
    """One short generation, so the first user request does not pay for cold caches or a bad model."""
    request = GenerationRequest(SamplingParams(temperature=0.0, max_tokens=4),
                                messages=({"role": "user", "content": "Hello"},))

    async def run() -> str:
        generation = await backend.start(request)
        return "".join([e.text async for e in generation if isinstance(e, TextDelta)])

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise SwapFailed(f"The new model did not finish its warm-up in {timeout:g} s; the old one stays.") from None


async def swap(assistant: Assistant, load: Callable[[], LLMBackend], *, drain_seconds: float,
               warmup_timeout: float, on_switch: Callable[[], None] | None = None) -> SwapResult:
    """Replace `assistant.backend` with `load()` without failing a request.

    The caller holds the lock that keeps this to one swap (two models in memory) at a time.
    `on_switch` runs in the same loop step as the switch (e.g. install the re-embedded index).
    """
    started = time.perf_counter()
    try:
        new = await anyio.to_thread.run_sync(load)  # the engine thread starts inside; the loop stays free
    except ApplianceError as exc:
        raise SwapFailed(f"The new model did not load: {exc.message}; the old one keeps serving.") from exc
    loaded = time.perf_counter()
    try:
        await warm_up(new, warmup_timeout)
    except BaseException:
        await new.close()
        raise
    warmed = time.perf_counter()
    old = assistant.backend
    if on_switch is not None:
        try:
            on_switch()  # no await between this and the switch: no request sees one without the other
        except BaseException:
            await new.close()
            raise
    # One attribute store on the event loop: every later request sees the new backend, and no
    # request can see a half-switched state. Requests already admitted keep a reference to `old`.
    assistant.backend = new
    log.info("swapped model: %s -> %s", old.version if old else None, new.version)
    if old is not None:
        await old.close(drain_seconds)  # stops admitting, waits for in-flight answers, frees it
    done = time.perf_counter()
    return SwapResult(
        previous_version=old.version if old else None, version=new.version,
        load_seconds=loaded - started, warmup_seconds=warmed - loaded, drain_seconds=done - warmed,
        total_seconds=done - started,
    )
