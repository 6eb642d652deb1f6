"""The seam between a model swap and the knowledge base: a version that brings another embedder
is swapped in only together with an index re-embedded by that embedder."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.knowledge.reembed import ReembedCancelled
from appliance.releases.registry import ReleaseError

log = logging.getLogger(__name__)


class ReembedUnavailable(ReleaseError):
    code = "reembed_unavailable"


class ReembedFailed(ReleaseError):
    status = 500
    code = "reembed_failed"


class ReembedCancelledError(ReleaseError):
    code = "reembed_cancelled"


class IndexSwitch(ABC):
    """What a swap asks of the knowledge base. `build` may take long (it runs off the event
    loop); `install` runs in the same loop step as the model switch."""

    @property
    def unavailable(self) -> str | None:
        """Why re-embedding cannot happen now (None: it can)."""
        return None

    @abstractmethod
    async def build(self, embedder_path: Path | None, *,
                    on_start: Callable[[], None] | None = None) -> Any | None:
        """Re-embed into a new index for the embedder at `embedder_path` (None: the configured
        one; `on_start` hears when re-embedding begins); returns a handle for `install`, or None
        when the serving index already fits."""

    @abstractmethod
    def install(self, handle: Any) -> None:
        """Serve from the built index and its embedder (must not block)."""

    def discard(self, handle: Any) -> None:
        """The swap did not happen: forget the built index."""

    def settle(self) -> None:
        """The new version passed probation: the index kept for a rollback may go."""

    def cancel(self) -> bool:
        """Stop a re-embedding in progress; True if one was running."""
        return False

    def status(self) -> dict[str, Any] | None:
        """Progress of the current (or last) re-embedding."""
        return None


class KnowledgeIndexSwitch(IndexSwitch):
    """Re-embeds the assistant's knowledge base (looked up when needed: it opens after start-up)."""

    def __init__(self, assistant, settings):
        self.assistant = assistant
        self.settings = settings
        self._running: Any = None

    @property
    def kb(self):
        return self.assistant.knowledge

    @property
    def unavailable(self) -> str | None:
        if self.kb is not None:
            return None
        if self.assistant.knowledge_error:
            return f"the knowledge base is unavailable ({self.assistant.knowledge_error})"
        return "the knowledge base is still opening; try again in a minute"

    async def build(self, embedder_path: Path | None, *,
                    on_start: Callable[[], None] | None = None) -> Any | None:
        from appliance.knowledge.knowledge_base import embedder_path as configured

        kb = self.kb
        path = Path(embedder_path) if embedder_path is not None else configured(self.settings)
        try:
            handle = await asyncio.to_thread(kb.begin_reembed, path)
        except ApplianceError as exc:
            raise ReembedFailed(f"Re-embedding with {path} could not start: {exc.message}; the "
                                "current index and embedder keep serving.") from exc
        if handle is None:
            return None
        self._running = handle
        log.info("re-embedding the knowledge base with %s into a new index", handle.record.embedder)
        if on_start is not None:
            try:
                on_start()
            except Exception:  # a progress report that fails must not strand the build
                log.exception("could not report the start of the re-embedding")
        # The thread is not abandoned on cancellation: it stops at its next batch, then discards
        # the new index, so nothing is left half-written behind a cancelled swap.
        work = asyncio.ensure_future(asyncio.to_thread(kb.run_reembed, handle))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            handle.cancel()
            await asyncio.gather(work, return_exceptions=True)
            kb.discard(handle, "cancelled", "the activation was cancelled")  # if it had finished
            raise
        except ReembedCancelled as exc:
            raise ReembedCancelledError(f"{exc.message} The activation is cancelled; the current "
                                        "model, index and embedder keep serving.") from exc
        except ApplianceError as exc:
            raise ReembedFailed(f"Re-embedding the knowledge base with {path} stopped after "
                                f"{handle.done} of {handle.total} chunks: {exc.message}; the "
                                "current index and embedder keep serving.") from exc
        except Exception as exc:
            raise ReembedFailed(f"Re-embedding the knowledge base with {path} failed after "
                                f"{handle.done} of {handle.total} chunks ({exc!r}); the current "
                                "index and embedder keep serving.") from exc
        finally:
            self._running = None
        return handle

    def install(self, handle: Any) -> None:
        self.kb.install(handle)

    def discard(self, handle: Any) -> None:
        if self.kb is not None:
            self.kb.discard(handle, "cancelled", "the model swap did not happen")

    def settle(self) -> None:
        if self.kb is not None:
            self.kb.drop_previous_index()

    def cancel(self) -> bool:
        if self._running is None:
            return False
        self._running.cancel()
        return True

    def status(self) -> dict[str, Any] | None:
        return self.kb.reembed_status() if self.kb is not None else None
