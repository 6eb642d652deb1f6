"""The model-version manifest: round trip, and verify() naming the bad file."""

from __future__ import annotations

import json

import pytest

from appliance import manifest


def make_version(folder):
    (folder / "embedder").mkdir(parents=True)
    (folder / "model.gguf").write_bytes(b"GGUF" + bytes(100))
    (folder / "embedder" / "model.onnx").write_bytes(b"onnx")
    files = manifest.describe_files(folder, {"model.gguf": "gguf", "embedder": "embedder"})
    manifest.write(folder, manifest.Manifest(name="m", version="v1", files=files, metrics={"ppl": 3.2},
                                             recipe={"name": "tiny"}, data_fingerprint="abc"))
    return folder


def test_round_trip_and_roles(tmp_path):
    version = make_version(tmp_path / "v1")
    loaded = manifest.verify(version)
    assert loaded.file("gguf").path == "model.gguf"
    assert loaded.file("embedder").path == "embedder/model.onnx"
    assert loaded.created_at and loaded.metrics == {"ppl": 3.2}
    assert manifest.file_path(version, "gguf") == version / "model.gguf"
    with pytest.raises(manifest.ManifestError, match="no 'report' file"):
        manifest.file_path(version, "report")
    assert "torch" not in json.dumps(manifest.read(version / "manifest.json").recipe)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.unlink(), "is missing"),
    (lambda p: p.write_bytes(p.read_bytes()[:-3]), "truncated"),
    (lambda p: p.write_bytes(b"GGUF" + bytes(99) + b"x"), "sha256"),
])
def test_verify_names_the_bad_file(tmp_path, damage, message):
    version = make_version(tmp_path / "v1")
    damage(version / "model.gguf")
    with pytest.raises(manifest.ManifestError, match=message) as info:
        manifest.verify(version)
    assert "model.gguf" in str(info.value)


def test_missing_or_broken_manifest(tmp_path):
    with pytest.raises(manifest.ManifestError, match="does not exist"):
        manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(manifest.ManifestError, match="not a valid model manifest"):
        manifest.read(tmp_path)


def test_runtime_manifest_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, appliance.manifest; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
