"""Users, roles and groups (local, or from an LDAP directory); API keys, login sessions, the audit
log and per-user conversations."""

from appliance.accounts.conversations import Conversations
from appliance.accounts.store import LOCAL_USER, ROLES, Accounts, ApiKey, Session, User

__all__ = ["LOCAL_USER", "ROLES", "Accounts", "ApiKey", "Conversations", "Session", "User"]
