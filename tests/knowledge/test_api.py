"""The HTTP API over a real server: knowledge endpoints, /v1/embeddings and grounded chat,
driven with httpx and the official openai client."""

from __future__ import annotations

import asyncio
import shutil
import time

import httpx
import numpy as np
import openai
import pytest

from appliance.answers.compose import NO_ANSWER
from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.knowledge.analyzer import is_korean
from appliance.llm.base import GenerationRequest, SamplingParams
from appliance.server.app import create_app, load_backend
from tests.conftest import LentBackend, LiveServer

from .conftest import make_settings

SECRET = b"# Executive bonus pool\n\nThe executive bonus pool is KRW 900,000,000 (code BON-77).\n"


@pytest.fixture(scope="session")
def backend(tmp_path_factory, embedder_dir):
    settings = make_settings(tmp_path_factory.mktemp("llm"), embedder_dir)
    settings.engine.bundled_model_type = "original"
    settings.engine.slots = 4
    settings.engine.max_request_tokens = 1024  # grounded prompts fill the context: keep prefill short
    return load_backend(settings)


@pytest.fixture(scope="session")
def base_url(tmp_path_factory, embedder_dir, backend, sample_kb):
    settings = make_settings(tmp_path_factory.mktemp("api"), embedder_dir)
    with LiveServer(create_app(settings, backend=backend, knowledge=sample_kb)) as server:
        yield server.url


@pytest.fixture
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client


@pytest.fixture
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)


def test_ready_reports_retrieval(http):
    body = http.get("/ready").json()
    assert body["status"] == "ready" and body["retrieval"]["status"] == "ready"


def test_search_returns_ranked_chunks_naming_their_source(http):
    response = http.post("/api/search", json={"query": "연차 휴가 신청", "k": 3})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3 and results[0]["document"] == "hr/annual-leave-request-ko.md"
    assert results[0]["score"] >= results[1]["score"]
    assert {"document", "title", "heading", "snippet", "chunk_id"} <= results[0].keys()


