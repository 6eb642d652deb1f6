"""Model versions for the lifecycle tests: real GGUFs (the bundled model re-encoded two ways, and a
copy whose output norm is zeroed so it emits nothing useful), each with a manifest of its own."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from appliance import manifest as manifests
from appliance.engine.model import bundled_model_path
from appliance.engine.quantize import quantize
from tests.conftest import CACHE_DIR, SMALL_ENGINE

# Three short open-book items the bundled model answers, so a broken model shows as a score drop.
GOLDEN_ITEMS = [
    {"id": "t1", "question": "Which transaction releases a purchase order?",
     "answer": "Use transaction PO150 to release a purchase order.", "keywords": ["PO150"]},
    {"id": "t2", "question": "Which warehouse code is the main warehouse?",
     "answer": "The main warehouse has the code WH01.", "keywords": ["WH01"]},
    {"id": "t3", "question": "Who approves expense claims?",
     "answer": "Expense claims are approved by the Finance Manager.", "keywords": ["Finance Manager"]},
]


@pytest.fixture(scope="session")
def gguf_files(model_path) -> dict[str, Path]:
    """q8_0 and q4_0 re-encodings of the bundled model, and a 'garbage' q8_0 copy (cached per machine)."""
    folder = CACHE_DIR / "models"
    q4 = folder / "SmolLM2-135M-Instruct.Q4_0.gguf"
    if not q4.exists():
        quantize(bundled_model_path(), q4, "q4_0")
    garbage = folder / "SmolLM2-135M-Instruct.garbage.gguf"
    if not garbage.exists():
        from gguf import GGUFReader

        tmp = garbage.with_suffix(".tmp")
        shutil.copyfile(model_path, tmp)
        reader = GGUFReader(tmp, "r+")
        norm = next(t for t in reader.tensors if t.name == "output_norm.weight")
        norm.data[:] = 0  # every hidden state becomes zero: the model can no longer say anything
        reader.data.flush()
        del reader
        os.replace(tmp, garbage)
    return {"q8_0": Path(model_path), "q4_0": q4, "garbage": garbage}


def write_version(models_dir: Path, name: str, version: str, gguf: Path, *, copy: bool = False,
                  extra: dict[str, bytes] | None = None) -> Path:
    """A version folder as the build writes it: the GGUF (role 'gguf'), extra files, manifest.json."""
    folder = models_dir / name / version
    folder.mkdir(parents=True)
    target = folder / "model.gguf"
    if copy:
        shutil.copyfile(gguf, target)
    else:
        os.link(gguf, target)  # the big file is shared read-only; tests that corrupt it copy it
    roles = {"model.gguf": "gguf"}
    for rel, data in (extra or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        roles.setdefault(rel.split("/", 1)[0], "embedder" if rel.startswith("embedder") else "report")
    manifests.write(folder, manifests.Manifest(
        name=name, version=version, files=manifests.describe_files(folder, roles),
        recipe={"test": True}, metrics={}))
    return folder


@pytest.fixture
def golden_file(tmp_path) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in GOLDEN_ITEMS), encoding="utf-8")
    return path


@pytest.fixture
def release_settings(tmp_path, engine_settings, golden_file):
    """Settings for one test: its own data dir and models dir, small engine, small golden set."""
    from appliance.settings import Settings

    def make(**releases) -> object:
        settings = Settings(data_dir=tmp_path / "data")
        settings.engine = engine_settings(**{**SMALL_ENGINE, "slots": 16, "max_queue": 64})
        settings.releases.models_dir = str(tmp_path / "models")
        settings.releases.golden_path = str(golden_file)
        settings.releases.golden_max_tokens = 24
        settings.releases.load_timeout_seconds = 120
        settings.releases.golden_latency_ratio = 50  # the test machine's cores are shared and busy
        settings.server.drain_seconds = 60
        for key, value in releases.items():
            setattr(settings.releases, key, value)
        return settings

    return make


def follow_activation(url: str, ref: str, timeout: float = 600) -> tuple[dict, list[str]]:
    """Poll GET /api/models/{ref} until its activation job ends; the version row and the steps
    seen, in order."""
    import time

    import httpx

    steps: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        row = httpx.get(f"{url}/api/models/{ref}", timeout=60).json()
        job = row["activation"]
        if job.get("step") and (not steps or steps[-1] != job["step"]):
            steps.append(job["step"])
        if not job.get("running"):
            return row, steps
        assert time.monotonic() < deadline, f"the activation of {ref} is still at {job.get('step')}"
        time.sleep(0.05)
