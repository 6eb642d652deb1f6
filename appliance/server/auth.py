"""Who is calling: a session cookie (the web UI) or an API key (programs), checked on every request.

Every `/v1` and `/api` path needs one or the other, except the login itself; `/metrics` too when
`auth.protect_metrics` is on. Route guards then decide: `signed_in` (any user) or `admin_only`.
Unsafe requests that ride on a session cookie must also send the session's CSRF token in
`X-CSRF-Token` (keys are exempt: a browser never attaches them on its own). State changes by
admins are written to the audit log here, once, rather than in every handler.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import MiddlewareProtocol
from litestar.openapi.spec import Operation, SecurityRequirement, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance.accounts import Accounts, User
from appliance.datafolder import LOCAL_TOKEN_PREFIX
from appliance.errors import AuthenticationRequired, PermissionDenied
from appliance.settings import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "appliance_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/api/auth/login"})
PRINCIPAL_KEY = "appliance.principal"
OPERATOR_HEADER = b"x-appliance-operator"
_OPERATOR_NAME = re.compile(r"^[\w.@-]{1,64}$")
AUDIT_KEY = "appliance.audit"

# The OpenAPI document declares both ways in; every operation needs one of them (the document's
# default) unless it says otherwise, so generated clients and the interactive docs send the key.
SECURITY_SCHEMES = {
    "apiKey": SecurityScheme(
        type="http", scheme="bearer", bearer_format="erp-...",
        description="An API key, sent as `Authorization: Bearer erp-...` (create one with "
        "`appliance keys create` or in the admin console)."),
    "session": SecurityScheme(
        type="apiKey", name=SESSION_COOKIE, security_scheme_in="cookie",
        description="The web UI's session cookie, set by POST /api/auth/login; unsafe requests "
        "also send its CSRF token in X-CSRF-Token."),
}
CREDENTIALS: list[SecurityRequirement] = [{"apiKey": []}, {"session": []}]


@dataclass
class OpenOperation(Operation):
    """The OpenAPI operation of a route that needs no credentials (overrides the default)."""

    def __post_init__(self) -> None:
        self.security = []


@dataclass
class OptionalCredentialsOperation(Operation):
    """An operation that is open unless a setting protects it (`/metrics`)."""

    def __post_init__(self) -> None:
        self.security = [{}, *CREDENTIALS]


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
    def operator(self) -> bool:
        """A command on the appliance's own machine (the local admin token)."""
        return self.via == "local"

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin

    @property
    def name(self) -> str:
        return self.user.username

    @property
    def groups(self) -> tuple[str, ...]:
        return self.user.groups

    def public(self) -> dict[str, Any]:
        return {**self.user.public(), "via": self.via}


def operator_principal(headers: dict[bytes, bytes]) -> Principal:
    """A command run on this machine with the server's local admin token (see
    appliance.datafolder): an admin named after the operating-system user, for the audit log."""
    name = headers.get(OPERATOR_HEADER, b"").decode("latin-1").strip()
    name = name if _OPERATOR_NAME.match(name) else "operator"
    user = User(id=0, username=f"cli:{name}", display_name="Operator on the appliance's machine",
                role="admin", groups=(), active=True, created_at=0.0, last_login_at=None)
    return Principal(user, "local")


