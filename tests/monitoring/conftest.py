"""Fixtures for monitoring tests: a real metrics.db, a live server on loopback with the real model,
and a real HTTP webhook receiver."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from appliance.monitoring.store import MetricsStore, Retention  # noqa: E402
from appliance.settings import Settings  # noqa: E402

CACHE_DIR = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser()
SMALL_ENGINE = {"slots": 4, "max_request_tokens": 512, "default_max_tokens": 32, "max_queue": 8}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def model_path() -> str:
    """The bundled SmolLM2-135M-Instruct, re-encoded to Q8_0 (once per machine) as served."""
    from appliance.engine.model import resolve_model_path

    return str(resolve_model_path("", bundled_type="q8_0", cache_dir=CACHE_DIR / "models"))


@pytest.fixture
def store(tmp_path):
    opened = MetricsStore(tmp_path / "metrics.db", Retention())
    yield opened
    opened.close()


class LiveServer:
    """The real app under uvicorn on 127.0.0.1, in a thread."""

    def __init__(self, settings: Settings):
        import uvicorn

        from appliance.server.app import create_app

        self.settings = settings
        self.port = settings.server.port = free_port()  # what the server publishes in its data folder
        self.app = create_app(settings)
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def monitor(self):
        return self.app.state.monitor

    def start(self, timeout: float = 120) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the test server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture
def live_settings(tmp_path, model_path):
    """Settings for a live server: small engine, fast monitoring intervals."""

    def make(**sections) -> Settings:
        settings = Settings(data_dir=tmp_path / "data")
        for key, value in {**SMALL_ENGINE, "model_path": model_path}.items():
            setattr(settings.engine, key, value)
        fast = {"flush_seconds": 0.1, "sample_seconds": 0.5, "golden_interval_hours": 0}
        for key, value in fast.items():
            setattr(settings.monitoring, key, value)
        settings.server.drain_seconds = 5
        for section, values in sections.items():
            for key, value in values.items():
                setattr(getattr(settings, section), key, value)
        return settings

    return make


@pytest.fixture
def serve():
    """Start live servers; each is stopped when the test ends."""
    started = []

    def start(settings: Settings) -> LiveServer:
        server = LiveServer(settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records JSON POSTs; `fail_first` answers 500 first."""

    def __init__(self, fail_first: int = 0):
        self.received: list[dict] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook():
    made = []

    def make(fail_first: int = 0) -> WebhookReceiver:
        receiver = WebhookReceiver(fail_first)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


class SmtpRelay:
    """A minimal SMTP server on 127.0.0.1 (the stdlib has none since smtpd left): enough dialogue
    for smtplib to deliver a message, which it keeps in `messages`."""

    def __init__(self):
        import socketserver

        relay = self
        self.messages: list[dict] = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                reply = lambda line: self.wfile.write(line.encode() + b"\r\n")  # noqa: E731
                reply("220 test relay")
                mail = {"rcpt": [], "data": ""}
                while line := self.rfile.readline().decode():
                    verb = line[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        reply("250 test relay")
                    elif verb == "MAIL":
                        reply("250 OK")
                    elif verb == "RCPT":
                        mail["rcpt"].append(line.split(":", 1)[1].strip().strip("<>"))
                        reply("250 OK")
                    elif verb == "DATA":
                        reply("354 go on")
                        body = []
                        while (data := self.rfile.readline().decode()) not in (".\r\n", ""):
                            body.append(data)
                        mail["data"] = "".join(body)
                        relay.messages.append(mail)
                        reply("250 queued")
                    elif verb == "QUIT":
                        reply("221 bye")
                        return
                    else:
                        reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp_relay():
    relay = SmtpRelay()
    yield relay
    relay.close()
