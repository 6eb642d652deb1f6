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
from appliance.server.openai import OpenAIController
from appliance.settings import Settings

log = logging.getLogger(__name__)


def load_backend(settings: Settings) -> LLMBackend:
    from appliance.llm.local import LocalBackend

    data_dir = settings.resolved_data_dir()
    return LocalBackend(settings.engine, cache_dir=data_dir / "models" / "bundled")


def _model_error(state: State) -> str | None:
    return state.get("model_error")


def create_app(settings: Settings, backend: LLMBackend | None = None) -> Litestar:
    """Build the app. Without `backend`, the model loads in the background after start-up."""
    cache = ResponseCache(settings.cache.max_entries, settings.cache.ttl_seconds, settings.cache.enabled)
    assistant = Assistant(backend, cache)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.resolved_data_dir().mkdir(parents=True, exist_ok=True)
        loader = None
        if assistant.backend is None:
            loader = asyncio.create_task(_load(app))
        try:
            yield
        finally:
            if loader is not None and not loader.done():
                loader.cancel()
            if assistant.backend is not None:
                await assistant.backend.close(settings.server.drain_seconds)

    async def _load(app: Litestar) -> None:
        try:
            assistant.backend = await anyio.to_thread.run_sync(load_backend, settings)
            log.info("model ready: %s", assistant.backend.version)
        except ApplianceError as exc:
            app.state.model_error = exc.message
            log.error("model failed to load: %s", exc.message)

    return Litestar(
        route_handlers=[HealthController, OpenAIController],
        dependencies={
            "assistant": Provide(lambda: assistant, sync_to_thread=False),
            "model_error": Provide(_model_error, sync_to_thread=False),
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