def local_principal(accounts: Accounts, settings: Settings) -> Principal:
    """The principal of every request while auth is off (development only)."""
    return Principal(accounts.local_user(settings.knowledge.default_groups), "open")


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1").strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
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


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class AuthMiddleware(MiddlewareProtocol):
    """Puts the caller's Principal on the scope; refuses missing credentials and CSRF failures."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        principal: Principal | None = state.get("local_principal")
        if principal is None and path not in OPEN_PATHS:
            principal = await self._authenticate(scope, state.accounts, path, method)
        scope[PRINCIPAL_KEY] = principal  # type: ignore[literal-required]
        if principal is None or method in SAFE_METHODS or not _audited(scope):
            await self.app(scope, receive, send)
            return

        audited = False

        async def audit(status: int) -> None:
            nonlocal audited
            audited = True
            await anyio.to_thread.run_sync(self._audit, state.accounts, scope, principal, status)

        async def send_wrapper(message: Message) -> None:
            # Written before the response starts: once a client sees the answer, the entry exists.
            if message["type"] == "http.response.start" and not audited:
                await audit(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not audited:  # no response at all: the handler failed beyond the error handlers
                await audit(500)

    async def _authenticate(self, scope: Scope, accounts: Accounts, path: str,
                            method: str) -> Principal | None:
        headers = dict(scope["headers"])
        required = needs_credentials(path, self.settings)
        has_credentials = (b"authorization" in headers or b"x-api-key" in headers
                           or SESSION_COOKIE.encode() in headers.get(b"cookie", b""))
        principal = None
        bearer = _bearer(headers)
        if bearer is not None and bearer.startswith(LOCAL_TOKEN_PREFIX):
            token = scope["app"].state.get("local_token")
            # Only from this machine, and only this server's current token (new at every start).
            if token and hmac.compare_digest(bearer.encode(), token.encode()) and \
                    is_loopback(client_ip(scope)):
                return operator_principal(headers)
            raise AuthenticationRequired("This local admin token is not this server's current one "
                                         "(it changes at every start) or was sent from another "
                                         "machine; run the command again on the appliance itself.")
        if has_credentials:
            try:
                principal = await anyio.to_thread.run_sync(resolve, accounts, headers)
            except AuthenticationRequired:
                if required:
                    raise
                # a stale key sent to an open page (health, the UI's files) is ignored
        if principal is None and required:
            raise AuthenticationRequired()
        if principal is not None and principal.via == "session" and method not in SAFE_METHODS:
            sent = headers.get(CSRF_HEADER.encode(), b"").decode("latin-1")
            if not hmac.compare_digest(sent.encode(), (principal.csrf_token or "").encode()):
                raise PermissionDenied("The CSRF token is missing or stale: send the csrf_token from "
                                       "GET /api/auth/me in X-CSRF-Token (programs should use an "
                                       "API key instead of a session).")
        return principal

    @staticmethod
    def _audit(accounts: Accounts, scope: Scope, principal: Principal, status: int) -> None:
        handler = scope["route_handler"]
        action = handler.opt.get("audit") or handler.handler_name
        detail = dict(scope.get(AUDIT_KEY) or {})  # type: ignore[call-overload]
        target = str(detail.pop("target", "")) or scope["path"]
        try:
            accounts.audit(principal.name, action, target, status=status, ip=client_ip(scope),
                           via=principal.via, method=scope["method"], path=scope["path"], **detail)
        except Exception:  # the action happened; a failed audit write must be loud, not silent
            log.exception("could not write the audit entry for %s %s by %s", scope["method"],
                          scope["path"], principal.name)


def _audited(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    return handler is not None and admin_only in handler.resolve_guards()


def principal_of(connection: ASGIConnection) -> Principal | None:
    return connection.scope.get(PRINCIPAL_KEY)  # type: ignore[call-overload]


def require_principal(connection: ASGIConnection) -> Principal:
    principal = principal_of(connection)
    if principal is None:
        raise AuthenticationRequired()
    return principal


# Guards are coroutines: Litestar runs plain functions in a worker thread, a hop per request.
async def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: the caller must have the admin role (its unsafe requests are audited)."""
    if not require_principal(connection).is_admin:
        raise PermissionDenied("This needs the admin role; ask an admin of this appliance.")


async def signed_in(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: any authenticated caller (a user's session or key)."""
    require_principal(connection)


async def metrics_reader(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard of the Prometheus endpoint: open, or admins only with `auth.protect_metrics`."""
    if connection.app.state.settings.auth.protect_metrics:
        await admin_only(connection, handler)


def note_audit(connection: ASGIConnection, target: str = "", **detail: Any) -> None:
    """Add what an admin action touched to its audit entry (written by the middleware)."""
    entry = connection.scope.setdefault(AUDIT_KEY, {})  # type: ignore[typeddict-item]
    if target:
        entry["target"] = target
    entry.update(detail)
