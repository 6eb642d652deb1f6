"""Delivers alert notices to channels from a background thread, retrying with backoff.

A channel that is down delays only its own notices: it never blocks rule evaluation or requests.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from appliance.monitoring.channels import AlertChannel, AlertNotice
from appliance.threadnames import start_named_thread

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, channels: list[AlertChannel], *, attempts: int = 5, base_delay: float = 2.0,
                 on_result: Callable[[AlertNotice, str, str, str | None], None] | None = None):
        self.channels = channels
        self.attempts = attempts
        self.base_delay = base_delay
        self.on_result = on_result  # (notice, channel, "delivered" | "failed", error)
        self._queue: list[tuple[float, int, AlertNotice, AlertChannel, int]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0

    def submit(self, notice: AlertNotice) -> None:
        with self._cond:
            for channel in self.channels:
                heapq.heappush(self._queue, (time.monotonic(), next(self._order), notice, channel, 1))
            self._cond.notify()

    def start(self) -> None:
        self._stop = False
        self._thread = start_named_thread(self._run, "alert-dispatcher")

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(wait)
                if self._stop:
                    return
                _, _, notice, channel, attempt = heapq.heappop(self._queue)
            self._deliver(notice, channel, attempt)

    def _deliver(self, notice: AlertNotice, channel: AlertChannel, attempt: int) -> None:
        try:
            channel.send(notice)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                delay = self.base_delay * 2 ** (attempt - 1)
                log.warning("alert channel %s failed (attempt %d of %d), retrying in %.1f s: %s",
                            channel.name, attempt, self.attempts, delay, error)
                with self._cond:
                    heapq.heappush(self._queue, (time.monotonic() + delay, next(self._order), notice,
                                                 channel, attempt + 1))
                return
            self.failed += 1
            log.error("alert channel %s gave up on alert %s after %d attempts: %s",
                      channel.name, notice.rule, attempt, error)
            self._report(notice, channel, "failed", error)
            return
        self.delivered += 1
        self._report(notice, channel, "delivered", None)

    def _report(self, notice: AlertNotice, channel: AlertChannel, outcome: str, error: str | None):
        if self.on_result is not None:
            try:
                self.on_result(notice, channel.name, outcome, error)
            except Exception:
                log.exception("recording the delivery of alert %s failed", notice.rule)
