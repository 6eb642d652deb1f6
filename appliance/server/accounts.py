"""Login, logout and the caller's own account under /api/auth; users, keys and audit under /api/admin."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Meta

from appliance.accounts import ROLES, Accounts
from appliance.errors import InvalidRequest, PermissionDenied
from appliance.server.auth import (
    SESSION_COOKIE,
    Principal,
    admin_only,
    client_ip,
    note_audit,
    principal_of,
    signed_in,
)
from appliance.settings import Settings

Name = Annotated[str, Meta(min_length=1, max_length=64)]
Password = Annotated[str, Meta(min_length=1, max_length=1024)]


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
    groups: list[str] | None = None
    display_name: Annotated[str, Meta(max_length=200)] = ""


class UserChange(msgspec.Struct, forbid_unknown_fields=True):
    role: str | None = None
    groups: list[str] | None = None
    display_name: Annotated[str, Meta(max_length=200)] | None = None
    active: bool | None = None
    password: Password | None = None


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    user_id: int
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


class AuthController(Controller):
    path = "/api/auth"
    tags = ["Accounts"]

    @post("/login", summary="Log in with a user name and password: sets the session cookie",
          status_code=200)
    async def login(self, data: JSONBody[LoginBody], request: Request,
                    accounts: NamedDependency[Accounts], settings: NamedDependency[Settings]) -> Response:
        ip = client_ip(request.scope)
        agent = request.headers.get("user-agent", "")
        try:
            token, session = await anyio.to_thread.run_sync(
                lambda: accounts.login(data.username, data.password, ip=ip, user_agent=agent))
        except Exception as exc:
            await anyio.to_thread.run_sync(
                lambda: accounts.audit(data.username, "login_failed", data.username,
                                       status=getattr(exc, "status", 500), ip=ip))
            raise
        await anyio.to_thread.run_sync(lambda: accounts.audit(session.user.username, "login", status=200, ip=ip))
        principal = Principal(session.user, "session", csrf_token=session.csrf_token)
        return Response(_me(principal, settings),
                        cookies=[_session_cookie(request, settings, token, None)])

    @post("/logout", summary="End the session", status_code=200, guards=[signed_in])
    async def logout(self, request: Request, accounts: NamedDependency[Accounts],
                     settings: NamedDependency[Settings]) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await anyio.to_thread.run_sync(accounts.logout, token)
        return Response({"logged_out": True},
                        cookies=[_session_cookie(request, settings, "", 0)])

    @get("/me", summary="The caller: user, role, groups, and the CSRF token for the UI", guards=[signed_in])
    async def me(self, request: Request, settings: NamedDependency[Settings]) -> dict[str, Any]:
        return _me(principal_of(request), settings)

    @post("/password", summary="Change one's own password (ends all sessions but this one's new login)",
          status_code=200, guards=[signed_in])
    async def change_password(self, data: JSONBody[PasswordBody], request: Request,
                              accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        principal = principal_of(request)
        if principal.open:
            raise InvalidRequest("Auth is off on this appliance; there is no password to change.")

        def change() -> None:
            if not accounts.passwords.verify(
                    accounts._rows("SELECT password_hash FROM users WHERE id = ?",
                                   [principal.user.id])[0]["password_hash"], data.current_password):
                raise PermissionDenied("The current password is wrong.")
            accounts.set_password(principal.user.id, data.new_password)
            accounts.audit(principal.name, "password_changed", principal.name, status=200,
                           ip=client_ip(request.scope))

        await anyio.to_thread.run_sync(change)
        return {"changed": True, "message": "Password changed; log in again."}


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
        user = await anyio.to_thread.run_sync(lambda: accounts.create_user(
            data.username, data.password, role=data.role, groups=groups, display_name=data.display_name))
        note_audit(request, user.username, role=user.role, groups=list(user.groups))
        return user.public()

    @patch("/users/{user_id:int}", summary="Change a user's role, groups, name, state or password",
           opt={"audit": "user_changed"})
    async def change_user(self, user_id: FromPath[int], data: JSONBody[UserChange], request: Request,
                          accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        def change():
            user = accounts.update_user(user_id, role=data.role, groups=data.groups,
                                        display_name=data.display_name, active=data.active)
            if data.password is not None:
                accounts.set_password(user_id, data.password)
            return user

        user = await anyio.to_thread.run_sync(change)
        changed = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None and k != "password"}
        note_audit(request, user.username, **changed, password_reset=data.password is not None)
        return user.public()

    @delete("/users/{user_id:int}", summary="Delete a user with their keys and history", status_code=200,
            opt={"audit": "user_deleted"})
    async def delete_user(self, user_id: FromPath[int], request: Request,
                          accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        if principal_of(request).user.id == user_id:
            raise InvalidRequest("Admins cannot delete themselves; ask another admin.")
        user = await anyio.to_thread.run_sync(accounts.delete_user, user_id)
        note_audit(request, user.username)
        return {"deleted": user.id, "username": user.username}

    @get("/keys", summary="API keys (never their secrets)")
    async def keys(self, accounts: NamedDependency[Accounts],
                   user_id: Annotated[int | None, QueryParameter()] = None) -> dict[str, Any]:
        keys = await anyio.to_thread.run_sync(lambda: accounts.keys(user_id))
        return {"keys": [k.public() for k in keys]}

    @post("/keys", summary="Create an API key for a user; the secret is shown only in this response",
          status_code=201, opt={"audit": "key_created"})
    async def create_key(self, data: JSONBody[NewKey], request: Request,
                         accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        secret, key = await anyio.to_thread.run_sync(lambda: accounts.create_key(data.user_id, data.name))
        note_audit(request, f"{key.username}/{key.name}", key_id=key.id, prefix=key.prefix)
        return {**key.public(), "key": secret,
                "notice": "Copy the key now: the appliance stores only its hash and cannot show it again."}

    @delete("/keys/{key_id:int}", summary="Revoke an API key at once", status_code=200,
            opt={"audit": "key_revoked"})
    async def revoke_key(self, key_id: FromPath[int], request: Request,
                         accounts: NamedDependency[Accounts]) -> dict[str, Any]:
        key = await anyio.to_thread.run_sync(accounts.revoke_key, key_id)
        note_audit(request, f"{key.username}/{key.name}", key_id=key.id)
        return key.public()

    @get("/audit", summary="The audit log, newest first")
    async def audit(self, accounts: NamedDependency[Accounts],
                    limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 200,
                    actor: Annotated[str | None, QueryParameter()] = None,
                    action: Annotated[str | None, QueryParameter()] = None) -> dict[str, Any]:
        rows = await anyio.to_thread.run_sync(
            lambda: accounts.audit_log(limit=limit, actor=actor, action=action))
        return {"entries": rows}
