"""Zero-downtime model swap: load beside, warm up, switch atomically, drain the old one's leases,
free it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.errors import ApplianceError
from appliance.llm.base import GenerationRequest, LLMBackend, SamplingParams, TextDelta
from appliance.llm.serving import Serving
from appliance.releases.registry import ReleaseError

log = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any]], None]  # (step now running, figures of finished steps)


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
    cancelled: int = 0  # requests on the old model still running when the drain time was up

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


async def swap(serving: Serving, load: Callable[[], LLMBackend], *, drain_seconds: float,
               warmup_timeout: float, on_switch: Callable[[], None] | None = None,
               progress: Progress | None = None) -> SwapResult:
    """Serve `load()` instead of the serving backend without failing a request.

    The caller holds the lock that keeps this to one swap (two models in memory) at a time.
    `on_switch` runs in the same loop step as the switch (e.g. install the re-embedded index);
    `progress(step, figures)` hears each step (load, warmup, switch, drain) as it starts.
    The old backend is closed once the last request that started with it has ended (its lease
    is released), or after `drain_seconds`, cancelling the requests left.
    """
    step = progress or (lambda name, figures: None)
    figures: dict[str, float] = {}
    started = time.perf_counter()
    step("load", dict(figures))
    new = await _load(load)
    loaded = time.perf_counter()
    figures["load_seconds"] = loaded - started
    step("warmup", dict(figures))
    try:
        await warm_up(new, warmup_timeout)
    except BaseException:
        await new.close()
        raise
    warmed = time.perf_counter()
    figures["warmup_seconds"] = warmed - loaded
    step("switch", dict(figures))
    if on_switch is not None:
        try:
            on_switch()  # no await between this and the switch: no request sees one without the other
        except BaseException:
            await new.close()
            raise
    # One step on the event loop: every later request leases the new backend, and no request
    # sees a half-switched state. Requests that leased `old` keep it until their answers end.
    old = serving.replace(new)
    log.info("swapped model: %s -> %s", old.version if old else None, new.version)
    cancelled = 0
    if old is not None:
        step("drain", dict(figures))
        draining = asyncio.ensure_future(serving.retire(old, drain_seconds))
        try:
            cancelled = await asyncio.shield(draining)
        except asyncio.CancelledError:
            # The switch has happened: a stop lets the old model finish its answers and free its
            # memory (within drain_seconds) rather than leave it half-closed.
            await asyncio.wait({draining})
            raise
    done = time.perf_counter()
    return SwapResult(
        previous_version=old.version if old else None, version=new.version,
        load_seconds=loaded - started, warmup_seconds=warmed - loaded, drain_seconds=done - warmed,
        total_seconds=done - started, cancelled=cancelled,
    )


async def _load(load: Callable[[], LLMBackend]) -> LLMBackend:
    """`load()` in a worker thread (the engine thread starts inside; the loop stays free)."""
    loading = asyncio.ensure_future(asyncio.to_thread(load))
    try:
        return await asyncio.shield(loading)
    except asyncio.CancelledError:
        # A load cannot be interrupted: wait for it, then free what it built before stopping.
        await asyncio.wait({loading})
        if not loading.cancelled() and loading.exception() is None:
            await loading.result().close()
        raise
    except ApplianceError as exc:
        raise SwapFailed(f"The new model did not load: {exc.message}; the old one keeps serving.") from exc
