"""Backup while serving, restore onto an empty folder: users, keys, documents, conversations,
model versions and history come back the same."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from appliance.backup import create_backup, prune_backups, restore_backup, scheduled_backup
from appliance.cli import main
from appliance.errors import ApplianceError
from appliance.settings import Settings
from tests.releases.conftest import write_version

pytestmark = pytest.mark.timeout(600)

DOCS = {
    "ops/forklift.md": "# Forklift inspection\n\nForklifts are inspected every Monday (checklist FLK-204).\n",
    "hr/leave.md": "# Annual leave\n\nRequest annual leave in the ERP at least two weeks ahead.\n",
}
# What a round trip must keep, table by table (ordered, so rows compare one to one).
KEPT = {
    "accounts.db": ["SELECT * FROM users ORDER BY id", "SELECT * FROM api_keys ORDER BY id",
                    "SELECT * FROM conversations ORDER BY id", "SELECT * FROM messages ORDER BY id",
                    "SELECT * FROM audit ORDER BY id"],
    "knowledge/knowledge.db": ["SELECT * FROM documents ORDER BY id", "SELECT * FROM chunks ORDER BY id"],
    "releases.db": ["SELECT name, version, kind, state, manifest, validation, reason FROM "
                    "model_versions ORDER BY name, version", "SELECT * FROM model_history ORDER BY id"],
}


def snapshot(data_dir: Path) -> dict:
    out = {}
    for db, queries in KEPT.items():
        with closing(sqlite3.connect(data_dir / db)) as conn:
            for sql in queries:
                out[sql] = conn.execute(sql).fetchall()
    return out


def wait_retrieval(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/ready").json()["retrieval"]["status"] != "ready":
        assert time.monotonic() < deadline, "the knowledge base did not open"
        time.sleep(0.1)


def serving_settings(tmp_path: Path, engine_settings, embedder_dir) -> Settings:
    settings = Settings(data_dir=tmp_path / "data")
    settings.engine = engine_settings(slots=8, max_queue=8)
    settings.knowledge.embedder_path = str(embedder_dir)
    settings.knowledge.ingest_sample_on_first_start = False
    settings.monitoring.golden_interval_hours = 0
    settings.monitoring.flush_seconds = 0.1
    settings.releases.models_dir = str(tmp_path / "versions")
    return settings


def fill(url: str, tmp_path: Path, settings: Settings) -> None:
    """Users, keys, documents, a conversation and model versions with history, through the API."""
    with httpx.Client(base_url=url, timeout=120) as http:
        for i in range(3):
            user = http.post("/api/admin/users", json={"username": f"user{i}", "password": "a-long-password",
                                                       "groups": ["all"]}).json()
            assert http.post("/api/admin/keys", json={"user_id": user["id"], "name": f"k{i}"}).status_code == 201
        files = [("file", (name, text.encode())) for name, text in DOCS.items()]
        assert http.post("/api/documents", files=files).status_code == 201
        talk = http.post("/api/conversations", json={"title": "Leave"}).json()
        assert http.post(f"/api/conversations/{talk['id']}/messages", json={"messages": [
            {"role": "user", "content": "How do I request leave?"},
            {"role": "assistant", "content": "In the ERP, two weeks ahead.", "response_id": "r1",
             "sources": [{"document": "hr/leave.md"}]}]}).status_code == 200
        tiny = tmp_path / "tiny.gguf"
        tiny.write_bytes(b"GGUF" + b"\0" * 1000)
        folder = write_version(Path(settings.releases.models_dir), "erp", "v1", tiny, copy=True)
        assert http.post("/api/models/import", json={"path": str(folder)}).status_code == 201
        assert http.post("/api/models/import", json={"upstream_model": "erp-large"}).status_code == 201


def test_a_backup_while_eight_streams_run_fails_none_and_round_trips(
        tmp_path, engine_settings, embedder_dir, make_backend, live_server):
    settings = serving_settings(tmp_path, engine_settings, embedder_dir)
    server = live_server(settings, make_backend(slots=8, max_queue=8))
    server.wait_ready()
    wait_retrieval(server.url)
    fill(server.url, tmp_path, settings)

    backed_up: dict = {}

    def back_up() -> None:
        backed_up["report"] = create_backup(settings, tmp_path / "backup.tar.gz")

    async def streams():
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:
            async def one(i: int) -> tuple[int, str]:
                body = {"model": "default", "stream": True, "max_tokens": 48, "temperature": 0.7,
                        "seed": i, "rag": i % 2 == 0,
                        "messages": [{"role": "user", "content": f"Tell me about forklifts, part {i}."}]}
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    return response.status_code, "".join([line async for line in response.aiter_lines()])

            tasks = [asyncio.create_task(one(i)) for i in range(8)]
            deadline = time.monotonic() + 120
            while server.assistant.backend.engine.status()["slots_busy"] < 4:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            backup = threading.Thread(target=back_up)
            backup.start()
            results = await asyncio.gather(*tasks)
            await asyncio.to_thread(backup.join)
            return results

    results = asyncio.run(streams())
    assert [status for status, _ in results] == [200] * 8
    assert all("[DONE]" in text and '"error"' not in text for _, text in results)
    report = backed_up["report"]
    assert {"accounts.db", "metrics.db", "releases.db", "knowledge/knowledge.db"} <= set(report.databases)
    assert "knowledge/vectors.faiss" in report.files and report.models == ["erp/v1", "upstream/erp-large"]

    before = snapshot(settings.resolved_data_dir())
    restored = tmp_path / "restored"
    result = restore_backup(tmp_path / "backup.tar.gz", restored)
    assert result.missing_models == []  # the version's files are still where the registry says
    assert snapshot(restored) == before

    again = Settings(data_dir=restored)
    again.engine, again.knowledge, again.releases = settings.engine, settings.knowledge, settings.releases
    second = live_server(again, make_backend())
    second.wait_ready()
    with httpx.Client(base_url=second.url, timeout=120) as http:
        wait_retrieval(second.url)
        hits = http.post("/api/search", json={"query": "forklift inspection checklist", "k": 1}).json()
        assert hits["results"][0]["document"] == "ops/forklift.md"
        versions = {v["name"] + "/" + v["version"] for v in http.get("/api/models").json()["versions"]}
        assert {"erp/v1", "upstream/erp-large"} <= versions


def test_models_are_copied_with_models_and_restored_into_the_data_folder(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    settings.releases.models_dir = str(tmp_path / "versions")
    from appliance.releases.registry import Registry

    tiny = tmp_path / "tiny.gguf"
    tiny.write_bytes(b"GGUF" + b"\1" * 5000)
    folder = write_version(Path(settings.releases.models_dir), "erp", "v2", tiny, copy=True)
    registry = Registry(settings.resolved_data_dir() / "releases.db", Path(settings.releases.models_dir))
    registry.import_path(folder)
    registry.close()
    embedder = settings.resolved_data_dir() / "models" / "embedder" / "model.onnx"
    embedder.parent.mkdir(parents=True)
    embedder.write_bytes(b"onnx" * 100)

    plain = create_backup(settings, tmp_path / "plain.tar.gz")
    full = create_backup(settings, tmp_path / "full.tar.gz", with_models=True)
    assert plain.model_files_copied == 0 and full.model_files_copied == 2
    shutil.rmtree(tmp_path / "versions")  # the machine the backup goes to has no model files
    missing = restore_backup(tmp_path / "plain.tar.gz", tmp_path / "a").missing_models
    assert any("erp/v2" in m for m in missing) and any("model.onnx" in m for m in missing)

    restored = restore_backup(tmp_path / "full.tar.gz", tmp_path / "b")
    assert restored.missing_models == []
    assert (tmp_path / "b" / "models" / "embedder" / "model.onnx").read_bytes() == b"onnx" * 100
    registry = Registry(tmp_path / "b" / "releases.db", tmp_path / "b" / "models")
    version = registry.get("erp", "v2")
    assert Path(version.path) == tmp_path / "b" / "models" / "erp" / "v2"
    assert version.gguf_path.read_bytes() == tiny.read_bytes()


def test_restore_refuses_a_folder_that_is_not_empty(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    settings.resolved_data_dir().mkdir()
    (settings.resolved_data_dir() / "accounts.db").write_bytes(b"")
    create_backup(settings, tmp_path / "b.tar.gz")
    with pytest.raises(ApplianceError, match="is not empty .*accounts.db.*restore into a new folder"):
        restore_backup(tmp_path / "b.tar.gz", settings.resolved_data_dir())
    result = CliRunner().invoke(main, ["restore", str(tmp_path / "b.tar.gz"), "--data-dir",
                                       str(settings.resolved_data_dir())])
    assert result.exit_code == 2 and "is not empty" in result.output
    result = CliRunner().invoke(main, ["restore", str(tmp_path / "missing.tar.gz"), "--data-dir",
                                       str(tmp_path / "new")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_cli_backup_and_scheduled_backups_keep_the_newest(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    from appliance.accounts import Accounts

    Accounts.open(settings).close()
    result = CliRunner().invoke(main, ["backup", "--out", str(tmp_path / "one.tar.gz"), "--data-dir",
                                       str(tmp_path / "data")])
    assert result.exit_code == 0 and "1 databases" in result.output
    settings.backup.keep = 2
    written = [scheduled_backup(settings).path for _ in range(3)]
    kept = sorted((tmp_path / "data" / "backups").glob("*.tar.gz"))
    assert kept == written[1:]
    assert prune_backups(tmp_path / "data" / "backups", 1) == [written[1]]
    inside = CliRunner().invoke(main, ["backup", "--out", str(tmp_path / "data" / "x.tar.gz"),
                                       "--data-dir", str(tmp_path / "data")])
    assert inside.exit_code == 2 and "outside the data folder" in inside.output
