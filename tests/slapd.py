"""A real OpenLDAP `slapd` for the directory sign-in tests: generated TLS certificates, a generated
config (slapd.conf in a temp folder, no system-wide state), and a small organisation with nested
groups, served on loopback over ldap:// (StartTLS) and ldaps://."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import ldap3

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
INSTALL_HINT = ("slapd is not installed: `./dev setup` installs Debian's slapd and ldap-utils "
                "(installer/system-deps.sh)")

BASE = "dc=example,dc=test"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{BASE}", "root-secret-1"
SERVICE_DN, SERVICE_PASSWORD = f"cn=appliance,ou=services,{BASE}", "service-secret-1"

# People, by uid: (password, display name). "lee,jr" has a comma in its RDN, for DN escaping.
PEOPLE_ENTRIES = {
    "alice": ("alice-password-1", "김앨리스"),
    "bob": ("bob-password-1", "Bob Park"),
    "carol": ("carol-password-1", "Carol Lee"),
    "lee,jr": ("lee-password-1", "Lee Junior"),
}
# Groups and their members: alice reaches erp-admins through it-leads, and erp-users through
# it-leads -> staff; loop-a and loop-b contain each other (a cycle the resolver must survive).
GROUP_MEMBERS = {
    "it-leads": ["uid=alice"],
    "erp-admins": ["cn=it-leads"],
    "staff": ["uid=bob", "cn=it-leads", r"uid=lee\,jr"],
    "erp-users": ["cn=staff"],
    "finance-team": ["uid=alice"],
    "loop-a": ["uid=bob", "cn=loop-b"],
    "loop-b": ["cn=loop-a"],
    "outsiders": ["uid=carol"],
}


def person_dn(uid: str) -> str:
    return f"uid={ldap3.utils.dn.escape_rdn(uid)},{PEOPLE}"


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def _member_dn(member: str) -> str:
    return f"{member},{PEOPLE}" if member.startswith("uid=") else f"{member},{GROUPS}"


def _ldif() -> str:
    entries = [
        f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: appliance\nuserPassword: {SERVICE_PASSWORD}",
    ]
    for uid, (password, display) in PEOPLE_ENTRIES.items():
        entries.append(
            f"dn: {person_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
            f"displayName:: {base64.b64encode(display.encode()).decode()}\nuserPassword: {password}")
    for name, members in GROUP_MEMBERS.items():
        lines = [f"dn: {group_dn(name)}", "objectClass: groupOfNames", f"cn: {name}"]
        lines += [f"member: {_member_dn(m)}" for m in members]
        entries.append("\n".join(lines))
    return "\n\n".join(entries) + "\n"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path, name: str = "ca",
                      hosts: str = "DNS:localhost,IP:127.0.0.1") -> Certificates:
    """A throwaway CA and a server certificate it signed for `hosts` (subjectAltName)."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN=Test {name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
             f"{name}-server.key", "-out", f"{name}-server.csr", cwd=folder)
    (folder / f"{name}-san.ext").write_text(f"subjectAltName={hosts}\n")
    _openssl("x509", "-req", "-in", f"{name}-server.csr", "-CA", f"{name}.pem", "-CAkey",
             f"{name}.key", "-CAcreateserial", "-days", "2", "-extfile", f"{name}-san.ext",
             "-out", f"{name}-server.pem", cwd=folder)
    return Certificates(folder / f"{name}.pem", folder / f"{name}-server.pem",
                        folder / f"{name}-server.key")


