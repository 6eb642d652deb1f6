"""Serving: one owner of the serving backend, and leases that every answer releases however it
ends (real model and engine)."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.errors import ApplianceError, NotReady
from appliance.llm.base import GenerationRequest, SamplingParams
from appliance.llm.local import LocalBackend
from appliance.llm.serving import Serving


def chat(text: str, **params) -> GenerationRequest:
    return GenerationRequest(SamplingParams(**{"temperature": 0, "max_tokens": 8, **params}),
                             messages=({"role": "user", "content": text},))


async def until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def backend(engine_settings):
    made = LocalBackend(engine_settings())
    yield made
    if not made.model.closed:
        asyncio.run(made.close())


def test_every_answer_releases_its_lease_however_it_ends(backend):
    assistant = Assistant(backend, ResponseCache(100, 60, True))
    serving = assistant.serving

    async def scenario() -> list[tuple[str, int]]:
        held = []
        read = await assistant.answer(chat("Name one ERP module."), rag=False)
        held.append(("started", serving.leases()))
        [event async for event in read]
        held.append(("read to the end", serving.leases()))

        replayed = await assistant.answer(chat("Name one ERP module."), rag=False)
        assert replayed.from_cache
        [event async for event in replayed]
        held.append(("replayed from the cache", serving.leases()))

        stopped = await assistant.answer(chat("Write a long story.", max_tokens=200), rag=False)
        events = aiter(stopped)
        await anext(events)
        stopped.cancel()
        await events.aclose()
        held.append(("cancelled while read", serving.leases()))

        unread = await assistant.answer(chat("Name a warehouse.", temperature=0.8), rag=False)
        unread.cancel()
        held.append(("cancelled unread", serving.leases()))

        with pytest.raises(ApplianceError):  # longer than the context: refused before any event
            await assistant.answer(chat("invoice " * 2000), rag=False)
        held.append(("failed", serving.leases()))

        await assistant.answer(chat("Name a vendor.", temperature=0.8), rag=False)  # dropped unread
        gc.collect()
        held.append(("dropped unread", serving.leases()))
        return held

    held = asyncio.run(scenario())
    assert held[0] == ("started", 1)
    assert [h for h in held[1:] if h[1]] == []


def test_shutdown_closes_the_backend_after_the_last_answer_ends(backend):
    assistant = Assistant(backend, ResponseCache(1, 1, False))

    async def scenario():
        stream = await assistant.answer(chat("Name one ERP module.", max_tokens=16), rag=False)
        stopping = asyncio.create_task(assistant.serving.shutdown(60))
        await until(lambda: assistant.backend is None)
        with pytest.raises(NotReady, match="still loading"):  # nothing serves any more
            await assistant.answer(chat("Hello"), rag=False)
        assert not backend.model.closed and not stopping.done()
        events = [event async for event in stream]
        await stopping
        return events

    events = asyncio.run(scenario())
    assert events[-1].finish_reason in ("stop", "length") and backend.model.closed


def test_one_backend_is_installed_and_then_only_replaced(backend):
    serving = Serving()
    with pytest.raises(NotReady, match="still loading"):
        serving.lease()
    serving.install(backend)
    with pytest.raises(RuntimeError, match="swap instead"):
        serving.install(backend)
    with serving.lease() as lease:
        assert lease.backend is backend and serving.leases() == 1
    assert serving.leases() == 0
    assert serving.replace(None) is backend and serving.backend is None
    asyncio.run(serving.retire(backend, 0))
    assert backend.model.closed
