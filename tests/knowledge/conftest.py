"""Knowledge-base fixtures: the real int8 ONNX embedder (created once), real SQLite and FAISS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path
from appliance.knowledge.ocr import Tesseract
from appliance.settings import load_settings

SAMPLE = sample_kb_path()


def make_settings(data_dir: Path, embedder_dir: Path, **knowledge):
    settings = load_settings(data_dir=data_dir)
    settings.knowledge.embedder_path = str(embedder_dir)
    for key, value in knowledge.items():
        setattr(settings.knowledge, key, value)
    return settings


@pytest.fixture
def kb_settings(tmp_path, embedder_dir):
    return make_settings(tmp_path / "data", embedder_dir)


@pytest.fixture
def kb(kb_settings, embedder):
    base = KnowledgeBase.open(kb_settings, embedder=embedder)
    yield base
    base.close()


@pytest.fixture(scope="session")
def sample_subset(tmp_path_factory) -> Path:
    """Two areas of the sample knowledge base (English and Korean, every format but one)."""
    root = tmp_path_factory.mktemp("sample")
    for area in ("hr", "purchasing"):
        shutil.copytree(SAMPLE / area, root / area)
    return root


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory, embedder_dir, embedder, sample_subset):
    """A knowledge base holding the sample subset, ingested once for the read-only tests."""
    settings = make_settings(tmp_path_factory.mktemp("sample-data"), embedder_dir)
    base = KnowledgeBase.open(settings, embedder=embedder)
    report = base.ingest([sample_subset])
    assert not report.failed, report.failed
    yield base
    base.close()


@pytest.fixture(scope="session")
def ocr() -> Tesseract:
    """The real Tesseract with Korean and English, as the appliance runs it."""
    engine = Tesseract()
    if not engine.available:
        pytest.fail(f"OCR tests need Tesseract: {engine.problem} (`./dev setup` installs it through "
                    "installer/system-deps.sh).")
    return engine


@pytest.fixture(scope="session")
def hr_docs(sample_subset) -> Path:
    return sample_subset / "hr"  # eight documents, every format but CSV, Korean and English


@pytest.fixture(scope="session")
def old_data_dir(tmp_path_factory, embedder_dir, embedder, hr_docs) -> Path:
    """A data dir with a knowledge base of the chunker before passages, as this version first
    opened it (its vectors embedded); built once, copied by each test that changes it."""
    from .old_chunker import old_style_base

    data_dir = tmp_path_factory.mktemp("old-kb") / "data"
    old_style_base(data_dir, hr_docs)
    KnowledgeBase.open(make_settings(data_dir, embedder_dir), embedder=embedder).close()
    return data_dir
