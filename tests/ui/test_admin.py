"""The admin console in a real Chromium: documents and access groups, users and API keys, model
versions, monitoring and the audit log, each against the real appliance."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from appliance.settings import SourceSettings
from tests.knowledge import scans
from tests.releases.conftest import GOLDEN_ITEMS, write_version

from .conftest import ADMIN, CORPUS, EMPLOYEE, OUTSIDER_GROUP, api_session, login

SECRET = (b"# Executive bonus pool\n\nThe executive bonus pool for 2026 is KRW 900,000,000 "
          b"(code BON-77). The CEO approves the executive bonus pool every March.\n")
SECRET_QUESTION = "How large is the executive bonus pool?"
ANSWER_TIMEOUT = 240_000


def open_tab(page, base_url: str, tab: str) -> None:
    page.goto(f"{base_url}/admin#{tab}")
    page.wait_for_selector(f"#tab-{tab}[aria-selected=true]")


def chat_sources(page, question: str) -> list[str]:
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_selector(".message.assistant:not([data-state=streaming])", timeout=ANSWER_TIMEOUT)
    answer = page.locator(".message.assistant").last
    assert answer.get_attribute("data-state") in ("done", "not-found")
    return [s.inner_text() for s in answer.locator(".source").all()]


@pytest.mark.slow
def test_uploaded_document_is_found_by_search_and_never_shown_outside_its_group(appliance,
                                                                                new_page):
    admin = new_page()
    login(admin, appliance.url, ADMIN, "/admin")
    admin.wait_for_selector("#documents-table")
    admin.fill("#upload-groups", OUTSIDER_GROUP)
    admin.set_input_files("#upload-files", files=[
        {"name": "bonus-pool.md", "mimeType": "text/markdown", "buffer": SECRET},
        {"name": "broken.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 not a PDF"},
    ])
    admin.wait_for_selector(".upload[data-name='bonus-pool.md'] .badge[data-status=added]")
    failed = admin.locator(".upload[data-name='broken.pdf']")
    failed.locator(".badge[data-status=failed]").wait_for()
    assert failed.locator(".reason").inner_text()  # says why
    row = admin.locator("#documents-table tr[data-id='bonus-pool.md']")
    row.wait_for()
    assert OUTSIDER_GROUP in row.inner_text()
    assert appliance.knowledge.store.by_source("bonus-pool.md").groups == (OUTSIDER_GROUP,)
    assert appliance.knowledge.store.by_source("broken.pdf") is None

    admin.fill("#search-query", "executive bonus pool BON-77")
    admin.press("#search-query", "Enter")
    admin.wait_for_selector("#search-results .result[data-document='bonus-pool.md']")
    # The question retrieves it for someone in the group...
    admin.goto(f"{appliance.url}/")
    assert any("bonus-pool.md" in s for s in chat_sources(admin, SECRET_QUESTION))

    # ...and an employee outside the group sees it nowhere: list, search or chat sources.
    employee = new_page()
    login(employee, appliance.url, EMPLOYEE)
    client = api_session(employee, appliance.url)
    listed = [d["source"] for d in client.get("/api/documents").json()["documents"]]
    assert listed and "bonus-pool.md" not in listed
    found = client.post("/api/search", json={"query": "executive bonus pool BON-77", "k": 10})
    found = found.json()
    assert "bonus-pool.md" not in [r["document"] for r in found["results"]]
    sources = chat_sources(employee, SECRET_QUESTION)
    assert not any("bonus-pool.md" in s for s in sources)
    assert "900,000,000" not in employee.locator(".message.assistant .answer").last.inner_text()
    employee.goto(f"{appliance.url}/admin#documents")
    employee.wait_for_selector("#forbidden", state="visible")

    # Deleting asks first, then removes it everywhere.
    open_tab(admin, appliance.url, "documents")
    row = admin.locator("#documents-table tr[data-id='bonus-pool.md']")
    row.locator("button").click()
    admin.click("#confirm-dialog button[value=ok]")
    row.wait_for(state="detached")
    assert appliance.knowledge.store.by_source("bonus-pool.md") is None
    assert not admin.errors and not employee.errors


def test_watched_folder_and_scanned_uploads_on_the_documents_tab(appliance_factory, new_page, tmp_path):
    share = tmp_path / "share"
    (share / "policies").mkdir(parents=True)
    (share / "policies" / "remote-work.md").write_text(
        "# Remote work\n\nRemote work days are booked in transaction HR410 a week ahead.\n")
    travel = ["Travel expenses are settled in transaction TE-45 within seven days."]
    (share / "travel-scan.png").write_bytes(scans.image_bytes(scans.page(travel)))
    (share / "broken.pdf").write_bytes(b"%PDF-1.4 cut off in the copy")
    appliance = appliance_factory(knowledge__sources=[
        SourceSettings(name="hr-share", path=str(share), groups=["all"], interval_minutes=0)])
    admin = new_page()
    login(admin, appliance.url, ADMIN, "/admin")
    row = admin.locator("#sources-table tr[data-id='hr-share']")
    row.wait_for()
    assert "Not run yet" in row.inner_text() and "On demand" in row.inner_text()
    assert admin.get_attribute("#ocr-status", "data-available") == "true"

    # Run now: the card follows the run until it ends, with its counts and the failed file.
    row.locator("button", has_text="Run now").click()
    row.locator(".badge.warning", has_text="Done").wait_for()  # done, with a failure
    assert "2 added" in row.locator("[data-counts]").inner_text()
    row.locator("[data-problems] summary").click()
    failed = row.locator("[data-problems] li[data-file='broken.pdf']")
    assert "not a readable pdf file" in failed.inner_text()
    scanned = admin.locator("#documents-table tr[data-id='hr-share/travel-scan.png']")
    scanned.wait_for()  # the document list refreshed when the run ended
    assert int(scanned.locator("[data-ocr]").get_attribute("data-ocr")) >= 80
    assert appliance.knowledge.store.by_source("hr-share/policies/remote-work.md").origin == "hr-share"

    # An upload of a faded scan is added, with the low-confidence page named.
    admin.set_input_files("#upload-files", files=[{
        "name": "faded.png", "mimeType": "image/png",
        "buffer": scans.image_bytes(scans.page(travel, size=28, blur=3.3))}])
    upload = admin.locator(".upload[data-name='faded.png']")
    upload.locator(".badge[data-status=added]").wait_for()
    assert "low OCR confidence" in upload.locator(".warnings").inner_text()
    assert "OCR pages: 1 · lowest confidence" in upload.locator(".detail").inner_text()

    korean = new_page(locale="ko-KR")
    login(korean, appliance.url, ADMIN, "/admin")
    row = korean.locator("#sources-table tr[data-id='hr-share']")
    row.wait_for()
    assert korean.inner_text("#sources h2") == "감시 폴더"
    assert "완료" in row.inner_text() and "추가 2" in row.inner_text() and "요청할 때만" in row.inner_text()
    assert row.locator("button", has_text="지금 실행").count() == 1
    assert "스캔한 PDF와 이미지는 OCR로 읽습니다" in korean.inner_text("#ocr-status")


def test_documents_tab_follows_a_re_chunking_in_both_languages(appliance_factory, new_page):
    # The corpus was cut at the default passage size: with another, every document is re-chunked.
    appliance = appliance_factory(knowledge__chunk_tokens=120)
    kb = appliance.knowledge
    job = kb.begin_rechunk()
    assert job is not None and job.total == len(CORPUS)
    first_done, go_on = threading.Event(), threading.Event()

    def hold_after_the_first(progress):
        if progress.done == 1:
            first_done.set()
            go_on.wait(120)

    worker = threading.Thread(target=job.run, args=(kb,), kwargs={"progress": hold_after_the_first})
    worker.start()
    try:
        assert first_done.wait(120)
        admin = new_page()
        login(admin, appliance.url, ADMIN, "/admin")
        admin.wait_for_selector("#rechunk .rechunk[data-state=running] progress")
        assert f"1 of {len(CORPUS)} documents" in admin.locator("#rechunk").inner_text()
        korean = new_page(locale="ko-KR")
        login(korean, appliance.url, ADMIN, "/admin")
        korean.wait_for_selector("#rechunk .rechunk[data-state=running]")
        assert f"문서 {len(CORPUS)}개 중 1개" in korean.locator("#rechunk").inner_text()
    finally:
        go_on.set()
        worker.join()
    # The tab follows it to the end, then says what changed.
    admin.wait_for_selector("#rechunk .rechunk", state="detached")
    admin.wait_for_selector(f".toast:has-text('{len(CORPUS)} documents')")
    assert not admin.errors and not korean.errors


def test_users_keys_and_audit(appliance, new_page):
    page = new_page()
    login(page, appliance.url, ADMIN, "/admin")
    open_tab(page, appliance.url, "users")
    page.wait_for_selector("#directory-status[data-state=off]")  # no directory: says how to set one
    page.fill("#new-username", "minji")
    page.fill("#new-display-name", "Lee Minji")
    page.fill("#new-password", "first-password-1")
    page.fill("#new-groups", "all, hr")
    page.click("#new-user-form button[type=submit]")
    row = page.locator("#users-table tr[data-id='minji']")
    row.wait_for()
    assert "Lee Minji" in row.inner_text() and "hr" in row.inner_text()

    # Edit: admin role, other groups, disabled.
    row.locator("button", has_text="Edit").click()
    page.select_option("#edit-role", "admin")
    page.fill("#edit-groups", "all, finance")
    page.uncheck("#edit-active")
    page.click("#edit-user-dialog button[value=ok]")
    page.wait_for_selector("#users-table tr[data-id='minji'] :text('Disabled')")
    minji = appliance.user("minji")
    assert minji.role == "admin" and minji.groups == ("all", "finance") and not minji.active
    page.locator("#users-table tr[data-id='minji']").locator("button", has_text="Edit").click()
    page.check("#edit-active")
    page.click("#edit-user-dialog button[value=ok]")
    page.wait_for_selector("#users-table tr[data-id='minji'] :text('Active')")

    # Reset the password: the new one logs in.
    row = page.locator("#users-table tr[data-id='minji']")
    row.locator("button", has_text="Reset password").click()
    page.fill("#prompt-dialog input", "second-password-2")
    page.click("#prompt-dialog button[value=ok]")
    page.wait_for_selector(".toast:text('reset')")
    assert httpx.post(f"{appliance.url}/api/auth/login",
                      json={"username": "minji", "password": "second-password-2"}
                      ).status_code == 200

    # An API key: the secret is shown once, works, and stops working when revoked.
    open_tab(page, appliance.url, "keys")
    page.wait_for_selector("#key-user option", state="attached")
    page.select_option("#key-user", str(minji.id))
    page.fill("#key-name", "erp-integration")
    page.click("#new-key-form button[type=submit]")
    secret = page.inner_text("#secret-value")
    assert secret.startswith("erp-")
    page.click("#copy-secret")
    page.wait_for_selector("#copy-secret:text('Copied')")
    page.click("#secret-dialog button[value=ok]")
    key_row = page.locator("#keys-table tr[data-id='erp-integration']")
    key_row.wait_for()
    assert secret not in page.content()  # never shown again
    bearer = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{appliance.url}/v1/models", headers=bearer).status_code == 200
    key_row.locator("button", has_text="Revoke").click()
    page.click("#confirm-dialog button[value=ok]")
    page.wait_for_selector("#keys-table tr[data-id='erp-integration'] :text('Revoked')")
    assert httpx.get(f"{appliance.url}/v1/models", headers=bearer).status_code == 401

    # Delete the user, then find every step in the audit log.
    open_tab(page, appliance.url, "users")
    page.locator("#users-table tr[data-id='minji']").locator("button", has_text="Delete").click()
    page.click("#confirm-dialog button[value=ok]")
    page.wait_for_selector("#users-table tr[data-id='minji']", state="detached")
    assert appliance.user("minji") is None
    open_tab(page, appliance.url, "audit")
    page.wait_for_selector("#audit-table")
    log = page.inner_text("#audit-table")
    for action in ("user_created", "user_changed", "key_created", "key_revoked", "user_deleted",
                   "login"):
        assert action in log, action
    page.fill("#audit-action", "key_revoked")
    page.press("#audit-action", "Enter")
    # The unfiltered rows stay on screen until the filtered page arrives: wait for it to replace them.
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    assert "key_revoked" in page.inner_text("#audit-table tbody")
    assert not page.errors


@pytest.mark.slow
def test_model_versions_validate_schedule_activate_roll_back_and_monitoring(
        appliance_factory, model_path, tmp_path, new_page):
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(item) + "\n" for item in GOLDEN_ITEMS), encoding="utf-8")
    models = tmp_path / "models"
    write_version(models, "erp-assistant", "1.1.0", Path(model_path))
    appliance = appliance_factory(
        own_model=True, releases__models_dir=str(models), releases__golden_path=str(golden),
        releases__golden_max_tokens=16, releases__golden_latency_ratio=50,
        releases__load_timeout_seconds=120, releases__probation_seconds=0)
    served = appliance.server.assistant.backend.version  # the configured model, as a version
    page = new_page()
    login(page, appliance.url, ADMIN, "/admin")
    open_tab(page, appliance.url, "models")
    base = f"#versions-table tr[data-id='{served}']"
    page.wait_for_selector(base)
    assert "Active" in page.inner_text(base) and "serving requests" in page.inner_text(base)
    assert "model of engine.model_path" in page.inner_text(base)
    # Nothing served before it: the rollback is disabled, and its tooltip says why.
    assert page.locator("#rollback").is_disabled()
    assert page.get_attribute("#rollback-wrap", "title") == (
        f"There is no version to roll back to: {served} is the only version that has served "
        "here, so there is nothing before it to go back to.")

    row = page.locator("#versions-table tr[data-id='erp-assistant/1.1.0']")
    assert "Staged" in row.inner_text() and "Not validated" in row.inner_text()

    row.locator("button", has_text="Validate").click()
    version = "#versions-table tr[data-id='erp-assistant/1.1.0']"
    page.wait_for_selector(f"{version} [data-step]")  # a background job: its steps show as they run
    page.wait_for_selector(f"{version} :text('Ready')", timeout=300_000)
    row = page.locator(version)
    assert "Passed" in row.inner_text() and "golden QA" in row.inner_text()
    assert "serving version, same run" in row.locator("[data-reference]").inner_text()
    # The golden set was answered both ways per language; auto mode serves the better one.
    answers = row.locator("[data-answers='en']").inner_text()
    assert answers.startswith("English: quoted ") and " · generated " in answers and "→ answers" in answers

    # Schedule for the maintenance window, then cancel it.
    row.locator("button", has_text="Schedule").click()
    page.click("#schedule-dialog button[value=ok]")
    page.wait_for_selector("#schedules-table :text('erp-assistant/1.1.0')")
    page.locator("#schedules-table button", has_text="Cancel").click()
    page.wait_for_selector("table#schedules-table", state="detached")

    # Activate now: a background job whose steps show in the row as it runs; then the version
    # serves requests, and the tab says so.
    page.locator(version).locator("button", has_text="Activate").click()
    page.click("#confirm-dialog button[value=ok]")
    page.wait_for_selector(f"{version} [data-activation-step]")
    assert "Activating" in page.inner_text(version)
    page.wait_for_selector(f"{version} :text('serving requests')", timeout=300_000)
    page.wait_for_selector(".toast:text('erp-assistant/1.1.0 is active and serving')")
    assert appliance.server.assistant.backend.version == "erp-assistant/1.1.0"
    assert page.locator(f"{version} [data-activation-step]").count() == 0
    history = page.inner_text("#history-table")
    for event in ("imported", "validation_started", "validated", "scheduled", "activation_started",
                  "activated"):
        assert event in history, event

    # The rollback now names where it goes, in the button and in the confirmation.
    page.wait_for_selector(f"#rollback:text('Roll back to {served}')")
    page.click("#rollback")
    dialog = page.inner_text("#confirm-dialog")
    assert f"Roll back to {served}?" in dialog and "from erp-assistant/1.1.0" in dialog
    page.click("#confirm-dialog button[value=ok]")
    page.wait_for_selector(f"{base} :text('serving requests')", timeout=300_000)
    assert appliance.server.assistant.backend.version == served
    assert "rolled_back" in page.inner_text("#history-table")

    # Monitoring: the requests so far are counted and charted.
    client = api_session(page, appliance.url)
    client.post("/v1/chat/completions", json={"model": "default", "messages": [
        {"role": "user", "content": "How do I get a purchase order approved?"}]}).raise_for_status()
    deadline = time.monotonic() + 30
    while appliance.monitor.store.summary(0)["requests"] < 1:  # recorded just after the response
        assert time.monotonic() < deadline, "the request was not recorded"
        appliance.monitor.collector.flush()
        time.sleep(0.2)
    open_tab(page, appliance.url, "monitoring")
    page.wait_for_selector("#summary .stat")
    assert page.locator("#charts svg.chart").count() == 6
    assert page.locator("#charts [data-metric='latency_seconds'] path.line").count() == 1
    # Over 24 hours, hours and minutes alone would read the same at both ends.
    times = page.locator("#charts [data-metric='latency_seconds'] text.time").all_text_contents()
    assert len(times) == 3 and len(set(times)) == 3, times
    requests = page.locator("#summary .stat >> nth=0").locator(".value").inner_text()
    assert int(requests.replace(",", "")) >= 1
    page.wait_for_selector("#alerts")
    assert not page.errors
    korean = new_page(locale="ko-KR")  # "오전 01:06 · 오후 01:06 · 오전 01:06" before
    login(korean, appliance.url, ADMIN, "/admin")
    open_tab(korean, appliance.url, "monitoring")
    korean.wait_for_selector("#charts [data-metric='latency_seconds'] text.time")
    times = korean.locator("#charts [data-metric='latency_seconds'] text.time").all_text_contents()
    assert len(times) == 3 and len(set(times)) == 3, times
    assert not korean.errors
