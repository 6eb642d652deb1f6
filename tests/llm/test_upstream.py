"""The appliance in front of a real OpenAI-compatible upstream (llama-cpp-python's own server on
loopback), and in front of upstreams that are down, slow or failing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest

from appliance.errors import ConfigError
from appliance.llm.upstream import check_on_prem
from appliance.settings import Settings
from tests.conftest import free_port

UPSTREAM_MODEL = "smol-upstream"
LLAMA_SERVER = Path(__file__).resolve().parents[1] / "llama_server.py"


def start_llama_server(model_path: str, port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(LLAMA_SERVER), "--model", model_path, "--model_alias", UPSTREAM_MODEL,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(proc.stderr.read().decode())
    return proc, url


@pytest.fixture(scope="module")
def upstream(model_path):
    """`python -m llama_cpp.server` serving the same GGUF: a real OpenAI-compatible server."""
    proc, url = start_llama_server(model_path, free_port())
    yield url
    proc.terminate()
    proc.wait(timeout=30)


class Misbehaving:
    """A real HTTP server on loopback that answers every request badly, counting the attempts."""

    def __init__(self, status: int = 500, delay: float = 0.0):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.hits += 1
                self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(delay)
                body = b'{"error": {"message": "model crashed"}}'
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def upstream_settings(tmp_path, base_url: str, **llm) -> Settings:
    settings = Settings(data_dir=tmp_path / "data")
    settings.llm.backend = "openai"
    settings.llm.upstream.base_url = base_url
    settings.llm.upstream.model = UPSTREAM_MODEL
    settings.llm.upstream.retries = 1
    settings.llm.upstream.backoff_seconds = 0.05
    settings.llm.upstream.read_timeout = 60.0
    for key, value in llm.items():
        setattr(settings.llm, key, value)
    return settings


def chat(url: str, **extra) -> httpx.Response:
    body = {"model": UPSTREAM_MODEL, "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "What is a purchase order?"}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_chat_through_a_real_upstream_with_the_openai_client(live_server, tmp_path, upstream):
    server = live_server(upstream_settings(tmp_path, upstream))
    server.wait_ready()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [UPSTREAM_MODEL]
    reply = client.chat.completions.create(
        model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "Name an ERP module."}],
        max_tokens=16, temperature=0)
    assert reply.choices[0].message.content.strip()
    # llama-cpp-python's server sends no usage in streams; completion tokens are then counted.
    assert reply.usage.completion_tokens > 0
    streamed = list(client.chat.completions.create(
        model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "Name an ERP module."}],
        max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text.strip()
    assert streamed[-1].usage.completion_tokens > 0
    completion = client.completions.create(model=UPSTREAM_MODEL, prompt="The capital of France is",
                                           max_tokens=4, temperature=0)
    assert "Paris" in completion.choices[0].text


def test_upstream_answers_are_cached_under_the_upstream_model(live_server, tmp_path, upstream):
    server = live_server(upstream_settings(tmp_path, upstream))
    server.wait_ready()
    first, second = chat(server.url), chat(server.url)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert first.json()["choices"][0]["message"] == second.json()["choices"][0]["message"]
    assert server.assistant.backend.version.startswith(f"upstream:{UPSTREAM_MODEL}@")


def test_unreachable_upstream_gives_503_in_openai_shape(live_server, tmp_path):
    server = live_server(upstream_settings(tmp_path, f"http://127.0.0.1:{free_port()}/v1"))
    server.wait_ready()
    response = chat(server.url)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "upstream_unavailable" and "cannot be reached" in error["message"]
    assert server.assistant.backend.failures == 2  # the first try and one retry


def test_failing_upstream_is_retried_then_gives_502(live_server, tmp_path):
    bad = Misbehaving(status=500)
    try:
        server = live_server(upstream_settings(tmp_path, bad.url))
        server.wait_ready()
        response = chat(server.url)
    finally:
        bad.close()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert "model crashed" in response.json()["error"]["message"]
    assert bad.hits == 2


def test_slow_upstream_times_out_with_503(live_server, tmp_path):
    slow = Misbehaving(status=200, delay=5)
    try:
        settings = upstream_settings(tmp_path, slow.url)
        settings.llm.upstream.read_timeout = 2.0
        server = live_server(settings)
        server.wait_ready()
        started = time.monotonic()
        response = chat(server.url)
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert response.status_code == 503
    assert "did not answer in time" in response.json()["error"]["message"]
    assert elapsed < 8  # two 2 s read timeouts, not the upstream's 5 s each


def test_outage_falls_back_to_the_local_engine_and_records_it(live_server, tmp_path, model_path):
    port = free_port()
    settings = upstream_settings(tmp_path, f"http://127.0.0.1:{port}/v1", fallback="local",
                                 outage_retry_seconds=60)
    settings.engine.model_path = model_path
    settings.engine.slots = 2
    settings.engine.max_request_tokens = 512
    server = live_server(settings)
    server.wait_ready()
    backend = server.assistant.backend
    events = []
    backend.listeners.append(lambda event, detail: events.append(event))
    first = chat(server.url)
    second = chat(server.url)
    assert first.status_code == 200 and first.json()["choices"][0]["message"]["content"].strip()
    assert second.status_code == 200
    assert second.headers["x-cache"] == "miss"  # a fallback answer is never cached as the upstream's
    status = httpx.get(f"{server.url}/api/status").json()["model"]
    assert status["outage"]["reason"].startswith("The upstream at")
    assert status["fallback_requests"] == 2
    assert events == ["outage_started"]
    assert backend.primary.failures == 2  # one try and one retry, then the fallback answered


@pytest.mark.parametrize("url", ["http://8.8.8.8/v1", "https://1.1.1.1:443/v1"])
def test_public_upstreams_are_refused_unless_allowed(url):
    with pytest.raises(ConfigError, match="on-prem"):
        check_on_prem(url, allow_public=False)
    check_on_prem(url, allow_public=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://10.1.2.3/v1", "http://192.168.0.7:8000/v1"])
def test_private_upstreams_are_accepted(url):
    check_on_prem(url, allow_public=False)


def test_unknown_backend_names_the_valid_ones(tmp_path):
    from appliance.llm import create_backend

    settings = Settings(data_dir=tmp_path)
    settings.llm.backend = "vllm"
    with pytest.raises(ConfigError, match="local, openai"):
        create_backend(settings)


def test_an_outage_raises_one_alert_and_recovery_resolves_it(live_server, tmp_path, model_path):
    port = free_port()
    server = live_server(upstream_settings(tmp_path, f"http://127.0.0.1:{port}/v1"))
    server.wait_ready()
    assert chat(server.url).status_code == 503
    assert chat(server.url).status_code == 503
    alerts = httpx.get(f"{server.url}/api/alerts").json()
    outage = [a for a in alerts["alerts"] if a["rule"] == "upstream_outage"]
    assert len(outage) == 1 and outage[0]["state"] == "firing"
    assert f"127.0.0.1:{port}" in outage[0]["message"]
    proc, _ = start_llama_server(model_path, port)
    try:
        assert chat(server.url).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    alerts = httpx.get(f"{server.url}/api/alerts").json()
    outage = [a for a in alerts["alerts"] if a["rule"] == "upstream_outage"]
    assert len(outage) == 1 and outage[0]["state"] == "resolved"


def test_grounded_answers_with_sources_through_the_upstream(live_server, tmp_path, upstream,
                                                            embedder_dir, embedder):
    from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path

    settings = upstream_settings(tmp_path, upstream)
    settings.knowledge.embedder_path = str(embedder_dir)
    kb = KnowledgeBase.open(settings, embedder=embedder)
    kb.ingest([sample_kb_path() / "hr"])
    try:
        server = live_server(settings, knowledge=kb)
        server.wait_ready()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        question = [{"role": "user", "content": "How many hours of overtime are allowed per week?"}]
        reply = client.chat.completions.create(model=UPSTREAM_MODEL, messages=question, max_tokens=24)
        sources = reply.model_extra["sources"]
        assert reply.model_extra["grounded"] is True
        assert any("overtime-policy" in s["document"] for s in sources), sources
        chunks = list(client.chat.completions.create(model=UPSTREAM_MODEL, messages=question,
                                                     max_tokens=24, stream=True))
        assert chunks[0].model_extra["sources"] == sources
    finally:
        kb.close()
