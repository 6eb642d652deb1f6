"""An OpenAI-compatible HTTP upstream (vLLM, llama.cpp's server, a GPT-class endpoint) as a backend."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx

from appliance.errors import ApplianceError, ConfigError, ContextLengthExceeded, InvalidRequest
from appliance.llm.base import Event, Finished, Generation, GenerationRequest, LLMBackend, TextDelta
from appliance.settings import UpstreamSettings

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}


class UpstreamUnavailable(ApplianceError):
    """The upstream could not be reached or kept failing; the caller may retry later."""

    status = 503
    code = "upstream_unavailable"
    kind = "server_error"


class UpstreamError(ApplianceError):
    """The upstream answered, but with an error or something that is not an OpenAI response."""

    status = 502
    code = "upstream_error"
    kind = "server_error"


def check_on_prem(base_url: str, allow_public: bool) -> None:
    """Refuse an upstream outside the private network unless explicitly allowed (air-gap rule)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"llm.upstream.base_url {base_url!r} must be an http(s) URL, e.g. "
                          "http://10.0.0.5:8000/v1.")
    if allow_public:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConfigError(f"The upstream host {parts.hostname!r} does not resolve ({exc}); check "
                          "llm.upstream.base_url.") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not (address.is_private or address.is_loopback or address.is_link_local):
            raise ConfigError(
                f"The upstream {parts.hostname} resolves to the public address {address}. This "
                "appliance only talks to on-prem addresses; set llm.upstream.allow_public = true "
                "if your policy allows a hosted endpoint."
            )


class UpstreamGeneration(Generation):
    def __init__(self, backend: UpstreamBackend, response: httpx.Response, started: float):
        self._backend = backend
        self._response = response
        self._started = started
        self.prompt_tokens = 0
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[Event]:
        chunks = 0
        usage = None
        finish = "stop"
        first = None
        try:
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    chunk = json.loads(payload)
                except json.JSONDecodeError as exc:
                    raise UpstreamError(f"The upstream sent a stream chunk that is not JSON: {payload[:120]!r}") from exc
                if "error" in chunk:
                    message = chunk["error"].get("message", "unknown error") if isinstance(chunk["error"], dict) else chunk["error"]
                    raise UpstreamError(f"The upstream failed while answering: {message}")
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                    if text:
                        chunks += 1
                        first = first or time.perf_counter()
                        yield TextDelta(text)
                    finish = choice.get("finish_reason") or finish
        except httpx.TimeoutException as exc:
            self._backend.record_failure(exc)
            raise UpstreamUnavailable("The upstream stopped sending the answer (read timeout).") from exc
        except httpx.TransportError as exc:
            self._backend.record_failure(exc)
            raise UpstreamUnavailable(f"The connection to the upstream broke: {exc}.") from exc
        finally:
            await self.aclose()
        prompt_tokens = (usage or {}).get("prompt_tokens", 0)
        completion = (usage or {}).get("completion_tokens", chunks)
        self.prompt_tokens = prompt_tokens
        end = time.perf_counter()
        yield Finished(finish if finish in ("stop", "length") else "stop", prompt_tokens, completion,
                       {"total_ms": 1000 * (end - self._started),
                        "queue_ms": 1000 * ((first or end) - self._started)})

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._response.aclose()

    def cancel(self) -> None:
        if not self._closed:
            self._closed = True
            asyncio.ensure_future(self._response.aclose())  # closing the stream tells the upstream


