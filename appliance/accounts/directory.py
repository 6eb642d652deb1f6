"""Sign-in against an LDAP directory or Active Directory (ldap3): the user's own simple bind over
LDAPS or StartTLS, their entry and groups (nested ones included), and the mapping of those groups
to the appliance's role and access groups (`auth.directory`, docs/security.md)."""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from appliance.errors import AuthenticationRequired, ConfigError, DirectoryUnavailable
from appliance.settings import DirectorySettings

log = logging.getLogger(__name__)

IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: AD's transitive membership
AD_CAPABILITY = "1.2.840.113556.1.4.800"  # LDAP_CAP_ACTIVE_DIRECTORY_OID, in AD's root DSE
MAX_NESTING = 32  # levels the recursive method follows; the visited set already stops cycles
FILTER_CHUNK = 50  # member DNs per OR filter when following nesting level by level
ERRORS_KEPT = 20
INVALID_CREDENTIALS = 49
AD_DISABLED = "data 533"  # Active Directory's sub-code of invalidCredentials: account disabled
ROLE_RANK = {"employee": 0, "admin": 1}
WRONG = "Wrong user name or password."


class DirectoryRefusal(AuthenticationRequired):
    """The directory (or the rules before it) said no. `reason`: empty_password, anonymous,
    wrong_password, not_found or disabled; the message never tells which for a wrong password."""

    def __init__(self, reason: str, message: str = WRONG):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DirectoryUser:
    username: str
    dn: str
    display_name: str
    groups: tuple[str, ...]  # DNs of every group the user is in, nested ones included
    role: str | None  # from auth.directory.groups; None when no mapped group matched
    access_groups: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return self.role is not None


def normalize_dn(dn: str) -> str:
    """A DN for comparison: case and spaces around the separators do not count."""
    return ",".join("=".join(p.strip() for p in part.split("=", 1))
                    for part in dn.strip().lower().split(","))


def _first_rdn_value(dn: str) -> str:
    return dn.split(",", 1)[0].partition("=")[2].strip().lower()


def _attribute(entry: dict, name: str) -> str:
    """The first value of an attribute, whatever case the server spelt its name in."""
    for key, value in (entry.get("attributes") or {}).items():
        if key.lower() == name.lower():
            values = value if isinstance(value, list) else [value]
            return str(values[0]) if values else ""
    return ""


def check_settings(settings: DirectorySettings) -> None:
    """Refuse settings that cannot work or would weaken sign-in, saying which one to fix."""
    where = "auth.directory"
    if not settings.url.lower().startswith(("ldap://", "ldaps://")):
        raise ConfigError(f"{where}.url must start with ldaps:// or ldap:// (got {settings.url!r}).")
    if not settings.user_search_base.strip():
        raise ConfigError(f"Set {where}.user_search_base to where users live, e.g. "
                          "'ou=people,dc=example,dc=com'.")
    if not settings.bind_dn and not settings.user_dn_template:
        raise ConfigError(f"Set {where}.bind_dn (a service account that searches for users) or "
                          f"{where}.user_dn_template: anonymous searches are not used.")
    if settings.bind_dn and not settings.bind_password.get_secret_value():
        raise ConfigError(f"{where}.bind_dn is set but bind_password is empty, which a directory "
                          "takes as an anonymous bind; set APPLIANCE_AUTH__DIRECTORY__BIND_PASSWORD.")
    if "{username}" not in settings.user_filter:
        raise ConfigError(f"{where}.user_filter must contain {{username}}.")
    if settings.user_dn_template and "{username}" not in settings.user_dn_template:
        raise ConfigError(f"{where}.user_dn_template must contain {{username}}.")
    if settings.ca_file and not settings.resolve(settings.ca_file).is_file():
        raise ConfigError(f"{where}.ca_file {settings.resolve(settings.ca_file)} does not exist.")
    if not settings.groups:
        raise ConfigError(f"No directory group may sign in: add [[{where}.groups]] tables that "
                          "map groups to a role and access groups.")


