"""The default backend: a GGUF model served by the in-process continuous-batching engine."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from appliance.engine.batcher import Engine, EngineRequest
from appliance.engine.model import Model, resolve_model_path
from appliance.engine.supervisor import EngineSupervisor
from appliance.errors import ApplianceError, EngineFailed, InvalidRequest
from appliance.llm.base import Event, Finished, Generation, GenerationRequest, LLMBackend
from appliance.settings import EngineSettings


class LocalGeneration(Generation):
    def __init__(self, request: EngineRequest):
        self._request = request
        self.prompt_tokens = len(request.prompt)

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while True:
                event = await self._request.events.get()
                if isinstance(event, ApplianceError):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            self._request.cancel()  # a no-op once finished; frees the slot if the caller left

    def cancel(self) -> None:
        self._request.cancel()


class LocalBackend(LLMBackend):
    """Loads the GGUF, owns the (supervised) engine, turns chat messages into prompt tokens.

    `listeners` hear `engine_failed` and `engine_restarted` (the server raises an alert)."""

    def __init__(self, settings: EngineSettings, *, cache_dir: Path | None = None,
                 version_label: str | None = None):
        self.settings = settings
        self.path: Path = resolve_model_path(
            settings.resolve(settings.model_path) if settings.model_path else "",
            bundled_type=settings.bundled_model_type, cache_dir=cache_dir,
        )
        self.listeners: list = []
        self.model = Model(self.path, extra_buffers=settings.cpu_extra_buffers)
        # A registry version (name/version) is immutable, checksum-verified, so it can be the label.
        self._version = version_label or f"{settings.model_id}@{_file_fingerprint(self.path)}"
        try:
            self.supervisor = EngineSupervisor(self.model, settings, name=self._version,
                                               listeners=self.listeners)
        except BaseException:
            self.model.close()
            raise

    @property
    def engine(self) -> Engine:
        """The engine serving now (a new one after a restart)."""
        return self.supervisor.engine

    @property
    def unavailable(self) -> str | None:
        if self.model.closed:
            return f"The model {self.version} is unloaded."
        return self.supervisor.unavailable

    @property
    def model_id(self) -> str:
        return self.settings.model_id

    @property
    def version(self) -> str:
        return self._version

    def status(self) -> dict:
        return {
            "model": self.model_id,
            "version": self.version,
            "path": str(self.path),
            "ready": self.ready,
            "engine": self.supervisor.status(),
        }

    @property
    def context_limit(self) -> int:
        return self.engine.max_request_tokens

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenize(text, special=False))

    def render_prompt(self, request: GenerationRequest) -> str:
        if request.messages is not None:
            return self.model.apply_chat_template(list(request.messages))
        if request.prompt is None:
            raise InvalidRequest("Either messages or prompt is required.")
        return request.prompt

    def tokenize_request(self, request: GenerationRequest) -> list[int]:
        text = self.render_prompt(request)
        tokens = self.model.tokenize(text, special=request.messages is not None)
        if not tokens:
            raise InvalidRequest("The prompt is empty; send at least one token of text.", param="prompt")
        return tokens

    async def start(self, request: GenerationRequest) -> Generation:
        failure = self.supervisor.unavailable
        if failure is not None:
            raise EngineFailed(failure + " Retry in a few seconds (GET /ready says when it serves).")
        tokens = await anyio.to_thread.run_sync(self.tokenize_request, request)
        engine_request = self.engine.submit(tokens, request.params, asyncio.get_running_loop())
        return LocalGeneration(engine_request)

    async def close(self, drain_seconds: float = 0.0) -> None:
        await anyio.to_thread.run_sync(self.supervisor.stop, drain_seconds)
        self.model.close()  # freed now, or by the engine thread if a decode step still runs


def _file_fingerprint(path: Path) -> str:
    """Cheap identity of a model file (size, mtime, first MiB): enough to key the response cache."""
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:12]
