"""Shared fixtures: the real bundled model (re-encoded once per machine), backends and live servers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from appliance.engine.model import resolve_model_path  # noqa: E402
from appliance.llm.base import LLMBackend  # noqa: E402
from appliance.settings import EngineSettings, Settings  # noqa: E402

CACHE_DIR = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser()

# Small engine defaults keep tests fast; a test that needs more asks for it.
SMALL_ENGINE = {"slots": 4, "max_request_tokens": 512, "default_max_tokens": 32, "max_queue": 8}


@pytest.fixture(scope="session", autouse=True)
def auth_off_by_default():
    """Tests that are not about authentication run with auth off, as a local developer does.

    The environment beats settings files and constructor arguments, so this reaches every server a
    test starts, in-process or not. Tests about auth turn it on for their own settings object
    (`settings.auth.enabled = True`; an assignment beats the environment) or use `auth_settings`.
    """
    patch = pytest.MonkeyPatch()
    patch.setenv("APPLIANCE_AUTH__ENABLED", "false")
    yield
    patch.undo()


@pytest.fixture(scope="session")
def model_path() -> str:
    """The bundled SmolLM2-135M-Instruct, re-encoded to Q8_0 as the appliance serves it."""
    return str(resolve_model_path("", bundled_type="q8_0", cache_dir=CACHE_DIR / "models"))


@pytest.fixture(scope="session")
def engine_settings(model_path):
    def make(**overrides) -> EngineSettings:
        return EngineSettings(**{"model_path": model_path, **SMALL_ENGINE, **overrides})

    return make


@pytest.fixture
def app_settings(tmp_path, engine_settings):
    def make(**engine_overrides) -> Settings:
        settings = Settings(data_dir=tmp_path / "data")
        settings.engine = engine_settings(**engine_overrides)
        return settings

    return make


def close_backend(backend: LLMBackend) -> None:
    """Close on a thread of its own: a test may leave an event loop running on this one
    (Playwright's sync API does), where asyncio.run would refuse to start."""
    worker = threading.Thread(target=asyncio.run, args=(backend.close(),))
    worker.start()
    worker.join()


@pytest.fixture
def make_backend(engine_settings):
    """Build real LocalBackends; all are closed when the test ends."""
    from appliance.llm.local import LocalBackend

    made = []

    def make(**overrides) -> LocalBackend:
        backend = LocalBackend(engine_settings(**overrides))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        close_backend(backend)


@pytest.fixture(scope="module")
def shared_backend(model_path):
    """One backend for a module's read-only tests (the engine is the expensive part)."""
    from appliance.llm.local import LocalBackend

    backend = LocalBackend(EngineSettings(model_path=model_path, **SMALL_ENGINE))
    yield backend
    close_backend(backend)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The real app under uvicorn on a loopback port, in a background thread."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def assistant(self):
        return self.app.state.assistant

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(f"{self.url}/ready").status_code == 200:
                return
            time.sleep(0.1)
        raise RuntimeError("model did not become ready")


class LentBackend(LLMBackend):
    """Lends a session's real backend to one test's app, which would otherwise close it."""

    def __init__(self, backend: LLMBackend):
        self.backend = backend

    @property
    def model_id(self):
        return self.backend.model_id

    @property
    def version(self):
        return self.backend.version

    @property
    def context_limit(self):
        return self.backend.context_limit

    def status(self):
        return self.backend.status()

    def count_tokens(self, text):
        return self.backend.count_tokens(text)

    async def start(self, request):
        return await self.backend.start(request)

    async def close(self, drain_seconds: float = 0.0):
        pass


@pytest.fixture
def live_server():
    """Start `create_app(settings, backend)` on loopback; stopped when the test ends."""
    from appliance.server.app import create_app

    servers = []

    def start(settings: Settings, backend=None, **app_options) -> LiveServer:
        settings.server.port = free_port()  # what the server publishes in its data folder
        server = LiveServer(create_app(settings, backend, **app_options), settings.server.port).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


class ApplianceProcess:
    """`appliance serve` on a data folder in a process of its own (auth on unless `env` says
    otherwise), and the `appliance` commands run against the same folder."""

    def __init__(self, data_dir: Path, model_path: str, embedder_dir: Path, **env: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "APPLIANCE_AUTH__ENABLED": "true",
                    "APPLIANCE_ENGINE__MODEL_PATH": model_path, "APPLIANCE_ENGINE__SLOTS": "2",
                    "APPLIANCE_ENGINE__MAX_REQUEST_TOKENS": "512",
                    "APPLIANCE_KNOWLEDGE__EMBEDDER_PATH": str(embedder_dir),
                    "APPLIANCE_KNOWLEDGE__INGEST_SAMPLE_ON_FIRST_START": "false",
                    "APPLIANCE_MONITORING__GOLDEN_INTERVAL_HOURS": "0", **env}
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"serve-{self.port}.log"

    def start(self, timeout: float = 120) -> ApplianceProcess:
        import httpx

        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.cli("serve", "--port", str(self.port)), env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                body = httpx.get(f"{self.url}/ready", timeout=5).json()
                if body.get("status") == "ready" and body["retrieval"]["status"] == "ready":
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not become ready:\n{self.output()}")

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "appliance.cli", *args, "--data-dir", str(self.data_dir)]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.cli(*args), env=self.env, input=stdin, capture_output=True,
                              text=True, timeout=300)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory):
    """A real OpenLDAP slapd on loopback (ldap:// with StartTLS, and ldaps://) holding a small
    organisation with nested groups (tests/slapd.py); stopped when the session ends."""
    from tests import slapd as harness

    if not harness.available():
        pytest.skip(harness.INSTALL_HINT)
    server = harness.Slapd(tmp_path_factory.mktemp("slapd"), free_port(), free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def test_cache() -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return CACHE_DIR


@pytest.fixture(scope="session")
def embedder_dir(test_cache) -> Path:
    """The int8 ONNX embedder artifact, exported by the build pipeline once and cached across runs."""
    path = test_cache / "embedder"
    if not (path / "embedder.json").is_file():
        subprocess.run([sys.executable, "-c", "from appliance_build.cli import main; main()",
                        "embedder", "--out", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def embedder(embedder_dir):
    from appliance.knowledge.embedder import OnnxEmbedder

    return OnnxEmbedder(embedder_dir)


PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="session")
def vendor_model_dir(test_cache) -> Path:
    """A sentence-transformers folder as a vendor brings one: the bundled all-MiniLM-L6-v2's
    weights (linked), with CLS pooling and e5-style query/passage prompts in its own config."""
    import json
    import shutil

    from appliance_build.basemodel import bundled_embedder

    bundled, path = bundled_embedder(), test_cache / "vendor-model"
    if (path / "modules.json").is_file():
        return path
    tmp = test_cache / "vendor-model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(bundled, tmp, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    (tmp / "model.safetensors").symlink_to(bundled / "model.safetensors")
    pooling = json.loads((tmp / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (tmp / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    config = json.loads((tmp / "config_sentence_transformers.json").read_text())
    (tmp / "config_sentence_transformers.json").write_text(json.dumps({**config, "prompts": PROMPTS}))
    tmp.rename(path)
    return path


@pytest.fixture(scope="session")
def vendor_embedder_dir(test_cache, vendor_model_dir) -> Path:
    """`appliance-build embedder --from` the vendor's folder, exported once and cached."""
    path = test_cache / "vendor-embedder"
    if not (path / "embedder.json").is_file():
        subprocess.run([sys.executable, "-c", "from appliance_build.cli import main; main()",
                        "embedder", "--from", str(vendor_model_dir), "--name", "vendor-minilm-cls",
                        "--out", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def projected_embedder_dir(embedder_dir, test_cache) -> Path:
    """A second real embedder, of another size: the int8 ONNX embedder's graph with a fixed random
    orthogonal projection of its token states to 256 dimensions appended (run by onnxruntime
    like any embedder artifact). Its vectors differ from the original's in values and size."""
    import json
    import shutil

    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    path = test_cache / "embedder-p256"
    if (path / "embedder.json").is_file():
        return path
    tmp = test_cache / "embedder-p256.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model = onnx.load(str(embedder_dir / "model.onnx"))
    graph = model.graph
    output = next(o for o in graph.output if o.name == "last_hidden_state")
    for node in graph.node:
        node.output[:] = ["token_states" if o == "last_hidden_state" else o for o in node.output]
    q, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((384, 384)).astype(np.float32))
    graph.initializer.append(numpy_helper.from_array(q[:, :256].copy(), "projection"))
    graph.node.append(helper.make_node("MatMul", ["token_states", "projection"], ["last_hidden_state"]))
    graph.output.remove(output)
    graph.output.append(helper.make_tensor_value_info("last_hidden_state", onnx.TensorProto.FLOAT,
                                                      ["batch", "sequence", 256]))
    onnx.save(model, str(tmp / "model.onnx"))
    shutil.copy(embedder_dir / "tokenizer.json", tmp / "tokenizer.json")
    spec = json.loads((embedder_dir / "embedder.json").read_text())
    (tmp / "embedder.json").write_text(json.dumps({**spec, "name": "all-minilm-l6-v2-p256", "dim": 256}))
    tmp.rename(path)
    return path
