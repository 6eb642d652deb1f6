"""Watched sources inside the real server (its scheduler and ingest path), through /api/sources and
`appliance sources`, on the data folder or with --server; and OCR results of an upload."""

from __future__ import annotations

import time

import httpx
import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.server.app import create_app
from appliance.settings import SourceSettings
from tests.conftest import LentBackend, LiveServer

from . import scans
from .conftest import make_settings

LEAVE = "# Annual leave\n\nAnnual leave is requested in transaction HR200 two weeks ahead.\n"


def wait_for(condition, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.1)


@pytest.fixture
def share(tmp_path):
    root = tmp_path / "share"
    root.mkdir()
    (root / "leave.md").write_text(LEAVE)
    return root


@pytest.fixture
def serve(tmp_path, embedder_dir, embedder, shared_backend):
    """Start the appliance on loopback with these watched sources."""
    started = []

    def start(*sources: SourceSettings):
        settings = make_settings(tmp_path / "data", embedder_dir)
        settings.knowledge.sources = list(sources)
        settings.monitoring.enabled = False
        kb = KnowledgeBase.open(settings, embedder=embedder)
        server = LiveServer(create_app(settings, LentBackend(shared_backend), knowledge=kb)).__enter__()
        started.append((server, kb))
        return server, kb, httpx.Client(base_url=server.url, timeout=60)

    yield start
    for server, kb in started:
        server.__exit__(None, None, None)
        kb.close()


def last_run(http: httpx.Client, name: str) -> dict | None:
    [row] = [s for s in http.get("/api/sources").json()["sources"] if s["name"] == name]
    return row["last_run"] if not row["running"] else None


def test_the_server_runs_a_source_that_never_ran_and_schedules_the_next(serve, share):
    server, kb, http = serve(SourceSettings(name="hr-share", path=str(share), groups=["hr"],
                                            interval_minutes=30))
    run = wait_for(lambda: last_run(http, "hr-share"), what="the first scheduled run")
    assert (run["state"], run["trigger"], run["added"]) == ("done", "schedule", 1)
    body = http.get("/api/sources").json()
    [row] = body["sources"]
    assert row["documents"] == 1 and row["groups"] == ["hr"] and row["next_run"]
    assert body["ocr"]["available"] and body["ocr"]["languages"] == "kor+eng"
    [document] = http.get("/api/documents").json()["documents"]
    assert document["source"] == "hr-share/leave.md" and document["origin"] == "hr-share"


def test_run_now_through_the_api_and_the_cli(serve, share):
    server, kb, http = serve(SourceSettings(name="hr-share", path=str(share), interval_minutes=0))
    assert http.get("/api/sources").json()["sources"][0]["last_run"] is None  # on demand only
    started = http.post("/api/sources/hr-share/run")
    assert started.status_code == 202 and started.json()["run"]["state"] == "running"
    run = wait_for(lambda: last_run(http, "hr-share"), what="the run")
    assert (run["state"], run["trigger"], run["added"]) == ("done", "manual", 1)
    detail = http.get("/api/sources/hr-share").json()
    assert [r["id"] for r in detail["runs"]] == [run["id"]]

    (share / "leave.md").unlink()
    (share / "broken.docx").write_bytes(b"not a docx")
    result = CliRunner().invoke(main, ["sources", "run", "hr-share", "--server", server.url])
    assert result.exit_code == 1, result.output  # a file failed
    assert "hr-share: done" in result.output and "1 removed" in result.output
    assert "failed broken.docx: not a readable docx file" in result.output
    listed = CliRunner().invoke(main, ["sources", "list", "--server", server.url])
    assert listed.exit_code == 0 and "schedule  on demand" in listed.output
    assert kb.store.documents_from("hr-share") == []

    missing = http.post("/api/sources/nope/run")
    assert missing.status_code == 404 and "known: hr-share" in missing.json()["error"]["message"]
    kb.sources.begin("hr-share", "cli")  # a run in progress elsewhere
    busy = http.post("/api/sources/hr-share/run")
    assert busy.status_code == 409 and "already running" in busy.json()["error"]["message"]


def test_the_cli_runs_a_source_on_the_data_folder(tmp_path, embedder_dir, share):
    config = tmp_path / "appliance.toml"
    config.write_text(f'[knowledge]\nembedder_path = "{embedder_dir}"\n\n'
                      f'[[knowledge.sources]]\nname = "hr-share"\npath = "{share}"\n')
    data = ["--config", str(config), "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, ["sources", "run", "hr-share", *data])
    assert result.exit_code == 0, result.output
    assert "hr-share: done" in result.output and "1 added" in result.output
    listed = CliRunner().invoke(main, ["sources", "list", *data])
    assert "documents 1" in listed.output and "schedule  every 60 min" in listed.output
    unknown = CliRunner().invoke(main, ["sources", "run", "nope", *data])
    assert unknown.exit_code == 2 and "No watched source named 'nope'" in unknown.output


def test_an_upload_reports_ocr_pages_and_a_low_confidence_one(serve, ocr):
    server, kb, http = serve()
    lines = ["Travel expenses are settled in transaction TE-45 within seven days."]
    files = [("file", ("clear.png", scans.image_bytes(scans.page(lines)), "image/png")),
             ("file", ("faded.png", scans.image_bytes(scans.page(lines, size=28, blur=3.3)), "image/png"))]
    results = {r["document"]: r for r in http.post("/api/documents", files=files).json()["results"]}
    clear, faded = results["clear.png"], results["faded.png"]
    assert clear["status"] == "added" and clear["warnings"] == []
    assert clear["ocr"][0]["confidence"] >= 80
    assert faded["status"] == "added" and faded["warnings"][0].startswith("page 1: low OCR confidence")
    assert http.get("/api/sources").json() == {"sources": [], "ocr": kb.ocr.status()}
