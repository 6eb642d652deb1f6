"""Quotas, usage and exports in a real Chromium: the admin console's usage tab (limits per user and
key, CSV downloads), and in the chat a refused question, the user's own usage in the account menu,
and a conversation downloaded as Markdown and JSON, in English and Korean."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.accounts import Conversations

from .conftest import ADMIN, EMPLOYEE, login
from .test_admin import open_tab


def download(page, selector: str) -> tuple[str, str]:
    """Click a download link: (the file name the browser got, its text)."""
    with page.expect_download() as event:
        page.click(selector)
    saved = event.value
    return saved.suggested_filename, Path(saved.path()).read_text(encoding="utf-8-sig")


def test_admins_set_limits_and_export_usage_and_the_audit_log(appliance, new_page):
    jisoo = appliance.user(EMPLOYEE[0])
    appliance.accounts.create_key(jisoo.id, "erp-sync")
    page = new_page()
    login(page, appliance.url, ADMIN, "/admin")
    open_tab(page, appliance.url, "usage")
    defaults = page.locator("#defaults-table tr[data-id=employee]")
    defaults.wait_for()
    assert "60" in defaults.inner_text() and "200,000" in defaults.inner_text()
    row = page.locator("#quota-users-table tr[data-id=jisoo]")
    assert "set" not in row.inner_text()  # the role's defaults

    # A user's limits: one field set, one left to the role's default.
    row.locator("button", has_text="Limits").click()
    assert page.get_attribute("#limit-tokens_per_day", "placeholder") == "Role default: 200,000"
    page.fill("#limit-requests_per_minute", "5")
    page.click("#limits-dialog button[value=ok]")
    page.wait_for_selector(".toast:text('Limits of jisoo saved.')")
    row = page.locator("#quota-users-table tr[data-id=jisoo]")
    assert row.locator("[data-limit=requests_per_minute]").inner_text() == "5"
    assert row.locator(".badge", has_text="set").count() == 1
    quotas = appliance.server.app.state.quotas
    assert quotas.override(("user", jisoo.id)).public() == {"requests_per_minute": 5, "tokens_per_day": None}

    # A key's own limit, and back: an empty field is the default again.
    key_row = page.locator("#quota-keys-table tr[data-id=erp-sync]")
    key_row.locator("button", has_text="Limits").click()
    page.fill("#limit-tokens_per_day", "0")
    page.click("#limits-dialog button[value=ok]")
    page.wait_for_selector("#quota-keys-table tr[data-id=erp-sync] .badge:text('set')")
    assert page.locator("#quota-keys-table tr[data-id=erp-sync] [data-limit=tokens_per_day]").inner_text() == "No limit"
    page.locator("#quota-users-table tr[data-id=jisoo]").locator("button", has_text="Limits").click()
    page.fill("#limit-requests_per_minute", "")
    page.click("#limits-dialog button[value=ok]")
    page.wait_for_selector("#quota-users-table tr[data-id=jisoo] [data-limit=requests_per_minute]:text('60')")

    # CSV downloads for a period: usage, and the audit log with the changes just made.
    page.fill("#export-since", "2026-01-01")
    name, usage = download(page, "#export-usage")
    assert name.startswith("usage-2026-01-01-to-") and usage.startswith("day,username,role,key_id")
    name, audit = download(page, "#export-audit")
    assert name.startswith("audit-2026-01-01-to-") and audit.count("quota_changed") == 3
    assert "usage_exported" in audit

    page.click(".lang-switch [data-lang=ko]")
    page.wait_for_selector("#tab-usage:text('사용량 및 한도')")
    page.wait_for_selector("#quota-users-table tr[data-id=jisoo] button:text('한도')")
    assert not page.errors


def test_a_user_sees_a_refusal_their_usage_and_exports_a_conversation(appliance, new_page):
    jisoo = appliance.user(EMPLOYEE[0])
    conversations = Conversations(appliance.accounts)
    conversation = conversations.create(jisoo.id, "Purchase order approval")
    conversations.append(jisoo.id, conversation["id"], [
        {"role": "user", "content": "How do I get a purchase order approved?"},
        {"role": "assistant", "content": "Through the approval workflow [1].", "response_id": "chatcmpl-7",
         "sources": [{"chunk_id": 1, "document": "purchasing/purchase-order-approval.md",
                      "title": "Purchase order approval"}]}])
    quotas = appliance.server.app.state.quotas
    quotas.set_override("user", jisoo.id, 1, None)
    quotas.admit(jisoo).close()  # this minute's one request is used already

    page = new_page()
    login(page, appliance.url, EMPLOYEE)
    page.wait_for_selector("body[data-model]")
    page.fill("#question", "What is the month-end closing schedule?")
    page.press("#question", "Enter")
    page.wait_for_selector(".message.assistant[data-state=error]")
    refused = page.locator(".message.assistant .answer").last.inner_text()
    assert "limit of requests per minute" in refused and "try again in" in refused

    # The account menu shows what the user used against their limits.
    page.click("#account-button")
    page.wait_for_selector("#my-requests :text('1 of 1')")
    assert "0 of 200,000" in page.inner_text("#my-tokens")
    assert "Tokens reset in" in page.inner_text("#my-usage")
    page.keyboard.press("Escape")

    # Today's tokens used up: the refusal says when they come back, in Korean too.
    quotas.set_override("user", jisoo.id, None, 10)
    ticket = quotas.admit(jisoo, hold=100)
    ticket.count(12)
    ticket.close()
    page.click(".lang-switch [data-lang=ko]")
    page.fill("#question", "월말 결산 일정은?")
    page.press("#question", "Enter")
    page.wait_for_selector(".message.assistant[data-state=error] >> nth=1")
    refused = page.locator(".message.assistant .answer").last.inner_text()
    assert "오늘 사용할 수 있는 토큰을 모두 사용했습니다" in refused and "후에 초기화됩니다" in refused
    page.click("#account-button")
    page.wait_for_selector("#my-usage .eyebrow:text('내 사용량')")
    assert "10 중 12" in page.inner_text("#my-tokens")
    page.keyboard.press("Escape")

    # The conversation, downloaded from the history as Markdown (Korean labels) and as JSON.
    item = page.locator(f"#conversation-list .conversation[data-id='{conversation['id']}']")
    item.locator("button.export").click()
    page.wait_for_selector("#export-dialog")
    name, markdown = download(page, "#export-md")
    assert name == f"Purchase-order-approval-{conversation['id'][:8]}.md"
    assert markdown.startswith("# Purchase order approval\n") and "## 나 · " in markdown
    assert "1. Purchase order approval — purchasing/purchase-order-approval.md" in markdown
    name, body = download(page, "#export-json")
    assert name.endswith(".json")
    assert json.loads(body)["conversation"]["messages"][1]["response_id"] == "chatcmpl-7"
    page.click("#export-dialog button[value=cancel]")
    assert not page.errors
