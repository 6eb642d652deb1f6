"""The installer's self-test: against a server with the shipped settings (auth on, no users yet),
and how soon it gives up on servers that will never be ready."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from installer import selftest
from installer.errors import SelfTestError
from installer.service import ServiceCommand

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300  # what the self-test may wait for a slow start; the failures below must not wait it


def test_self_test_answers_on_a_fresh_install_with_auth_on(tmp_path, model_path):
    config = tmp_path / "appliance.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[engine]\nmodel_path = "{model_path}"\n'
                      "slots = 2\nmax_request_tokens = 512\n")
    command = ServiceCommand(
        argv=[sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)],
        # Only what the unit itself would set: nothing turns auth off but the self-test.
        environment={"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "build" / "src")]),
                     "HF_HUB_OFFLINE": "1"},
        user=None, working_directory=str(tmp_path))
    said: list[str] = []
    result = selftest.run(command, python=Path(sys.executable), timeout=TIMEOUT, log=said.append)
    assert result.answer and result.sources_checked
    # Whether scanned documents can be read on this server (the test machine has Tesseract).
    assert "Self-test: OCR: available (tesseract 5" in "\n".join(said)
    assert 0 < result.ready_seconds <= result.seconds
    # It starts no background work it does not need: monitoring (and with it the golden QA run)
    # is off, so no metrics store was ever opened.
    assert (tmp_path / "data" / "accounts.db").exists()
    assert not (tmp_path / "data" / "metrics.db").exists()


# Stand-ins for a broken appliance (fakes: the real broken versions are in test_install.py).
FAKE_EXITS = "import time, sys; time.sleep(1); sys.exit(3)"
FAKE_READY_500 = """
import http.server, json, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"error": {"status": 500, "code": "internal_error", "message": "boom"}}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["APPLIANCE_SERVER__PORT"])), Handler).serve_forever()
"""


def _fake(code: str, tmp_path: Path) -> ServiceCommand:
    return ServiceCommand([sys.executable, "-c", code], {}, None, str(tmp_path))


def test_a_server_that_exits_fails_the_self_test_at_once(tmp_path):
    started = time.monotonic()
    with pytest.raises(SelfTestError, match="exited with code 3 before it was ready"):
        selftest.run(_fake(FAKE_EXITS, tmp_path), python=Path(sys.executable), timeout=TIMEOUT,
                     log=lambda _: None)
    assert time.monotonic() - started < 30


def test_ready_answering_500_fails_the_self_test_at_once(tmp_path):
    started = time.monotonic()
    with pytest.raises(SelfTestError, match=r"GET /ready answered HTTP 500.*internal_error") as failure:
        selftest.run(_fake(FAKE_READY_500, tmp_path), python=Path(sys.executable), timeout=TIMEOUT,
                     log=lambda _: None)
    assert time.monotonic() - started < 30
    assert "Self-test failed after" in str(failure.value)
