"""The appliance's threads carry OS-level names (what `top -H` and /proc show)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from appliance.threadnames import name_native_thread, start_named_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc only")


def comm(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def run_in_thread(target, name: str) -> str:
    seen = {}

    def body():
        target()
        seen["id"] = threading.get_native_id()
        seen["comm"] = comm(seen["id"])

    thread = threading.Thread(target=body, name=name)
    thread.start()
    thread.join()
    return seen["comm"]


def test_a_thread_takes_its_python_name():
    assert run_in_thread(name_native_thread, "metrics-writer") == "metrics-writer"


def test_a_long_name_is_cut_to_what_linux_keeps():
    assert run_in_thread(lambda: name_native_thread("alert-dispatcher-x"), "t") == "alert-dispatche"


def test_the_engine_thread_is_named(shared_backend):
    engine_thread = shared_backend.engine._thread
    assert comm(engine_thread.native_id) == "llm-engine"


def test_a_started_thread_is_named_before_start_returns():
    release = threading.Event()
    thread = start_named_thread(release.wait, "monitor-jobs")
    try:
        assert comm(thread.native_id) == "monitor-jobs"
    finally:
        release.set()
        thread.join()
