"""Document-level access with real users over real HTTP (real embedder, FAISS, GGUF): an employee
outside a document's groups never sees it, in the document list, search, chat sources, cited
passages, or an answer an insider got first from the response cache."""

from __future__ import annotations

import httpx
import pytest

from appliance.accounts import Accounts
from appliance.server.app import create_app, load_backend
from tests.conftest import LiveServer

from .conftest import make_settings

SECRET = b"# Executive bonus pool\n\nThe executive bonus pool is KRW 900,000,000 (code BON-77).\n"
QUESTION = "How big is the executive bonus pool BON-77?"


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder_dir, sample_kb):
    settings = make_settings(tmp_path_factory.mktemp("access"), embedder_dir)
    settings.auth.enabled = True
    settings.engine.bundled_model_type = "original"
    settings.engine.slots = 4
    settings.engine.max_request_tokens = 1024  # grounded prompts fill the context: keep prefill short
    accounts = Accounts.open(settings)
    keys = {}
    for name, role, groups in (("root", "admin", ["all"]), ("olivia", "employee", ["all"]),
                               ("ian", "employee", ["all", "executives"])):
        user = accounts.create_user(name, None, role=role, groups=groups)
        keys[name] = accounts.create_key(user.id, "tests")[0]
    with LiveServer(create_app(settings, load_backend(settings), knowledge=sample_kb)) as live:
        live.keys = keys
        live.accounts = accounts
        yield live
    accounts.close()


def call(server, who: str, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.keys[who]}", **kwargs.pop("headers", {})}
    return httpx.request(method, server.url + path, headers=headers, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def bonus(server):
    """A document only the executives group may read, uploaded by an admin; deleted afterwards."""
    upload = call(server, "root", "POST", "/api/documents", files={"file": ("bonus.md", SECRET, "text/markdown")},
                  data={"groups": "executives"})
    assert upload.status_code == 201, upload.text
    document = upload.json()["results"][0]
    yield document
    assert call(server, "root", "DELETE", f"/api/documents/{document['id']}").status_code == 200
    [deleted, uploaded] = server.accounts.audit_log(actor="root", limit=2)
    assert (deleted["action"], deleted["target"], uploaded["action"], uploaded["target"]) == \
        ("document_deleted", "bonus.md", "documents_uploaded", "bonus.md")
    assert uploaded["detail"]["groups"] == ["executives"]


def sources(response: httpx.Response) -> set[str]:
    return {s["document"] for s in response.json()["sources"]}


def test_the_document_list_follows_groups(server, bonus):
    listed = {who: {d["source"] for d in call(server, who, "GET", "/api/documents").json()["documents"]}
              for who in ("olivia", "ian", "root")}
    assert "bonus.md" not in listed["olivia"] and "hr/overtime-policy.md" in listed["olivia"]
    assert "bonus.md" in listed["ian"]
    assert "bonus.md" in listed["root"]  # admins manage every document


def test_search_follows_groups(server, bonus):
    query = {"query": "executive bonus pool BON-77", "k": 5}
    insider = call(server, "ian", "POST", "/api/search", json=query).json()["results"]
    assert insider[0]["document"] == "bonus.md"
    for who in ("olivia", "root"):  # the admin role does not widen what one reads
        results = call(server, who, "POST", "/api/search", json=query).json()["results"]
        assert all(r["document"] != "bonus.md" for r in results), who
    widened = call(server, "olivia", "POST", "/api/search", json={**query, "groups": ["executives"]})
    assert widened.status_code == 403
    header = call(server, "olivia", "POST", "/api/search", json=query, headers={"X-Appliance-Groups": "executives"})
    assert header.status_code == 403 and "not in the group(s) executives" in header.json()["error"]["message"]
    narrowed = call(server, "ian", "POST", "/api/search", json={**query, "groups": ["all"]}).json()["results"]
    assert all(r["document"] != "bonus.md" for r in narrowed)  # narrowing to a subset is allowed


def test_cited_passages_follow_groups(server, bonus):
    hit = call(server, "ian", "POST", "/api/search", json={"query": "BON-77", "k": 1}).json()["results"][0]
    passage = call(server, "ian", "GET", f"/api/chunks/{hit['chunk_id']}")
    assert passage.status_code == 200
    body = passage.json()
    assert {"chunk_id", "document_id", "document", "title", "heading", "page", "sheet", "text",
            "previous", "next"} <= set(body)
    assert body["document"] == "bonus.md" and "BON-77" in body["text"]
    missing = call(server, "olivia", "GET", "/api/chunks/999999999")
    for who in ("olivia", "root"):
        hidden = call(server, who, "GET", f"/api/chunks/{hit['chunk_id']}")
        assert hidden.status_code == 404  # never 403: whether it exists is not disclosed
        assert hidden.json()["error"]["message"] == missing.json()["error"]["message"].replace(
            "999999999", str(hit["chunk_id"]))


def test_a_passage_comes_with_its_neighbours(server):
    hit = call(server, "olivia", "POST", "/api/search",
               json={"query": "overtime pay rate", "k": 1}).json()["results"][0]
    passage = call(server, "olivia", "GET", f"/api/chunks/{hit['chunk_id']}").json()
    assert passage["text"] == hit["text"]
    neighbours = [n for n in (passage["previous"], passage["next"]) if n]
    assert neighbours, "the sample's overtime policy has more than one chunk"
    assert all(n["text"] and n["chunk_id"] != hit["chunk_id"] for n in neighbours)


def test_chat_sources_and_cached_answers_follow_groups(server, bonus):
    ask = {"model": "default", "temperature": 0, "max_tokens": 16,
           "messages": [{"role": "user", "content": QUESTION}]}
    insider = call(server, "ian", "POST", "/v1/chat/completions", json=ask)
    assert insider.status_code == 200 and "bonus.md" in sources(insider)
    again = call(server, "ian", "POST", "/v1/chat/completions", json=ask)
    assert again.headers["x-cache"] == "hit" and "bonus.md" in sources(again)
    # The cache is keyed on the reader's groups: the admin shares the outsider's groups, so it
    # shares the outsider's cached answer, never the insider's.
    for who, cache in (("olivia", "miss"), ("root", "hit")):
        outsider = call(server, who, "POST", "/v1/chat/completions", json=ask)
        assert outsider.status_code == 200
        assert outsider.headers["x-cache"] == cache, who
        assert "bonus.md" not in sources(outsider), who
        assert "900,000,000" not in outsider.json()["choices"][0]["message"]["content"]
    streamed = call(server, "olivia", "POST", "/v1/chat/completions", json={**ask, "stream": True})
    assert streamed.headers["x-cache"] == "hit"  # olivia's own answer, replayed
    assert "bonus.md" not in streamed.text and "900,000,000" not in streamed.text
