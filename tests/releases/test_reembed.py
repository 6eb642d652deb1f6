"""A version that brings another embedder swaps in only together with an index re-embedded by it
(real models, real embedders, real FAISS and SQLite)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import click
import httpx
import pytest
from click.testing import CliRunner

from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.cli import main
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.releases import ReleaseManager
from appliance.releases.manager import ReembedUnavailable
from appliance.releases.reembed import KnowledgeIndexSwitch
from tests.conftest import free_port
from tests.releases.conftest import follow_activation, write_version

# One chunk each: enough chunks that re-embedding takes a few seconds on a busy machine.
DOCS = {f"procedure-{i:02d}.md": (f"# Procedure {i}\n\nPost document type DT{i:03d} with transaction "
                                  f"TX{i:03d}; the {['finance', 'purchasing', 'HR'][i % 3]} team "
                                  f"approves it within {i % 5 + 1} days.\n").encode() for i in range(40)}


def embedder_files(folder) -> dict[str, bytes]:
    return {f"embedder/{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def versions(tmp_path, release_settings, gguf_files, embedder_dir, projected_embedder_dir):
    """v1 ships the configured embedder, v2 another one of 256 dimensions; v1 is active and the
    knowledge base holds DOCS."""
    settings = release_settings(probation_seconds=0)
    settings.knowledge.embedder_path = str(embedder_dir)
    settings.knowledge.ingest_sample_on_first_start = False
    models = tmp_path / "models"
    write_version(models, "erp", "v1", gguf_files["q8_0"], extra=embedder_files(embedder_dir))
    write_version(models, "erp", "v2", gguf_files["q8_0"], extra=embedder_files(projected_embedder_dir))
    setup = ReleaseManager(settings)
    setup.registry.scan()
    for version in ("v1", "v2"):
        setup.registry.set_state("erp", version, "ready")
    setup.registry.mark_active("erp", "v1")
    setup.registry.record("activated", "erp", "v1", reason="initial")
    setup.close()
    kb = KnowledgeBase.open(settings)
    for name, data in DOCS.items():
        kb.ingest_bytes(name, data)
    kb.close()
    return settings


@pytest.mark.slow
def test_swap_with_reembedding_then_rollback_restores_the_matching_index(versions, embedder_dir):
    settings = versions

    async def scenario():
        kb = await asyncio.to_thread(KnowledgeBase.open, settings)
        setup = ReleaseManager(settings)
        assistant = Assistant(setup.factory(setup.registry.get("erp", "v1")), ResponseCache(10, 60, True),
                              knowledge=kb, knowledge_settings=settings.knowledge)
        setup.close()

        refusing = ReleaseManager(settings, assistant)  # no knowledge base connected
        with pytest.raises(ReembedUnavailable, match="re-embedding is not available"):
            await refusing.activate("erp/v2")
        assert assistant.backend.version == "erp/v1"  # the old model kept serving
        assert refusing.history()[0]["event"] == "activation_failed"
        refusing.close()

        manager = ReleaseManager(settings, assistant, index_switch=KnowledgeIndexSwitch(assistant, settings))
        result = await manager.activate("erp/v2")
        assert assistant.backend.version == "erp/v2"
        assert kb.embedder.dim == 256 and kb.vectors.ids() == kb.store.chunk_ids()
        reembed = result["swap"]["reembed"]
        assert reembed["state"] == "installed" and reembed["chunks_done"] == len(DOCS)
        assert manager.history()[0]["detail"]["reembed"]["embedder"] == "all-minilm-l6-v2-p256/256"
        hits = await asyncio.to_thread(kb.search, "document type DT007", 1)
        assert hits[0].document == "procedure-07.md"

        # Rollback to v1 brings back v1's embedder and the index kept for it, caught up.
        await asyncio.to_thread(kb.ingest_bytes, "late.md", b"# Credit notes\n\nPost them in AR410.\n")
        back = await manager.rollback(reason="operator")
        assert assistant.backend.version == "erp/v1" and kb.embedder.dim == 384
        assert back["swap"]["reembed"]["reused_previous_index"] is True
        assert back["swap"]["reembed"]["chunks_total"] == 1  # only the chunk added since
        assert kb.vectors.ids() == kb.store.chunk_ids()
        assert (await asyncio.to_thread(kb.search, "credit notes", 1, mode="dense"))[0].document == "late.md"
        await assistant.backend.close()
        manager.close()
        await asyncio.to_thread(kb.close)

    asyncio.run(scenario())


def wait_for_knowledge(server) -> None:
    deadline = time.monotonic() + 60
    while server.assistant.knowledge is None:
        assert time.monotonic() < deadline, "the knowledge base did not open"
        time.sleep(0.1)


def restarted_on_v1(live_server, settings):
    """Start the server again on the same data dir; v1 serves, v2 is not active. Returns v2's row."""
    server = live_server(settings)
    server.wait_ready(120)
    wait_for_knowledge(server)
    listing = httpx.get(f"{server.url}/api/models").json()
    assert (listing["active"], listing["serving"], listing["activating"]) == ("erp/v1", "erp/v1", None)
    return server, next(v for v in listing["versions"] if v["version"] == "v2")


