"""A version with a different embedder swaps in only together with a re-embedded index."""

from __future__ import annotations

import asyncio

import pytest

from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.releases import ReleaseManager
from appliance.releases.manager import ReembedUnavailable
from tests.releases.conftest import write_version


@pytest.mark.slow
def test_embedder_change_needs_reembedding(tmp_path, release_settings, gguf_files):
    settings = release_settings(probation_seconds=0)
    models = tmp_path / "models"
    write_version(models, "erp", "v1", gguf_files["q8_0"], extra={"embedder/model.onnx": b"embedder one"})
    write_version(models, "erp", "v2", gguf_files["q8_0"], extra={"embedder/model.onnx": b"embedder two"})

    async def scenario():
        setup = ReleaseManager(settings)
        setup.registry.scan()
        for version in ("v1", "v2"):
            setup.registry.set_state("erp", version, "ready")
        setup.registry.mark_active("erp", "v1")
        assistant = Assistant(setup.factory(setup.registry.get("erp", "v1")), ResponseCache(10, 60, True))
        setup.close()

        refusing = ReleaseManager(settings, assistant)
        with pytest.raises(ReembedUnavailable, match="re-embedding is not available"):
            await refusing.activate("erp/v2")
        assert assistant.backend.version == "erp/v1"  # the old model kept serving
        assert refusing.history()[0]["event"] == "activation_failed"
        refusing.close()

        installed = []

        async def reembed(path):
            assert path == models / "erp" / "v2" / "embedder"
            return f"index built with {path.name}"

        def install(handle):
            installed.append((handle, assistant.backend.version))  # called in the switch step

        manager = ReleaseManager(settings, assistant, reembed=reembed, install_index=install)
        await manager.activate("erp/v2")
        await assistant.backend.close()
        manager.close()
        return installed

    assert asyncio.run(scenario()) == [("index built with embedder", "erp/v2")]
