"""Directory sign-in over real HTTP: the login endpoint, the admin's directory status, the
periodic check cutting a disabled user's session in the running server, and a directory outage
(503) beside a local admin who still signs in (real slapd, real model, real SQLite)."""

from __future__ import annotations

import time

import httpx
import pytest

from appliance.accounts import Accounts
from appliance.server.app import create_app
from appliance.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.slapd import PEOPLE_ENTRIES, directory_settings

PASSWORD = "correct horse battery"


def start(tmp_path, backend, directory) -> tuple[LiveServer, Accounts, str]:
    settings = Settings(data_dir=tmp_path / "data")
    settings.auth.enabled = True
    settings.auth.directory = directory
    settings.monitoring.enabled = False
    settings.releases.probation_golden = False
    accounts = Accounts.open(settings)  # a second connection to the server's accounts.db
    root = accounts.create_user("root", PASSWORD, role="admin")
    key = accounts.create_key(root.id, "tests")[0]
    server = LiveServer(create_app(settings, backend)).__enter__()
    return server, accounts, key


@pytest.fixture
def appliance(tmp_path, shared_backend, slapd):
    started = []

    def make(**directory_changes):
        found = start(tmp_path / str(len(started)), shared_backend,
                      directory_settings(slapd, **directory_changes))
        started.append(found)
        return found

    yield make
    for server, accounts, _ in started:
        server.__exit__(None, None, None)
        accounts.close()


def login(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/auth/login", json={"username": username, "password": password},
                      timeout=60)


def test_a_directory_user_signs_in_and_the_admin_sees_the_directory(appliance):
    server, _, key = appliance()
    answer = login(server.url, "alice", PEOPLE_ENTRIES["alice"][0])
    assert answer.status_code == 200, answer.text
    user = answer.json()["user"]
    assert user["source"] == "directory" and user["role"] == "admin" and not user["has_password"]

    admin = {"Authorization": f"Bearer {key}"}
    status = httpx.get(f"{server.url}/api/admin/directory", headers=admin, timeout=60).json()
    assert status["configured"] and status["reachable"] and status["method"] == "recursive"
    assert status["last_success_at"] is not None
    listed = httpx.get(f"{server.url}/api/admin/users", headers=admin, timeout=60).json()["users"]
    assert {u["username"]: u["source"] for u in listed} == {"alice": "directory", "root": "local"}

    refused = httpx.patch(f"{server.url}/api/admin/users/{user['id']}", headers=admin, timeout=60,
                          json={"password": "a-new-password-1"})
    assert refused.status_code == 400 and "directory" in refused.json()["error"]["message"]
    assert login(server.url, "alice", "").status_code == 400  # empty: refused at the edge too


def test_the_running_server_cuts_a_disabled_users_session(appliance, slapd):
    uid, password = "periodic", "periodic-password-1"
    dn = slapd.add_person(uid, password, groups=("staff",))
    server, _, _ = appliance(check_minutes=0.01)  # every 0.6 s
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/api/auth/login", json={"username": uid, "password": password}).status_code == 200
        assert client.get("/api/auth/me").status_code == 200
        slapd.set_attribute(dn, "employeeType", ["disabled"])
        deadline = time.monotonic() + 30
        while client.get("/api/auth/me").status_code != 401:
            assert time.monotonic() < deadline, "the session outlived the periodic check"
            time.sleep(0.1)


def test_a_directory_outage_is_a_503_and_the_local_admin_still_signs_in(appliance):
    server, accounts, _ = appliance(url=f"ldaps://127.0.0.1:{free_port()}", connect_timeout_seconds=1)
    down = login(server.url, "alice", PEOPLE_ENTRIES["alice"][0])
    assert down.status_code == 503
    error = down.json()["error"]
    assert error["code"] == "directory_unavailable" and "local accounts" in error["message"]
    assert login(server.url, "root", PASSWORD).status_code == 200
    [entry] = accounts.audit_log(action="login_failed")
    assert entry["target"] == "alice" and entry["detail"]["reason"] == "directory_unavailable"
