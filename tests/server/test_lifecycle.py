"""Graceful shutdown of `appliance serve`: the first signal drains in-flight work, a second stops at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import free_port

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def serve(tmp_path, model_path):
    procs = []

    def start() -> tuple[subprocess.Popen, str]:
        port = free_port()
        env = {**os.environ, "APPLIANCE_ENGINE__MODEL_PATH": model_path, "APPLIANCE_ENGINE__SLOTS": "2",
               "APPLIANCE_ENGINE__MAX_REQUEST_TOKENS": "512", "APPLIANCE_LOG_LEVEL": "warning"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError(proc.stdout.read().decode())

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def stream_body(max_tokens: int) -> dict:
    return {"model": MODEL, "stream": True, "max_tokens": max_tokens, "temperature": 0.7,
            "messages": [{"role": "user", "content": "Write a long story about a warehouse."}]}


def test_first_signal_lets_the_running_answer_finish(serve):
    proc, url = serve()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=stream_body(120), timeout=60) as response:
        lines = response.iter_lines()
        next(lines)
        proc.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    final = json.loads(rest[-2][len("data: "):])
    assert final["choices"][0]["finish_reason"] in ("stop", "length")
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained on


def test_second_signal_stops_at_once(serve):
    proc, url = serve()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=stream_body(500), timeout=60) as response:
        lines = response.iter_lines()
        next(lines)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        proc.wait(timeout=10)
    assert time.monotonic() - start < 5
