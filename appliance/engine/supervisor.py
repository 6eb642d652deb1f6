"""Keeps one model's engine running: a crashed engine is replaced by a new one, with backoff.

When the engine thread dies (an exception, or a decode llama.cpp cannot recover from), the
engine fails every request it held with a 503 at once; the supervisor then reports the failure
(`unavailable` says why, listeners hear `engine_failed`), waits, and starts a fresh engine (a new
llama.cpp context on the same weights). The wait doubles while engines keep failing soon after
they start, and falls back to the first step once one has run a while.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from appliance.engine.batcher import Engine
from appliance.engine.model import Model
from appliance.errors import ApplianceError
from appliance.settings import EngineSettings
from appliance.threadnames import start_named_thread

log = logging.getLogger(__name__)

Listener = Callable[[str, dict], None]

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
HEALTHY_SECONDS = 60.0  # an engine that ran this long resets the backoff


class EngineSupervisor:
    """Owns the current Engine of a model and replaces it when it fails."""

    def __init__(self, model: Model, settings: EngineSettings, *, name: str = "",
                 listeners: list[Listener] | None = None,
                 first_backoff: float = FIRST_BACKOFF_SECONDS,
                 max_backoff: float = MAX_BACKOFF_SECONDS):
        self.model = model
        self.settings = settings
        self.name = name or model.path.name
        self.listeners = listeners if listeners is not None else []
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._backoff = first_backoff
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.failure: str | None = None  # why it does not serve right now
        self.failures = 0
        self.restarts = 0
        self._started_at = time.monotonic()
        self.engine = self._new_engine()

    def _new_engine(self) -> Engine:
        engine = Engine(self.model, self.settings, on_exit=self._exited)
        engine.start()
        self._started_at = time.monotonic()
        return engine

    @property
    def unavailable(self) -> str | None:
        """Why requests cannot be served now (None while the engine runs)."""
        failed = self.engine.failure  # set before the requests fail, so never a moment too late
        if failed is not None and self.failure is None:
            return self._describe(failed)
        return self.failure

    def _describe(self, error: BaseException) -> str:
        return f"The generation engine of {self.name} failed ({error!r}); it restarts on its own."

    def status(self) -> dict:
        return {**self.engine.status(), "engine_failures": self.failures,
                "engine_restarts": self.restarts, "engine_failure": self.failure}

    def stop(self, drain_seconds: float = 0.0) -> None:
        self._stopping.set()
        self.engine.stop(drain_seconds)

    # -- failure and restart -------------------------------------------------------------------
    def _exited(self, engine: Engine, error: BaseException | None) -> None:
        """Called on the dying engine's thread, after it failed its requests."""
        if error is None or self._stopping.is_set() or engine is not self.engine:
            return
        ran = time.monotonic() - self._started_at
        with self._lock:
            self.failures += 1
            self.failure = self._describe(error)
            if ran >= HEALTHY_SECONDS:
                self._backoff = self.first_backoff
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self.max_backoff)
        log.error("engine of %s failed after %.1f s; restarting in %.1f s", self.name, ran, delay)
        start_named_thread(lambda: self._restart(delay, error), "engine-restart")

    def _restart(self, delay: float, error: BaseException) -> None:
        self._notify("engine_failed", {"model": self.name, "reason": repr(error),
                                       "failures": self.failures, "retry_in": delay})
        failed_at = time.monotonic()
        while not self._stopping.wait(delay):
            try:
                engine = self._new_engine()
            except ApplianceError as exc:
                delay = min(delay * 2, self.max_backoff)
                log.error("engine of %s did not restart (%s); next try in %.1f s", self.name,
                          exc.message, delay)
                continue
            if self._stopping.is_set():  # a shutdown began while it started: do not keep it
                engine.stop()
                return
            self.engine = engine
            with self._lock:
                self.restarts += 1
                self.failure = None
            down = time.monotonic() - failed_at
            log.warning("engine of %s serves again (restart %d)", self.name, self.restarts)
            self._notify("engine_restarted", {"model": self.name, "seconds": down,
                                              "restarts": self.restarts})
            return

    def _notify(self, event: str, detail: dict) -> None:
        for listener in list(self.listeners):
            try:
                listener(event, detail)
            except Exception:  # an alert channel must never stop the restart
                log.exception("engine listener failed on %s", event)
