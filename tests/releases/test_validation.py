"""The validation gate on real GGUFs: good, corrupt, truncated, hung and degraded versions."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from click.testing import CliRunner

from appliance import manifest as manifests
from appliance.cli import main
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.releases import ReleaseManager
from tests.releases.conftest import GOLDEN_ITEMS, write_version


def validate(settings, ref):
    manager = ReleaseManager(settings)
    manager.registry.scan()
    try:
        return asyncio.run(manager.validate(ref)), manager.history()
    finally:
        manager.close()


@pytest.mark.slow
def test_good_version_passes_with_its_golden_score(tmp_path, release_settings, gguf_files):
    settings = release_settings()
    write_version(tmp_path / "models", "erp", "good", gguf_files["q8_0"])
    record, history = validate(settings, "erp/good")
    assert record.state == "ready", record.reason
    checks = record.validation["checks"]
    assert checks["checksums"]["ok"] and checks["isolated_load"]["ok"]
    assert checks["golden"]["score"] > 0.3 and checks["golden"]["items"] == 3
    assert history[0]["event"] == "validated"


def test_changed_byte_after_import_is_rejected(tmp_path, release_settings, gguf_files):
    settings = release_settings()
    folder = write_version(tmp_path / "models", "erp", "flipped", gguf_files["q8_0"], copy=True)
    with (folder / "model.gguf").open("r+b") as fh:
        fh.seek(5_000_000)
        byte = fh.read(1)
        fh.seek(5_000_000)
        fh.write(bytes([byte[0] ^ 0x01]))
    record, history = validate(settings, "erp/flipped")
    assert record.state == "failed"
    assert record.reason.startswith("Checksum check failed") and "model.gguf does not match its sha256" in record.reason
    assert (history[0]["event"], history[0]["reason"]) == ("validation_failed", record.reason)


@pytest.mark.slow
def test_truncated_gguf_fails_to_load_in_isolation(tmp_path, release_settings, gguf_files):
    """The build wrote a cut-off GGUF (its manifest matches): the child process fails, not us."""
    settings = release_settings()
    folder = tmp_path / "models" / "erp" / "cut"
    folder.mkdir(parents=True)
    with gguf_files["q8_0"].open("rb") as src, (folder / "model.gguf").open("wb") as dst:
        dst.write(src.read(40_000_000))
    manifests.write(folder, manifests.Manifest(
        name="erp", version="cut", files=manifests.describe_files(folder, {"model.gguf": "gguf"})))
    record, _ = validate(settings, "erp/cut")
    assert record.state == "failed"
    assert "isolated" in record.reason or "does not load" in record.reason, record.reason
    assert "truncated" in record.reason or "could not load" in record.reason, record.reason


def test_hanging_load_is_killed_at_the_timeout(tmp_path, release_settings, gguf_files):
    settings = release_settings(load_timeout_seconds=0.2)
    write_version(tmp_path / "models", "erp", "slow", gguf_files["q8_0"])
    record, _ = validate(settings, "erp/slow")
    assert record.state == "failed" and "hung for more than 0.2 s" in record.reason



def test_a_cancelled_isolated_load_leaves_no_child_process(tmp_path, release_settings, gguf_files):
    """A stopped job or a shutdown cancels the load check: the child is killed and reaped."""
    import psutil

    from appliance.releases.validation import Validator

    settings = release_settings()
    write_version(tmp_path / "models", "erp", "v1", gguf_files["q8_0"])
    manager = ReleaseManager(settings)
    manager.registry.scan()
    record = manager.registry.find("erp/v1")
    manager.close()
    children: list[int] = []

    async def scenario():
        task = asyncio.create_task(Validator(settings.releases, factory=None).check_isolated_load(record))
        deadline = time.monotonic() + 30
        while not children and time.monotonic() < deadline:
            # Only the probe: other children of this process (earlier tests' servers) are not it.
            for child in psutil.Process().children():
                try:
                    if "appliance.releases.probe" in " ".join(child.cmdline()):
                        children.append(child.pid)
                except psutil.Error:
                    pass
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert children, "the isolated load never started"
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in children)

@pytest.mark.slow
def test_degraded_version_scores_below_the_active_one(tmp_path, release_settings, gguf_files):
    settings = release_settings(golden_tolerance=0.1)
    write_version(tmp_path / "models", "erp", "v1", gguf_files["q8_0"])
    write_version(tmp_path / "models", "erp", "bad", gguf_files["garbage"])
    manager = ReleaseManager(settings)
    manager.registry.scan()
    manager.registry.mark_active("erp", "v1")
    manager.registry.set_state("erp", "v1", "active", validation={"golden": {"score": 0.67}})
    manager.close()
    record, _ = validate(settings, "erp/bad")
    assert record.state == "failed"
    # The active version is scored again in the same run; its fresh score is the reference.
    reference = record.validation["checks"]["golden_reference"]
    assert reference["score"] > 0.3 and reference["items"] == 3
    assert f"Golden QA score 0.00 is below the active version's {reference['score']:.2f}" in record.reason


def golden(score: float, p95: float, items: int = 30) -> dict:
    return {"mode": "retrieval", "score": score, "passed": round(score * items), "items": items,
            "errors": 0, "first_error": None, "latency_p95": p95}


@pytest.mark.parametrize(("candidate", "reference", "ceiling", "fails_with"), [
    # The figures: 59.4 s against the serving version's 50.0 s on the same 2 cores.
    (golden(0.1, 59.4), golden(0.1, 50.0), 0, None),
    (golden(0.1, 80.0), golden(0.1, 50.0), 0,
     "Golden answers took 80.0 s at p95, over 1.5 x the serving version's 50.0 s measured in the "
     "same run (releases.golden_latency_ratio)."),
    (golden(0.1, 59.4), golden(0.1, 50.0), 30,
     "Golden answers took 59.4 s at p95, over the ceiling releases.max_latency_seconds = 30."),
    (golden(0.0, 10.0), golden(0.2, 50.0), 0, "Golden QA score 0.00 is below the active version's 0.20"),
])
def test_latency_is_judged_against_the_serving_version_measured_in_the_same_run(
        release_settings, candidate, reference, ceiling, fails_with):
    from appliance.releases.validation import ValidationFailed, Validator

    settings = release_settings(golden_latency_ratio=1.5, max_latency_seconds=ceiling)
    validator = Validator(settings.releases, factory=None)
    if fails_with is None:
        validator.check_quality(candidate, reference["score"], reference)
        return
    with pytest.raises(ValidationFailed) as failed:
        validator.check_quality(candidate, reference["score"], reference)
    assert failed.value.message.startswith(fails_with)


def test_the_gate_defaults_are_relative_with_no_absolute_ceiling():
    from appliance.settings import ReleasesSettings

    defaults = ReleasesSettings()
    assert (defaults.golden_latency_ratio, defaults.max_latency_seconds) == (1.5, 0.0)


def test_a_validation_cut_short_by_a_stop_is_staged_again_on_start(tmp_path, release_settings):
    settings = release_settings()
    gguf = tmp_path / "small.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1024))
    write_version(tmp_path / "models", "erp", "v3", gguf, copy=True)
    manager = ReleaseManager(settings)
    manager.registry.scan()
    manager.registry.set_state("erp", "v3", "validating",
                               validation={"running": True, "step": "golden 1/3", "checks": {}})
    manager.close()  # the process dies here

    async def restart():
        restarted = ReleaseManager(settings)
        restarted.start()
        await restarted.stop()
        return restarted

    restarted = asyncio.run(restart())
    record = restarted.registry.get("erp", "v3")
    assert record.state == "staged" and "interrupted" in record.reason
    event = restarted.history()[0]
    assert event["event"] == "validation_interrupted" and "golden 1/3" in event["reason"]
    restarted.close()


@pytest.mark.slow
def test_validation_runs_as_a_background_job_over_the_api(tmp_path, release_settings, gguf_files,
                                                          shared_backend, live_server):
    settings = release_settings()
    write_version(tmp_path / "models", "erp", "good", gguf_files["q8_0"])
    write_version(tmp_path / "models", "erp", "other", gguf_files["q8_0"])
    server = live_server(settings, shared_backend)
    url = f"{server.url}/api/models/erp/good"

    response = httpx.post(f"{url}/validate")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["job"]["state"] == "validating" and body["version"]["state"] == "validating"
    again = httpx.post(f"{url}/validate")
    assert again.status_code == 409 and "already being validated" in again.json()["error"]["message"]

    steps = []
    deadline = time.monotonic() + 600
    row = httpx.get(url).json()
    while row["state"] == "validating" and time.monotonic() < deadline:
        steps.append(row["validation"]["step"])
        time.sleep(0.2)
        row = httpx.get(url).json()
    assert row["state"] == "ready", row["reason"]
    assert {"checksums", "isolated_load"} & set(steps) and any(s.startswith("golden") for s in steps)
    checks = row["validation"]["checks"]
    assert checks["checksums"]["files"] == 1 and checks["isolated_load"]["load_seconds"] > 0
    golden = checks["golden"]
    assert golden["mode"] == "open_book"  # this server has no knowledge base (no embedder)
    assert golden["items"] == 3 and golden["score"] > 0.3 and golden["latency_p95"] > 0
    assert checks["golden_reference"]["items"] == 3  # the serving model, scored the same way
    listed = {v["version"]: v for v in httpx.get(f"{server.url}/api/models").json()["versions"]}
    assert listed["good"]["validation"]["ok"] is True
    events = [h["event"] for h in httpx.get(f"{server.url}/api/models/history").json()["history"]
              if h["version"] == "good"]
    assert events[:2] == ["validated", "validation_started"]

    # A stop in the middle of a validation leaves no version silently "validating".
    assert httpx.post(f"{server.url}/api/models/erp/other/validate").status_code == 202
    server.__exit__(None, None, None)
    manager = ReleaseManager(settings)
    other = manager.registry.get("erp", "other")
    assert other.state == "staged", other.state
    assert manager.history()[0]["event"] == "validation_interrupted"
    manager.close()


@pytest.mark.slow
def test_golden_questions_retrieve_from_the_knowledge_base(tmp_path, monkeypatch, release_settings,
                                                           gguf_files, embedder_dir):
    settings = release_settings()
    settings.knowledge.embedder_path = str(embedder_dir)
    write_version(tmp_path / "models", "erp", "good", gguf_files["q8_0"])
    write_version(tmp_path / "models", "erp", "cli", gguf_files["q8_0"])
    kb = KnowledgeBase.open(settings)
    for item in GOLDEN_ITEMS:  # the documents that answer the golden questions
        kb.ingest_bytes(f"{item['id']}.md", f"# Procedure {item['id']}\n\n{item['answer']}\n".encode())
    kb.ingest_bytes("other.md", b"# Printers\n\nNetwork printers are set up by IT in PR100.\n")

    manager = ReleaseManager(settings, knowledge=kb)
    manager.registry.scan()
    record = asyncio.run(manager.validate("erp/good"))
    manager.close()
    version = kb.version
    kb.close()
    assert record.state == "ready", record.reason
    golden = record.validation["checks"]["golden"]
    assert golden["mode"] == "retrieval" and golden["score"] > 0.3
    assert golden["knowledge_version"] == version
    # Both ways of answering were scored per language; auto mode reads these figures later.
    assert set(golden["answers"]["en"]) == {"extractive", "generative"}
    assert golden["answers"]["en"]["extractive"]["good"] >= 2 / 3
    assert golden["served_modes"]["en"] in ("extractive", "generative")

    # The offline CLI does the same, waiting for the result and printing each step's figures.
    for key, value in {"DATA_DIR": settings.data_dir, "RELEASES__MODELS_DIR": settings.releases.models_dir,
                       "RELEASES__GOLDEN_PATH": settings.releases.golden_path,
                       "RELEASES__GOLDEN_MAX_TOKENS": 24, "RELEASES__GOLDEN_LATENCY_RATIO": 50,
                       "KNOWLEDGE__EMBEDDER_PATH": embedder_dir, "ENGINE__SLOTS": 4,
                       "ENGINE__MAX_REQUEST_TOKENS": 512, "SERVER__PORT": 9}.items():
        monkeypatch.setenv(f"APPLIANCE_{key}", str(value))
    result = CliRunner().invoke(main, ["models", "validate", "erp/cli"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "checksums ..." in lines and "isolated_load ..." in lines and "golden ..." in lines
    assert any(line.startswith("  golden: score") and "retrieval" in line for line in lines)
    assert lines[-1] == "erp/cli passed validation and is ready to activate."