class Slapd:
    """One slapd process on two loopback ports; `stop()` ends it and nothing else."""

    def __init__(self, folder: Path, ldap_port: int, ldaps_port: int,
                 certificate_hosts: str = "DNS:localhost,IP:127.0.0.1"):
        self.folder = folder
        self.ldap_url = f"ldap://127.0.0.1:{ldap_port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{ldaps_port}"
        self.certificates = make_certificates(folder / "tls", hosts=certificate_hosts)
        self.process: subprocess.Popen | None = None

    @property
    def ca_file(self) -> str:
        return str(self.certificates.ca)

    def _config(self) -> Path:
        db = self.folder / "db"
        db.mkdir()
        tls = self.certificates
        schemas = "\n".join(f"include {SCHEMA_DIR / name}.schema"
                            for name in ("core", "cosine", "inetorgperson"))
        # `allow bind_anon_dn` makes this server accept a bind with a DN and an empty password
        # as anonymous (RFC 4513's unauthenticated bind), as permissive servers do: the appliance
        # must refuse empty passwords itself.
        text = f"""{schemas}
modulepath {MODULE_DIR}
moduleload back_mdb
pidfile {self.folder / 'slapd.pid'}
argsfile {self.folder / 'slapd.args'}
TLSCACertificateFile {tls.ca}
TLSCertificateFile {tls.cert}
TLSCertificateKeyFile {tls.key}
allow bind_anon_dn
database mdb
maxsize 16777216
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {db}
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""
        path = self.folder / "slapd.conf"
        path.write_text(text)
        return path

    def start(self, timeout: float = 30) -> Slapd:
        config = self._config()
        (self.folder / "data.ldif").write_text(_ldif(), encoding="utf-8")
        subprocess.run([str(SLAPADD), "-f", str(config), "-l", str(self.folder / "data.ldif")],
                       check=True, capture_output=True)
        log = (self.folder / "slapd.log").open("wb")
        # -d keeps slapd in the foreground, so this process is the server and stop() ends it.
        self.process = subprocess.Popen(
            [str(SLAPD), "-d", "0", "-f", str(config), "-h", f"{self.ldap_url}/ {self.ldaps_url}/"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.admin().unbind()
                return self
            except ldap3.core.exceptions.LDAPException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("slapd did not start: "
                                       + (self.folder / "slapd.log").read_text(errors="replace"))
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def admin(self) -> ldap3.Connection:
        """A connection bound as the directory's root (tests change the directory with it)."""
        return ldap3.Connection(ldap3.Server(self.ldap_url, connect_timeout=2), ROOT_DN,
                                ROOT_PASSWORD, auto_bind=True, receive_timeout=5)

    def change(self, fn) -> None:
        """Run `fn(connection)` as root and insist the change worked."""
        conn = self.admin()
        try:
            assert fn(conn), conn.result
        finally:
            conn.unbind()

    def add_person(self, uid: str, password: str, display_name: str = "",
                   groups: tuple[str, ...] = ()) -> str:
        dn = person_dn(uid)
        self.change(lambda c: c.add(dn, ["inetOrgPerson"], {
            "uid": uid, "cn": uid, "sn": uid, "displayName": display_name or uid,
            "userPassword": password}))
        for group in groups:
            self.add_member(group, dn)
        return dn

    def add_member(self, group: str, member_dn: str) -> None:
        self.change(lambda c: c.modify(group_dn(group), {"member": [(ldap3.MODIFY_ADD, [member_dn])]}))

    def remove_member(self, group: str, member_dn: str) -> None:
        self.change(lambda c: c.modify(group_dn(group), {"member": [(ldap3.MODIFY_DELETE, [member_dn])]}))

    def set_attribute(self, dn: str, name: str, values: list[str]) -> None:
        self.change(lambda c: c.modify(dn, {name: [(ldap3.MODIFY_REPLACE, values)]}))

    def delete(self, dn: str) -> None:
        self.change(lambda c: c.delete(dn))


def available() -> bool:
    return SLAPD.is_file() and SLAPADD.is_file() and shutil.which("openssl") is not None


# The appliance's side: the test organisation's groups mapped to roles and access groups.
MAPPING = [
    {"group": group_dn("erp-admins"), "role": "admin", "access_groups": ["all"]},
    {"group": group_dn("erp-users"), "role": "employee", "access_groups": ["all"]},
    {"group": "finance-team", "role": "employee", "access_groups": ["finance"]},  # by cn alone
]
# People whose employeeType is "disabled" are not found: the filter does what AD's
# userAccountControl clause does there.
USER_FILTER = "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))"


def directory_settings(server: Slapd, **changes):
    """auth.directory settings for `server`: LDAPS, the service account, the mapping above."""
    from appliance.settings import DirectorySettings

    values = {"url": server.ldaps_url, "ca_file": server.ca_file, "bind_dn": SERVICE_DN,
              "bind_password": SERVICE_PASSWORD, "user_search_base": PEOPLE,
              "group_search_base": GROUPS, "user_filter": USER_FILTER, "groups": MAPPING,
              "connect_timeout_seconds": 2, "timeout_seconds": 5}
    return DirectorySettings(**{**values, **changes})
