"""The validation gate on real GGUFs: good, corrupt, truncated, hung and degraded versions."""

from __future__ import annotations

import asyncio

import pytest

from appliance import manifest as manifests
from appliance.releases import ReleaseManager
from tests.releases.conftest import write_version


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
    assert "Golden QA score 0.00 is below the active version's 0.67" in record.reason
