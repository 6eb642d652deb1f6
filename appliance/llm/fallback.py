"""Upstream first; while it is down, another backend answers, and the outage is recorded."""

from __future__ import annotations

import logging
import time
from collections import deque

from appliance.llm.base import Generation, GenerationRequest, LLMBackend
from appliance.llm.upstream import UpstreamError, UpstreamUnavailable

log = logging.getLogger(__name__)

KEPT_OUTAGES = 100  # the newest outages kept in memory (the alert history keeps every one)


class FallbackBackend(LLMBackend):
    """Acts as `primary`; after a primary failure it sends requests to `fallback` for
    `retry_seconds` (so callers do not wait on a dead upstream each time), then probes again."""

    def __init__(self, primary: LLMBackend, fallback: LLMBackend, retry_seconds: float = 15.0):
        self.primary = primary
        self.fallback = fallback
        self.retry_seconds = retry_seconds
        self.outage_since: float | None = None
        self.outage_reason: str | None = None
        self.bypass_until = 0.0
        self.fallback_requests = 0
        self.outages: deque[dict] = deque(maxlen=KEPT_OUTAGES)  # the newest outages, newest last

    @property
    def model_id(self) -> str:
        return self.primary.model_id

    @property
    def version(self) -> str:
        return self.primary.version

    @property
    def listeners(self) -> list:
        """Outage listeners of the primary (it knows when it goes down and comes back)."""
        return self.primary.listeners

    @property
    def in_outage(self) -> bool:
        return self.outage_since is not None

    def status(self) -> dict:
        return {**self.primary.status(), "fallback": self.fallback.status(),
                "outage": {"since": self.outage_since, "reason": self.outage_reason} if self.in_outage else None,
                "fallback_requests": self.fallback_requests, "outages": list(self.outages)[-20:]}

    async def start(self, request: GenerationRequest) -> Generation:
        if time.monotonic() >= self.bypass_until:
            try:
                generation = await self.primary.start(request)
            except (UpstreamUnavailable, UpstreamError) as exc:
                self._begin_outage(exc.message)
            else:
                self._end_outage()
                return generation
        self.fallback_requests += 1
        generation = await self.fallback.start(request)
        generation.served_by = self.fallback.version
        return generation

    def _begin_outage(self, reason: str) -> None:
        self.bypass_until = time.monotonic() + self.retry_seconds
        if self.outage_since is None:
            self.outage_since = time.time()
            self.outage_reason = reason
            self.outages.append({"started_at": self.outage_since, "reason": reason, "ended_at": None,
                                 "fallback_requests": 0})
            log.error("upstream outage: %s; answering with %s meanwhile", reason, self.fallback.version)

    def _end_outage(self) -> None:
        if self.outage_since is not None:
            record = self.outages[-1]
            record["ended_at"] = time.time()
            record["fallback_requests"] = self.fallback_requests
            log.warning("upstream is back after %.0f s", record["ended_at"] - record["started_at"])
            self.outage_since = self.outage_reason = None

    async def close(self, drain_seconds: float = 0.0) -> None:
        await self.primary.close(drain_seconds)
        await self.fallback.close(drain_seconds)
