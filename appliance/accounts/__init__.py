"""Users, roles and groups; API keys, login sessions, the audit log and per-user conversations."""

from appliance.accounts.store import ROLES, Accounts, ApiKey, Session, User

__all__ = ["ROLES", "Accounts", "ApiKey", "Session", "User"]
