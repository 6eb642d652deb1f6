"""Login, logout and the caller's own account under /api/auth; users, keys and audit under /api/admin."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import Cookie, State
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import Meta

from appliance.accounts import ROLES, Accounts
from appliance.errors import InvalidRequest, NotFound
from appliance.server.auth import (
    SESSION_COOKIE,
    OpenOperation,
    Principal,
    admin_only,
    client_ip,
    note_audit,
    require_principal,
    signed_in,
)
from appliance.settings import Settings

Name = Annotated[str, Meta(min_length=1, max_length=64)]
Password = Annotated[str, Meta(min_length=1, max_length=1024)]
Id = Annotated[int, Meta(ge=1, le=2**63 - 1)]
IdPath = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
Groups = Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=64)]
KEY_NOTICE = "Copy the key now: the appliance stores only its hash and cannot show it again."


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: Name
    password: Password


class PasswordBody(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    username: Name
    password: Password | None = None
    role: str = "employee"
    groups: Groups | None = None
    display_name: Annotated[str, Meta(max_length=200)] = ""


class UserChange(msgspec.Struct, forbid_unknown_fields=True):
    role: str | None = None
    groups: Groups | None = None
    display_name: Annotated[str, Meta(max_length=200)] | None = None
    active: bool | None = None
    password: Password | None = None


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Id
    name: Annotated[str, Meta(min_length=1, max_length=100)]


class NewOwnKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]


def _secure(request: Request, settings: Settings) -> bool:
    mode = settings.auth.cookie_secure
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def _session_cookie(request: Request, settings: Settings, token: str, max_age: int | None) -> Cookie:
    return Cookie(key=SESSION_COOKIE, value=token, path="/", httponly=True, samesite="strict",
                  secure=_secure(request, settings), max_age=max_age)


def _me(principal: Principal, settings: Settings) -> dict[str, Any]:
    return {"user": principal.public(), "csrf_token": principal.csrf_token,
            "auth_enabled": settings.auth.enabled}


def _settings(state: State) -> Settings:
    return state.settings


def _accounts(state: State) -> Accounts:
    return state.accounts


def _own_account(principal: Principal) -> None:
    if principal.open:
        raise InvalidRequest("Auth is off on this appliance (auth.enabled = false): there is no "
                             "account to change. Turn auth on and sign in as a user.")


class AuthController(Controller):
    path = "/api/auth"
    tags = ["Accounts"]

    @post("/login", summary="Log in with a user name and password: sets the session cookie",
          status_code=200, operation_class=OpenOperation)
    async def login(self, data: JSONBody[LoginBody], request: Request, state: State) -> Response:
        accounts, settings = _accounts(state), _settings(state)
        ip = client_ip(request.scope)
        agent = request.headers.get("user-agent", "")
        try:
            token, session = await anyio.to_thread.run_sync(
                lambda: accounts.login(data.username, data.password, ip=ip, user_agent=agent))
        except Exception as exc:
            status, reason = getattr(exc, "status", 500), getattr(exc, "code", "internal_error")
            await anyio.to_thread.run_sync(
                lambda: accounts.audit(data.username, "login_failed", data.username,
                                       status=status, ip=ip, reason=reason))
            raise
        await anyio.to_thread.run_sync(
            lambda: accounts.audit(session.user.username, "login", session.user.username, status=200, ip=ip))
        principal = Principal(session.user, "session", csrf_token=session.csrf_token)
        return Response(_me(principal, settings), cookies=[_session_cookie(request, settings, token, None)])

    @post("/logout", summary="End the session", status_code=200, guards=[signed_in])
    async def logout(self, request: Request, state: State) -> Response:
        accounts = _accounts(state)
        principal = require_principal(request)
        token = request.cookies.get(SESSION_COOKIE)
        if token and principal.via == "session":
            await anyio.to_thread.run_sync(accounts.logout, token)
            await anyio.to_thread.run_sync(
                lambda: accounts.audit(principal.name, "logout", principal.name, status=200,
                                       ip=client_ip(request.scope)))
        return Response({"logged_out": True}, cookies=[_session_cookie(request, _settings(state), "", 0)])

    @get("/me", summary="The caller: user, role, groups, and the CSRF token for the UI", guards=[signed_in])
    async def me(self, request: Request, state: State) -> dict[str, Any]:
        return _me(require_principal(request), _settings(state))

    @post("/password", summary="Change one's own password: every session ends, this one gets a new one",
          status_code=200, guards=[signed_in])
    async def change_password(self, data: JSONBody[PasswordBody], request: Request, state: State) -> Response:
        accounts, settings = _accounts(state), _settings(state)
        principal = require_principal(request)
        _own_account(principal)
        ip = client_ip(request.scope)

        def change() -> tuple[str, Any] | None:
            accounts.change_password(principal.user.id, data.current_password, data.new_password)
            accounts.audit(principal.name, "password_changed", principal.name, status=200, ip=ip,
                           via=principal.via)
            if principal.via != "session":
                return None
            return accounts.login(principal.name, data.new_password, ip=ip,
                                  user_agent=request.headers.get("user-agent", ""))

        renewed = await anyio.to_thread.run_sync(change)
        if renewed is None:
            return Response({"changed": True, **_me(principal, settings)})
        token, session = renewed
        fresh = Principal(session.user, "session", csrf_token=session.csrf_token)
        return Response({"changed": True, **_me(fresh, settings)},
                        cookies=[_session_cookie(request, settings, token, None)])

    @get("/keys", summary="The caller's own API keys (never their secrets)", guards=[signed_in])
    async def own_keys(self, request: Request, state: State) -> dict[str, Any]:
        principal = require_principal(request)
        keys = await anyio.to_thread.run_sync(_accounts(state).keys, principal.user.id)
        return {"keys": [k.public() for k in keys]}

    @post("/keys", summary="Create an API key for oneself; the secret is shown only in this response",
          status_code=201, guards=[signed_in])
    async def create_own_key(self, data: JSONBody[NewOwnKey], request: Request, state: State) -> dict[str, Any]:
        accounts = _accounts(state)
        principal = require_principal(request)
        _own_account(principal)

        def create():
            secret, key = accounts.create_key(principal.user.id, data.name)
            accounts.audit(principal.name, "key_created", f"{key.username}/{key.name}", status=201,
                           ip=client_ip(request.scope), key_id=key.id, prefix=key.prefix)
            return secret, key

        secret, key = await anyio.to_thread.run_sync(create)
        return {**key.public(), "key": secret, "notice": KEY_NOTICE}

    @delete("/keys/{key_id:int}", summary="Revoke one of one's own API keys", status_code=200,
            guards=[signed_in])
    async def revoke_own_key(self, key_id: IdPath, request: Request, state: State) -> dict[str, Any]:
        accounts = _accounts(state)
        principal = require_principal(request)

        def revoke():
            if accounts.key(key_id).user_id != principal.user.id:
                raise NotFound(f"No API key with id {key_id} of yours; GET /api/auth/keys lists them.")
            key = accounts.revoke_key(key_id)
            accounts.audit(principal.name, "key_revoked", f"{key.username}/{key.name}", status=200,
                           ip=client_ip(request.scope), key_id=key.id)
            return key

        try:
            key = await anyio.to_thread.run_sync(revoke)
        except NotFound:
            raise NotFound(f"No API key with id {key_id} of yours; GET /api/auth/keys lists them.") from None
        return key.public()


class AdminController(Controller):
    path = "/api/admin"
    tags = ["Administration"]
    guards = [admin_only]

    @get("/users", summary="Every user with role, groups and state")
    async def users(self, accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        users = await anyio.to_thread.run_sync(accounts.users)
        return {"users": [u.public() for u in users], "roles": list(ROLES)}

    @post("/users", summary="Create a user", status_code=201, opt={"audit": "user_created"})
    async def create_user(self, data: JSONBody[NewUser], request: Request,
                          accounts: NamedDependency[Accounts],
                          settings: NamedDependency[Settings]) -> dict[str, Any]:
        groups = settings.knowledge.default_groups if data.groups is None else data.groups
        note_audit(request, data.username)
        user = await anyio.to_thread.run_sync(lambda: accounts.create_user(
            data.username, data.password, role=data.role, groups=groups, display_name=data.display_name))
        note_audit(request, user.username, user_id=user.id, role=user.role, groups=list(user.groups))
        return user.public()

    @patch("/users/{user_id:int}", summary="Change a user's role, groups, name, state or password",
           opt={"audit": "user_changed"})
    async def change_user(self, user_id: IdPath, data: JSONBody[UserChange], request: Request,
                          accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        principal = require_principal(request)
        changed = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None and k != "password"}
        note_audit(request, str(user_id), **changed, password_reset=data.password is not None)
        if principal.user.id == user_id and (data.active is False or data.role not in (None, "admin")):
            raise InvalidRequest("Admins cannot disable or demote themselves; ask another admin.")

        def change():
            if data.password is not None:  # checked first: a bad password changes nothing
                accounts.check_password_change(user_id, data.password)
            user = accounts.update_user(user_id, role=data.role, groups=data.groups,
                                        display_name=data.display_name, active=data.active)
            if data.password is not None:
                accounts.set_password(user_id, data.password)
            return user

        user = await anyio.to_thread.run_sync(change)
        note_audit(request, user.username, user_id=user.id)
        return user.public()

    @delete("/users/{user_id:int}", summary="Delete a user with their keys and history", status_code=200,
            opt={"audit": "user_deleted"})
    async def delete_user(self, user_id: IdPath, request: Request,
                          accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        note_audit(request, str(user_id))
        if require_principal(request).user.id == user_id:
            raise InvalidRequest("Admins cannot delete themselves; ask another admin.")
        user = await anyio.to_thread.run_sync(accounts.delete_user, user_id)
        note_audit(request, user.username, user_id=user.id)
        return {"deleted": user.id, "username": user.username}

    @get("/directory", summary="Directory sign-in: settings in short, whether it answers now, recent errors")
    async def directory(self, accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(accounts.directory_status)

    @get("/keys", summary="API keys (never their secrets)")
    async def keys(self, accounts: NamedDependency[Accounts],
                   user_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None) -> dict[str, Any]:
        keys = await anyio.to_thread.run_sync(lambda: accounts.keys(user_id))
        return {"keys": [k.public() for k in keys]}

    @post("/keys", summary="Create an API key for a user; the secret is shown only in this response",
          status_code=201, opt={"audit": "key_created"})
    async def create_key(self, data: JSONBody[NewKey], request: Request,
                         accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        note_audit(request, f"user {data.user_id}", name=data.name)
        secret, key = await anyio.to_thread.run_sync(lambda: accounts.create_key(data.user_id, data.name))
        note_audit(request, f"{key.username}/{key.name}", key_id=key.id, prefix=key.prefix)
        return {**key.public(), "key": secret, "notice": KEY_NOTICE}

    @delete("/keys/{key_id:int}", summary="Revoke an API key at once", status_code=200,
            opt={"audit": "key_revoked"})
    async def revoke_key(self, key_id: IdPath, request: Request,
                         accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        note_audit(request, f"key {key_id}")
        key = await anyio.to_thread.run_sync(accounts.revoke_key, key_id)
        note_audit(request, f"{key.username}/{key.name}", key_id=key.id)
        return key.public()

    @get("/audit", summary="The audit log, newest first (page back with before_id)")
    async def audit(self, accounts: NamedDependency[Accounts],
                    limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 200,
                    actor: Annotated[str | None, QueryParameter(max_length=200)] = None,
                    action: Annotated[str | None, QueryParameter(max_length=200)] = None,
                    before_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
                    ) -> dict[str, Any]:
        rows = await anyio.to_thread.run_sync(
            lambda: accounts.audit_log(limit=limit, actor=actor, action=action, before_id=before_id))
        return {"entries": rows}
