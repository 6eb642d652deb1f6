"""Shared fixtures: offline hubs, and settings pointing the data directory at a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CACHE = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser()


@pytest.fixture(scope="session")
def test_cache() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE
