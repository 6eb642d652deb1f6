"""LLM backends behind one seam, chosen by the `llm.backend` setting."""

from __future__ import annotations

from appliance.errors import ConfigError
from appliance.llm.base import LLMBackend
from appliance.settings import Settings


def _local(settings: Settings) -> LLMBackend:
    from appliance.llm.local import LocalBackend

    cache_dir = settings.resolved_data_dir() / "models" / "bundled"
    return LocalBackend(settings.engine, cache_dir=cache_dir)


def _openai(settings: Settings) -> LLMBackend:
    from appliance.llm.upstream import UpstreamBackend

    return UpstreamBackend(settings.llm.upstream)


BACKENDS = {"local": _local, "openai": _openai}


def create_backend(settings: Settings) -> LLMBackend:
    """The configured backend, wrapped with the configured fallback if any."""
    primary = _make(settings.llm.backend, settings, "llm.backend")
    if not settings.llm.fallback:
        return primary
    if settings.llm.fallback == settings.llm.backend:
        raise ConfigError("llm.fallback must differ from llm.backend.")
    from appliance.llm.fallback import FallbackBackend

    fallback = _make(settings.llm.fallback, settings, "llm.fallback")
    return FallbackBackend(primary, fallback, settings.llm.outage_retry_seconds)


def _make(name: str, settings: Settings, setting: str) -> LLMBackend:
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"Unknown {setting} {name!r}; choose one of: {', '.join(BACKENDS)}.") from None
    return factory(settings)


__all__ = ["BACKENDS", "LLMBackend", "create_backend"]
