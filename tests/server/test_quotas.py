"""Quotas over real HTTP with the real model: exact admission under 16 concurrent streams, the
429 shapes and headers, usage for users and admins, and limits that hold across a restart."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from appliance.accounts import Accounts
from appliance.server.app import create_app
from appliance.settings import Settings
from tests.conftest import LentBackend, LiveServer

CHAT = {"model": "default", "max_tokens": 4, "rag": False,
        "messages": [{"role": "user", "content": "Say hi."}]}
STREAMS = 16


@dataclass
class QuotaServer:
    server: LiveServer
    accounts: Accounts
    admin_key: str

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, method: str, path: str, key: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {key}"},
                             timeout=120, **kwargs)

    def employee(self, name: str, **limits) -> tuple[int, str]:
        """A new employee with a key, and the limits given (through the admin API)."""
        user = self.accounts.create_user(name, None, groups=["all"])
        secret, _ = self.accounts.create_key(user.id, "tests")
        if limits:
            response = self.call("PUT", f"/api/admin/quotas/users/{user.id}", self.admin_key, json=limits)
            assert response.status_code == 200, response.text
        return user.id, secret


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory, shared_backend):
    settings = Settings(data_dir=tmp_path_factory.mktemp("quotas") / "data")
    settings.auth.enabled = True
    settings.monitoring.golden_interval_hours = 0
    settings.releases.probation_golden = False
    settings.knowledge.ingest_sample_on_first_start = False
    settings.quotas.flush_seconds = 0.2
    accounts = Accounts.open(settings)
    root = accounts.create_user("root", None, role="admin")
    admin_key, _ = accounts.create_key(root.id, "tests")
    with LiveServer(create_app(settings, LentBackend(shared_backend))) as server:
        server.wait_ready()
        yield QuotaServer(server, accounts, admin_key)
    accounts.close()


def stream_chat(url: str, key: str) -> tuple[int, dict]:
    """One streamed chat: (200, its usage) or (status, the error body and headers)."""
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=300) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, {**response.json(), "headers": dict(response.headers)}
        usage, done = None, False
        for line in response.iter_lines():
            data = line.removeprefix("data: ").strip()
            if data == "[DONE]":
                done = True
            elif data:
                usage = json.loads(data).get("usage") or usage
        assert done and usage, "the stream did not finish"
        return 200, usage


def from_streams(count: int, send) -> list[tuple[int, dict]]:
    """`send()` called from 16 threads at once, `count` times in all."""
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()
    start = threading.Barrier(STREAMS)
    todo = iter(range(count))

    def worker() -> None:
        start.wait()
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            result = send()
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def own_usage(quota_server: QuotaServer, key: str) -> dict:
    response = quota_server.call("GET", "/api/usage", key)
    assert response.status_code == 200, response.text
    return response.json()


def test_requests_per_minute_from_16_concurrent_streams_is_exact(quota_server):
    user_id, key = quota_server.employee("streamer", requests_per_minute=10)
    results = from_streams(48, lambda: stream_chat(quota_server.url, key))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 10, 429: 38}, statuses
    for status, body in results:
        if status == 429:
            error = body["error"]  # OpenAI's shape, saying which limit
            assert error["type"] == "rate_limit_error" and error["code"] == "requests_per_minute_exceeded"
            assert "requests_per_minute (10)" in error["message"] and error["param"] is None
            assert 1 <= int(body["headers"]["retry-after"]) <= 60
    used = sum(usage["total_tokens"] for status, usage in results if status == 200)
    mine = own_usage(quota_server, key)["user"]
    assert mine["requests_last_minute"] == 10 and mine["requests_left"] == 0
    assert mine["tokens_today"] == used  # every streamed token counted, none twice

    deadline = time.monotonic() + 30  # written behind: in accounts.db within quotas.flush_seconds
    expected = [{"requests": 10, "refused": 38, "tokens": used}]
    while (rows := quota_server.accounts.rows(
            "SELECT requests, refused, prompt_tokens + completion_tokens AS tokens FROM daily_usage "
            "WHERE user_id = ?", [user_id])) != expected:
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)


def test_tokens_per_day_from_16_concurrent_streams_is_exact(quota_server):
    _, key = quota_server.employee("spender", tokens_per_day=200)
    spent = threading.Event()

    def until_spent() -> tuple[int, dict]:
        while not spent.is_set():
            status, body = stream_chat(quota_server.url, key)
            if status == 200:
                return status, body
            assert status == 429 and body["error"]["code"] == "tokens_per_day_exceeded", body
            retry = int(body["headers"]["retry-after"])
            if retry > 2:  # spent for the day, not just held by answers in progress
                spent.set()
                return status, body
            assert "in progress" in body["error"]["message"]
            spent.wait(0.2)  # the client backs off before retrying
        return 0, {}

    results = from_streams(400, until_spent)
    answered = [usage for status, usage in results if status == 200]
    used = sum(usage["total_tokens"] for usage in answered)
    assert spent.is_set() and answered
    mine = own_usage(quota_server, key)["user"]
    assert mine["tokens_today"] == used and mine["tokens_held"] == 0
    # Let in only while below the limit, each holding at most what was left: one request's
    # overshoot at most (the test engine's context: 512 tokens).
    assert 200 <= used < 200 + 512
    refused = quota_server.call("POST", "/v1/chat/completions", key, json=CHAT)
    assert refused.status_code == 429 and "tokens today" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) == pytest.approx(mine["tokens_reset_seconds"], abs=5)


def test_api_errors_have_their_shape_and_answers_carry_rate_limit_headers(quota_server):
    user_id, key = quota_server.employee("searcher", requests_per_minute=2)
    answer = quota_server.call("POST", "/v1/chat/completions", key, json=CHAT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-ratelimit-limit-requests"] == "2"
    assert answer.headers["x-ratelimit-remaining-requests"] == "1"
    assert answer.headers["x-ratelimit-limit-tokens"] == "200000"  # the role's default
    quota_server.call("POST", "/api/search", key, json={"query": "leave"})  # counted, whatever its answer
    search = quota_server.call("POST", "/api/search", key, json={"query": "leave"})
    assert search.status_code == 429 and search.headers["retry-after"]
    assert search.json() == {"error": {"status": 429, "code": "requests_per_minute_exceeded",
                                       "message": search.json()["error"]["message"]}}
    # Unmetered routes stay open past the limit: the model list, history, one's own usage.
    for path in ("/v1/models", "/api/conversations", "/api/usage"):
        assert quota_server.call("GET", path, key).status_code == 200, path


def test_a_keys_own_limit_and_the_callers_view(quota_server):
    user_id, key = quota_server.employee("integrator")
    key_id = quota_server.accounts.keys(user_id)[0].id
    limited = quota_server.call("PUT", f"/api/admin/quotas/keys/{key_id}", quota_server.admin_key,
                                json={"requests_per_minute": 1})
    assert limited.status_code == 200 and limited.json()["limits"] == {"requests_per_minute": 1,
                                                                       "tokens_per_day": 0}
    assert quota_server.call("POST", "/v1/chat/completions", key, json=CHAT).status_code == 200
    refused = quota_server.call("POST", "/v1/chat/completions", key, json=CHAT)
    assert refused.status_code == 429 and "This API key" in refused.json()["error"]["message"]
    view = own_usage(quota_server, key)
    assert view["key"]["limits"]["requests_per_minute"] == 1 and view["key"]["requests_left"] == 0
    assert view["user"]["limits"] == {"requests_per_minute": 60, "tokens_per_day": 200_000}
    assert view["user"]["tokens_today"] > 0 and view["timezone"] == "UTC"

    overview = quota_server.call("GET", "/api/admin/quotas", quota_server.admin_key).json()
    assert overview["defaults"]["employee"] == {"requests_per_minute": 60, "tokens_per_day": 200_000}
    [row] = [k for k in overview["keys"] if k["id"] == key_id]
    assert row["override"] == {"requests_per_minute": 1, "tokens_per_day": None}
    assert row["requests_today"] == 1 and row["refused_today"] == 1 and row["tokens_today"] > 0
    changes = quota_server.accounts.audit_log(action="quota_changed", limit=1)
    assert changes[0]["target"] == "integrator/tests" and changes[0]["detail"]["requests_per_minute"] == 1
    employee = quota_server.call("GET", "/api/admin/quotas", key)
    assert employee.status_code == 403


def test_limits_and_usage_hold_across_a_restart(tmp_path, shared_backend):
    settings = Settings(data_dir=tmp_path / "data")
    settings.auth.enabled = True
    settings.monitoring.golden_interval_hours = 0
    settings.releases.probation_golden = False
    settings.knowledge.ingest_sample_on_first_start = False
    settings.quotas.employee_requests_per_minute = 2
    accounts = Accounts.open(settings)
    kim = accounts.create_user("kim", None)
    key, _ = accounts.create_key(kim.id, "tests")
    accounts.close()
    bearer = {"Authorization": f"Bearer {key}"}

    with LiveServer(create_app(settings, LentBackend(shared_backend))) as server:
        server.wait_ready()
        for _ in range(2):
            assert httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=bearer,
                              timeout=120).status_code == 200
        before = httpx.get(f"{server.url}/api/usage", headers=bearer).json()["user"]
    with LiveServer(create_app(settings, LentBackend(shared_backend))) as server:  # a restart
        server.wait_ready()
        refused = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=bearer, timeout=120)
        assert refused.status_code == 429, refused.text
        after = httpx.get(f"{server.url}/api/usage", headers=bearer).json()["user"]
    assert after["tokens_today"] == before["tokens_today"] > 0
    assert after["requests_last_minute"] == 2
