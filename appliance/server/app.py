"""The Litestar application: `create_app(settings)`; resources live on `app.state`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from appliance import __version__
from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.errors import ApplianceError
from appliance.llm.base import LLMBackend
from appliance.server.errors import exception_handlers
from appliance.server.health import HealthController
from appliance.server.models_admin import ModelsController
from appliance.server.openai import OpenAIController
from appliance.settings import Settings

log = logging.getLogger(__name__)


def load_backend(settings: Settings) -> LLMBackend:
    from appliance.llm import create_backend

    return create_backend(settings)


def _model_error(state: State) -> str | None:
    return state.get("model_error")


def create_app(settings: Settings, backend: LLMBackend | None = None) -> Litestar:
    """Build the app. Without `backend`, the model loads in the background after start-up."""
    cache = ResponseCache(settings.cache.max_entries, settings.cache.ttl_seconds, settings.cache.enabled)
    assistant = Assistant(backend, cache)
    holder: dict = {}  # the release manager opens in the lifespan, where the data dir exists

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.resolved_data_dir().mkdir(parents=True, exist_ok=True)
        from appliance.releases import ReleaseManager

        releases = holder["releases"] = app.state.releases = ReleaseManager(settings, assistant)
        releases.start()
        loader = None
        if assistant.backend is None:
            loader = asyncio.create_task(_load(app))
        try:
            yield
        finally:
            if loader is not None and not loader.done():
                loader.cancel()
            await releases.stop()
            if assistant.backend is not None:
                await assistant.backend.close(settings.server.drain_seconds)
            releases.close()

    async def _load(app: Litestar) -> None:
        try:
            assistant.backend = await anyio.to_thread.run_sync(_startup_backend, app)
            log.info("model ready: %s", assistant.backend.version)
        except ApplianceError as exc:
            app.state.model_error = exc.message
            log.error("model failed to load: %s", exc.message)

    def _startup_backend(app: Litestar) -> LLMBackend:
        """The registry's active version if one was activated, else the configured model."""
        releases = app.state.releases
        active = releases.registry.active()
        if active is not None:
            try:
                return releases.factory(active)
            except ApplianceError as exc:
                log.error("active version %s does not load (%s); serving the configured model",
                          active.key, exc.message)
                releases.registry.record("load_failed", active.name, active.version, reason=exc.message)
        return load_backend(settings)

    return Litestar(
        route_handlers=[HealthController, OpenAIController, ModelsController],
        dependencies={
            "assistant": Provide(lambda: assistant, sync_to_thread=False),
            "model_error": Provide(_model_error, sync_to_thread=False),
            "releases": Provide(lambda: holder["releases"], sync_to_thread=False),
        },
        state=State({"settings": settings, "assistant": assistant, "model_error": None}),
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="ERP Appliance API", version=__version__, path="/schema",
            description="OpenAI-compatible chat and completions over the appliance's local model.",
        ),
        debug=False,
    )
