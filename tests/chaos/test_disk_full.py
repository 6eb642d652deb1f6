"""A full disk under the data folder (a small tmpfs): a clear error, nothing corrupted, and the
work goes on once there is room again."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import KillableAppliance, assert_intact, faiss_ids_match_chunks, wait_for
from tests.chaos.test_kill9 import chat_body, committed_chunk_counts, document

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DOCS = 120


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs; skipped where this process may not mount (it needs CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}); run as root with "
                    "CAP_SYS_ADMIN to fill a disk for real")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Take all the free space of `disk` but `leave` bytes."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with filler.open("wb") as fh:
        fh.truncate(0)
        remaining = stats.f_bavail * stats.f_frsize - leave
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            fh.write(chunk[:min(len(chunk), remaining)])
            remaining -= len(chunk)
    return filler


def test_ingest_on_a_full_disk_stops_with_a_clear_error_and_resumes(small_disk, tmp_path, model_path,
                                                                   embedder_dir):
    data = small_disk / "data"
    cli = KillableAppliance(data, model_path, embedder_dir)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(DOCS):
        (docs / f"part{i:03d}.md").write_text(document(f"full{i:03d}", i) * 3)
    first = subprocess.run(cli.cli("ingest", str(docs / "part000.md")), env=cli.env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    filler = fill(small_disk, leave=256 * 1024)

    full = subprocess.run(cli.cli("ingest", str(docs)), env=cli.env, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 2, full.stdout + full.stderr
    assert "Error: The disk holding" in full.stderr and "is full" in full.stderr
    assert "Traceback" not in full.stderr
    assert_intact(data)
    counts = committed_chunk_counts(data)
    assert 1 <= len(counts) < DOCS and all(d == s for d, s in counts.values())

    filler.unlink()
    again = subprocess.run(cli.cli("ingest", str(docs)), env=cli.env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert "0 failed" in again.stdout and len(committed_chunk_counts(data)) == DOCS
    assert_intact(data)
    faiss_ids_match_chunks(data)


def test_metrics_writes_on_a_full_disk_fail_loudly_and_the_server_keeps_answering(
        small_disk, tmp_path, model_path, embedder_dir):
    data = small_disk / "data"
    server = KillableAppliance(data, model_path, embedder_dir, APPLIANCE_LOG_LEVEL="info")
    server.log_path = tmp_path / "serve.log"  # the log stays off the full disk
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            def requests_recorded() -> int:
                return http.get("/api/status").json()["monitoring"]["written"]

            assert http.post("/v1/chat/completions", json=chat_body(1)).status_code == 200
            wait_for(requests_recorded, 30, "the first metrics write")
            filler = fill(small_disk, leave=0)

            def failed_after_more_requests() -> bool:
                # Answers go on; their events fill the WAL's last free pages, then a write fails.
                assert http.post("/v1/chat/completions", json=chat_body(2)).status_code == 200
                return http.get("/api/status").json()["monitoring"]["write_failures"] > 0

            wait_for(failed_after_more_requests, 120, "a failed metrics write")
            assert http.get("/ready").status_code == 200
            written = requests_recorded()
            filler.unlink()
            assert http.post("/v1/chat/completions", json=chat_body(99)).status_code == 200
            wait_for(lambda: requests_recorded() > written, 30, "metrics writes to resume")
        server.stop()
        log = server.output()
        assert "could not write" in log and "is full" in log
        assert_intact(data)
        with closing(sqlite3.connect(data / "metrics.db")) as conn:
            assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] >= 2
    finally:
        server.stop()