def start_activation(url: str) -> None:
    response = httpx.post(f"{url}/api/models/erp/v2/activate", json={}, timeout=60)
    assert response.status_code == 202, response.text


def while_building(server, during) -> list[dict]:
    """Poll until the activation ends; while the re-embedding runs, call `during(seen)` once
    with the knowledge base's write lock held (as a long ingest would), so the build cannot
    finish meanwhile. Returns what search and status said at each poll."""
    seen: list[dict] = []
    called = False
    while httpx.get(f"{server.url}/api/models").json()["activating"]:
        reembed = httpx.get(f"{server.url}/api/models/erp/v2").json()["activation"].get("reembed")
        if reembed and reembed["state"] == "building":
            lock = server.assistant.knowledge._write_lock if not called else None
            if lock is not None:
                lock.acquire()
            try:
                search = httpx.post(f"{server.url}/api/search", json={"query": "document type DT012", "k": 1})
                status = httpx.get(f"{server.url}/api/status").json()["knowledge"]
                seen.append({"reembed": reembed, "search": search.status_code,
                             "hit": search.json()["results"][0]["document"], "dim": status["embedder_dim"]})
                if not called:
                    called = True
                    if during(seen) is False:
                        return seen
            finally:
                if lock is not None:
                    lock.release()
        time.sleep(0.02)
    return seen


@pytest.mark.slow
def test_reembedding_through_the_server_search_keeps_answering_cancel_stop_and_restart(
        versions, live_server):
    settings = versions
    settings.knowledge.embedder_threads = 1  # a slower re-embedding, so it can be watched
    server = live_server(settings)
    server.wait_ready(120)
    wait_for_knowledge(server)

    # Cancelled: the activation fails, v1 keeps serving with its index, the history says why.
    start_activation(server.url)
    seen = while_building(server, lambda _: httpx.delete(f"{server.url}/api/models/reembed").json())
    assert seen, "the re-embedding was never seen on the version"
    assert all(s["search"] == 200 and s["hit"] == "procedure-12.md" and s["dim"] == 384 for s in seen)
    row, _ = follow_activation(server.url, "erp/v2")
    assert row["state"] == "ready" and row["activation"]["ok"] is False
    assert "cancelled" in row["activation"]["reason"]
    failed = httpx.get(f"{server.url}/api/models/history").json()["history"][0]
    assert failed["event"] == "activation_failed" and "cancelled" in failed["reason"]
    assert failed["detail"]["reembed"]["state"] == "cancelled"

    # Stopped: the appliance goes down in the middle; the next start serves v1 and says so.
    start_activation(server.url)
    stopping = threading.Thread(target=server.__exit__, args=(None, None, None))
    while_building(server, lambda _: (stopping.start(), time.sleep(1.0), False)[-1])
    stopping.join(timeout=120)
    server, v2 = restarted_on_v1(live_server, settings)
    assert v2["state"] == "ready" and v2["activation"]["running"] is False
    stopped = httpx.get(f"{server.url}/api/models/history").json()["history"][0]
    assert stopped["event"] == "activation_interrupted" and "stopped during the activation" in stopped["reason"]
    assert httpx.get(f"{server.url}/api/status").json()["knowledge"]["embedder_dim"] == 384

    # Completed: steps in order, search answers from the old index until the switch.
    start_activation(server.url)
    seen = while_building(server, lambda _: None)
    row, steps = follow_activation(server.url, "erp/v2")
    assert row["activation"]["ok"] is True and row["state"] == "active", row["activation"]
    assert row["activation"]["steps"]["reembed"]["chunks_done"] == len(DOCS)
    done = [s["reembed"]["chunks_done"] for s in seen]
    assert done == sorted(done) and all(s["dim"] == 384 for s in seen)  # old index until the switch
    knowledge = httpx.get(f"{server.url}/api/status").json()["knowledge"]
    assert knowledge["embedder_dim"] == 256 and knowledge["vectors"] == knowledge["chunks"]
    hit = httpx.post(f"{server.url}/api/search", json={"query": "document type DT012", "k": 1}).json()
    assert hit["results"][0]["document"] == "procedure-12.md"
    server.__exit__(None, None, None)

    restarted = live_server(settings)  # the next process opens the index with its own embedder
    restarted.wait_ready(120)
    wait_for_knowledge(restarted)
    knowledge = httpx.get(f"{restarted.url}/api/status").json()["knowledge"]
    assert knowledge["embedder_dim"] == 256 and knowledge["vectors"] == len(DOCS)
    assert httpx.get(f"{restarted.url}/api/models").json()["serving"] == "erp/v2"


