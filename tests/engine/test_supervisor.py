"""A model's lifetime and the supervised engine, with faults injected into llama_decode."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from appliance.engine import batcher
from appliance.engine.batcher import Engine
from appliance.engine.model import Model, ModelClosed
from appliance.errors import ApplianceError, EngineFailed
from appliance.llm.base import Finished, GenerationRequest, SamplingParams, TextDelta

from .test_batcher import wait_until

LONG_TEXT = "Purchase orders above the approval limit go to the finance manager. " * 200


class InjectedDecodeFault:
    """Fault injection (tests only): replaces Engine._decode; once armed, the next decode step
    fails the way `fail` says, then decoding goes on normally."""

    def __init__(self, fail):
        self.fail = fail
        self.armed = threading.Event()
        self.fired = threading.Event()
        self.real = Engine._decode

    def __get__(self, engine, owner=None):  # installed as a method: bound to each engine
        return self if engine is None else (lambda batch: self(engine, batch))

    def __call__(self, engine, batch):
        if self.armed.is_set() and not self.fired.is_set():
            self.fired.set()
            return self.fail(engine, batch)
        return self.real(engine, batch)


def raise_in_decode(engine, batch):
    raise RuntimeError("injected fault: the decode step blew up")


def decode_returns_compute_error(engine, batch):
    return -3  # what llama_decode returns when the graph computation fails


def long_request(i: int) -> GenerationRequest:
    return GenerationRequest(params=SamplingParams(temperature=0.8, seed=i, max_tokens=400),
                             messages=({"role": "user", "content": f"Write a long story number {i}."},))


async def outcome(backend, request) -> str | ApplianceError:
    try:
        generation = await backend.start(request)
        async for event in generation:
            if isinstance(event, Finished):
                return event.finish_reason
    except ApplianceError as exc:
        return exc
    return "no end"


# -- the model's lifetime ----------------------------------------------------------------------

def test_a_closed_model_refuses_every_method_clearly(model_path):
    model = Model(model_path)
    tokens = model.tokenize("hello world")
    model.close()
    for call in (lambda: model.tokenize("hello"), lambda: model.detokenize(tokens),
                 lambda: model.token_bytes(tokens[0]), lambda: model.is_eog(tokens[0]),
                 lambda: model.apply_chat_template([{"role": "user", "content": "hi"}])):
        with pytest.raises(ModelClosed, match="unloaded"):
            call()


def test_closing_the_backend_under_tokenizing_threads_never_touches_freed_memory(make_backend):
    backend = make_backend()
    expected = backend.count_tokens(LONG_TEXT)
    results: list = []
    started = threading.Barrier(5)

    def count() -> None:
        started.wait()
        for _ in range(200):
            try:
                results.append(backend.count_tokens(LONG_TEXT))
            except ApplianceError as exc:
                results.append(exc)
                return

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    asyncio.run(backend.close())
    for thread in threads:
        thread.join()
    assert results and all(r == expected or isinstance(r, ModelClosed) for r in results), results[-5:]
    assert backend.model.ptr is None  # freed once the last tokenization ended
    with pytest.raises(ModelClosed):
        backend.count_tokens("after close")


def test_the_context_is_freed_only_after_the_last_decode_step_returns(model_path, engine_settings,
                                                                      monkeypatch):
    model = Model(model_path)
    decoding = threading.Event()
    frees: list[bool] = []
    real_free = batcher.llama.llama_free

    def slow_decode(engine, batch):  # fault injection: one decode step that takes 1.5 s
        decoding.set()
        try:
            time.sleep(1.5)
            return llama_decode(engine.ctx, batch)
        finally:
            decoding.clear()

    def recording_free(ctx):
        frees.append(decoding.is_set())
        real_free(ctx)

    llama_decode = batcher.llama.llama_decode
    monkeypatch.setattr(Engine, "_decode", slow_decode)
    monkeypatch.setattr(batcher.llama, "llama_free", recording_free)
    engine = Engine(model, engine_settings())
    engine.start()
    engine.submit(model.tokenize("Hello"), SamplingParams(max_tokens=4), asyncio.new_event_loop())
    assert wait_until(decoding.is_set, 10)
    engine.stop(join_seconds=0.1)  # returns while the step still runs
    assert engine.alive and engine.ctx is not None and frees == []
    model.close()  # the engine still holds the weights: freed when it ends
    assert model.ptr is not None
    assert wait_until(lambda: not engine.alive, 10)
    assert frees == [False] and engine.ctx is None and model.ptr is None


# -- supervision ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fail", [raise_in_decode, decode_returns_compute_error])
def test_an_engine_failure_fails_every_request_with_503_then_the_engine_restarts(make_backend,
                                                                                monkeypatch, fail):
    fault = InjectedDecodeFault(fail)
    monkeypatch.setattr(Engine, "_decode", fault)
    backend = make_backend(slots=2, max_queue=8)
    events: list[tuple[str, dict]] = []
    backend.listeners.append(lambda event, detail: events.append((event, detail)))
    first_engine = backend.engine

    async def main():
        tasks = [asyncio.create_task(outcome(backend, long_request(i))) for i in range(5)]
        deadline = time.monotonic() + 60
        while first_engine.status()["slots_busy"] < 2 or first_engine.status()["queue_depth"] < 3:
            assert time.monotonic() < deadline, first_engine.status()
            await asyncio.sleep(0.01)
        fault.armed.set()
        await asyncio.to_thread(fault.fired.wait, 10)
        fired_at = time.monotonic()
        results = await asyncio.gather(*tasks)
        return results, time.monotonic() - fired_at

    results, seconds = asyncio.run(main())
    assert all(isinstance(r, EngineFailed) for r in results), results  # running and waiting alike
    assert {r.status for r in results} == {503} and results[0].headers["Retry-After"]
    assert seconds < 1.0
    assert not backend.ready and "failed" in backend.unavailable
    with pytest.raises(EngineFailed, match="restarting|restarts"):
        asyncio.run(backend.start(long_request(9)))

    assert wait_until(lambda: backend.ready, 10), backend.unavailable
    assert backend.engine is not first_engine
    assert asyncio.run(outcome(backend, GenerationRequest(
        params=SamplingParams(max_tokens=8), prompt="ERP stands for"))) in ("stop", "length")
    assert [e for e, _ in events] == ["engine_failed", "engine_restarted"]
    assert backend.status()["engine"]["engine_restarts"] == 1


def test_a_stopped_engine_is_not_restarted(make_backend):
    backend = make_backend()
    engine = backend.engine
    asyncio.run(backend.close())
    assert not engine.alive and backend.supervisor.restarts == 0 and backend.supervisor.failure is None


def test_generations_still_stream_after_a_restart(make_backend, monkeypatch):
    fault = InjectedDecodeFault(raise_in_decode)
    monkeypatch.setattr(Engine, "_decode", fault)
    backend = make_backend()
    fault.armed.set()
    assert isinstance(asyncio.run(outcome(backend, long_request(1))), EngineFailed)
    assert wait_until(lambda: backend.ready, 10)

    async def stream():
        generation = await backend.start(GenerationRequest(params=SamplingParams(max_tokens=12),
                                                           prompt="The invoice"))
        return [e async for e in generation]

    events = asyncio.run(stream())
    assert any(isinstance(e, TextDelta) for e in events) and isinstance(events[-1], Finished)
