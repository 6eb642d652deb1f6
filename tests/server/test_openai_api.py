"""The OpenAI-compatible API over real HTTP, with the official `openai` client where it applies."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def server(live_server, app_settings, make_backend):
    return live_server(app_settings(), make_backend())


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_completion_with_usage(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is a purchase order?"}],
        max_tokens=24, temperature=0,
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_streaming_matches_non_streaming_and_reports_usage(client, server):
    server.assistant.cache.enabled = False  # compare two real generations
    request = dict(model=MODEL, messages=[{"role": "user", "content": "Name two ERP modules."}],
                   max_tokens=24, temperature=0)
    whole = client.chat.completions.create(**request).choices[0].message.content
    chunks = list(client.chat.completions.create(**request, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_text_completion_stream_and_not(client):
    reply = client.completions.create(model=MODEL, prompt="The capital of France is",
                                      max_tokens=8, temperature=0)
    assert "Paris" in reply.choices[0].text
    assert reply.usage.prompt_tokens == 5
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True)
        if c.choices
    )
    assert streamed == reply.choices[0].text


def test_unknown_model_is_a_404_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    assert MODEL in err.value.body["message"]


def test_deterministic_repeat_is_served_from_cache_without_the_engine(client, server):
    request = dict(model=MODEL, messages=[{"role": "user", "content": "Define inventory turnover."}],
                   max_tokens=20, temperature=0)
    first = client.chat.completions.with_raw_response.create(**request)
    engine = server.assistant.backend.engine
    before = engine.status()["requests"]
    second = client.chat.completions.with_raw_response.create(**request)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(**request, stream=True) if c.choices)
    assert streamed == first.parse().choices[0].message.content
    assert engine.status()["requests"] == before  # neither the hit nor the streamed hit ran the model
    stats = httpx.get(f"{server.url}/api/status").json()["cache"]
    assert stats["hits"] == 2 and stats["entries"] == 1


def test_sampled_requests_without_seed_are_not_cached(client, server):
    request = dict(model=MODEL, messages=[{"role": "user", "content": "Say something."}],
                   max_tokens=5, temperature=0.9)
    client.chat.completions.create(**request)
    client.chat.completions.create(**request)
    assert server.assistant.cache.stats()["entries"] == 0


def test_client_disconnect_cancels_the_generation(server):
    engine = server.assistant.backend.engine
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 400, "stream": True, "temperature": 0.7}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    deadline = time.monotonic() + 10
    while engine.status()["cancelled"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    status = engine.status()
    assert status["cancelled"] == 1 and status["slots_busy"] == 0
    assert status["completion_tokens"] < 200


def test_queue_overflow_gives_429_with_retry_after(live_server, app_settings, make_backend):
    server = live_server(app_settings(), make_backend(slots=1, max_queue=0, admission_window_ms=0))
    # Plain chat: both requests need the one slot (a grounded question the documents do not
    # answer is declined without a model call, whenever the sample's ingestion has finished).
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 300, "stream": True, "rag": False}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=30) as busy:
        next(busy.iter_lines())
        refused = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "stream": False},
                             timeout=30)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_overlong_prompt_gives_400_naming_the_limit(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 2000}])
    assert err.value.body["code"] == "context_length_exceeded"
    assert "512 tokens" in err.value.body["message"]


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b'{"model": "x", "messages": [', 400, "valid JSON"),
        (b'[1, 2, 3]', 400, "Invalid request body"),
        (json.dumps({"model": MODEL, "messages": []}).encode(), 400, "messages"),
        (json.dumps({"model": MODEL, "messages": "hello"}).encode(), 400, "messages"),
        (json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                     "temperature": "hot"}).encode(), 400, "temperature"),
        (json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                     "temperature": 7}).encode(), 400, "temperature"),
        (json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}).encode(),
         400, "role"),
        (json.dumps({"model": MODEL, "messages": [{"role": "system", "content": "only system"}]}).encode(),
         400, "user message"),
        (json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 3}).encode(),
         400, "n=1"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), 400, "model"),
    ],
)
def test_bad_requests_get_clear_4xx_in_openai_shape(server, body, status, fragment):
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"], error["message"]


def test_huge_body_is_refused_with_413(server):
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 2_000_000}]})
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]["message"]


def test_health_ready_and_openapi_schema(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").json()["status"] == "ready"
    schema = httpx.get(f"{server.url}/schema/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"]


def test_ready_is_503_until_the_model_loads_and_explains_a_failure(live_server, tmp_path):
    from appliance.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    settings.engine.model_path = str(tmp_path / "missing.gguf")
    server = live_server(settings)  # no backend given: it loads in the background and fails
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ready = httpx.get(f"{server.url}/ready")
        if ready.json()["error"]["code"] == "model_load_failed":
            break
        time.sleep(0.05)
    assert ready.status_code == 503
    assert "missing.gguf" in ready.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").status_code == 200
    chat = httpx.post(f"{server.url}/v1/chat/completions",
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 503 and chat.json()["error"]["code"] == "not_ready"
