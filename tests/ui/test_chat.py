"""The employee chat in a real Chromium against the real model and knowledge base: streamed,
cited answers, source passages, feedback, history, and stopping an answer."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import pytest

from appliance.accounts import Conversations
from tests.conftest import LentBackend

from .conftest import CONTEXT, EMPLOYEE, PHONE, api_session, eventually, login

QUESTION = "What are the overtime pay rates?"
ANSWER_TIMEOUT = 240_000  # ms: the shared CI machine can be slow
# Streaming, stopping and a busy model concern answers the model writes; quoted ones need no model.
GENERATIVE = {"answers__mode": "generative"}
# Greedy, the model writes two sentences that pass verification, sent one by one as they end.
STREAMED_QUESTION = "How is overtime paid?"


class Greedy(LentBackend):
    """The real backend at temperature 0: the same streamed answer on every run."""

    async def start(self, request):
        return await self.backend.start(replace(request, params=replace(request.params, temperature=0.0)))

# Records what the newest answer shows at every change, to prove it rendered while streaming.
WATCH_ANSWER = """() => {
  window.answerFrames = [];
  new MutationObserver(() => {
    const message = [...document.querySelectorAll('.message.assistant')].at(-1);
    if (message) window.answerFrames.push({state: message.dataset.state,
      length: message.querySelector('.answer').textContent.length});
  }).observe(document.getElementById('messages'),
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def ask(page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def last_answer(page):
    return page.locator(".message.assistant").last


@pytest.mark.slow
def test_streamed_answer_with_sources_passage_feedback_and_history(appliance_factory, ui_backend, new_page):
    appliance = appliance_factory(backend=Greedy(ui_backend), **GENERATIVE)
    page = new_page()
    login(page, appliance.url, EMPLOYEE)
    page.wait_for_selector("#examples .example")
    page.evaluate(WATCH_ANSWER)
    ask(page, STREAMED_QUESTION)
    answer = last_answer(page)
    page.wait_for_selector(".message.assistant[data-state=done]", timeout=ANSWER_TIMEOUT)

    text = answer.locator(".answer").inner_text().strip()
    assert text
    frames = page.evaluate("window.answerFrames")
    partial = {f["length"] for f in frames
               if f["state"] == "streaming" and 0 < f["length"] < len(text)}
    assert partial, "the answer appeared all at once instead of streaming in"
    response_id = answer.get_attribute("data-response-id")
    assert response_id and response_id.startswith("chatcmpl-")

    sources = answer.locator(".source")
    assert sources.count() >= 1
    assert "overtime-policy.md" in answer.locator(".sources").inner_text()

    # The source opens its passage, as the server stores it.
    chunk_id = sources.first.get_attribute("data-chunk")
    sources.first.click()
    page.wait_for_selector("#passage-text")
    client = api_session(page, appliance.url)
    passage = client.get(f"/api/chunks/{chunk_id}").raise_for_status().json()
    assert page.inner_text("#passage-text").strip() == passage["text"].strip()
    assert page.inner_text("#passage-title") == passage["title"]
    page.click("#passage-close")
    assert not page.locator("#passage").is_visible()

    # Thumbs up is stored with the monitoring feedback and on the saved answer.
    page.wait_for_selector("#conversation-list .conversation")  # the exchange is saved
    answer.locator(".feedback.up").click()
    eventually(page, "document.querySelector('.message.assistant:last-child .feedback.up')"
                     ".getAttribute('aria-pressed') === 'true'")
    deadline = time.monotonic() + 10
    while appliance.monitor.store.summary(0)["feedback"]["up"] != 1:
        assert time.monotonic() < deadline, "the feedback was not stored"
        time.sleep(0.2)
    user = appliance.user(EMPLOYEE[0])
    [conversation] = Conversations(appliance.accounts).list(user.id)
    saved = Conversations(appliance.accounts).get(user.id, conversation["id"])["messages"]
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[0]["content"] == STREAMED_QUESTION
    assert saved[1]["response_id"] == response_id and saved[1]["rating"] == "up"
    assert saved[1]["sources"][0]["chunk_id"] == int(sources.first.get_attribute("data-chunk"))
    assert conversation["title"] == STREAMED_QUESTION

    # A reload brings the conversation back: question, answer, sources and the rating.
    page.reload()
    page.wait_for_selector(".message.assistant")
    assert page.locator(".message.user .bubble").inner_text() == STREAMED_QUESTION
    assert last_answer(page).locator(".answer").inner_text().strip() == text
    assert last_answer(page).locator(".source").count() == sources.count()
    assert last_answer(page).locator(".feedback.up").get_attribute("aria-pressed") == "true"
    current = f"#conversation-list [data-id='{conversation['id']}'][aria-current=true]"
    assert page.locator(current).count() == 1
    assert not page.errors


def test_citations_open_their_source_and_conversations_rename_and_delete(appliance, new_page):
    page = new_page(viewport=PHONE)
    login(page, appliance.url, EMPLOYEE)
    client = api_session(page, appliance.url)
    hits = client.post("/api/search", json={"query": "purchase order release approval", "k": 2})
    hits = hits.json()["results"]
    assert len(hits) == 2
    sources = [{key: hit[key] for key in ("chunk_id", "document_id", "document", "title", "heading",
                                          "page", "sheet", "snippet", "score")} for hit in hits]
    conversation = client.post("/api/conversations", json={"title": "PO approvals"}).json()
    client.post(f"/api/conversations/{conversation['id']}/messages", json={"messages": [
        {"role": "user", "content": "Who releases a PO?"},
        {"role": "assistant",
         "content": "The **release strategy** decides it [1]. Stuck POs: see [2].\n"
                    "- first step\n- second step [1, 2]\n<script>alert(1)</script>",
         "sources": sources, "response_id": "chatcmpl-saved"}]}).raise_for_status()

    page.goto(f"{appliance.url}/#c={conversation['id']}")
    page.wait_for_selector(".message.assistant .cite")
    answer = last_answer(page)
    assert answer.locator(".answer strong").inner_text() == "release strategy"
    assert answer.locator(".answer li").count() == 2
    assert "<script>alert(1)</script>" in answer.locator(".answer").inner_text()  # text, not markup
    assert answer.locator(".answer script").count() == 0
    assert [c.inner_text() for c in answer.locator(".cite").all()] == ["1", "2", "1", "2"]
    answer.locator(".cite[data-cite='2']").first.click()
    page.wait_for_selector("#passage-text")
    passage = client.get(f"/api/chunks/{sources[1]['chunk_id']}").json()
    assert page.inner_text("#passage-text").strip() == passage["text"].strip()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.click("#passage-close")

    # Rename and delete from the conversation list (on a phone, the list slides in).
    page.click("#sidebar-toggle")
    item = page.locator(f"#conversation-list [data-id='{conversation['id']}']")
    item.locator(".rename").click()
    page.fill("#prompt-dialog input", "Purchase order release")
    page.click("#prompt-dialog button[value=ok]")
    page.wait_for_selector("#conversation-list .title:text('Purchase order release')")
    renamed = client.get(f"/api/conversations/{conversation['id']}").json()
    assert renamed["title"] == "Purchase order release"
    item.locator(".delete").click()
    page.click("#confirm-dialog button[value=ok]")
    page.wait_for_selector(f"#conversation-list [data-id='{conversation['id']}']", state="detached")
    assert client.get(f"/api/conversations/{conversation['id']}").status_code == 404
    assert page.locator("#welcome").is_visible()
    assert not page.errors


@pytest.mark.slow
def test_stop_cancels_the_answer_on_the_server(appliance_factory, ui_backend, new_page):
    # A plain answer streams token by token for up to 400 tokens, so it is still running when
    # stopped; a grounded one is held back sentence by sentence and may end right after it shows.
    appliance = appliance_factory(max_tokens=400, knowledge__enabled=False)
    cancelled = ui_backend.status()["engine"]["cancelled"]
    page = new_page()
    login(page, appliance.url, EMPLOYEE)
    page.wait_for_selector("#examples .example")
    ask(page, QUESTION)
    page.wait_for_selector("#stop", state="visible")
    eventually(page, "document.querySelector('.message .answer')?.textContent.length > 20",
               timeout=ANSWER_TIMEOUT / 1000)
    page.click("#stop")
    page.wait_for_selector(".message.assistant[data-state=stopped]")
    assert page.locator("#send").is_visible()
    deadline = time.monotonic() + 20
    while True:  # aborting the fetch closed the stream; the server freed the slot
        engine = ui_backend.status()["engine"]
        if engine["cancelled"] > cancelled and engine["slots_busy"] == 0:
            break
        assert time.monotonic() < deadline, engine
        time.sleep(0.2)
    # What had arrived is kept, in the view and in the history.
    kept = last_answer(page).locator(".answer").inner_text().strip()
    assert kept
    page.wait_for_selector("#conversation-list .conversation")
    user = appliance.user(EMPLOYEE[0])
    [conversation] = Conversations(appliance.accounts).list(user.id)
    saved = Conversations(appliance.accounts).get(user.id, conversation["id"])["messages"]
    assert saved[1]["content"].strip()
    assert saved[1]["response_id"] == last_answer(page).get_attribute("data-response-id")
    assert not page.errors


@pytest.mark.slow
def test_a_busy_appliance_and_an_ended_session_are_explained(appliance_factory, own_backend,
                                                             new_page):
    # One slot and no queue: while another answer runs, the next question is refused with 429.
    backend = own_backend(slots=1, max_queue=0, max_request_tokens=CONTEXT, default_max_tokens=1000)
    appliance = appliance_factory(backend=backend, **GENERATIVE)
    user = appliance.user(EMPLOYEE[0])
    secret, _ = appliance.accounts.create_key(user.id, "load")
    started, release = threading.Event(), threading.Event()

    def occupy() -> None:
        body = {"model": "default", "stream": True, "rag": False,
                "messages": [{"role": "user", "content": "Write a long story."}]}
        with httpx.stream("POST", f"{appliance.url}/v1/chat/completions", json=body, timeout=300,
                          headers={"Authorization": f"Bearer {secret}"}) as response:
            for _ in response.iter_lines():
                started.set()
                if release.is_set():
                    return  # leaving closes the stream: the server cancels the answer

    worker = threading.Thread(target=occupy, daemon=True)
    worker.start()
    page = new_page()
    login(page, appliance.url, EMPLOYEE)
    page.wait_for_selector("body[data-model]")
    assert started.wait(120)
    ask(page, QUESTION)
    page.wait_for_selector(".message.assistant[data-state=error]")
    error = last_answer(page).locator(".answer").inner_text()
    assert "busy" in error and "try again in" in error
    assert last_answer(page).locator("button", has_text="Try again").is_visible()
    release.set()
    worker.join(60)

    # The session ends on the server (a password reset): the next question leads to the login page.
    appliance.accounts.set_password(user.id, "a-brand-new-password")
    ask(page, QUESTION)
    page.wait_for_url(f"{appliance.url}/login?next=%2F*")
    assert not page.errors