def test_upload_list_restrict_and_delete(http):
    upload = http.post("/api/documents", files={"file": ("bonus.md", SECRET, "text/markdown")},
                       data={"groups": "executives"})
    assert upload.status_code == 201, upload.text
    result = upload.json()["results"][0]
    assert result["status"] == "added" and result["chunks"] >= 1
    listed = {d["source"]: d for d in http.get("/api/documents").json()["documents"]}
    assert listed["bonus.md"]["groups"] == ["executives"]

    query = {"query": "executive bonus pool BON-77", "k": 5}
    outsider = http.post("/api/search", json=query).json()["results"]
    assert all(r["document"] != "bonus.md" for r in outsider)
    insider = http.post("/api/search", json=query, headers={"X-Appliance-Groups": "executives"})
    assert insider.json()["results"][0]["document"] == "bonus.md"

    assert http.delete(f"/api/documents/{result['id']}").status_code == 200
    missing = http.delete(f"/api/documents/{result['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found" and "GET /api/documents" in missing.json()["error"]["message"]


def test_broken_upload_is_reported(http):
    response = http.post("/api/documents", files={"file": ("broken.pdf", b"%PDF-garbage", "application/pdf")})
    assert response.status_code == 201
    assert response.json()["results"][0]["status"] == "failed"
    bad = http.post("/api/search", json={"k": 3})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == 400


def test_openai_client_embeddings(client):
    response = client.embeddings.create(model="all-minilm-l6-v2", input=["purchase order", "발주"])
    assert len(response.data) == 2 and len(response.data[0].embedding) == 384
    assert abs(np.linalg.norm(response.data[0].embedding) - 1) < 1e-3
    single = client.embeddings.create(model="all-minilm-l6-v2", input="purchase order")
    # Dynamic int8 quantization scales activations per batch, so batch-mates shift a vector
    # slightly; the direction stays.
    assert np.dot(single.data[0].embedding, response.data[0].embedding) > 0.98


def test_embeddings_take_a_side_for_embedders_with_prefixes(client, http):
    # all-MiniLM-L6-v2 has no prefixes, so each side's vector is the text's own.
    plain = client.embeddings.create(model="all-minilm-l6-v2", input="purchase order")
    query = client.embeddings.create(model="all-minilm-l6-v2", input="purchase order",
                                     extra_body={"input_type": "query"})
    assert np.dot(plain.data[0].embedding, query.data[0].embedding) > 0.999
    wrong = http.post("/v1/embeddings", json={"model": "m", "input": "x", "input_type": "question"})
    assert wrong.status_code == 400 and "input_type" in wrong.text


def test_grounded_chat_carries_sources(client):
    response = client.chat.completions.create(
        model="default", temperature=0, max_tokens=32,
        messages=[{"role": "user", "content": "What is the pay rate for overtime work?"}],
    )
    extra = response.model_extra
    assert extra["grounded"] is True and extra["sources"]
    assert any(s["document"] == "hr/overtime-policy.md" for s in extra["sources"])
    assert {"document", "title", "heading", "snippet", "score", "chunk_id"} <= extra["sources"][0].keys()
    assert response.choices[0].message.content


def test_streaming_chat_sends_sources_on_the_first_chunk(client):
    stream = client.chat.completions.create(
        model="default", temperature=0, max_tokens=16, stream=True,
        messages=[{"role": "user", "content": "구매요청은 어떻게 작성하나요?"}],
    )
    chunks = list(stream)
    sources = chunks[0].model_extra["sources"]
    assert any(s["document"] == "purchasing/purchase-requisition-guide-ko.md" for s in sources)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("question,lang", [
    ("What is the boiling point of mercury on Mars?", "en"), ("오늘 서울 날씨 어때요?", "ko")])
def test_nothing_relevant_says_so(client, question, lang):
    response = client.chat.completions.create(
        model="default", temperature=0, max_tokens=16, messages=[{"role": "user", "content": question}])
    assert response.choices[0].message.content == NO_ANSWER[lang]
    assert response.model_extra["grounded"] is False and response.model_extra["sources"] == []


def test_rag_false_answers_plainly(client):
    response = client.chat.completions.create(
        model="default", temperature=0, max_tokens=8, extra_body={"rag": False},
        messages=[{"role": "user", "content": "Say hello."}])
    assert "sources" not in response.model_extra


def test_a_cached_answer_never_reaches_an_outsider(client, http):
    upload = http.post("/api/documents", files={"file": ("bonus.md", SECRET, "text/markdown")},
                       data={"groups": "executives"}).json()["results"][0]
    try:
        ask = dict(model="default", temperature=0, max_tokens=16,
                   messages=[{"role": "user", "content": "How big is the executive bonus pool BON-77?"}])
        insider = client.chat.completions.with_raw_response.create(
            **ask, extra_headers={"X-Appliance-Groups": "executives,all"})
        assert any(s["document"] == "bonus.md" for s in insider.parse().model_extra["sources"])
        again = client.chat.completions.with_raw_response.create(
            **ask, extra_headers={"X-Appliance-Groups": "executives,all"})
        assert again.headers["x-cache"] == "hit"
        outsider = client.chat.completions.with_raw_response.create(**ask)
        assert outsider.headers["x-cache"] == "miss"
        assert all(s["document"] != "bonus.md" for s in outsider.parse().model_extra["sources"])
        assert "900,000,000" not in outsider.parse().choices[0].message.content
    finally:
        http.delete(f"/api/documents/{upload['id']}")


def test_without_an_embedder_the_server_answers_ungrounded(tmp_path, backend):
    settings = make_settings(tmp_path / "data", tmp_path / "no-embedder")
    with LiveServer(create_app(settings, backend=LentBackend(backend))) as server:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            deadline = time.monotonic() + 30
            while http.get("/ready").json()["retrieval"]["status"] == "opening" and time.monotonic() < deadline:
                time.sleep(0.1)
            retrieval = http.get("/ready").json()["retrieval"]
            assert retrieval["status"] == "unavailable"
            assert "appliance-build embedder --out" in retrieval["message"]
            chat = http.post("/v1/chat/completions", json={
                "model": "default", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": "How do I request leave?"}]}).json()
            assert chat["grounded"] is False and "appliance-build embedder" in chat["retrieval_notice"]
            search = http.post("/api/search", json={"query": "leave"})
            assert search.status_code == 503 and "appliance-build embedder" in search.json()["error"]["message"]


def test_assistant_scope_keys_the_cache(backend, sample_kb):
    assistant = Assistant(LentBackend(backend), ResponseCache(), knowledge=sample_kb)
    request = GenerationRequest(params=SamplingParams(temperature=0, max_tokens=4),
                                messages=({"role": "user", "content": "How do I request annual leave?"},))

    async def scenario():
        first = await assistant.answer(request, groups=["all"])
        async for _ in first:
            pass
        assert first.sources
        assert (await assistant.answer(request, groups=["all"])).from_cache
        other = await assistant.answer(request, groups=["all", "hr"])
        other.cancel()
        assert not other.from_cache

    asyncio.run(scenario())


def test_first_start_ingests_the_sample_once(tmp_path, backend, embedder_dir, monkeypatch):
    sample = tmp_path / "sample"
    sample.mkdir()
    (sample / "gr.md").write_text("# Goods receipt\n\nPost goods receipts with GR100.\n")
    (sample / "pay.txt").write_text("Payment runs\n\nVendor payments run every Friday.\n")
    monkeypatch.setattr("appliance.knowledge.knowledge_base.sample_kb_path", lambda: sample)
    settings = make_settings(tmp_path / "data", embedder_dir)

    def start_and_list():
        with LiveServer(create_app(settings, backend=LentBackend(backend))) as server:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                deadline = time.monotonic() + 60
                while http.get("/ready").json()["retrieval"]["status"] != "ready":
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                return [d["source"] for d in http.get("/api/documents").json()["documents"]]

    sources = start_and_list()
    assert sources == ["gr.md", "pay.txt"]
    (sample / "new.md").write_text("# New\n\nNot part of the first start.\n")
    sources = start_and_list()
    assert sources == ["gr.md", "pay.txt"]  # only an empty data dir gets the sample



def test_the_server_re_chunks_an_old_knowledge_base_and_reports_progress(tmp_path, embedder_dir,
                                                                          backend, old_data_dir):
    shutil.copytree(old_data_dir, tmp_path / "data")
    settings = make_settings(tmp_path / "data", embedder_dir)
    with LiveServer(create_app(settings, backend=LentBackend(backend))) as server:
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while time.monotonic() < deadline:
                job = (http.get("/api/status").json()["knowledge"] or {}).get("rechunk")
                if job and job["state"] != "running":
                    break
                time.sleep(0.2)
            assert job["state"] == "done", job
            assert job["documents_done"] == job["documents_total"] == 8
            assert job["chunks_after"] < job["chunks_before"] and job["previous_chunker"] is None
            listed = http.get("/api/documents").json()
            assert listed["rechunk"]["state"] == "done" and len(listed["documents"]) == 8
            assert sum(d["chunk_count"] for d in listed["documents"]) == job["chunks_after"]
            hits = http.post("/api/search", json={"query": "연차 휴가 신청", "k": 1}).json()["results"]
            assert hits[0]["document"] == "annual-leave-request-ko.md"


def test_request_metrics_record_the_retrieval_time(tmp_path, embedder_dir, backend, sample_kb):
    settings = make_settings(tmp_path / "data", embedder_dir)
    settings.monitoring.golden_interval_hours = 0
    app = create_app(settings, backend=LentBackend(backend), knowledge=sample_kb)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        def ask(content: str, **extra) -> str:
            response = http.post("/v1/chat/completions", json={
                "model": "default", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": content}], **extra})
            assert response.status_code == 200
            return response.json()["id"]

        grounded = ask("What is the pay rate for overtime work?")
        replayed = ask("What is the pay rate for overtime work?")  # from the response cache
        nothing = ask("What is the boiling point of mercury on Mars?")
        plain = ask("Say hello.", rag=False)
        monitor = app.state.monitor
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            monitor.collector.flush()
            rows = {r["response_id"]: r for r in monitor.store.db.query("SELECT * FROM requests")}
            if len(rows) == 4:
                break
            time.sleep(0.05)
    assert rows[grounded]["retrieval_s"] > 0 and rows[nothing]["retrieval_s"] > 0
    assert rows[grounded]["retrieval_s"] < rows[grounded]["latency_s"]
    assert rows[plain]["retrieval_s"] is None and rows[replayed]["retrieval_s"] is None
    assert rows[replayed]["cache_hit"] == 1


def test_a_korean_question_gets_a_korean_answer_quoted_from_the_manual(client, http):
    reply = client.chat.completions.create(
        model="default", temperature=0, messages=[{"role": "user", "content": "연차 신청은 어떻게 하나요?"}])
    extra = reply.model_extra
    text = reply.choices[0].message.content
    assert extra["answer_mode"] == "extractive" and extra["grounded"]
    lead, *quoted = text.splitlines()
    assert is_korean(lead) and lead.endswith(":") and " › " in lead
    assert "[1]" in text and is_korean("\n".join(quoted))
    # Every quoted span is the cited passage's own text, at the offsets the source names.
    source = extra["sources"][0]
    passage = http.get(f"/api/chunks/{source['chunk_id']}").json()["text"]
    assert source["spans"]
    for start, end in source["spans"]:
        assert passage[start:end].strip("*").split("**")[0] in text.replace("**", "")


def test_streamed_and_whole_answers_are_the_same(client):
    ask = dict(model="default", temperature=0, messages=[{"role": "user", "content": "구매요청서에 꼭 넣어야 하는 항목이 뭐예요?"}])
    whole = client.chat.completions.create(**ask)
    chunks = list(client.chat.completions.create(**ask, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[0].model_extra["answer_mode"] == whole.model_extra["answer_mode"] == "extractive"


def test_an_approval_question_is_answered_from_the_approval_table(client):
    reply = client.chat.completions.create(
        model="default", temperature=0,
        messages=[{"role": "user", "content": "Who approves a purchase order over 30 million won?"}])
    text = reply.choices[0].message.content
    assert text.startswith("Purchase Order Approval (Release) Procedure › 3. Approval limits:")
    assert "| R3 | 30,000,001 – 150,000,000 | CFO" in text
    assert reply.model_extra["answer_mode"] == "extractive"


def converse(client, first: str, *follow_ups: str) -> list:
    """The replies to each follow-up, asked after `first` and the appliance's own answer to it."""
    answer = client.chat.completions.create(
        model="default", temperature=0, messages=[{"role": "user", "content": first}]).choices[0].message.content
    return [client.chat.completions.create(model="default", temperature=0, messages=[
        {"role": "user", "content": first}, {"role": "assistant", "content": answer},
        {"role": "user", "content": follow_up}]) for follow_up in follow_ups]


def test_a_follow_up_keeps_its_topic_and_says_what_it_searched(client):
    first = "How do I get a purchase order approved?"
    follow_up = "And who approves it when it is over 30 million won?"
    [reply] = converse(client, first, follow_up)
    assert reply.model_extra["retrieval_query"] == f"{first} {follow_up}"
    assert reply.model_extra["sources"][0]["document"] == "purchasing/purchase-order-approval.md"
    assert "CFO" in reply.choices[0].message.content


def test_a_question_that_cannot_be_answered_alone_is_read_with_the_conversation(client):
    # No pronoun and two words of its own: it looks self-contained, yet only the earlier turn
    # says what is being printed.
    first = "재직증명서는 온라인으로 바로 발급받을 수 있나요?"
    follow_up = "하루에 몇 장까지 뽑을 수 있어요?"
    change = "그리고 다른 건데요, 하루에 몇 장까지 뽑을 수 있어요?"
    reply, changed = converse(client, first, follow_up, change)
    assert reply.model_extra["grounded"] and reply.model_extra["retrieval_query"] == f"{first} {follow_up}"
    assert reply.model_extra["sources"][0]["document"] == "hr/certificate-issuance-ko.txt"
    assert "하루 발급 한도는 증명서 종류별 5부" in reply.choices[0].message.content
    # A new topic announced as such is never read with the old one, answered or not.
    assert changed.model_extra.get("retrieval_query") is None  # searched as asked
