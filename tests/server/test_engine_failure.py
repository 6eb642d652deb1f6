"""An engine crash seen over HTTP: 503s in OpenAI's shape, /ready says why, an alert fires and
resolves, and the appliance answers again once the engine has restarted."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from appliance.engine.batcher import Engine
from tests.engine.test_supervisor import InjectedDecodeFault, raise_in_decode

MODEL = "smollm2-135m-instruct"


def body(stream: bool, i: int) -> dict:
    return {"model": MODEL, "stream": stream, "max_tokens": 400, "temperature": 0.8, "seed": i,
            "messages": [{"role": "user", "content": f"Write a long story number {i}."}]}


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    return None


def test_an_injected_engine_crash_over_http(app_settings, make_backend, live_server, monkeypatch):
    fault = InjectedDecodeFault(raise_in_decode)
    monkeypatch.setattr(Engine, "_decode", fault)
    settings = app_settings(slots=2)
    settings.monitoring.golden_interval_hours = 0
    backend = make_backend(slots=2, max_queue=8)
    server = live_server(settings, backend)
    server.wait_ready()
    alerts = server.app.state.monitor.alerts

    async def requests():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            async def plain(i):
                return await client.post("/v1/chat/completions", json=body(False, i))

            async def streamed(i):
                async with client.stream("POST", "/v1/chat/completions", json=body(True, i)) as r:
                    return r.status_code, [line async for line in r.aiter_lines() if line]

            tasks = [asyncio.create_task(plain(i)) for i in range(3)]
            tasks.append(asyncio.create_task(streamed(3)))
            deadline = time.monotonic() + 60
            while backend.engine.status()["slots_busy"] < 2 or backend.engine.status()["queue_depth"] < 2:
                assert time.monotonic() < deadline, backend.engine.status()
                await asyncio.sleep(0.01)
            fault.armed.set()
            await asyncio.to_thread(fault.fired.wait, 10)
            fired = time.monotonic()
            results = await asyncio.gather(*tasks)
            return results, time.monotonic() - fired

    results, seconds = asyncio.run(requests())
    assert seconds < 1.0
    *plain, (stream_status, lines) = results
    for response in plain:
        assert response.status_code == 503 and response.headers["retry-after"]
        error = response.json()["error"]
        assert error["code"] == "engine_failed" and error["type"] == "server_error"
        assert "restart" in error["message"]
    assert stream_status == 200  # it had started streaming: the error comes in-band, then [DONE]
    in_band = json.loads(lines[-2].removeprefix("data: "))
    assert in_band["error"]["code"] == "engine_failed" and lines[-1] == "data: [DONE]"

    ready = httpx.get(f"{server.url}/ready")
    if ready.status_code == 503:  # the restart may already be done on a fast machine
        assert ready.json()["error"]["code"] == "engine_failed"
        assert "failed" in ready.json()["error"]["message"]
    fired_alert = wait_for(lambda: [a for a in alerts.store.alerts() if a["rule"] == "engine_failure"], 5)
    assert fired_alert and "injected fault" in fired_alert[0]["message"]

    server.wait_ready(timeout=10)
    answer = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}]})
    assert answer.status_code == 200
    resolved = wait_for(lambda: [a for a in alerts.store.alerts("resolved")
                                 if a["rule"] == "engine_failure"], 5)
    assert resolved and any("serves again" in (h["detail"] or "") for h in resolved[0]["history"])
