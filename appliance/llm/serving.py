"""What is serving now: the one backend new requests get, and the leases that keep a backend
open while a request that started with it still uses it.

Nothing else assigns the serving backend. A swap `replace`s it (one step on the event loop),
then `retire`s the old one: closed once its last lease is released, or once the drain time is
up, after cancelling the requests still holding it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable

from appliance.errors import NotReady
from appliance.llm.base import LLMBackend

log = logging.getLogger(__name__)


class Lease:
    """One request's hold on the backend it started with. `release` ends it (more calls do
    nothing); a retiring backend whose drain time is up calls the `on_cancel` callback."""

    def __init__(self, tenancy: _Tenancy):
        self.backend: LLMBackend = tenancy.backend
        self._tenancy = tenancy
        self._on_cancel: Callable[[], object] | None = None
        self.cancelled = False
        self.released = False

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """What stops this request when the drain time is up (held weakly: a bound method of
        an answer that was dropped is not kept alive by its lease)."""
        self._on_cancel = _weak(callback)
        if self.cancelled:
            self._cancel_now()

    def release(self) -> None:
        self._tenancy.leave(self)

    def cancel(self) -> None:
        self.cancelled = True
        self._cancel_now()

    def _cancel_now(self) -> None:
        callback = self._on_cancel() if self._on_cancel is not None else None
        if callback is not None:
            try:
                callback()
            except Exception:  # one request's clean-up must not stop the others'
                log.exception("cancelling a request on %s failed", self.backend.version)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _Tenancy:
    """The leases held on one backend (taken and released from any thread)."""

    def __init__(self, backend: LLMBackend):
        self.backend = backend
        self.leases: set[Lease] = set()
        self._lock = threading.Lock()
        self._drained: asyncio.Event | None = None  # set up by `retire`, on the loop it runs on
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> Lease:
        lease = Lease(self)
        with self._lock:
            self.leases.add(lease)
        return lease

    def leave(self, lease: Lease) -> None:
        with self._lock:
            if lease.released:
                return
            lease.released = True
            self.leases.discard(lease)
            empty, drained, loop = not self.leases, self._drained, self._loop
        if empty and drained is not None:
            try:
                loop.call_soon_threadsafe(drained.set)
            except RuntimeError:  # the loop that waited has closed: nobody waits any more
                pass

    async def drained(self, timeout: float) -> bool:
        """Wait until no lease is held, at most `timeout` seconds; whether that happened."""
        with self._lock:
            if not self.leases:
                return True
            self._loop = asyncio.get_running_loop()
            self._drained = asyncio.Event()
            drained = self._drained
        try:
            await asyncio.wait_for(drained.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def held(self) -> list[Lease]:
        with self._lock:
            return list(self.leases)


class Serving:
    """The serving backend, handed out by lease. One per process (the Assistant's)."""

    def __init__(self, backend: LLMBackend | None = None):
        self._lock = threading.Lock()
        self._current: _Tenancy | None = _Tenancy(backend) if backend is not None else None
        self._retiring: list[_Tenancy] = []

    @property
    def backend(self) -> LLMBackend | None:
        """The backend new requests get (None while the first one loads). To use it, take a lease."""
        current = self._current
        return current.backend if current is not None else None

    def lease(self, *, ready: bool = True) -> Lease:
        """A lease on the serving backend; raises NotReady when none serves (or, with `ready`,
        when it cannot answer now: its engine restarts)."""
        with self._lock:
            current = self._current
            if current is None:
                raise NotReady("The model is still loading; retry in a few seconds (see GET /ready).")
            backend = current.backend
            if ready and not backend.ready:
                raise NotReady(f"{backend.unavailable} Retry in a few seconds (see GET /ready).")
            return current.enter()

    def install(self, backend: LLMBackend) -> None:
        """The first backend, once it has loaded; a later change is a swap (`replace`)."""
        with self._lock:
            if self._current is not None:
                raise RuntimeError(f"{self._current.backend.version} serves already; swap instead")
            self._current = _Tenancy(backend)

    def replace(self, backend: LLMBackend | None) -> LLMBackend | None:
        """Serve `backend` from now on; returns the one it replaces, still open: `retire` it.
        Synchronous, so a caller on the event loop switches in one step."""
        with self._lock:
            old = self._current
            self._current = _Tenancy(backend) if backend is not None else None
            if old is not None:
                self._retiring.append(old)
        return old.backend if old is not None else None

    def leases(self, backend: LLMBackend | None = None) -> int:
        """Leases held on `backend` (by default the serving one)."""
        tenancy = self._tenancy(backend) if backend is not None else self._current
        return len(tenancy.held()) if tenancy is not None else 0

    async def retire(self, backend: LLMBackend, drain_seconds: float) -> int:
        """Close a replaced backend once its last lease is released; past `drain_seconds`, cancel
        the requests still holding it first. Returns how many were cancelled."""
        tenancy = self._tenancy(backend)
        started = time.monotonic()
        cancelled = 0
        if tenancy is not None and not await tenancy.drained(drain_seconds):
            left = tenancy.held()
            cancelled = len(left)
            log.warning("%d requests on %s were still running after the drain time (%g s); "
                        "they are cancelled", cancelled, backend.version, drain_seconds)
            for lease in left:
                lease.cancel()
            # Cancelled answers end at their next event; a request still tokenizing holds the
            # model's weights itself, so closing now never frees memory under it.
            await tenancy.drained(min(1.0, drain_seconds))
        try:
            await backend.close(max(0.0, drain_seconds - (time.monotonic() - started)))
        finally:
            with self._lock:
                if tenancy in self._retiring:
                    self._retiring.remove(tenancy)
        return cancelled

    async def shutdown(self, drain_seconds: float) -> None:
        """Stop serving: new requests get NotReady; the answers under way finish (within
        `drain_seconds`, then they are cancelled), and the backend is closed."""
        old = self.replace(None)
        if old is not None:
            await self.retire(old, drain_seconds)

    def _tenancy(self, backend: LLMBackend) -> _Tenancy | None:
        with self._lock:
            for tenancy in [self._current, *self._retiring]:
                if tenancy is not None and tenancy.backend is backend:
                    return tenancy
        return None


def _weak(callback: Callable[[], object]) -> Callable[[], Callable[[], object] | None]:
    if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
        return weakref.WeakMethod(callback)
    return lambda: callback
