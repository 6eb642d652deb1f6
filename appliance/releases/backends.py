"""Build the LLM backend that serves one registry version, local GGUF or upstream model name."""

from __future__ import annotations

from collections.abc import Callable

from appliance.errors import ConfigError
from appliance.llm.base import LLMBackend
from appliance.releases.registry import LOCAL_KINDS, ModelVersion
from appliance.settings import Settings

BackendFactory = Callable[[ModelVersion], LLMBackend]


def backend_factory(settings: Settings) -> BackendFactory:
    """A factory bound to the settings: the served model name and engine sizes stay the same across
    versions, so clients never see the name change when a version is swapped in."""

    def create(record: ModelVersion) -> LLMBackend:
        if record.kind in LOCAL_KINDS:
            from appliance.llm.local import LocalBackend

            engine = settings.engine.model_copy(update={"model_path": str(record.gguf_path)})
            return LocalBackend(engine, version_label=record.key)
        if record.kind == "upstream":
            from appliance.llm.upstream import UpstreamBackend

            upstream = settings.llm.upstream.model_copy(update={"model": record.version})
            return UpstreamBackend(upstream)
        raise ConfigError(f"Model version {record.key} has unknown kind {record.kind!r} "
                          "(local, bundled, configured or upstream).")

    return create
