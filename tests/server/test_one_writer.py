"""One writer per data folder, with real processes: commands run while `appliance serve` holds the
folder act through it (with its local admin token, auth on), and a second server is refused."""

from __future__ import annotations

import getpass

import httpx
import pytest

from appliance.datafolder import local_token
from tests.conftest import ApplianceProcess, free_port

pytestmark = pytest.mark.timeout(600)

NEW_DOC = ("# Forklift inspection\n\nEvery forklift in the Busan warehouse is inspected each "
           "Monday before the first shift; the checklist code is FLK-204.\n")


@pytest.fixture
def appliance(tmp_path, model_path, embedder_dir):
    made = []

    def start() -> ApplianceProcess:
        server = ApplianceProcess(tmp_path / "data", model_path, embedder_dir).start()
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


def test_commands_act_through_the_running_server(appliance, tmp_path):
    server = appliance()
    docs = tmp_path / "new"
    (docs / "ops").mkdir(parents=True)
    (docs / "ops" / "forklift-inspection.md").write_text(NEW_DOC)

    ingested = server.run("ingest", str(docs))
    assert ingested.returncode == 0, ingested.stderr
    assert "1 added, 0 updated, 0 unchanged, 0 failed" in ingested.stdout

    # Searchable at once, through the server's own indexes (no restart, no repair).
    token = local_token(server.data_dir)
    found = httpx.post(f"{server.url}/api/search", json={"query": "forklift inspection checklist",
                                                        "k": 3},
                       headers={"Authorization": f"Bearer {token}"}, timeout=60).json()["results"]
    assert found and found[0]["document"] == "ops/forklift-inspection.md"
    searched = server.run("search", "forklift inspection checklist", "-k", "1")
    assert searched.returncode == 0 and "ops/forklift-inspection.md" in searched.stdout

    created = server.run("users", "create-admin", "--username", "boss", "--password-stdin",
                         stdin="a-long-password-1\n")
    assert created.returncode == 0, created.stderr
    assert "Created admin boss" in created.stdout
    key = server.run("keys", "create", "--user", "boss", "--name", "script")
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip()
    me = httpx.get(f"{server.url}/api/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["user"]["username"] == "boss"
    listed = server.run("users", "list")
    assert "boss" in listed.stdout
    audit = server.run("audit", "--limit", "10")
    assert f"cli:{getpass.getuser()}" in audit.stdout and "key_created" in audit.stdout

    # The token is this server's, from this machine only, and never an API key.
    stale = httpx.get(f"{server.url}/api/admin/users", headers={"Authorization": "Bearer local-nope"})
    assert stale.status_code == 401 and "local admin token" in stale.json()["error"]["message"]

    second = server.run("serve", "--port", str(free_port()))
    assert second.returncode == 2 and "is served by an appliance server" in second.stderr

    server.stop()
    assert "repaired the vector index" not in server.output()
    restarted = appliance()
    assert "repaired the vector index" not in restarted.output()
    again = restarted.run("search", "forklift inspection checklist", "-k", "1")
    assert "ops/forklift-inspection.md" in again.stdout


def test_without_a_server_commands_hold_the_folder_themselves(tmp_path, model_path, embedder_dir):
    data = tmp_path / "data"
    idle = ApplianceProcess(data, model_path, embedder_dir)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "forklift.md").write_text(NEW_DOC)
    ingested = idle.run("ingest", str(docs))
    assert ingested.returncode == 0 and "1 added" in ingested.stdout
    assert not (data / "run" / "holder.json").exists()  # released when it finished
    found = idle.run("search", "forklift checklist", "-k", "1")
    assert "forklift.md" in found.stdout
