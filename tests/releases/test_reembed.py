"""A version that brings another embedder swaps in only together with an index re-embedded by it
(real models, real embedders, real FAISS and SQLite)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.releases import ReleaseManager
from appliance.releases.manager import ReembedUnavailable
from appliance.releases.reembed import KnowledgeIndexSwitch
from tests.releases.conftest import write_version

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


@pytest.mark.slow
def test_reembedding_through_the_server_search_keeps_answering_cancel_and_restart(
        versions, live_server):
    settings = versions
    settings.knowledge.embedder_threads = 1  # a slower re-embedding, so it can be watched
    server = live_server(settings)
    server.wait_ready(120)
    deadline = time.monotonic() + 60
    while server.assistant.knowledge is None and time.monotonic() < deadline:
        time.sleep(0.1)

    def activate(out: list) -> None:
        out.append(httpx.post(f"{server.url}/api/models/erp/v2/activate", json={}, timeout=600))

    def watch_building(cancel: bool) -> tuple[list[dict], httpx.Response]:
        """Search and status while the re-embedding runs; with `cancel`, cancel it meanwhile."""
        seen, responses = [], []
        thread = threading.Thread(target=activate, args=(responses,))
        thread.start()
        while thread.is_alive():
            reembed = httpx.get(f"{server.url}/api/models").json()["reembed"]
            if reembed and reembed["state"] == "building":
                # Holding the write lock (as a long ingest would) keeps the build from finishing
                # before the cancel arrives; search does not need the lock.
                lock = server.assistant.knowledge._write_lock if cancel else None
                if lock is not None:
                    lock.acquire()
                try:
                    search = httpx.post(f"{server.url}/api/search", json={"query": "document type DT012", "k": 1})
                    status = httpx.get(f"{server.url}/api/status").json()["knowledge"]
                    seen.append({"reembed": reembed, "search": search.status_code,
                                 "hit": search.json()["results"][0]["document"], "dim": status["embedder_dim"]})
                    if cancel:
                        assert httpx.delete(f"{server.url}/api/models/reembed").json()["cancelled"] is True
                        cancel = False
                finally:
                    if lock is not None:
                        lock.release()
            time.sleep(0.02)
        thread.join()
        return seen, responses[0]

    seen, response = watch_building(cancel=True)
    assert seen, "the re-embedding was never seen in /api/models"
    assert all(s["search"] == 200 and s["hit"] == "procedure-12.md" and s["dim"] == 384 for s in seen)
    assert response.status_code == 409 and "cancelled" in response.json()["error"]["message"]
    seen, response = watch_building(cancel=False)
    assert response.status_code == 200, response.text
    done = [s["reembed"]["chunks_done"] for s in seen]
    assert done == sorted(done) and all(s["dim"] == 384 for s in seen)  # old index until the switch
    knowledge = httpx.get(f"{server.url}/api/status").json()["knowledge"]
    assert knowledge["embedder_dim"] == 256 and knowledge["vectors"] == knowledge["chunks"]
    hit = httpx.post(f"{server.url}/api/search", json={"query": "document type DT012", "k": 1}).json()
    assert hit["results"][0]["document"] == "procedure-12.md"
    server.__exit__(None, None, None)

    restarted = live_server(settings)  # the next process opens the index with its own embedder
    restarted.wait_ready(120)
    deadline = time.monotonic() + 60
    while restarted.assistant.knowledge is None and time.monotonic() < deadline:
        time.sleep(0.1)
    knowledge = httpx.get(f"{restarted.url}/api/status").json()["knowledge"]
    assert knowledge["embedder_dim"] == 256 and knowledge["vectors"] == len(DOCS)
    assert httpx.get(f"{restarted.url}/api/models").json()["serving"] == "erp/v2"
