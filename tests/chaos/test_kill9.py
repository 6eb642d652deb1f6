"""kill -9 at random moments of real work, then a restart: nothing acknowledged is lost, the
indexes agree with SQLite, no job is left stuck, and the server answers.

Three scenarios share the kills (50 in all by default; APPLIANCE_CHAOS_KILLS scales them, and
APPLIANCE_CHAOS_SEED replays a run): a serving appliance taking uploads, conversation saves and
chat requests (metrics writes); `appliance ingest` writing the data folder with no server; and
model activations that re-embed the knowledge base.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import (
    KillableAppliance,
    assert_intact,
    faiss_ids_match_chunks,
    kill9,
    wait_for,
)
from tests.releases.conftest import write_version

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TOTAL_KILLS = int(os.environ.get("APPLIANCE_CHAOS_KILLS", "50"))
SERVING_KILLS = round(TOTAL_KILLS * 0.36)
INGEST_KILLS = round(TOTAL_KILLS * 0.40)
ACTIVATION_KILLS = TOTAL_KILLS - SERVING_KILLS - INGEST_KILLS
BATCH = 20  # documents per `appliance ingest` run


def document(token: str, n: int) -> str:
    return (f"# Part {token}\n\nPart number {token} is stocked in warehouse WH{n % 7:02d}. Reorder it "
            f"through the purchasing module when fewer than {n % 50 + 5} remain on hand.\n\n"
            f"## Handling\n\nStore {token} dry, away from sunlight; inspect it on arrival.\n")


def chat_body(i: int) -> dict:
    return {"model": "default", "max_tokens": 8, "temperature": 0.7, "seed": i, "rag": i % 2 == 0,
            "messages": [{"role": "user", "content": f"Where is part {i} stocked?"}]}


# -- a serving appliance ------------------------------------------------------------------------

class Workload:
    """Uploads, conversation saves and chats against a server until it dies; what the server
    acknowledged (201/200) is recorded."""

    def __init__(self, url: str, round_no: int, docs: dict, messages: dict):
        self.url, self.round = url, round_no
        self.docs, self.messages = docs, messages
        self.threads = [threading.Thread(target=self._guard, args=(work,))
                        for work in (self._upload, self._converse, self._chat)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)

    def _guard(self, work) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=60) as http:
                work(http)
        except httpx.TransportError:
            pass  # the server was killed: what it acknowledged is recorded

    def _upload(self, http: httpx.Client) -> None:
        for i in range(10_000):
            token = f"chaos{self.round:02d}x{i:04d}"
            source = f"parts/{token}.md"
            response = http.post("/api/documents",
                                 files={"file": (source, document(token, i).encode())})
            if response.status_code == 201 and response.json()["results"][0]["status"] == "added":
                self.docs[source] = token

    def _converse(self, http: httpx.Client) -> None:
        talk = http.post("/api/conversations", json={"title": f"round {self.round}"})
        if talk.status_code != 201:
            return
        cid = talk.json()["id"]
        self.messages[cid] = []
        for i in range(10_000):
            pair = [{"role": "user", "content": f"q{self.round}.{i}"},
                    {"role": "assistant", "content": f"a{self.round}.{i}", "response_id": f"r{i}"}]
            if http.post(f"/api/conversations/{cid}/messages", json={"messages": pair}).status_code == 200:
                self.messages[cid] += [m["content"] for m in pair]

    def _chat(self, http: httpx.Client) -> None:
        for i in range(10_000):
            http.post("/v1/chat/completions", json=chat_body(i))


def check_serving(server: KillableAppliance, docs: dict, messages: dict, new_docs: list[str]) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        listed = {d["source"] for d in http.get("/api/documents").json()["documents"]}
        assert not set(docs) - listed, f"acknowledged documents lost: {sorted(set(docs) - listed)[:5]}"
        for source in new_docs:  # this round's: found by their own words
            token = docs[source]
            hits = http.post("/api/search", json={"query": token, "k": 1, "mode": "keyword"}).json()
            assert hits["results"] and hits["results"][0]["document"] == source, token
        for cid, contents in messages.items():
            saved = [m["content"] for m in http.get(f"/api/conversations/{cid}").json()["messages"]]
            assert saved[:len(contents)] == contents, f"acknowledged messages lost in {cid}"
        knowledge = http.get("/api/status").json()["knowledge"]
        assert knowledge["chunks"] == knowledge["vectors"], knowledge
        assert http.post("/v1/chat/completions", json=chat_body(0)).status_code == 200


def test_kill9_while_serving_uploads_conversations_and_metrics(tmp_path, model_path, embedder_dir, rng):
    data = tmp_path / "data"
    server = KillableAppliance(data, model_path, embedder_dir).start()
    docs: dict[str, str] = {}
    messages: dict[str, list[str]] = {}
    try:
        for round_no in range(SERVING_KILLS):
            before = set(docs)
            work = Workload(server.url, round_no, docs, messages)
            work.start()
            time.sleep(rng.uniform(0.3, 2.5))
            server.kill()
            work.join()
            assert_intact(data)
            server.start()
            check_serving(server, docs, messages, sorted(set(docs) - before))
        server.stop()
        assert_intact(data)
        faiss_ids_match_chunks(data)
        with closing(sqlite3.connect(data / "metrics.db")) as conn:
            assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] > 0
    finally:
        server.stop()
    assert len(docs) > SERVING_KILLS and sum(map(len, messages.values())) > SERVING_KILLS


# -- `appliance ingest` with no server ----------------------------------------------------------

def committed_chunk_counts(data: Path) -> dict[str, tuple[int, int]]:
    """Per committed document: the chunk count it declares and the chunks stored for it."""
    path = data / "knowledge" / "knowledge.db"
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        try:
            rows = conn.execute("SELECT d.source, d.chunk_count, (SELECT count(*) FROM chunks c "
                                "WHERE c.document_id = d.id) FROM documents d").fetchall()
        except sqlite3.OperationalError:  # the first command is still creating the tables
            return {}
    return {source: (declared, stored) for source, declared, stored in rows}


def test_kill9_during_command_line_ingests(tmp_path, model_path, embedder_dir, embedder, rng):
    from appliance.knowledge.knowledge_base import KnowledgeBase
    from appliance.settings import Settings

    data = tmp_path / "data"
    cli = KillableAppliance(data, model_path, embedder_dir)
    folders = []
    kills = 0
    # A batch may finish before its kill on a quiet machine (18 of 40 did once): rounds to spare.
    for round_no in range(INGEST_KILLS * 4):
        if kills == INGEST_KILLS:
            break
        folder = tmp_path / "incoming" / f"batch{round_no:02d}"
        folder.mkdir(parents=True)
        for i in range(BATCH):
            token = f"ingest{round_no:02d}x{i:03d}"
            (folder / f"{token}.md").write_text(document(token, i))
        folders.append(folder)
        run = subprocess.Popen(cli.cli("ingest", str(folder)), env=cli.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        prefix = f"ingest{round_no:02d}"
        wait_for(lambda: run.poll() is not None or any(
            source.startswith(prefix) for source in committed_chunk_counts(data)),
            120, "the first document of the batch")
        time.sleep(rng.uniform(0.0, 0.6))
        if run.poll() is None:  # (a batch that finished first is simply complete)
            kill9(run)
            kills += 1
        assert_intact(data)
        counts = committed_chunk_counts(data)
        assert all(declared == stored for declared, stored in counts.values()), "half a document"
        batch = sorted(s for s in counts if s.startswith(f"ingest{round_no:02d}"))
        assert batch == [f"ingest{round_no:02d}x{i:03d}.md" for i in range(len(batch))], \
            "documents are committed one at a time, in order"
        settings = Settings(data_dir=data)
        settings.knowledge.embedder_path = str(embedder_dir)
        kb = KnowledgeBase.open(settings, embedder=embedder)  # what the next start does
        try:
            assert kb.vectors.ids() == kb.store.chunk_ids() == kb.keywords.ids()
        finally:
            kb.close()
        faiss_ids_match_chunks(data)
    done = subprocess.run(cli.cli("ingest", *map(str, folders)), env=cli.env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "0 failed" in done.stdout
    assert kills == INGEST_KILLS
    assert len(committed_chunk_counts(data)) == BATCH * len(folders)
    faiss_ids_match_chunks(data)


# -- activations that re-embed ------------------------------------------------------------------

def embedder_files(folder: Path) -> dict[str, bytes]:
    return {f"embedder/{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def check_no_job_stuck(server: KillableAppliance) -> dict:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        listing = http.get("/api/models").json()
        for version in listing["versions"]:
            assert version["state"] not in ("activating", "validating"), version
            assert not version["activation"].get("running"), version
        knowledge = http.get("/api/status").json()["knowledge"]
        assert (knowledge["reembed"] or {}).get("state") != "running", knowledge
        assert knowledge["chunks"] == knowledge["vectors"], knowledge
        assert http.post("/v1/chat/completions", json=chat_body(1)).status_code == 200
        return listing


def test_kill9_during_activations_and_reembedding(tmp_path, model_path, embedder_dir,
                                                  projected_embedder_dir, rng):
    data = tmp_path / "data"
    models = tmp_path / "versions"
    a = write_version(models, "erp", "a", Path(model_path), extra=embedder_files(projected_embedder_dir))
    b = write_version(models, "erp", "b", Path(model_path), extra=embedder_files(embedder_dir))
    server = KillableAppliance(data, model_path, embedder_dir, APPLIANCE_RELEASES__MODELS_DIR=str(models),
                               APPLIANCE_RELEASES__PROBATION_SECONDS="0").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:  # (a and b: found at start)
            known = {v["version"] for v in http.get("/api/models").json()["versions"]}
            assert {a.name, b.name} <= known
            files = [("file", (f"kb/part{i:03d}.md", document(f"kb{i:03d}", i).encode())) for i in range(60)]
            assert http.post("/api/documents", files=files).status_code == 201
        target = "a"
        for _ in range(ACTIVATION_KILLS):
            with httpx.Client(base_url=server.url, timeout=120) as http:
                started = http.post(f"/api/models/erp/{target}/activate", json={"force": True})
                assert started.status_code in (200, 202), started.text
            time.sleep(rng.uniform(0.05, 4.0))
            server.kill()
            assert_intact(data)
            server.start()
            listing = check_no_job_stuck(server)
            target = "b" if listing["active"] == "erp/a" else "a"
        with httpx.Client(base_url=server.url, timeout=300) as http:  # and one that may finish
            http.post(f"/api/models/erp/{target}/activate", json={"force": True})
            wait_for(lambda: not http.get(f"/api/models/erp/{target}").json()["activation"].get("running"),
                     300, "the last activation")
            assert http.get(f"/api/models/erp/{target}").json()["state"] == "active"
        check_no_job_stuck(server)
        server.stop()
        assert_intact(data)
        faiss_ids_match_chunks(data)
    finally:
        server.stop()
