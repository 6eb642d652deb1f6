"""Quotas over HTTP: admission of metered requests, the caller's usage, and the admins' view.

A route is metered when its handler says so: `opt={"quota": "tokens"}` (chat, completions,
embeddings: requests per minute and tokens per day) or `opt={"quota": "requests"}` (search:
requests per minute only). `QuotaMiddleware`, inside authentication, lets the request in or
answers 429 before the handler runs, and settles the tokens when the response is over; handlers
report tokens through `meter(request)`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, get, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.middleware import MiddlewareProtocol
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from msgspec import Meta

from appliance.accounts import Accounts
from appliance.accounts.exports import Period
from appliance.accounts.quotas import MAX_LIMIT, Limits, Quotas, Ticket
from appliance.errors import NotReady
from appliance.server.auth import (
    PRINCIPAL_KEY,
    admin_only,
    note_audit,
    require_principal,
    signed_in,
)

log = logging.getLogger(__name__)

TICKET_KEY = "appliance.quota_ticket"
IdPath = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
LimitValue = Annotated[int, Meta(ge=0, le=MAX_LIMIT)]
Day = Annotated[str | None, QueryParameter(max_length=10)]


class QuotaBody(msgspec.Struct, forbid_unknown_fields=True):
    """null (or left out) inherits: the role's default for a user, no limit of its own for a key."""

    requests_per_minute: LimitValue | None = None
    tokens_per_day: LimitValue | None = None


def quotas_of(state: State) -> Quotas:
    quotas = state.get("quotas")
    if quotas is None:
        raise NotReady("The appliance is still starting; retry in a few seconds.")
    return quotas


def _request_tokens(state: State) -> int:
    """The most one request can use: the model's context (prompt plus completion)."""
    backend = state.assistant.backend
    if backend is not None and backend.ready:
        return backend.context_limit
    return state.settings.engine.max_request_tokens


def meter(connection: ASGIConnection) -> Ticket:
    """This request's quota ticket; a detached one when the route is not metered."""
    ticket = connection.scope.get(TICKET_KEY)  # type: ignore[call-overload]
    return ticket if ticket is not None else Ticket(None, 0, 0, "")


class QuotaMiddleware(MiddlewareProtocol):
    """Admits metered requests (429 past a limit) and settles their tokens at the end."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler") if scope["type"] == "http" else None
        kind = handler.opt.get("quota") if handler is not None else None
        principal = scope.get(PRINCIPAL_KEY)  # type: ignore[call-overload]
        state = scope["app"].state
        quotas: Quotas | None = state.get("quotas")
        if kind is None or principal is None or quotas is None:
            await self.app(scope, receive, send)
            return
        user, key_id = principal.user, principal.key_id
        limits = quotas.cached_limits(user, key_id)
        if limits is None:  # an override not read yet: SQLite, off the event loop
            limits = await anyio.to_thread.run_sync(quotas.limits, user, key_id)
        hold = _request_tokens(state) if kind == "tokens" else 0
        # Synchronous from the check to the reservation: no other request can come in between.
        ticket = quotas.admit(user, key_id, hold=hold, limits=limits)
        scope[TICKET_KEY] = ticket  # type: ignore[literal-required]

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in quotas.headers(ticket).items()]
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            ticket.close()


def _own_usage(quotas: Quotas, request: Request) -> dict[str, Any]:
    principal = require_principal(request)
    limits = quotas.limits(principal.user, principal.key_id)
    body: dict[str, Any] = {"day": quotas.day(), "timezone": quotas.settings.timezone}
    for subject, limit in limits.items():
        body[subject[0]] = quotas.live(subject, limit)
    return body


class UsageController(Controller):
    path = "/api/usage"
    tags = ["Quotas and usage"]
    guards = [signed_in]

    @get("/", summary="The caller's limits and what they used: requests in the last minute, tokens "
         "today (and the API key's, when called with one)")
    async def own_usage(self, request: Request, state: State) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_own_usage, quotas_of(state), request)


class QuotasController(Controller):
    path = "/api/admin"
    tags = ["Quotas and usage"]
    guards = [admin_only]

    @get("/quotas", summary="Role defaults, every user and API key with limits, overrides and today's use")
    async def overview(self, state: State) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(quotas_of(state).overview)

    @put("/quotas/users/{user_id:int}", summary="Set a user's limits (null: the role's default; 0: no limit)",
         opt={"audit": "quota_changed"})
    async def set_user(self, user_id: IdPath, data: JSONBody[QuotaBody], request: Request,
                       state: State) -> dict[str, Any]:
        return await _set(request, state, "user", user_id, data)

    @put("/quotas/keys/{key_id:int}", summary="Set an API key's own limits (null: none beyond its user's; "
         "0: no limit)", opt={"audit": "quota_changed"})
    async def set_key(self, key_id: IdPath, data: JSONBody[QuotaBody], request: Request,
                      state: State) -> dict[str, Any]:
        return await _set(request, state, "key", key_id, data)

    @get("/usage", summary="Daily usage per user and key over a period (days as YYYY-MM-DD, in "
         "quotas.timezone; default the last 30 days)")
    async def usage(self, state: State, since: Day = None, until: Day = None,
                    user_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
                    ) -> dict[str, Any]:
        quotas = quotas_of(state)
        period = Period.parse(since, until, quotas.zone)
        rows = await anyio.to_thread.run_sync(
            lambda: quotas.usage(period.since.isoformat(), period.until.isoformat(), user_id=user_id))
        return {"since": period.since.isoformat(), "until": period.until.isoformat(),
                "timezone": quotas.settings.timezone, "rows": rows}


async def _set(request: Request, state: State, kind: str, ident: int, data: QuotaBody) -> dict[str, Any]:
    quotas = quotas_of(state)
    note_audit(request, f"{kind} {ident}", requests_per_minute=data.requests_per_minute,
               tokens_per_day=data.tokens_per_day)
    accounts: Accounts = state.accounts

    def change() -> dict[str, Any]:
        override = quotas.set_override(kind, ident, data.requests_per_minute, data.tokens_per_day)
        if kind == "user":
            user = accounts.user(ident)
            note_audit(request, user.username, user_id=user.id)
            return {"user_id": user.id, "username": user.username, "override": override.public(),
                    "limits": override.over(quotas.role_limits(user.role)).public()}
        key = accounts.key(ident)
        note_audit(request, f"{key.username}/{key.name}", key_id=key.id)
        return {"key_id": key.id, "name": key.name, "username": key.username,
                "override": override.public(), "limits": override.over(Limits()).public()}

    return await anyio.to_thread.run_sync(change)


async def write_usage(quotas: Quotas) -> None:
    """Write usage counted in memory to accounts.db every `quotas.flush_seconds`, until cancelled."""
    while True:
        await asyncio.sleep(quotas.settings.flush_seconds)
        try:
            await anyio.to_thread.run_sync(quotas.flush)
        except Exception:  # a locked or full disk now: the counts stay pending for the next try
            log.exception("could not write usage to accounts.db; retrying in %.0f s",
                          quotas.settings.flush_seconds)
