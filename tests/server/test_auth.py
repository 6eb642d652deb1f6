"""Authentication over real HTTP: every /v1 and /api route needs credentials, admin routes the admin
role; sessions, CSRF, throttling, revocation and the audit log (real model, real SQLite)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from click.testing import CliRunner
from litestar.datastructures import State

from appliance.accounts import Accounts
from appliance.cli import main
from appliance.server.app import create_app, open_accounts
from appliance.server.auth import admin_only, needs_credentials
from appliance.settings import Settings
from tests.conftest import LiveServer

PASSWORD = "correct horse battery"
OPEN_API_ROUTES = {("POST", "/api/auth/login")}


@dataclass
class AuthServer:
    server: LiveServer
    accounts: Accounts
    admin_key: str
    employee_key: str
    robot_key: str

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(method, self.url + path, headers=headers, timeout=120, **kwargs)

    @contextmanager
    def session(self, username: str, password: str = PASSWORD) -> Iterator[tuple[httpx.Client, dict]]:
        """A browser-like client signed in as `username`, and the login response."""
        with httpx.Client(base_url=self.url, timeout=120) as client:
            response = client.post("/api/auth/login", json={"username": username, "password": password})
            assert response.status_code == 200, response.text
            yield client, response.json()


@pytest.fixture(scope="module")
def auth(tmp_path_factory, shared_backend):
    settings = Settings(data_dir=tmp_path_factory.mktemp("auth") / "data")
    settings.auth.enabled = True  # on, as it is by default outside the test suite
    settings.auth.login_max_failures = 3
    settings.monitoring.flush_seconds = 0.1
    settings.monitoring.golden_interval_hours = 0
    settings.releases.probation_golden = False
    accounts = Accounts.open(settings)  # a second connection to the server's accounts.db
    root = accounts.create_user("root", PASSWORD, role="admin", display_name="Root")
    alice = accounts.create_user("alice", PASSWORD, groups=["all"])
    robot = accounts.create_user("robot", None, groups=["all"])
    keys = [accounts.create_key(user.id, "tests")[0] for user in (root, alice, robot)]
    with LiveServer(create_app(settings, shared_backend)) as server:
        server.wait_ready()
        yield AuthServer(server, accounts, *keys)
    accounts.close()


def api_routes(app) -> list[tuple[str, str, object]]:
    """(method, concrete path, handler) for every /v1 and /api route: a new route cannot be missed."""
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                if not route.path.startswith(("/v1/", "/api/")) or (method, route.path) in OPEN_API_ROUTES:
                    continue
                path = re.sub(r"\{\w+:int\}", "1", route.path)
                found.append((method, re.sub(r"\{\w+:str\}", "x", path), handler))
    assert len(found) > 40
    return found


def is_admin_route(handler) -> bool:
    return admin_only in handler.resolve_guards()


def test_every_api_route_needs_credentials(auth):
    for method, path, _ in api_routes(auth.server.app):
        for headers in ({}, {"Authorization": "Bearer erp-made-up"}, {"Cookie": "appliance_session=forged"}):
            response = auth.call(method, path, json={}, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            error = response.json()["error"]
            if path.startswith("/v1/"):
                assert error["type"] == "authentication_error" and "API key" in error["message"]
            else:
                assert error["code"] == "authentication_required"


def test_open_routes_stay_open(auth):
    for path in ("/health", "/ready", "/schema/openapi.json", "/metrics"):
        assert auth.call("GET", path).status_code == 200, path
    # A stale key sent to an open page is ignored rather than refused.
    assert auth.call("GET", "/health", headers={"Authorization": "Bearer erp-stale"}).status_code == 200
    assert auth.call("POST", "/api/auth/login", json={"username": "root", "password": PASSWORD}).status_code == 200


def test_the_openapi_document_says_how_to_authenticate_and_where_not_to(auth):
    schema = auth.call("GET", "/schema/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie",
                                  "name": "appliance_session"}
    assert schema["security"] == [{"apiKey": []}, {"session": []}]  # the default of every operation
    settings = auth.server.app.state.settings
    seen = set()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            seen.add((method.upper(), path))
            security = operation.get("security", schema["security"])
            if path == "/metrics":  # open unless auth.protect_metrics
                assert security == [{}, {"apiKey": []}, {"session": []}]
            elif needs_credentials(path, settings):
                assert security == schema["security"], (method, path)
            else:
                assert security == [], (method, path)
    assert {("GET", "/health"), ("GET", "/ready"), ("POST", "/api/auth/login")} <= seen
    # What the document describes works as described: the bearer scheme, and the cookie it names.
    assert auth.call("GET", "/v1/models", headers={"Authorization": f"Bearer {auth.employee_key}"}
                     ).status_code == 200
    with auth.session("alice") as (client, _):
        assert schemes["session"]["name"] in client.cookies
        assert client.get("/v1/models").status_code == 200


def test_employees_get_403_on_every_admin_route(auth):
    routes = api_routes(auth.server.app)
    admin_routes = [(m, p) for m, p, h in routes if is_admin_route(h)]
    assert {("GET", "/api/admin/users"), ("POST", "/api/documents"), ("GET", "/api/status"),
            ("POST", "/api/models/import"), ("GET", "/api/metrics/summary")} <= set(admin_routes)
    for method, path in admin_routes:
        response = auth.call(method, path, auth.employee_key, json={})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "permission_denied"
    for method, path, handler in routes:  # and every other route lets employees through
        if not is_admin_route(handler):
            response = auth.call(method, path, auth.employee_key, json={})
            assert response.status_code not in (401, 403), (method, path, response.text)
    denied = auth.accounts.audit_log(actor="alice", action="user_created")
    assert denied and denied[0]["status"] == 403  # refused admin attempts are on record too


def test_admins_reach_admin_routes(auth):
    users = auth.call("GET", "/api/admin/users", auth.admin_key)
    assert users.status_code == 200
    assert {"root", "alice", "robot"} <= {u["username"] for u in users.json()["users"]}
    assert auth.call("GET", "/api/status", auth.admin_key).status_code == 200
    assert auth.call("GET", "/api/models", auth.admin_key).status_code == 200


def test_revoked_keys_and_disabled_users_are_rejected(auth):
    user = auth.call("POST", "/api/admin/users", auth.admin_key,
                     json={"username": "temp", "groups": ["all"]}).json()
    created = auth.call("POST", "/api/admin/keys", auth.admin_key, json={"user_id": user["id"], "name": "ci"})
    assert created.status_code == 201
    secret = created.json()["key"]
    assert "Copy the key now" in created.json()["notice"]
    assert auth.call("GET", "/v1/models", secret).status_code == 200
    listed = auth.call("GET", "/api/admin/keys", auth.admin_key, params={"user_id": user["id"]}).json()
    assert secret not in str(listed) and listed["keys"][0]["prefix"] == secret[:10]
    revoked = auth.call("DELETE", f"/api/admin/keys/{created.json()['id']}", auth.admin_key)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    refused = auth.call("GET", "/v1/models", secret)
    assert refused.status_code == 401 and "unknown or revoked" in refused.json()["error"]["message"]

    second = auth.call("POST", "/api/admin/keys", auth.admin_key,
                       json={"user_id": user["id"], "name": "ci2"}).json()["key"]
    assert auth.call("PATCH", f"/api/admin/users/{user['id']}", auth.admin_key,
                     json={"active": False}).status_code == 200
    assert auth.call("GET", "/v1/models", second).status_code == 401


def test_login_session_cookie_csrf_and_logout(auth):
    with httpx.Client(base_url=auth.url, timeout=120) as client:
        login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200
        body = login.json()
        assert body["user"]["username"] == "alice" and body["user"]["role"] == "employee"
        assert body["auth_enabled"] is True and body["csrf_token"]
        cookie = login.headers["set-cookie"]
        assert cookie.startswith("appliance_session=") and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie or "samesite=strict" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain HTTP here; `auto` marks it Secure on HTTPS

        me = client.get("/api/auth/me").json()
        assert me["user"]["username"] == "alice" and me["csrf_token"] == body["csrf_token"]

        missing = client.post("/api/conversations", json={"title": "t"})
        assert missing.status_code == 403 and "CSRF" in missing.json()["error"]["message"]
        wrong = client.post("/api/conversations", json={"title": "t"}, headers={"X-CSRF-Token": "nope"})
        assert wrong.status_code == 403
        csrf = {"X-CSRF-Token": body["csrf_token"]}
        assert client.post("/api/conversations", json={"title": "t"}, headers=csrf).status_code == 201

        assert client.post("/api/auth/logout", headers=csrf).status_code == 200
        assert client.get("/api/auth/me").status_code == 401
    assert [e["action"] for e in auth.accounts.audit_log(actor="alice", limit=2)] == ["logout", "login"]


def test_expired_sessions_are_rejected(auth):
    with auth.session("alice") as (client, _):
        assert client.get("/api/auth/me").status_code == 200
        # Idle past auth.session_hours: move the session's last activity back instead of waiting.
        with auth.accounts.write() as db:
            db.execute("UPDATE sessions SET last_seen_at = last_seen_at - ?", [auth.accounts.lifetime + 5])
        assert client.get("/api/auth/me").status_code == 401
        assert client.get("/v1/models").status_code == 401


def test_failed_logins_are_throttled_with_retry_after(auth):
    auth.accounts.create_user("victim", PASSWORD)
    for _ in range(3):
        wrong = auth.call("POST", "/api/auth/login", json={"username": "victim", "password": "guess"})
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Wrong user name or password."
    refused = auth.call("POST", "/api/auth/login", json={"username": "victim", "password": PASSWORD})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"]["code"] == "too_many_logins"
    failures = auth.accounts.audit_log(action="login_failed", actor="victim")
    assert [e["status"] for e in failures] == [429, 401, 401, 401]


def test_admin_actions_are_audited_with_what_they_touched(auth):
    created = auth.call("POST", "/api/admin/users", auth.admin_key,
                        json={"username": "carol", "password": PASSWORD, "groups": ["finance"]})
    assert created.status_code == 201
    duplicate = auth.call("POST", "/api/admin/users", auth.admin_key, json={"username": "carol"})
    assert duplicate.status_code == 409
    user_id = created.json()["id"]
    assert auth.call("PATCH", f"/api/admin/users/{user_id}", auth.admin_key,
                     json={"groups": ["finance", "hr"], "password": "another long password"}).status_code == 200
    key = auth.call("POST", "/api/admin/keys", auth.admin_key, json={"user_id": user_id, "name": "erp"}).json()
    auth.call("DELETE", f"/api/admin/keys/{key['id']}", auth.admin_key)
    assert auth.call("DELETE", f"/api/admin/users/{user_id}", auth.admin_key).status_code == 200

    entries = auth.call("GET", "/api/admin/audit", auth.admin_key, params={"actor": "root", "limit": 6}).json()["entries"]
    by_action = [(e["action"], e["target"], e["status"]) for e in entries]
    assert by_action[:6] == [("user_deleted", "carol", 200), ("key_revoked", "carol/erp", 200),
                             ("key_created", "carol/erp", 201), ("user_changed", "carol", 200),
                             ("user_created", "carol", 409), ("user_created", "carol", 201)]
    changed = entries[3]["detail"]
    assert changed["groups"] == ["finance", "hr"] and changed["password_reset"] is True
    assert "another long password" not in str(entries)
    assert entries[0]["detail"]["via"] == "key" and entries[0]["ip"] == "127.0.0.1"
    employee_view = auth.call("GET", "/api/admin/audit", auth.employee_key)
    assert employee_view.status_code == 403


def test_admins_cannot_lock_themselves_out(auth):
    root = auth.accounts.by_name("root")
    for change in ({"active": False}, {"role": "employee"}):
        response = auth.call("PATCH", f"/api/admin/users/{root.id}", auth.admin_key, json=change)
        assert response.status_code == 400 and "themselves" in response.json()["error"]["message"]
    assert auth.call("DELETE", f"/api/admin/users/{root.id}", auth.admin_key).status_code == 400
    assert auth.accounts.by_name("root").is_admin


def test_conversations_are_private(auth):
    with auth.session("alice") as (client, body):
        csrf = {"X-CSRF-Token": body["csrf_token"]}
        created = client.post("/api/conversations", json={"title": "Leave"}, headers=csrf).json()
        assert set(created) == {"id", "title", "created_at", "updated_at", "messages"}
        path = f"/api/conversations/{created['id']}"
        sources = [{"chunk_id": 3, "document": "hr/leave.md", "title": "Leave", "snippet": "..."}]
        appended = client.post(path + "/messages", headers=csrf, json={"messages": [
            {"role": "user", "content": "How do I request leave?"},
            {"role": "assistant", "content": "Through the HR portal [1].", "sources": sources,
             "response_id": "chatcmpl-x", "answer_mode": "extractive", "support": 0.5,
             "retrieval_query": "leave request"}]})
        assert appended.status_code == 200, appended.text
        message = appended.json()["messages"][1]
        assert set(message) == {"id", "role", "content", "sources", "response_id", "rating", "answer_mode",
                                "support", "removed", "retrieval_query", "created_at"}
        assert message["sources"] == sources
        assert (message["answer_mode"], message["support"], message["retrieval_query"]) == \
            ("extractive", 0.5, "leave request")
        unknown = client.post(path + "/messages", headers=csrf, json={"messages": [
            {"role": "assistant", "content": "x", "answer_mode": "guessed"}]})
        assert unknown.status_code == 400 and "answer_mode" in unknown.text
        assert client.patch(path, json={"title": "Annual leave"}, headers=csrf).json()["title"] == "Annual leave"
        listed = client.get("/api/conversations").json()["conversations"]
        assert listed[0]["id"] == created["id"] and listed[0]["message_count"] == 2  # latest first
        assert listed[0]["title"] == "Annual leave"

        # Another user (here through an API key) cannot tell it exists.
        for method, extra in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/messages")):
            json = {"title": "x"} if method == "PATCH" else {"messages": [{"role": "user", "content": "x"}]}
            response = auth.call(method, path + extra, auth.robot_key, json=json)
            assert response.status_code == 404, (method, response.text)
        assert created["id"] not in str(auth.call("GET", "/api/conversations", auth.robot_key).json())

        assert client.delete(path, headers=csrf).status_code == 200
        assert client.get(path).status_code == 404
        bad = client.post("/api/conversations/nope/messages", headers=csrf,
                          json={"messages": [{"role": "system", "content": "x"}]})
        assert bad.status_code == 400


def test_feedback_only_for_answers_the_caller_got(auth):
    chat = {"model": "default", "max_tokens": 4, "rag": False,
            "messages": [{"role": "user", "content": "Say hi."}]}
    answer = auth.call("POST", "/v1/chat/completions", auth.employee_key, json=chat).json()
    theirs = auth.call("POST", "/api/feedback", auth.robot_key,
                       json={"response_id": answer["id"], "rating": "up"})
    assert theirs.status_code == 404 and "given to you" in theirs.json()["error"]["message"]
    mine = auth.call("POST", "/api/feedback", auth.employee_key,
                     json={"response_id": answer["id"], "rating": "down", "comment": "too short"})
    assert mine.status_code == 201, mine.text
    assert mine.json()["username"] == "alice" and mine.json()["user_id"] == auth.accounts.by_name("alice").id

    # Rated from the UI: the rating lands on the saved message too.
    with auth.session("alice") as (client, body):
        csrf = {"X-CSRF-Token": body["csrf_token"]}
        conversation = client.post("/api/conversations", json={}, headers=csrf).json()
        path = f"/api/conversations/{conversation['id']}"
        client.post(path + "/messages", headers=csrf, json={"messages": [
            {"role": "assistant", "content": answer["choices"][0]["message"]["content"],
             "response_id": answer["id"]}]})
        assert client.post("/api/feedback", headers=csrf,
                           json={"response_id": answer["id"], "rating": "up"}).status_code == 201
        assert client.get(path).json()["messages"][0]["rating"] == "up"


def test_groups_cannot_be_widened_by_the_caller(auth):
    chat = {"model": "default", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    wider = auth.call("POST", "/v1/chat/completions", auth.employee_key, json={**chat, "groups": ["executives"]})
    assert wider.status_code == 403
    error = wider.json()["error"]
    assert error["type"] == "permission_error" and "executives" in error["message"]
    header = auth.call("POST", "/v1/chat/completions", auth.employee_key, json=chat,
                       headers={"X-Appliance-Groups": "all,executives"})
    assert header.status_code == 403
    narrower = auth.call("POST", "/v1/chat/completions", auth.employee_key, json=chat,
                         headers={"X-Appliance-Groups": "all"})
    assert narrower.status_code == 200


def test_password_change_renews_the_session(auth):
    auth.accounts.create_user("dave", PASSWORD)
    with auth.session("dave") as (other, _), auth.session("dave") as (client, body):
        wrong = client.post("/api/auth/password", headers={"X-CSRF-Token": body["csrf_token"]},
                            json={"current_password": "nope", "new_password": "a new long password"})
        assert wrong.status_code == 403
        changed = client.post("/api/auth/password", headers={"X-CSRF-Token": body["csrf_token"]},
                              json={"current_password": PASSWORD, "new_password": "a new long password"})
        assert changed.status_code == 200 and changed.json()["changed"] is True
        assert changed.json()["csrf_token"] != body["csrf_token"]
        assert client.get("/api/auth/me").status_code == 200  # the new cookie
        assert other.get("/api/auth/me").status_code == 401  # every other session ended


def test_users_manage_their_own_keys(auth):
    created = auth.call("POST", "/api/auth/keys", auth.employee_key, json={"name": "my script"})
    assert created.status_code == 201
    secret, key_id = created.json()["key"], created.json()["id"]
    assert auth.call("GET", "/api/auth/me", secret).json()["user"]["username"] == "alice"
    mine = auth.call("GET", "/api/auth/keys", auth.employee_key).json()["keys"]
    assert key_id in [k["id"] for k in mine] and all(k["username"] == "alice" for k in mine)
    assert auth.call("DELETE", f"/api/auth/keys/{key_id}", auth.robot_key).status_code == 404
    assert auth.call("DELETE", f"/api/auth/keys/{key_id}", auth.employee_key).status_code == 200
    assert auth.call("GET", "/api/auth/me", secret).status_code == 401


def test_protected_metrics_need_an_admin(auth):
    settings = auth.server.app.state.settings
    settings.auth.protect_metrics = True
    try:
        assert auth.call("GET", "/metrics").status_code == 401
        assert auth.call("GET", "/metrics", auth.employee_key).status_code == 403
        assert auth.call("GET", "/metrics", auth.admin_key).status_code == 200
    finally:
        settings.auth.protect_metrics = False


def test_model_commands_use_an_admin_key_against_a_running_server(auth, tmp_path):
    def models(*args, **env):
        return CliRunner().invoke(main, ["models", "rollback", "--server", auth.url, *args], env=env)

    refused = models()
    assert refused.exit_code == 2 and "--api-key" in refused.output and "APPLIANCE_API_KEY" in refused.output
    employee = models("--api-key", auth.employee_key)
    assert employee.exit_code == 2 and "admin role" in employee.output
    admin = models(APPLIANCE_API_KEY=auth.admin_key)  # authenticated: the server's own answer
    assert admin.exit_code == 2 and "There is no version to roll back to" in admin.output


def test_with_auth_off_everyone_is_the_local_developer(live_server, app_settings, shared_backend):
    server = live_server(app_settings(), shared_backend)
    me = httpx.get(f"{server.url}/api/auth/me")
    assert me.status_code == 200
    body = me.json()
    assert body["auth_enabled"] is False and body["user"]["username"] == "developer"
    assert body["user"]["role"] == "admin" and body["user"]["via"] == "open"
    assert httpx.get(f"{server.url}/api/admin/users").status_code == 200
    conversation = httpx.post(f"{server.url}/api/conversations", json={"title": "dev"})
    assert conversation.status_code == 201
    refused = httpx.post(f"{server.url}/api/auth/keys", json={"name": "k"})
    assert refused.status_code == 400 and "Auth is off" in refused.json()["error"]["message"]


def test_start_without_an_admin_says_how_to_create_one(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path)
    settings.auth.enabled = True
    with caplog.at_level(logging.WARNING, logger="appliance.server.app"):
        open_accounts(settings, State()).close()
    [line] = [r.getMessage() for r in caplog.records if "admin" in r.getMessage()]
    assert "appliance users create-admin" in line


def test_the_server_prunes_old_audit_entries_and_sessions_past_their_lifetime(
        live_server, app_settings, shared_backend, monkeypatch):
    from appliance.server import app as server_app

    monkeypatch.setattr(server_app, "HOUSEKEEPING_SECONDS", 0.2)
    settings = app_settings()
    settings.auth.enabled = True
    settings.auth.audit_retention_days = 30
    server = live_server(settings, shared_backend)
    accounts = server.app.state.accounts
    accounts.create_user("alice", PASSWORD)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 200
        assert client.get("/api/auth/me").status_code == 200
        now = time.time()
        with accounts.write() as db:  # signed in eight days ago, active all along; an old entry
            db.execute("UPDATE sessions SET created_at = ?, last_seen_at = ?", [now - 8 * 86400, now])
            db.execute("UPDATE audit SET ts = ? WHERE action = 'login'", [now - 400 * 86400])
        deadline = time.monotonic() + 30
        while accounts.rows("SELECT count(*) AS n FROM sessions")[0]["n"]:
            assert time.monotonic() < deadline, "the session past auth.session_max_hours stayed"
            time.sleep(0.1)
        while accounts.audit_log(action="login"):
            assert time.monotonic() < deadline, "the audit entry past its retention stayed"
            time.sleep(0.1)
        assert client.get("/api/auth/me").status_code == 401  # nobody had to touch it first
    pruned = accounts.audit_log(action="audit_pruned")
    assert pruned and pruned[0]["detail"]["retention_days"] == 30