@pytest.mark.slow
def test_a_crash_in_the_middle_of_an_activation_leaves_the_previous_version_serving(
        versions, live_server):
    """The server process is killed (SIGKILL: no clean-up runs) before the switch; the next start
    serves v1 with its own index and embedder, and the history says what happened."""
    settings = versions
    port = free_port()
    env = {**os.environ, **{f"APPLIANCE_{key}": str(value) for key, value in {
        "DATA_DIR": settings.data_dir, "RELEASES__MODELS_DIR": settings.releases.models_dir,
        "RELEASES__PROBATION_SECONDS": 0, "KNOWLEDGE__EMBEDDER_PATH": settings.knowledge.embedder_path,
        "KNOWLEDGE__INGEST_SAMPLE_ON_FIRST_START": "false", "KNOWLEDGE__EMBEDDER_THREADS": 1,
        "ENGINE__MODEL_PATH": settings.engine.model_path, "ENGINE__SLOTS": 4,
        "ENGINE__MAX_REQUEST_TOKENS": 512, "SERVER__PORT": port, "AUTH__ENABLED": "false"}.items()}}
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-c", "from appliance.cli import main; main()", "serve"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                ready = httpx.get(f"{url}/ready", timeout=5).json()
                if ready.get("status") == "ready" and ready["retrieval"]["status"] == "ready":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        start_activation(url)
        while True:  # the model switch comes only after re-embedding, load and warm-up
            step = httpx.get(f"{url}/api/models/erp/v2").json()["activation"]["step"]
            if step in ("reembed", "load", "warmup"):
                break
            assert step in ("queued", "starting"), step
            time.sleep(0.01)
        process.kill()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    server, v2 = restarted_on_v1(live_server, settings)
    assert v2["state"] == "ready" and v2["activation"]["ok"] is False
    assert "stopped during the activation (at step " in v2["activation"]["reason"]
    history = httpx.get(f"{server.url}/api/models/history").json()["history"]
    assert [h["event"] for h in history[:2]] == ["activation_interrupted", "activation_started"]
    knowledge = httpx.get(f"{server.url}/api/status").json()["knowledge"]
    assert knowledge["embedder_dim"] == 384 and knowledge["vectors"] == knowledge["chunks"] == len(DOCS)
    leftovers = [p.name for p in (settings.resolved_data_dir() / "knowledge").glob("vectors-*.faiss*")]
    assert leftovers == [], leftovers  # the half-built index is gone
    # Activated again, with the CLI, which follows the server's job step by step. The write lock
    # held for a moment keeps the re-embedding on screen long enough to be seen.
    output: list = []
    runner = threading.Thread(target=lambda: output.append(CliRunner().invoke(
        main, ["models", "activate", "erp/v2", "--server", server.url], env={
            "APPLIANCE_DATA_DIR": str(settings.data_dir),
            "APPLIANCE_RELEASES__MODELS_DIR": settings.releases.models_dir})))
    runner.start()
    deadline = time.monotonic() + 60
    while not httpx.get(f"{server.url}/api/models").json()["activating"]:
        assert time.monotonic() < deadline and runner.is_alive(), output and output[0].output
        time.sleep(0.02)
    while_building(server, lambda _: time.sleep(2.5))
    runner.join(timeout=300)
    result = output[0]
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "re-embedding the knowledge base with the new embedder ..." in lines, lines
    assert lines[-1].startswith("erp/v2 is active and serving")
    assert server.assistant.backend.version == "erp/v2"


def test_the_cli_reports_a_re_embedding_it_did_not_see_running(monkeypatch):
    # The CLI polls the job; a re-embedding that starts and ends between two polls is still
    # reported, with its final count, before the steps that followed it.
    from appliance.releases import cli

    later = [{"running": True, "step": "load",
              "steps": {"reembed": {"state": "done", "chunks_total": 12, "chunks_done": 12}}},
             {"running": False, "step": "switch", "steps": {}}]
    monkeypatch.setattr(cli, "_call", lambda *args, **kwargs: {"activation": later.pop(0)})
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)
    result = CliRunner().invoke(click.command()(lambda: cli._follow_activation(
        "http://appliance", "/api/models/erp/v2", None, {"running": True, "step": "starting"})))
    assert result.output.splitlines() == [
        "starting ...", "re-embedding the knowledge base with the new embedder ...",
        "  12 of 12 passages re-embedded", "loading the new model ...",
        "switching new requests to it ..."]
