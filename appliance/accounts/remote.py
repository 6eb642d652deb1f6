"""The accounts and quotas of a running server, through its admin API, for commands run while
it serves.

They offer the methods of `Accounts` and `Quotas` that the `users`, `keys` and `quotas` commands
use, so those print the same lines either way; the server audits each change (as
`cli:<os user>`), so `audit` is a no-op.
"""

from __future__ import annotations

from typing import Any

from appliance.accounts.quotas import Override
from appliance.accounts.store import LOCAL_USER, ApiKey, User
from appliance.errors import NotFound
from appliance.remote import RunningServer


def _user(body: dict[str, Any]) -> User:
    return User(id=body["id"], username=body["username"], display_name=body["display_name"],
                role=body["role"], groups=tuple(body["groups"]), active=body["active"],
                created_at=body["created_at"], last_login_at=body["last_login_at"],
                has_password=body["has_password"])


def _key(body: dict[str, Any]) -> ApiKey:
    return ApiKey(id=body["id"], user_id=body["user_id"], username=body["username"],
                  name=body["name"], prefix=body["prefix"], created_at=body["created_at"],
                  last_used_at=body["last_used_at"], revoked_at=body["revoked_at"])


class RemoteAccounts:
    def __init__(self, server: RunningServer):
        self.server = server
        self.path = f"the server at {server.url}"  # where messages say the change went

    def users(self) -> list[User]:
        return [_user(u) for u in self.server.call("GET", "/api/admin/users")["users"]]

    def find(self, name_or_id: str | int) -> User:
        users = self.users()
        for user in users:
            if user.username == str(name_or_id):
                return user
        for user in users:
            if str(name_or_id).isdigit() and user.id == int(name_or_id):
                return user
        raise NotFound(f"No user named {name_or_id!r}; `appliance users list` shows them.")

    def admin_count(self) -> int:
        return sum(1 for u in self.users() if u.is_admin and u.active and u.username != LOCAL_USER)

    def create_user(self, username: str, password: str | None, *, role: str = "employee",
                    groups=(), display_name: str = "") -> User:
        return _user(self.server.call("POST", "/api/admin/users", json={
            "username": username, "password": password, "role": role, "groups": list(groups),
            "display_name": display_name}))

    def update_user(self, user_id: int, **changes: Any) -> User:
        body = {k: (list(v) if k == "groups" else v) for k, v in changes.items() if v is not None}
        return _user(self.server.call("PATCH", f"/api/admin/users/{user_id}", json=body))

    def set_password(self, user_id: int, password: str) -> None:
        self.server.call("PATCH", f"/api/admin/users/{user_id}", json={"password": password})

    def delete_user(self, user_id: int) -> User:
        user = next((u for u in self.users() if u.id == user_id), None)
        self.server.call("DELETE", f"/api/admin/users/{user_id}")
        return user

    def create_key(self, user_id: int, name: str) -> tuple[str, ApiKey]:
        body = self.server.call("POST", "/api/admin/keys", json={"user_id": user_id, "name": name})
        return body["key"], _key(body)

    def keys(self, user_id: int | None = None) -> list[ApiKey]:
        params = {"user_id": user_id} if user_id is not None else {}
        return [_key(k) for k in self.server.call("GET", "/api/admin/keys", params=params)["keys"]]

    def key(self, key_id: int) -> ApiKey:
        for key in self.keys():
            if key.id == key_id:
                return key
        raise NotFound(f"No API key with id {key_id}; `appliance keys list` shows them.")

    def revoke_key(self, key_id: int) -> ApiKey:
        return _key(self.server.call("DELETE", f"/api/admin/keys/{key_id}"))

    def audit_log(self, *, limit: int = 200, actor: str | None = None,
                  action: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"limit": limit, "actor": actor, "action": action}.items() if v}
        return self.server.call("GET", "/api/admin/audit", params=params)["entries"]

    def audit(self, *args: Any, **kwargs: Any) -> None:
        """The server's audit middleware has recorded the change already."""

    def close(self) -> None:
        pass


class RemoteQuotas:
    """The running server's quotas, with the methods of `Quotas` the `quotas` commands use."""

    def __init__(self, accounts: RemoteAccounts, zone):
        self.accounts = accounts
        self.server = accounts.server
        self.zone = zone

    def overview(self) -> dict[str, Any]:
        return self.server.call("GET", "/api/admin/quotas")

    def override(self, subject: tuple[str, int]) -> Override:
        kind, ident = subject
        rows = self.overview()["users" if kind == "user" else "keys"]
        found = next((row["override"] for row in rows if row["id"] == ident), {})
        return Override(found.get("requests_per_minute"), found.get("tokens_per_day"))

    def set_override(self, kind: str, ident: int, requests_per_minute: int | None,
                     tokens_per_day: int | None) -> Override:
        self.server.call("PUT", f"/api/admin/quotas/{kind}s/{ident}", json={
            "requests_per_minute": requests_per_minute, "tokens_per_day": tokens_per_day})
        return Override(requests_per_minute, tokens_per_day)

    def usage(self, since: str, until: str, *, user_id: int | None = None) -> list[dict[str, Any]]:
        params = {"since": since, "until": until, **({"user_id": user_id} if user_id else {})}
        return self.server.call("GET", "/api/admin/usage", params=params)["rows"]