class Directory:
    """One configured directory. Each call opens its own connection (sign-ins are rare and the
    server may be anywhere), so the object is safe to share between threads."""

    def __init__(self, settings: DirectorySettings):
        check_settings(settings)
        self.settings = settings
        self._lock = threading.Lock()
        self._errors: deque[dict[str, Any]] = deque(maxlen=ERRORS_KEPT)
        self._method = None if settings.nested_groups == "auto" else settings.nested_groups
        self.last_success_at: float | None = None

    @classmethod
    def from_settings(cls, settings: DirectorySettings) -> Directory | None:
        """The directory, or None when `auth.directory.url` is empty (sign-in is local only)."""
        return cls(settings) if settings.url.strip() else None

    @property
    def transport(self) -> str:
        if self.settings.url.lower().startswith("ldaps://"):
            return "ldaps"
        return "plain" if self.settings.allow_plain else "starttls"

    @property
    def can_check(self) -> bool:
        """Whether users can be looked up without their password (a service account is set)."""
        return bool(self.settings.bind_dn)

    # -- what callers use ----------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> DirectoryUser:
        """Bind as the user with their password; their entry, groups and mapped role.

        Raises DirectoryRefusal (a 401) for a refused sign-in and DirectoryUnavailable (a 503)
        when the directory cannot say.
        """
        # Checked before any network traffic: a bind with a name and an empty password is an
        # "unauthenticated bind" that many servers answer with success (RFC 4513, 5.1.2).
        if not password:
            raise DirectoryRefusal("empty_password")
        if not (username or "").strip():
            raise DirectoryRefusal("anonymous")
        settings = self.settings
        try:
            with self._connection() as conn:
                if settings.user_dn_template:
                    bind_name = settings.user_dn_template.replace("{username}", escape_rdn(username))
                    self._bind(conn, bind_name, password)
                    if settings.bind_dn:
                        self._bind_service(conn)
                    user = self._read_user(conn, username)
                else:
                    self._bind_service(conn)
                    user = self._read_user(conn, username)  # groups read with the service's rights
                    self._bind(conn, user.dn, password)
        except DirectoryUnavailable as exc:
            self._note(username, exc.message)
            raise
        except DirectoryRefusal as exc:
            if exc.reason in ("not_found", "disabled"):
                self._note(username, "not found by auth.directory.user_filter (removed or disabled)"
                           if exc.reason == "not_found" else "the directory says the account is disabled")
            raise
        self.last_success_at = time.time()
        if not user.allowed:
            self._note(username, "signed in, but is in none of the mapped groups (auth.directory.groups)")
        return user

    def lookup(self, username: str) -> DirectoryUser | None:
        """The user's current entry, groups and role through the service account (no password);
        None when the user filter finds nobody (removed, or disabled where the filter says so)."""
        return self.lookup_many([username])[username]

    def lookup_many(self, usernames: Iterable[str]) -> dict[str, DirectoryUser | None]:
        """`lookup` for many users over one connection (the periodic check)."""
        if not self.can_check:
            raise DirectoryUnavailable("Looking users up needs a service account: set "
                                       "auth.directory.bind_dn and bind_password.")
        found: dict[str, DirectoryUser | None] = {}
        username = ""
        try:
            with self._connection() as conn:
                self._bind_service(conn)
                for username in usernames:
                    try:
                        found[username] = self._read_user(conn, username)
                    except DirectoryRefusal:
                        found[username] = None
        except DirectoryUnavailable as exc:
            self._note(username or "-", exc.message)
            raise
        return found

    def probe(self) -> dict[str, Any]:
        """Connect (with TLS) and bind the service account if there is one: is the directory there?"""
        try:
            with self._connection() as conn:
                if self.can_check:
                    self._bind_service(conn)
                method = self._nesting(conn)
        except DirectoryUnavailable as exc:
            return {"reachable": False, "error": exc.message}
        return {"reachable": True, "error": None, "method": method}

    def status(self, *, probe: bool = True) -> dict[str, Any]:
        """What the admin console shows: settings in short, reachability, recent errors."""
        settings = self.settings
        with self._lock:
            errors = list(reversed(self._errors))
        found = {"configured": True, "url": settings.url, "transport": self.transport,
                 "service_account": self.can_check, "nested_groups": settings.nested_groups,
                 "method": self._method, "mapped_groups": len(settings.groups),
                 "check_minutes": settings.check_minutes if self.can_check else 0,
                 "last_success_at": self.last_success_at, "errors": errors,
                 "reachable": None, "error": None, "checked_at": None}
        if probe:
            found.update(self.probe(), checked_at=time.time())
            found["method"] = self._method
        return found

    def map_groups(self, group_dns: Iterable[str]) -> tuple[str | None, tuple[str, ...]]:
        """The role (the highest of the matched mappings) and access groups (their union)."""
        group_dns = list(group_dns)
        dns = {normalize_dn(dn) for dn in group_dns}
        names = {_first_rdn_value(dn) for dn in group_dns}
        matched = [m for m in self.settings.groups
                   if (normalize_dn(m.group) in dns if "=" in m.group else m.group.strip().lower() in names)]
        if not matched:
            return None, ()
        role = max((m.role for m in matched), key=ROLE_RANK.__getitem__)
        return role, tuple(sorted({g for m in matched for g in m.access_groups}))

    def nested_filter(self, dns: list[str], method: str) -> str:
        """The member clause that finds groups containing any of `dns` (directly, or at any depth
        with in_chain); every DN is escaped, so a DN with '(' or '*' stays a value."""
        attribute = self.settings.member_attribute
        rule = f":{IN_CHAIN}:" if method == "in_chain" else ""
        clauses = "".join(f"({attribute}{rule}={escape_filter_chars(dn)})" for dn in dns)
        return clauses if len(dns) == 1 else f"(|{clauses})"

    # -- the protocol --------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[ldap3.Connection]:
        settings = self.settings
        ca_file = str(settings.resolve(settings.ca_file)) if settings.ca_file else None
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        server = ldap3.Server(settings.url, tls=tls, get_info=ldap3.NONE,
                              connect_timeout=settings.connect_timeout_seconds)
        # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds.
        conn = ldap3.Connection(server, receive_timeout=math.ceil(settings.timeout_seconds), read_only=True,
                                auto_referrals=False, raise_exceptions=False)
        try:
            conn.open()
            if self.transport == "starttls" and not conn.start_tls():
                raise DirectoryUnavailable(f"StartTLS with {settings.url} did not start; use an "
                                           "ldaps:// URL or check the directory's TLS setup.")
            yield conn
        except (LDAPException, OSError) as exc:
            raise DirectoryUnavailable(
                f"Could not talk to the directory at {settings.url} ({type(exc).__name__}: {exc}). "
                "Check auth.directory.url, ca_file and the network; local accounts can still "
                "sign in.") from exc
        finally:
            try:
                conn.unbind()
            except (LDAPException, OSError):
                pass

    def _bind(self, conn: ldap3.Connection, name: str, password: str) -> None:
        """A simple bind; a wrong password raises DirectoryRefusal, anything else is the
        directory's (or its settings') problem."""
        if not password:
            raise DirectoryRefusal("empty_password")
        if not name:
            raise DirectoryRefusal("anonymous")
        if conn.rebind(user=name, password=password, authentication=ldap3.SIMPLE,
                       read_server_info=False):
            # Belt and braces against an anonymous session: the server says who we are now.
            authzid = conn.extend.standard.who_am_i()
            if (conn.result or {}).get("result") == 0 and not authzid:
                raise DirectoryRefusal("anonymous")
            return
        result = conn.result or {}
        if result.get("result") == INVALID_CREDENTIALS:
            disabled = AD_DISABLED in (result.get("message") or "")
            raise DirectoryRefusal("disabled" if disabled else "wrong_password")
        raise DirectoryUnavailable(f"The directory refused the bind of {name}: "
                                   f"{result.get('description')} {result.get('message') or ''}".strip())

    def _bind_service(self, conn: ldap3.Connection) -> None:
        settings = self.settings
        try:
            self._bind(conn, settings.bind_dn, settings.bind_password.get_secret_value())
        except DirectoryRefusal as exc:
            raise DirectoryUnavailable(
                f"The directory refused the service account {settings.bind_dn} ({exc.reason}): "
                "check auth.directory.bind_dn and bind_password.") from None

    def _search(self, conn: ldap3.Connection, base: str, query: str, attributes,
                size_limit: int = 0) -> list[dict]:
        conn.search(base, query, ldap3.SUBTREE, attributes=attributes, size_limit=size_limit)
        result = conn.result or {}
        if result.get("result") not in (0, 4):  # 4: size limit, which the callers judge
            raise DirectoryUnavailable(f"Searching {base} with {query} failed: "
                                       f"{result.get('description')} {result.get('message') or ''}".strip())
        # Referrals (Active Directory hands them out for its other partitions) are not followed.
        return [entry for entry in conn.response or [] if entry.get("type") == "searchResEntry"]

    def _read_user(self, conn: ldap3.Connection, username: str) -> DirectoryUser:
        settings = self.settings
        query = settings.user_filter.replace("{username}", escape_filter_chars(username))
        entries = self._search(conn, settings.user_search_base, query,
                               [settings.display_name_attribute, "cn"], size_limit=2)
        if not entries:
            raise DirectoryRefusal("not_found")
        if len(entries) > 1:
            raise DirectoryUnavailable(f"auth.directory.user_filter finds more than one entry for "
                                       f"{username!r}; make it match exactly one user.")
        entry = entries[0]
        groups = self._groups(conn, entry["dn"])
        role, access = self.map_groups(groups)
        display = (_attribute(entry, settings.display_name_attribute) or _attribute(entry, "cn")
                   or username)
        return DirectoryUser(username=username, dn=entry["dn"], display_name=display,
                             groups=tuple(groups), role=role, access_groups=access)

    def _nesting(self, conn: ldap3.Connection) -> str:
        """The nesting method; 'auto' asks the root DSE once whether this is Active Directory."""
        if self._method is None:
            conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["supportedCapabilities"])
            capabilities = set()
            for entry in conn.response or []:
                for key, values in (entry.get("attributes") or {}).items():
                    if key.lower() == "supportedcapabilities":
                        capabilities.update(values if isinstance(values, list) else [values])
            if (conn.result or {}).get("result") != 0:
                return "recursive"  # no answer now: decide on a later call
            self._method = "in_chain" if AD_CAPABILITY in capabilities else "recursive"
        return self._method

    def _groups(self, conn: ldap3.Connection, user_dn: str) -> list[str]:
        """DNs of the groups `user_dn` belongs to, nested ones included (per the method)."""
        base = self.settings.group_search_base or self.settings.user_search_base
        method = self._nesting(conn)
        if method == "in_chain":
            return [e["dn"] for e in self._group_search(conn, base, [user_dn], method)]
        found: list[str] = []
        seen = {normalize_dn(user_dn)}  # the cycle guard: a DN is followed once
        frontier = [user_dn]
        for _level in range(1 if method == "direct" else MAX_NESTING):
            if not frontier:
                break
            next_level = []
            for entry in self._group_search(conn, base, frontier, method):
                key = normalize_dn(entry["dn"])
                if key not in seen:
                    seen.add(key)
                    found.append(entry["dn"])
                    next_level.append(entry["dn"])
            frontier = next_level
        return found

    def _group_search(self, conn: ldap3.Connection, base: str, dns: list[str], method: str) -> list[dict]:
        entries = []
        for start in range(0, len(dns), FILTER_CHUNK):
            members = self.nested_filter(dns[start:start + FILTER_CHUNK], method)
            entries += self._search(conn, base, f"(&{self.settings.group_filter}{members})",
                                    [ldap3.NO_ATTRIBUTES])
        return entries

    def _note(self, username: str, message: str) -> None:
        log.warning("directory sign-in of %s: %s", username, message)
        with self._lock:
            self._errors.append({"ts": time.time(), "username": username, "message": message})
