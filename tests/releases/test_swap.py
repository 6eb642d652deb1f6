"""Zero-downtime swap through the real server under concurrent streaming load."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from appliance.releases import ReleaseManager
from tests.releases.conftest import follow_activation, write_version

STREAMS = 12


def prepare(settings, tmp_path, files: dict) -> None:
    """Register versions as ready and make the first one active, as an operator would have."""
    for version, gguf in files.items():
        write_version(tmp_path / "models", "erp", version, gguf)
    manager = ReleaseManager(settings)
    manager.registry.scan()
    for version in files:
        manager.registry.set_state("erp", version, "ready")
    first = next(iter(files))
    manager.registry.mark_active("erp", first)
    manager.registry.record("activated", "erp", first, reason="initial")
    manager.close()


def stream_once(client: httpx.Client, url: str) -> dict:
    body = {"model": "default", "stream": True, "max_tokens": 16, "temperature": 0.8,
            "messages": [{"role": "user", "content": "Name one ERP module."}]}
    started = time.monotonic()
    result = {"status": None, "fingerprints": set(), "finish": None, "done": False, "errors": [],
              "started": started}
    try:
        with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as response:
            result["status"] = response.status_code
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    result["done"] = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    result["errors"].append(chunk["error"]["message"])
                    continue
                result["fingerprints"].add(chunk["system_fingerprint"])
                for choice in chunk["choices"]:
                    result["finish"] = choice["finish_reason"] or result["finish"]
    except httpx.HTTPError as exc:
        result["errors"].append(repr(exc))
    return result


@pytest.mark.slow
def test_swap_under_streaming_load_loses_nothing_and_mixes_no_versions(
        tmp_path, release_settings, gguf_files, live_server):
    settings = release_settings(probation_seconds=0)
    prepare(settings, tmp_path, {"v1": gguf_files["q8_0"], "v2": gguf_files["q4_0"]})
    server = live_server(settings)
    server.wait_ready(120)
    assert server.assistant.backend.version == "erp/v1"

    results: list[dict] = []
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                results.append(stream_once(client, server.url))

    threads = [threading.Thread(target=client_loop) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)
        response = httpx.post(f"{server.url}/api/models/erp/v2/activate", json={"reason": "test"}, timeout=60)
        assert response.status_code == 202, response.text  # a background job, answered at once
        body = response.json()
        assert body["job"]["running"] and body["version"]["state"] == "activating"
        # One activation at a time, and no rollback meanwhile: both say what is running.
        again = httpx.post(f"{server.url}/api/models/erp/v1/activate", json={}, timeout=60)
        assert again.status_code == 409 and "erp/v2 is being activated" in again.json()["error"]["message"]
        assert httpx.post(f"{server.url}/api/models/rollback", json={}, timeout=60).status_code == 409
        row, steps = follow_activation(server.url, "erp/v2")
        swapped_at = time.monotonic()
        deadline = time.monotonic() + 120
        while sum(r["started"] > swapped_at for r in results) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:  # the clients stop whatever happened, or they would stream on after the test
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
    job = row["activation"]
    assert job["ok"] is True and row["state"] == "active", job
    assert job["swap"]["previous_version"] == "erp/v1" and job["swap"]["load_seconds"] > 0
    order = ["queued", "starting", "load", "warmup", "switch", "drain"]
    assert steps == sorted(steps, key=order.index) and {"load", "warmup", "drain"} & set(steps), steps

    assert results, "no request completed"
    failed = [r for r in results if r["status"] != 200 or r["errors"] or not r["done"] or not r["finish"]]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:3]}"
    mixed = [r for r in results if len(r["fingerprints"]) != 1]
    assert mixed == [], "a response mixed model versions"
    served = {next(iter(r["fingerprints"])) for r in results}
    assert served == {"erp/v1", "erp/v2"}
    after = [r for r in results if r["started"] > swapped_at]
    assert after and all(r["fingerprints"] == {"erp/v2"} for r in after)
    assert httpx.get(f"{server.url}/v1/models").json()["data"][0]["version"] == "erp/v2"

    listing = httpx.get(f"{server.url}/api/models").json()
    assert listing["active"] == "erp/v2" and listing["serving"] == "erp/v2"
    history = httpx.get(f"{server.url}/api/models/history").json()["history"]
    assert [(e["event"], e["version"], e["previous"], e["actor"]) for e in history[:2]] == [
        ("activated", "v2", "erp/v1", "api:developer"), ("activation_started", "v2", "erp/v1", "api:developer")]
    assert history[0]["detail"]["load_seconds"] > 0 and history[1]["reason"] == "test"


@pytest.mark.slow
def test_cli_activation_and_rollback_wait_for_the_server_job(
        tmp_path, release_settings, gguf_files, live_server, monkeypatch):
    from click.testing import CliRunner

    from appliance.cli import main

    settings = release_settings(probation_seconds=0)
    prepare(settings, tmp_path, {"v1": gguf_files["q8_0"], "v2": gguf_files["q4_0"]})
    server = live_server(settings)
    server.wait_ready(120)
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("APPLIANCE_RELEASES__MODELS_DIR", settings.releases.models_dir)

    result = CliRunner().invoke(main, ["models", "activate", "erp/v2", "--server", server.url,
                                       "--reason", "cli test"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()  # the steps it saw (a small model swaps in a second)
    assert all(line.endswith(" ...") for line in lines[:-1]), lines
    assert lines[-1].startswith("erp/v2 is active and serving (load ") and "drain" in lines[-1]
    assert server.assistant.backend.version == "erp/v2"
    history = httpx.get(f"{server.url}/api/models/history").json()["history"]
    assert (history[0]["event"], history[0]["actor"], history[1]["reason"]) == (
        "activated", "api:developer", "cli test")

    again = CliRunner().invoke(main, ["models", "activate", "erp/v2", "--server", server.url])
    assert again.exit_code == 0 and "erp/v2 is already active and serving." in again.output

    # A rollback is the same kind of background job on the server, and the CLI follows it too.
    back = CliRunner().invoke(main, ["models", "rollback", "--server", server.url, "--reason", "cli rollback"],
                              input="y\n")
    assert back.exit_code == 0, back.output
    assert back.output.startswith("Rollback: erp/v2 -> erp/v1\nRoll back to erp/v1? [y/N]: y\n")
    assert back.output.splitlines()[-1].startswith("erp/v1 is active and serving (load "), back.output
    assert server.assistant.backend.version == "erp/v1"
    [event] = httpx.get(f"{server.url}/api/models/history", params={"limit": 1}).json()["history"]
    assert (event["event"], event["version"], event["previous"], event["reason"]) == (
        "rolled_back", "v1", "erp/v2", "cli rollback")

    # Over the API: 202 with the job at once, 409 for a second one meanwhile, 200 once it serves.
    started = httpx.post(f"{server.url}/api/models/rollback", json={"to": "erp/v2"}, timeout=60)
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["changed"] and body["job"]["running"] and body["job"]["event"] == "rolled_back"
    assert body["version"]["state"] == "activating" and body["version"]["name"] == "erp"
    assert httpx.post(f"{server.url}/api/models/rollback", json={}, timeout=60).status_code == 409
    row, _ = follow_activation(server.url, "erp/v2")
    assert row["activation"]["ok"] is True and row["state"] == "active"
    assert server.assistant.backend.version == "erp/v2"
    same = httpx.post(f"{server.url}/api/models/rollback", json={"to": "erp/v2"}, timeout=60)
    assert same.status_code == 200 and same.json()["changed"] is False
