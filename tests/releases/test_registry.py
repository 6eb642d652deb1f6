"""The registry: import with checksums, scan, states, history and rollback targets (real SQLite)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from appliance import manifest as manifests
from appliance.releases.registry import Registry, ReleaseError
from tests.releases.conftest import write_version


@pytest.fixture
def small_gguf(tmp_path):
    """A small stand-in file: import only checks checksums, loading is the validation gate's job."""
    path = tmp_path / "small.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    return path


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path / "data" / "releases.db", tmp_path / "models")
    yield reg
    reg.close()


def test_import_folder_copies_and_registers_as_staged(tmp_path, registry, small_gguf):
    source = write_version(tmp_path / "incoming", "erp", "v1", small_gguf, copy=True)
    record = registry.import_path(source)
    assert record.state == "staged" and record.key == "erp/v1"
    assert (tmp_path / "models" / "erp" / "v1" / "model.gguf").is_file()
    assert registry.history()[0]["event"] == "imported"
    with pytest.raises(ReleaseError, match="already imported"):
        registry.import_path(source)


def test_import_archive(tmp_path, registry, small_gguf):
    source = write_version(tmp_path / "incoming", "erp", "v2", small_gguf, copy=True)
    archive = tmp_path / "erp-v2.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(source, arcname="v2")
    assert registry.import_path(archive).key == "erp/v2"


def test_one_changed_byte_is_rejected_naming_the_file(tmp_path, registry, small_gguf):
    source = write_version(tmp_path / "incoming", "erp", "v3", small_gguf, copy=True)
    data = bytearray((source / "model.gguf").read_bytes())
    data[100] ^= 0xFF
    (source / "model.gguf").write_bytes(bytes(data))
    with pytest.raises(manifests.ManifestError, match="model.gguf does not match its sha256"):
        registry.import_path(source)
    assert registry.list() == []
    assert not (tmp_path / "models" / "erp" / "v3").exists()


def test_truncated_file_is_rejected(tmp_path, registry, small_gguf):
    source = write_version(tmp_path / "incoming", "erp", "v4", small_gguf, copy=True)
    with (source / "model.gguf").open("r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(manifests.ManifestError, match="truncated"):
        registry.import_path(source)


def test_scan_registers_build_output_and_bad_manifests_as_failed(tmp_path, registry, small_gguf):
    write_version(tmp_path / "models", "erp", "v5", small_gguf, copy=True)
    broken = tmp_path / "models" / "erp" / "v6"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    added = {r.key: r for r in registry.scan()}
    assert added["erp/v5"].state == "staged"
    assert added["erp/v6"].state == "failed" and "not a valid model manifest" in added["erp/v6"].reason
    assert registry.scan() == []  # known versions are not added twice


def test_rollback_target_is_the_last_good_active_version(tmp_path, registry, small_gguf):
    for version in ("a", "b", "c"):
        registry.import_path(write_version(tmp_path / "in", "erp", version, small_gguf, copy=True))
        registry.set_state("erp", version, "ready")
    for version in ("a", "b", "c"):
        registry.mark_active("erp", version)
        registry.record("activated", "erp", version)
    assert registry.rollback_target().key == "erp/b"
    registry.set_state("erp", "b", "failed", reason="broke")
    assert registry.rollback_target().key == "erp/a"
    assert [r.key for r in registry.list() if r.state == "active"] == ["erp/c"]


def test_activations_a_stopped_process_left_unfinished_are_settled(tmp_path, registry, small_gguf):
    """Before the switch the version goes back to what it was; after it, the activation stands."""
    for version in ("v1", "v2", "v3"):
        registry.import_path(write_version(tmp_path / "in", "erp", version, small_gguf, copy=True))
    registry.set_state("erp", "v1", "ready")
    registry.mark_active("erp", "v1")
    registry.set_state("erp", "v3", "failed", reason="golden QA too low")
    v3 = registry.get("erp", "v3")
    job = {"running": True, "step": "reembed", "previous": "erp/v1", "actor": "api:root",
           "from_state": "failed", "from_reason": v3.reason, "steps": {}}
    registry.begin_activation(v3, job, event="activation_started", actor="api:root", reason="forced")
    assert registry.get("erp", "v3").state == "activating" and registry.active().key == "erp/v1"
    # v2 had switched in and the old version was draining when the process stopped.
    registry.switch_active(registry.get("erp", "v2"), {**job, "step": "drain", "from_state": "ready"},
                           event="activated", actor="api:root", reason="", detail={})
    registry.close()

    reopened = Registry(tmp_path / "data" / "releases.db", tmp_path / "models")
    settled = reopened.interrupted_activations()
    assert [r.key for r in settled] == ["erp/v3"]
    v3 = reopened.get("erp", "v3")
    assert (v3.state, v3.reason) == ("failed", "golden QA too low")  # as before the forced attempt
    assert v3.activation["running"] is False and v3.activation["ok"] is False
    assert "at step reembed" in v3.activation["reason"]
    v2 = reopened.get("erp", "v2")
    assert v2.state == "active" and v2.activation["ok"] is True and not v2.activation["running"]
    assert "drained" in v2.activation["note"]
    events = [(h["event"], h["version"], h["actor"]) for h in reopened.history(4)]
    assert events[:3] == [("activation_interrupted", "v3", "api:root"), ("activated", "v2", "api:root"),
                          ("activation_started", "v3", "api:root")]
    assert reopened.interrupted_activations() == []  # settled once
    reopened.close()


def test_a_version_may_not_take_the_name_of_the_data_folders_other_models(tmp_path, registry, small_gguf):
    source = write_version(tmp_path / "incoming", "embedder", "v1", small_gguf, copy=True)
    with pytest.raises(ReleaseError, match="may not be named 'embedder'"):
        registry.import_path(source)
    write_version(tmp_path / "models", "bundled", "v1", small_gguf, copy=True)
    assert registry.scan() == []  # <data>/models/bundled holds the re-encoded bundled model


@pytest.mark.parametrize("where", ["data folder", "working directory", "nowhere"])
def test_versions_recorded_with_a_relative_path_keep_working(tmp_path, small_gguf, monkeypatch, where):
    """Registries written while models_dir followed the shell recorded paths like models/erp/v1:
    the folder is found in the data folder, else where the working directory puts it."""
    data, shell = tmp_path / "data", tmp_path / "shell"
    shell.mkdir()
    monkeypatch.chdir(shell)
    registry = Registry(data / "releases.db", Path("models"))  # as before: relative to the shell
    registry.import_path(write_version(tmp_path / "incoming", "erp", "v1", small_gguf, copy=True))
    registry.close()
    assert (shell / "models" / "erp" / "v1").is_dir()
    if where == "data folder":  # the operator moved it where the data folder's models_dir is
        (data / "models").mkdir()
        (shell / "models" / "erp").rename(data / "models" / "erp")
    elif where == "nowhere":
        shutil.rmtree(shell / "models")

    reopened = Registry(data / "releases.db", data / "models")
    folder = {"data folder": data, "working directory": shell, "nowhere": data}[where] / "models/erp/v1"
    record = reopened.get("erp", "v1")
    assert record.path == str(folder)
    if where != "nowhere":
        assert record.gguf_path.is_file()
    reopened.close()
