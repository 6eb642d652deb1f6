"""An upstream model name is a version too: validated with the golden set against the upstream.

The upstream here is a second real appliance server, which speaks the same OpenAI-compatible API.
"""

from __future__ import annotations

import asyncio

import pytest

from appliance.releases import ReleaseManager


@pytest.mark.slow
def test_upstream_model_is_validated_against_the_upstream(release_settings, shared_backend, live_server):
    upstream = live_server(release_settings(), shared_backend)
    settings = release_settings()
    settings.llm.upstream.base_url = f"{upstream.url}/v1"
    settings.llm.upstream.model = "placeholder"  # each version brings its own model name

    manager = ReleaseManager(settings)
    record = manager.register_upstream("smollm2-135m-instruct", actor="test")
    assert (record.key, record.kind, record.state) == ("upstream/smollm2-135m-instruct", "upstream", "staged")
    record = asyncio.run(manager.validate(record.key))
    assert record.state == "ready", record.reason
    assert record.validation["checks"]["golden"]["score"] > 0.3
    assert "isolated_load" not in record.validation["checks"]  # nothing to load here

    missing = manager.register_upstream("no-such-model")
    missing = asyncio.run(manager.validate(missing.key))
    assert missing.state == "failed" and "Every golden question failed" in missing.reason
    manager.close()
