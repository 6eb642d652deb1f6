"""How the chat shows the way an answer was made, in a real Chromium against the real appliance:
the "quoted from the manual" mark, the quoted spans highlighted in the passage, tables, the
"verified" hints of generated answers, and what a follow-up question searched for."""

from __future__ import annotations

import time

import pytest

from appliance.accounts import Conversations

from .conftest import EMPLOYEE, PHONE, api_session, eventually, login

ANSWER_TIMEOUT = 240_000  # ms: the shared CI machine can be slow
TABLE_QUESTION = "What are the overtime pay rates?"  # quoted: the pay-rate table under its section


def ask(page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def answers_done(page, count: int) -> None:
    eventually(page, f"document.querySelectorAll('.message.assistant[data-state=done]').length === {count}",
               timeout=ANSWER_TIMEOUT / 1000)


def saved_answers(appliance) -> list[dict]:
    user = appliance.user(EMPLOYEE[0])
    [conversation] = Conversations(appliance.accounts).list(user.id)
    messages = Conversations(appliance.accounts).get(user.id, conversation["id"])["messages"]
    return [m for m in messages if m["role"] == "assistant"]


def saved_answers_when(appliance, count: int) -> list[dict]:
    deadline = time.monotonic() + 20
    while len(answers := saved_answers(appliance)) < count:
        assert time.monotonic() < deadline, answers
        time.sleep(0.2)
    return answers


def marks_in_view(page) -> list[str]:
    """The highlighted texts of the open passage, once the first one is scrolled into view."""
    page.wait_for_selector("#passage-text mark")
    eventually(page, """(() => {
      const mark = document.querySelector('#passage-text mark').getBoundingClientRect();
      const body = document.getElementById('passage-body').getBoundingClientRect();
      return mark.top >= body.top && mark.bottom <= body.bottom;
    })()""", timeout=5)
    return [m.inner_text() for m in page.locator("#passage-text mark").all()]


@pytest.mark.slow
def test_a_quoted_answer_is_marked_shows_its_table_and_highlights_what_it_quoted(appliance, new_page):
    page = new_page()
    login(page, appliance.url, EMPLOYEE)
    page.wait_for_selector("#examples .example")
    ask(page, TABLE_QUESTION)
    answers_done(page, 1)
    answer = page.locator(".message.assistant").last
    assert answer.get_attribute("data-answer-mode") == "extractive"
    assert answer.locator(".answer-mode").is_visible()
    assert answer.locator(".answer-mode").inner_text() == "Quoted from the manual"

    # The lead line names the document and section; the table is a table, its citation a button.
    lead = answer.locator(".answer p.lead").first.inner_text()
    assert lead.startswith("Overtime, Night and Holiday Work Policy ›") and lead.endswith(":")
    assert [th.inner_text() for th in answer.locator(".answer table th").all()] == ["Work", "Rate"]
    assert answer.locator(".answer table tbody tr").count() >= 2
    assert "|" not in answer.locator(".answer").inner_text()  # no Markdown left over
    for snippet in answer.locator(".source .snippet").all():
        assert "|" not in snippet.inner_text() and "**" not in snippet.inner_text()

    # The citation in the table opens its passage, with what the answer quoted highlighted.
    page.wait_for_selector("#conversation-list .conversation")  # saved: its sources hold the spans
    [saved] = saved_answers(appliance)
    assert saved["answer_mode"] == "extractive"
    cite = answer.locator(".answer td .cite").first
    source = saved["sources"][int(cite.get_attribute("data-cite")) - 1]
    cite.click()
    passage = api_session(page, appliance.url).get(f"/api/chunks/{source['chunk_id']}").raise_for_status().json()
    assert marks_in_view(page) == [passage["text"][start:end] for start, end in source["spans"]]
    assert page.inner_text("#passage-text").strip() == passage["text"].strip()
    page.click("#passage-close")

    # Reopened, the answer keeps its mark and its table.
    page.reload()
    page.wait_for_selector(".message.assistant .answer-mode")
    assert page.locator(".message.assistant .answer table th").count() == 2
    assert not page.errors


@pytest.mark.slow
def test_a_korean_follow_up_says_what_it_searched_for(appliance, new_page):
    page = new_page(locale="ko-KR")
    login(page, appliance.url, EMPLOYEE)
    page.wait_for_selector("#examples .example")
    ask(page, "연차 신청은 어떻게 하나요?")
    answers_done(page, 1)
    first = page.locator(".message.assistant").last
    assert first.locator(".answer-mode").inner_text() == "매뉴얼 인용"
    assert first.locator(".answer ol li").count() >= 2  # the steps, as a list
    assert first.locator(".searched-for").count() == 0  # it stood on its own
    page.wait_for_selector("#conversation-list .conversation")  # the follow-up goes with the first turn

    ask(page, "취소하려면요?")
    answers_done(page, 2)
    follow_up = page.locator(".message.assistant").last
    assert "취소" in follow_up.locator(".answer").inner_text()
    searched = follow_up.locator(".searched-for")
    assert searched.inner_text().startswith("검색어:")
    shown = searched.locator("q").inner_text()
    assert shown == "연차 신청은 어떻게 하나요? 취소하려면요?"  # the weighting repeat shown once
    answers = saved_answers_when(appliance, 2)
    assert answers[0]["retrieval_query"] is None
    assert answers[1]["retrieval_query"].startswith(shown)  # as the server sent it

    page.reload()
    page.wait_for_selector(".message.assistant .searched-for")
    assert page.locator(".message.assistant .searched-for q").inner_text() == shown
    assert page.locator(".message.assistant .answer-mode").count() == 2
    assert not page.errors


def test_saved_answers_show_marks_tables_hints_and_highlights_in_both_languages(appliance, new_page):
    page = new_page(viewport=PHONE)
    login(page, appliance.url, EMPLOYEE)
    client = api_session(page, appliance.url)
    hits = client.post("/api/search", json={"query": "overtime pay rates night work", "k": 2}).json()["results"]
    assert len(hits) == 2
    # Source 2 is the longer passage, quoted at its end: its drawer has to scroll to the quote.
    hits.sort(key=lambda hit: len(hit["text"]))
    texts = [client.get(f"/api/chunks/{hit['chunk_id']}").raise_for_status().json()["text"] for hit in hits]
    first_line = texts[0].strip().split("\n")[0]
    last_line = texts[1].rstrip().rsplit("\n", 1)[-1]
    spans = [[texts[0].index(first_line), texts[0].index(first_line) + len(first_line)],
             [texts[1].rindex(last_line), texts[1].rindex(last_line) + len(last_line)]]
    sources = [{**{key: hit[key] for key in ("chunk_id", "document", "title", "heading", "snippet")},
                "spans": [span]} for hit, span in zip(hits, spans)]
    quoted = ("Overtime, Night and Holiday Work Policy › 3. Pay rates:\n"
              "| Work | Rate |\n|---|---|\n"
              "| Weekday overtime | **150%** [1] |\n"
              "| Night work \\| 22:00–06:00 | <b>additional 50%</b> [2] |\n\n"
              "6. Compensatory leave instead of pay:\n"
              "Employees may choose compensatory leave. [2]")
    conversation = client.post("/api/conversations", json={"title": "Overtime pay"}).json()
    client.post(f"/api/conversations/{conversation['id']}/messages", json={"messages": [
        {"role": "user", "content": "What is overtime paid?"},
        {"role": "assistant", "content": quoted, "sources": sources, "answer_mode": "extractive",
         "support": 0.5, "retrieval_query": "overtime pay And at night? And at night?"},
        {"role": "user", "content": "Weekday rate?"},
        {"role": "assistant", "content": "Weekday overtime is paid at 150% [1].", "sources": sources,
         "answer_mode": "generated", "support": 1.0, "removed": 0},
        {"role": "user", "content": "And the release codes?"},
        {"role": "assistant", "content": "The codes: [1]\n\n| R1 | up to 5,000,000 |\n| R2 | above |",
         "sources": sources, "answer_mode": "generated_with_removals", "support": 0.7, "removed": 2},
    ]}).raise_for_status()

    page.goto(f"{appliance.url}/#c={conversation['id']}")
    page.wait_for_selector(".message.assistant .answer table")
    quoted_view, generated, trimmed = page.locator(".message.assistant").all()
    assert quoted_view.locator(".answer-mode").inner_text() == "Quoted from the manual"
    assert [p.inner_text() for p in quoted_view.locator(".answer p.lead").all()] == [
        "Overtime, Night and Holiday Work Policy › 3. Pay rates:", "6. Compensatory leave instead of pay:"]
    assert quoted_view.locator(".answer ol").count() == 0  # "6. ...:" leads a section, it is no list
    assert [th.inner_text() for th in quoted_view.locator("thead th").all()] == ["Work", "Rate"]
    rows = [[td.inner_text() for td in tr.locator("td").all()] for tr in quoted_view.locator("tbody tr").all()]
    assert rows == [["Weekday overtime", "150% 1"], ["Night work | 22:00–06:00", "<b>additional 50%</b> 2"]]
    assert quoted_view.locator("td strong").inner_text() == "150%"
    assert quoted_view.locator(".answer b").count() == 0  # text, not markup
    assert [c.inner_text() for c in quoted_view.locator("td .cite").all()] == ["1", "2"]
    assert quoted_view.locator(".searched-for q").inner_text() == "overtime pay And at night?"
    for view in (generated, trimmed):
        assert not view.locator(".answer-mode").is_visible()
        assert view.locator(".searched-for").count() == 0
    assert generated.locator(".verified").inner_text() == "Checked against the sources"
    assert trimmed.locator(".verified").inner_text() == "Some sentences removed"
    assert "(2)" in trimmed.locator(".verified").get_attribute("title")
    assert trimmed.locator(".answer thead").count() == 0 and trimmed.locator(".answer tbody tr").count() == 2

    # The citation in the table's cell opens source 2, scrolled to the quoted line, highlighted.
    quoted_view.locator("td .cite[data-cite='2']").click()
    assert marks_in_view(page) == [last_line]
    assert page.evaluate("document.getElementById('passage-body').scrollTop") > 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.click("#passage-close")

    # In Korean, the same marks in Korean.
    page.click(".lang-switch button[data-lang=ko]")
    assert quoted_view.locator(".answer-mode").inner_text() == "매뉴얼 인용"
    assert quoted_view.locator(".searched-for").inner_text().startswith("검색어:")
    assert generated.locator(".verified").inner_text() == "출처와 대조 확인됨"
    assert trimmed.locator(".verified").inner_text() == "일부 문장 제외됨"
    assert not page.errors


def test_quoted_steps_keep_their_numbers_under_a_numbered_section_name(appliance, new_page):
    page = new_page()
    login(page, appliance.url, EMPLOYEE)
    page.wait_for_selector("#examples .example")
    rendered = page.evaluate("""async () => {
      const chat = document.querySelector('script[type=module]').src;
      const { renderAnswer } = await import(chat.replace(/chat\\.js$/, 'answer.js'));
      const cite = { has: () => true, title: () => '', open: () => {} };
      const text = '연차휴가 신청 및 사용 안내 › 2. 연차 발생 기준:\\n연차는 회계연도 기준으로 부여합니다. [1]\\n\\n'
        + '3. 신청 방법:\\n1. HERP HR100에서 근태 유형 "연차"를 선택합니다.\\n2. 사용일을 선택합니다. [2]';
      const box = document.createElement('div');
      box.append(...renderAnswer(text, cite));
      return {
        leads: [...box.querySelectorAll('p.lead')].map(p => p.textContent),
        steps: [...box.querySelectorAll('ol > li')].map(li => [li.value, li.textContent]),
      };
    }""")
    # "3. 신청 방법:" names the section the steps come from; the steps stay 1 and 2.
    assert rendered["leads"] == ["연차휴가 신청 및 사용 안내 › 2. 연차 발생 기준:", "3. 신청 방법:"]
    assert [value for value, _ in rendered["steps"]] == [1, 2]
    assert rendered["steps"][0][1].startswith("HERP HR100")
