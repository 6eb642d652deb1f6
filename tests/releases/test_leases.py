"""A swap on an idle appliance (a maintenance window) closes the old model only after the
requests that started with it have ended: real models, a real knowledge base, the real swap."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.llm.base import Finished, GenerationRequest, SamplingParams, TextDelta
from appliance.releases import ReleaseManager
from tests.releases.test_swap import prepare

DOCUMENT = b"# Credit notes\n\nPost credit notes with transaction AR410 in the receivables module.\n"
QUESTION = "How do I post credit notes?"


class Pause:
    """Holds a worker thread inside a wrapped call until the test lets it go on."""

    def __init__(self, call):
        self.call = call
        self.entered = threading.Event()
        self.go = threading.Event()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        assert self.go.wait(120), "the test never let the paused call go on"
        return self.call(*args, **kwargs)


async def until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def lease_settings(tmp_path, release_settings, gguf_files, embedder_dir):
    settings = release_settings(probation_seconds=0)
    settings.knowledge.embedder_path = str(embedder_dir)
    prepare(settings, tmp_path, {"v1": gguf_files["q8_0"], "v2": gguf_files["q4_0"]})
    return settings


async def serving_v1(settings, knowledge=None) -> tuple[Assistant, ReleaseManager]:
    probe = ReleaseManager(settings)
    first = probe.factory(probe.registry.active())
    probe.close()
    assistant = Assistant(first, ResponseCache(100, 60, True), knowledge=knowledge,
                          knowledge_settings=settings.knowledge, answer_settings=settings.answers)
    manager = ReleaseManager(settings, assistant)
    manager.start()
    return assistant, manager


async def swap_while_paused(manager: ReleaseManager, pause: Pause, old) -> tuple[asyncio.Task, list[str]]:
    """Activate erp/v2 while a request is paused; returns once the swap waits in its drain step."""
    await until(pause.entered.is_set)
    steps: list[str] = []
    activation = asyncio.create_task(manager.activate("erp/v2", progress=lambda step, job: steps.append(step)))
    await until(lambda: "drain" in steps or activation.done())
    # The request still holds the old model: the swap must not free it (a bounded wait for
    # something that must not happen).
    done, _ = await asyncio.wait({activation}, timeout=2)
    assert not done and not old.model.closed, "the swap freed the model under a request"
    return activation, steps


@pytest.mark.slow
def test_swap_waits_for_a_request_that_has_not_reached_the_model(lease_settings, monkeypatch):
    """The request tokenizes its prompt (a worker thread) when the swap comes."""

    async def scenario():
        assistant, manager = await serving_v1(lease_settings)
        old = assistant.backend
        pause = Pause(old.tokenize_request)
        monkeypatch.setattr(old, "tokenize_request", pause)
        request = GenerationRequest(SamplingParams(temperature=0, max_tokens=8),
                                    messages=({"role": "user", "content": "Name one ERP module."},))
        answering = asyncio.create_task(assistant.answer(request, rag=False))
        activation, _ = await swap_while_paused(manager, pause, old)
        pause.go.set()
        stream = await answering
        events = [event async for event in stream]
        result = await activation
        await manager.stop()
        await assistant.serving.shutdown(0)
        manager.close()
        return stream, events, result, old

    stream, events, result, old = asyncio.run(scenario())
    assert stream.served_by == "erp/v1"  # the backend it started with answered it
    assert isinstance(events[-1], Finished) and events[-1].finish_reason in ("stop", "length")
    assert any(isinstance(e, TextDelta) and e.text for e in events)
    assert result["swap"]["cancelled"] == 0 and result["version"] == "erp/v2"
    assert old.model.closed  # freed once the answer ended


@pytest.mark.slow
def test_swap_waits_for_an_extractive_answer_that_counts_its_tokens(lease_settings, embedder, monkeypatch):
    """A quoted answer never generates, but counts its tokens with the model's tokenizer."""
    lease_settings.answers.mode = "extractive"

    async def scenario():
        kb = await asyncio.to_thread(KnowledgeBase.open, lease_settings, embedder=embedder)
        await asyncio.to_thread(kb.ingest_bytes, "credit-notes.md", DOCUMENT)
        assistant, manager = await serving_v1(lease_settings, kb)
        old = assistant.backend
        pause = Pause(kb.search)
        monkeypatch.setattr(kb, "search", pause)
        request = GenerationRequest(SamplingParams(temperature=0, max_tokens=64),
                                    messages=({"role": "user", "content": QUESTION},))
        answering = asyncio.create_task(assistant.answer(request))
        activation, _ = await swap_while_paused(manager, pause, old)
        pause.go.set()
        stream = await answering
        events = [event async for event in stream]
        result = await activation
        await manager.stop()
        await assistant.serving.shutdown(0)
        manager.close()
        await asyncio.to_thread(kb.close)
        return stream, events, result, old

    stream, events, result, old = asyncio.run(scenario())
    assert stream.answer_mode == "extractive" and stream.served_by == "erp/v1"
    assert "AR410" in "".join(e.text for e in events if isinstance(e, TextDelta))
    assert events[-1].completion_tokens > 0  # counted by the old model's tokenizer, still open
    assert result["swap"]["cancelled"] == 0 and old.model.closed


@pytest.mark.slow
def test_past_the_drain_time_the_swap_cancels_what_is_left(lease_settings):
    """An answer nobody reads holds its lease; after drain_seconds the swap cancels it and frees
    the model."""
    lease_settings.server.drain_seconds = 0.5

    async def scenario():
        assistant, manager = await serving_v1(lease_settings)
        old = assistant.backend
        request = GenerationRequest(SamplingParams(temperature=0.8, max_tokens=400),
                                    prompt="Write a long story about a warehouse.")
        stream = await assistant.answer(request, rag=False)
        result = await manager.activate("erp/v2")
        events = [event async for event in stream]
        held = assistant.serving.leases(old)
        await manager.stop()
        await assistant.serving.shutdown(0)
        manager.close()
        return result, events, held, old

    result, events, held, old = asyncio.run(scenario())
    assert result["swap"]["cancelled"] == 1 and old.model.closed and held == 0
    # Read after the model was freed, the answer still ends cleanly (cut, unless it had finished).
    assert isinstance(events[-1], Finished)
