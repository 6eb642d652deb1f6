"""Exports over real HTTP: a user's conversation as Markdown or JSON; the audit log and usage as
CSV for admins (real SQLite, the real model for the usage it counts)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import httpx
import pytest

from appliance.accounts import Accounts, Conversations
from appliance.server.app import create_app
from appliance.settings import Settings
from tests.conftest import LentBackend, LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_backend):
    settings = Settings(data_dir=tmp_path_factory.mktemp("exports") / "data")
    settings.auth.enabled = True
    settings.monitoring.golden_interval_hours = 0
    settings.releases.probation_golden = False
    settings.knowledge.ingest_sample_on_first_start = False
    accounts = Accounts.open(settings)
    keys = {}
    for name, role in (("root", "admin"), ("kim", "employee"), ("lee", "employee")):
        user = accounts.create_user(name, None, role=role)
        keys[name], _ = accounts.create_key(user.id, "tests")
    with LiveServer(create_app(settings, LentBackend(shared_backend))) as live:
        live.wait_ready()
        live.keys, live.accounts = keys, accounts
        yield live
    accounts.close()


def get(server, path: str, user: str, **params) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=60,
                     headers={"Authorization": f"Bearer {server.keys[user]}"})


def table(response: httpx.Response) -> list[list[str]]:
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_a_user_exports_their_conversation_as_markdown_or_json(server):
    kim = server.accounts.by_name("kim")
    conversations = Conversations(server.accounts)
    conversation = conversations.create(kim.id, "연차 신청 절차")
    conversations.append(kim.id, conversation["id"], [
        {"role": "user", "content": "연차는 어떻게 신청하나요?"},
        {"role": "assistant", "content": "HR 포털에서 신청합니다 [1].", "response_id": "chatcmpl-9",
         "sources": [{"chunk_id": 1, "document": "hr/annual-leave-request-ko.md", "title": "연차 신청"}]}])
    path = f"/api/conversations/{conversation['id']}/export"

    markdown = get(server, path, "kim", lang="ko")
    assert markdown.status_code == 200 and markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    text = markdown.text
    assert text.startswith("# 연차 신청 절차\n") and "## 나 · " in text and "1. 연차 신청 — hr/annual-leave-request-ko.md" in text
    disposition = markdown.headers["content-disposition"]
    assert f'filename="conversation-{conversation["id"][:8]}.md"' in disposition
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == f"연차-신청-절차-{conversation['id'][:8]}.md"

    as_json = get(server, path, "kim", format="json")
    assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
    body = as_json.json()
    assert body["username"] == "kim" and body["conversation"]["messages"][1]["response_id"] == "chatcmpl-9"

    assert get(server, path, "lee").status_code == 404  # another user's is not there for them
    wrong = get(server, path, "kim", format="pdf")
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_request"


def test_admins_export_the_audit_log_of_a_period_as_csv(server):
    today = datetime.now(timezone.utc).date()
    server.accounts.audit("root", "user_created", "=cmd|' /C calc'!A0", status=201)
    response = get(server, "/api/admin/audit/export", "root", since=str(today - timedelta(days=1)),
                   until=str(today))
    assert response.status_code == 200, response.text
    rows = table(response)
    assert rows[0] == ["id", "time", "actor", "action", "target", "status", "ip", "detail"]
    assert ["root", "user_created", "'=cmd|' /C calc'!A0", "201"] in [r[2:6] for r in rows]
    assert f"audit-{today - timedelta(days=1)}-to-{today}.csv" in response.headers["content-disposition"]
    recorded = server.accounts.audit_log(action="audit_exported", limit=1)
    assert recorded and recorded[0]["actor"] == "root"  # exporting the log is itself on record

    before = get(server, "/api/admin/audit/export", "root", since="2001-01-01", until="2001-01-31")
    assert table(before)[1:] == []
    assert get(server, "/api/admin/audit/export", "kim").status_code == 403
    bad = get(server, "/api/admin/audit/export", "root", since="01/05/2026")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.json()["error"]["message"]


def test_admins_export_usage_as_csv(server):
    chat = {"model": "default", "max_tokens": 4, "rag": False, "messages": [{"role": "user", "content": "Hi"}]}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=120,
                        headers={"Authorization": f"Bearer {server.keys['lee']}"})
    assert answer.status_code == 200, answer.text
    response = get(server, "/api/admin/usage/export", "root")
    assert response.status_code == 200
    rows = table(response)
    [lee] = [r for r in rows[1:] if r[1] == "lee"]
    assert lee[4] == "tests" and lee[6] == "1"  # the key's name, one request
    assert int(lee[-1]) == answer.json()["usage"]["total_tokens"]
    shown = get(server, "/api/admin/usage", "root").json()
    assert [r["total_tokens"] for r in shown["rows"] if r["username"] == "lee"] == [int(lee[-1])]
    assert server.accounts.audit_log(action="usage_exported", limit=1)
    assert json.loads(json.dumps(shown))["timezone"] == "UTC"