class UpstreamBackend(LLMBackend):
    """Streams every request from the upstream; retries only before the first byte arrives."""

    def __init__(self, settings: UpstreamSettings):
        if not settings.base_url or not settings.model:
            raise ConfigError("llm.backend = 'openai' needs llm.upstream.base_url and llm.upstream.model.")
        check_on_prem(settings.base_url, settings.allow_public)
        self.settings = settings
        api_key = settings.api_key or (os.environ.get(settings.api_key_env) if settings.api_key_env else "")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=settings.max_connections,
                                max_keepalive_connections=settings.max_connections),
            follow_redirects=False,  # a redirect could lead off the on-prem network
            trust_env=False,  # proxies from the environment would too
        )
        self.failures = 0
        self.last_error: str | None = None
        self.last_failure_at: float | None = None
        self.outage_since: float | None = None
        self.listeners: list = []  # listener(event, detail) on "outage_started" / "outage_ended"

    @property
    def model_id(self) -> str:
        return self.settings.served_name or self.settings.model

    @property
    def version(self) -> str:
        return f"upstream:{self.settings.model}@{self.settings.base_url}"

    def status(self) -> dict:
        return {"model": self.model_id, "version": self.version, "backend": "openai",
                "base_url": self.settings.base_url, "ready": True, "failures": self.failures,
                "last_error": self.last_error, "outage_since": self.outage_since}

    def record_failure(self, exc: Exception | str) -> None:
        self.failures += 1
        self.last_error = str(exc)
        self.last_failure_at = time.time()

    def _outage(self, reason: str) -> None:
        if self.outage_since is None:
            self.outage_since = time.time()
            self._notify("outage_started", {"reason": reason, "base_url": self.settings.base_url})

    def _recovered(self) -> None:
        if self.outage_since is not None:
            detail = {"base_url": self.settings.base_url, "seconds": time.time() - self.outage_since}
            self.outage_since = None
            self._notify("outage_ended", detail)

    def _notify(self, event: str, detail: dict) -> None:
        for listener in self.listeners:
            try:
                listener(event, detail)
            except Exception:  # an alert channel must never break answering
                log.exception("outage listener failed")

    def _payload(self, request: GenerationRequest) -> tuple[str, dict]:
        p = request.params
        body: dict = {"model": self.settings.model, "stream": True,
                      "stream_options": {"include_usage": True}, "temperature": p.temperature,
                      "top_p": p.top_p, "max_tokens": p.max_tokens or self.settings.default_max_tokens}
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            body["seed"] = p.seed
        if p.presence_penalty:
            body["presence_penalty"] = p.presence_penalty
        if p.frequency_penalty:
            body["frequency_penalty"] = p.frequency_penalty
        if self.settings.send_extensions:  # vLLM and llama.cpp accept these; OpenAI's own API does not
            body.update(top_k=p.top_k, min_p=p.min_p, repeat_penalty=p.repeat_penalty)
        if request.messages is not None:
            return "/chat/completions", {**body, "messages": list(request.messages)}
        return "/completions", {**body, "prompt": request.prompt}

    async def start(self, request: GenerationRequest) -> Generation:
        path, body = self._payload(request)
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                response = await self.client.send(self.client.build_request("POST", path, json=body), stream=True)
            except httpx.TimeoutException as exc:
                error: ApplianceError = UpstreamUnavailable(
                    f"The upstream at {self.settings.base_url} did not answer in time ({exc.__class__.__name__})."
                )
            except httpx.TransportError as exc:
                error = UpstreamUnavailable(f"The upstream at {self.settings.base_url} cannot be reached: {exc}.")
            else:
                if response.status_code == 200:
                    self._recovered()
                    return UpstreamGeneration(self, response, started)
                detail = await _error_detail(response)
                if response.status_code not in RETRY_STATUSES:
                    raise _client_error(response.status_code, detail)
                retry_after = response.headers.get("retry-after")
                error = UpstreamError(f"The upstream answered HTTP {response.status_code}: {detail}")
                if response.status_code in (429, 503):
                    error = UpstreamUnavailable(f"The upstream is overloaded (HTTP {response.status_code}): {detail}")
                if retry_after and retry_after.isdigit():
                    error.headers = {"Retry-After": retry_after}
            self.record_failure(error.message)
            if attempt + 1 < attempts:
                delay = self.settings.backoff_seconds * (2**attempt) * (0.5 + random.random())
                log.warning("upstream attempt %d failed (%s); retrying in %.2fs", attempt + 1, error.message, delay)
                await asyncio.sleep(delay)
        if isinstance(error, (UpstreamUnavailable, UpstreamError)):
            self._outage(error.message)
        raise error

    async def close(self, drain_seconds: float = 0.0) -> None:
        await self.client.aclose()


async def _error_detail(response: httpx.Response) -> str:
    try:
        raw = await response.aread()
    finally:
        await response.aclose()
    try:
        data = json.loads(raw)
        error = data.get("error", data)
        return str(error.get("message", error) if isinstance(error, dict) else error)[:500]
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:200] or "(empty body)"


def _client_error(status: int, detail: str) -> ApplianceError:
    if status == 400 and ("context" in detail.lower() or "too long" in detail.lower()):
        return ContextLengthExceeded(f"The upstream model refused the prompt as too long: {detail}")
    if status in (400, 404, 422):
        return InvalidRequest(f"The upstream refused the request (HTTP {status}): {detail}")
    error = UpstreamError(f"The upstream refused the request (HTTP {status}): {detail}. "
                          "Check llm.upstream.api_key and llm.upstream.model.")
    return error
