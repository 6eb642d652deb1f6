"""The model served before any version is a version: registered at first start (real SQLite, real
GGUF files), hashed once, with a manifest pointing at its GGUF, and a target to roll back to."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from appliance import manifest as manifests
from appliance.engine.model import bundled_model_path
from appliance.errors import ModelLoadError
from appliance.releases import ReleaseManager, baseline
from appliance.releases.checksums import ChecksumCache
from appliance.releases.validation import Validator
from tests.releases.conftest import write_version


@pytest.fixture
def manager(release_settings):
    """A release manager on the test settings (engine.model_path is the test's Q8_0 GGUF)."""
    made = []

    def make(settings=None) -> ReleaseManager:
        made.append(ReleaseManager(settings or release_settings()))
        return made[-1]

    yield make
    for m in made:
        m.close()


def test_on_a_fresh_data_folder_the_configured_model_becomes_the_active_version(manager, model_path):
    releases = manager()
    record = releases.register_served_model()
    sha = manifests.sha256_file(Path(model_path))
    assert (record.name, record.version, record.kind, record.state) == (
        "smollm2-135m-instruct.q8_0", sha[:12], "configured", "active")
    # The manifest the appliance wrote points at the GGUF where it lies: no copy.
    folder = releases.settings.resolved_data_dir() / "models" / record.name / record.version
    assert record.path == str(folder)
    assert [f.path for f in manifests.read(folder).files] == [str(model_path)]
    assert record.gguf_path.samefile(model_path) and not (folder / "model.gguf").exists()
    assert Validator(releases.settings.releases, None).check_checksums(record)["ok"]
    events = [(h["event"], h["actor"]) for h in reversed(releases.history())]
    assert events == [("imported", "system"), ("activated", "system")]
    assert "served before any version" in releases.history()[0]["reason"]
    assert releases.list()[0]["kind"] == "configured"

    # The next start finds it registered: nothing changes, nothing is recorded again.
    again = manager().register_served_model()
    assert again.key == record.key and len(releases.history()) == 2


def test_the_bundled_model_is_registered_under_its_own_name(manager, release_settings):
    settings = release_settings()
    settings.engine.model_path = ""
    settings.engine.bundled_model_type = "original"  # served as shipped: no re-encoding here
    record = manager(settings).register_served_model()
    assert (record.name, record.kind, record.state) == ("smollm2-135m-instruct", "bundled", "active")
    assert record.gguf_path == bundled_model_path()
    assert record.version == manifests.sha256_file(bundled_model_path())[:12]


def test_the_checksum_is_computed_once_per_path_size_and_mtime(tmp_path, manager, monkeypatch):
    releases = manager()
    cache = ChecksumCache(releases.registry.db)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(4096))
    hashed: list[str] = []
    real = manifests.sha256_file
    monkeypatch.setattr(manifests, "sha256_file", lambda p: hashed.append(str(p)) or real(p))
    first = cache.sha256(gguf)
    assert cache.sha256(gguf) == first and len(hashed) == 1
    gguf.write_bytes(b"GGUF" + bytes(4095) + b"\x01")  # replaced: another size or mtime
    os.utime(gguf, ns=(1, 1))
    assert cache.sha256(gguf) != first and len(hashed) == 2


def test_an_existing_data_folder_keeps_serving_its_version_and_gains_a_target(
        tmp_path, manager, model_path, gguf_files):
    """A data folder from before: erp/v1 was activated over the (unregistered) configured model."""
    settings = manager().settings
    write_version(tmp_path / "models", "erp", "v1", gguf_files["q4_0"])
    old = manager(settings)
    old.registry.scan()
    old.registry.set_state("erp", "v1", "ready")
    old.registry.mark_active("erp", "v1")
    old.registry.record("activated", "erp", "v1")
    assert old.rollback_plan()["target"] is None

    releases = manager(settings)
    base = releases.register_served_model()
    assert base.state == "ready" and releases.registry.active().key == "erp/v1"
    plan = releases.rollback_plan()
    assert (plan["from"], plan["target"], plan["target_kind"]) == ("erp/v1", base.key, "configured")


def test_a_changed_engine_model_path_serves_the_new_file(manager, gguf_files):
    settings = manager().settings
    first = manager(settings).register_served_model()
    settings.engine.model_path = str(gguf_files["q4_0"])
    releases = manager(settings)
    second = releases.register_served_model()
    assert (second.name, second.state) == ("smollm2-135m-instruct.q4_0", "active")
    assert releases.registry.get(first.name, first.version).state == "ready"
    latest = releases.history()[0]
    assert (latest["event"], latest["previous"]) == ("activated", first.key)
    assert "now serve" in latest["reason"]
    assert releases.rollback_plan()["target"] == first.key


def test_a_missing_model_file_is_named(tmp_path, manager):
    settings = manager().settings
    settings.engine.model_path = str(tmp_path / "missing.gguf")
    with pytest.raises(ModelLoadError, match="missing.gguf does not exist"):
        manager(settings).register_served_model()


def test_an_upstream_model_is_not_registered(manager):
    settings = manager().settings
    settings.llm.backend = "openai"
    assert manager(settings).register_served_model() is None


def test_without_a_target_the_plan_says_why(tmp_path, manager, gguf_files):
    releases = manager()
    assert releases.rollback_plan()["reason"] == (
        "There is no version to roll back to: no version is active yet, so there is nothing to "
        "roll back from.")
    base = releases.register_served_model()
    plan = releases.rollback_plan()
    assert plan["target"] is None and plan["from"] == base.key
    assert plan["reason"].endswith(f"{base.key} is the only version that has served here, so "
                                   "there is nothing before it to go back to.")

    # erp/v2 replaced it, then the base failed: nothing good is left to go back to.
    write_version(tmp_path / "models", "erp", "v2", gguf_files["q4_0"])
    releases.registry.scan()
    releases.registry.switch_active(releases.registry.get("erp", "v2"), {}, event="activated",
                                    actor="test", reason="", detail={}, replaced_as=("failed", "broke"))
    plan = releases.rollback_plan()
    assert plan["target"] is None
    assert f"no version that served before erp/v2 is still good ({base.key} is failed)" in plan["reason"]
    with pytest.raises(Exception, match="There is no version to roll back to"):
        releases._rollback_target(None)


def test_reserved_folder_names_are_not_reused(tmp_path):
    assert baseline.version_name(tmp_path / "Embedder.gguf", "configured") == "embedder-model"
    assert baseline.version_name(tmp_path / "Qwen2.5 7B (q4).gguf", "configured") == "qwen2.5-7b-q4"


def test_busy_says_what_the_releases_are_timing(manager):
    releases = manager()
    assert releases.busy() is None
    releases._validations["erp/v2"] = None  # as start_validation records a running job
    assert releases.busy() == "erp/v2 is being validated"


@pytest.mark.slow
def test_an_activated_version_serves_even_if_the_configured_file_is_gone(
        tmp_path, release_settings, gguf_files, live_server):
    from tests.releases.test_swap import prepare

    settings = release_settings()
    prepare(settings, tmp_path, {"v1": gguf_files["q4_0"]})
    settings.engine.model_path = str(tmp_path / "deleted.gguf")
    server = live_server(settings)
    server.wait_ready(120)
    assert server.assistant.backend.version == "erp/v1"
    plan = httpx.get(f"{server.url}/api/models/rollback").json()
    assert plan["target"] is None and plan["from"] == "erp/v1"
