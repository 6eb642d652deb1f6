"""Who is calling: a session cookie (the web UI) or an API key (programs), checked on every request.

Every `/v1` and `/api` path needs one or the other, except the login itself; admin endpoints use
the `admin_only` guard. Unsafe requests that ride on a session cookie must also send the session's
CSRF token in `X-CSRF-Token` (keys are exempt: a browser never attaches them on its own). State
changes by admins are written to the audit log here, once, rather than in every handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import MiddlewareProtocol
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance.accounts import Accounts, User
from appliance.errors import AuthenticationRequired, PermissionDenied
from appliance.settings import Settings

SESSION_COOKIE = "appliance_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/api/auth/login"})
LOCAL_USER = "developer"


@dataclass(frozen=True)
class Principal:
    """The caller. With auth off, everyone is the local developer (an admin) and `open` is True."""

    user: User
    via: str  # "session", "key" or "open"
    csrf_token: str | None = None
    key_id: int | None = None

    @property
    def open(self) -> bool:
        return self.via == "open"

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin

    @property
    def name(self) -> str:
        return self.user.username

    def public(self) -> dict[str, Any]:
        return {**self.user.public(), "via": self.via}


def local_user(accounts: Accounts, default_groups: list[str]) -> User:
    """The user every request acts as while auth is off (development only)."""
    user = accounts.by_name(LOCAL_USER)
    if user is None:
        user = accounts.create_user(LOCAL_USER, None, role="admin", groups=default_groups,
                                    display_name="Local developer (auth off)")
    return user


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1").strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return api_key or None


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


def resolve(accounts: Accounts, headers: dict[bytes, bytes]) -> Principal | None:
    """The principal behind a request's credentials, or None (blocking: SQLite)."""
    key = _bearer(headers)
    if key:
        found = accounts.key_user(key)
        if found is None:
            raise AuthenticationRequired("This API key is unknown or revoked; ask an admin for a new one.")
        user, api_key = found
        return Principal(user, "key", key_id=api_key.id)
    token = _cookie(headers, SESSION_COOKIE)
    if token:
        session = accounts.session(token)
        if session is not None:
            return Principal(session.user, "session", csrf_token=session.csrf_token)
    return None


def needs_credentials(path: str, settings: Settings) -> bool:
    if path in OPEN_PATHS:
        return False
    if path.startswith(("/v1/", "/api/")) or path in ("/v1", "/api"):
        return True
    return settings.auth.protect_metrics and path == "/metrics"


class AuthMiddleware(MiddlewareProtocol):
    def __init__(self, app: ASGIApp, accounts: Accounts, settings: Settings, local: User | None = None):
        self.app = app
        self.accounts = accounts
        self.settings = settings
        self.local = local

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        method = scope["method"]
        if self.local is not None:
            principal: Principal | None = Principal(self.local, "open")
        else:
            headers = dict(scope["headers"])
            required = needs_credentials(path, self.settings)
            try:
                principal = await anyio.to_thread.run_sync(resolve, self.accounts, headers)
            except AuthenticationRequired:
                if required:
                    raise
                principal = None  # a stale key sent to an open page (health, the UI) is ignored
            if principal is None and required:
                raise AuthenticationRequired()
            if principal is not None and principal.via == "session" and method not in SAFE_METHODS \
                    and headers.get(CSRF_HEADER.encode(), b"").decode("latin-1") != principal.csrf_token:
                raise PermissionDenied("The CSRF token is missing or stale; reload the page "
                                       "(programs should use an API key instead of a session).")
        scope["principal"] = principal
        if principal is None or method in SAFE_METHODS or not _audited(scope):
            await self.app(scope, receive, send)
            return

        status: list[int] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            await anyio.to_thread.run_sync(self._audit, scope, principal, status[0] if status else 500)

    def _audit(self, scope: Scope, principal: Principal, status: int) -> None:
        handler = scope["route_handler"]
        action = handler.opt.get("audit") or handler.handler_name
        detail = scope.get("audit_detail") or {}
        target = str(detail.pop("target", "")) or scope["path"]
        self.accounts.audit(principal.name, action, target, status=status, ip=client_ip(scope),
                            via=principal.via, method=scope["method"], **detail)


def _audited(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    return handler is not None and admin_only in handler.resolve_guards()


def principal_of(connection: ASGIConnection) -> Principal | None:
    return connection.scope.get("principal")


def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: the caller must have the admin role (its unsafe requests are audited)."""
    principal = principal_of(connection)
    if principal is None:
        raise AuthenticationRequired()
    if not principal.is_admin:
        raise PermissionDenied("This needs the admin role; ask an admin of this appliance.")


def signed_in(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard for pages of data that belong to a user (conversations, own account)."""
    if principal_of(connection) is None:
        raise AuthenticationRequired()


def note_audit(connection: ASGIConnection, target: str = "", **detail: Any) -> None:
    """Add what an admin action touched to its audit entry (written by the middleware)."""
    entry = connection.scope.setdefault("audit_detail", {})  # type: ignore[typeddict-item]
    if target:
        entry["target"] = target
    entry.update(detail)
