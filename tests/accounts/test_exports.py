"""Exports from a real accounts.db: a conversation as Markdown and JSON, the audit log and usage as
CSV for a period of days in the configured time zone, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from appliance.accounts import Conversations
from appliance.accounts.exports import (
    AUDIT_COLUMNS,
    Period,
    audit_csv,
    audit_pages,
    content_disposition,
    conversation_json,
    conversation_markdown,
    filename,
    usage_csv,
)
from appliance.errors import InvalidRequest

SEOUL = ZoneInfo("Asia/Seoul")
SOURCES = [{"chunk_id": 7, "document": "purchasing/po.md", "title": "Purchase orders",
            "heading": "Approval limits", "page": 2, "snippet": "..."},
           {"chunk_id": 9, "document": "hr/leave-ko.md", "title": "", "sheet": "Sheet1"}]


@pytest.fixture
def conversation(accounts):
    kim = accounts.create_user("kim", None)
    conversations = Conversations(accounts)
    created = conversations.create(kim.id, "구매 요청 승인")
    conversations.append(kim.id, created["id"], [
        {"role": "user", "content": "How do I get a purchase order approved?"},
        {"role": "assistant", "content": "Through the approval workflow [1].", "sources": SOURCES,
         "response_id": "chatcmpl-1"}])
    conversations.rate(kim.id, "chatcmpl-1", "up")
    return conversations.get(kim.id, created["id"])


def rows(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")  # the byte-order mark: Excel then reads UTF-8 (Korean) right
    return list(csv.reader(io.StringIO(text[1:])))


def test_a_conversation_as_markdown_has_every_turn_its_sources_and_rating(conversation):
    text = conversation_markdown(conversation, username="kim", zone=SEOUL,
                                 now=datetime(2026, 5, 4, 9, 30, tzinfo=SEOUL).timestamp())
    assert text.startswith("# 구매 요청 승인\n")
    assert "- Exported: 2026-05-04 09:30 (Asia/Seoul), by kim" in text
    assert text.index("## You · ") < text.index("How do I get") < text.index("## Assistant · ")
    assert "1. Purchase orders — purchasing/po.md · Approval limits · page 2" in text
    assert "2. hr/leave-ko.md — sheet Sheet1" in text
    assert "*Rating: helpful*" in text
    korean = conversation_markdown(conversation, username="kim", zone=SEOUL, lang="ko")
    assert "## 나 · " in korean and "**출처**" in korean and "도움이 됨" in korean


def test_a_conversation_as_json_keeps_the_api_shape(conversation):
    body = json.loads(conversation_json(conversation, username="kim", zone=SEOUL))
    assert body["format"] == "erp-appliance.conversation" and body["version"] == 1
    assert body["username"] == "kim" and body["exported_at"].endswith("+09:00")
    assert body["conversation"] == json.loads(json.dumps(conversation))
    assert body["conversation"]["messages"][1]["sources"] == SOURCES


def test_download_names_keep_korean_titles_with_an_ascii_fallback():
    fallback, name = filename("구매 요청 / approval?", "0123456789abcdef", "md")
    assert fallback == "approval-01234567.md" and name == "구매-요청-approval-01234567.md"
    header = content_disposition(fallback, name)
    assert header.startswith('attachment; filename="approval-01234567.md"; filename*=UTF-8\'\'')
    assert "%EA%B5%AC" in header  # 구, percent-encoded
    assert filename("???", "abcdef0123", "json") == ("conversation-abcdef01.json",) * 2


def test_periods_are_whole_days_in_the_time_zone():
    period = Period.parse("2026-05-01", "2026-05-03", SEOUL)
    assert period.start_ts == datetime(2026, 5, 1, tzinfo=SEOUL).timestamp()
    assert period.end_ts == datetime(2026, 5, 4, tzinfo=SEOUL).timestamp()
    default = Period.parse(None, None, SEOUL, today=date(2026, 5, 30))
    assert (default.since, default.until) == (date(2026, 5, 1), date(2026, 5, 30))
    with pytest.raises(InvalidRequest, match="YYYY-MM-DD"):
        Period.parse("May 1st", None, SEOUL)
    with pytest.raises(InvalidRequest, match="swap"):
        Period.parse("2026-05-03", "2026-05-01", SEOUL)


def test_the_audit_log_of_a_period_as_csv(accounts):
    def at(day: int, hour: int) -> float:
        return datetime(2026, 5, day, hour, tzinfo=SEOUL).timestamp()

    accounts.audit("root", "before", "x")
    accounts.audit("root", "user_created", "kim", status=201, ip="10.0.0.5", role="employee")
    accounts.audit("=HYPERLINK(\"http://evil\")", "login_failed", "@SUM(1)", status=401)
    accounts.audit("root", "after", "y")
    with accounts.write() as db:  # the times a real log would have had
        for action, ts in (("before", at(1, 23) - 3600 * 24), ("user_created", at(2, 0)),
                           ("login_failed", at(3, 23)), ("after", at(4, 0))):
            db.execute("UPDATE audit SET ts = ? WHERE action = ?", [ts, action])
    period = Period.parse("2026-05-02", "2026-05-03", SEOUL)
    table = rows(audit_csv(accounts, period))
    assert table[0] == list(AUDIT_COLUMNS)
    assert [r[3] for r in table[1:]] == ["user_created", "login_failed"]
    created = table[1]
    assert created[1] == "2026-05-02T00:00:00+09:00" and created[5:7] == ["201", "10.0.0.5"]
    assert json.loads(created[7]) == {"role": "employee"}
    # What someone typed never runs as a spreadsheet formula.
    assert table[2][2] == "'=HYPERLINK(\"http://evil\")" and table[2][4] == "'@SUM(1)"
    assert sum(len(p) for p in audit_pages(accounts, period, page=1)) == 2  # paged by id


def test_usage_as_csv():
    text = usage_csv([{"day": "2026-05-04", "username": "kim", "role": "employee", "key_id": 3,
                       "key_name": "-batch", "key_prefix": "erp-AbCdEf", "requests": 5, "refused": 1,
                       "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}])
    table = rows(text)
    assert table[0][:4] == ["day", "username", "role", "key_id"]
    assert table[1] == ["2026-05-04", "kim", "employee", "3", "'-batch", "erp-AbCdEf", "5", "1", "100",
                        "20", "120"]
