"""Directory sign-in against a real OpenLDAP slapd: LDAPS and StartTLS with verified certificates,
nested groups, the group mapping, and the refusals (empty passwords, anonymous binds, injection)."""

from __future__ import annotations

import re
import subprocess

import pytest

from appliance.accounts.directory import IN_CHAIN, Directory, DirectoryRefusal
from appliance.errors import ConfigError, DirectoryUnavailable
from tests import slapd as slapd_harness
from tests.conftest import free_port
from tests.slapd import (
    PEOPLE,
    PEOPLE_ENTRIES,
    directory_settings,
    group_dn,
    make_certificates,
    person_dn,
)

ALICE = ("alice", PEOPLE_ENTRIES["alice"][0])
BOB = ("bob", PEOPLE_ENTRIES["bob"][0])


def directory(slapd, **changes) -> Directory:
    return Directory(directory_settings(slapd, **changes))


def test_ldaps_sign_in_resolves_nested_groups_into_role_and_access_groups(slapd):
    user = directory(slapd).authenticate(*ALICE)
    assert user.dn == person_dn("alice") and user.display_name == "김앨리스"
    # it-leads directly; erp-admins through it-leads; staff and erp-users two and three levels up.
    assert {g.lower() for g in user.groups} == {group_dn(g) for g in
                                                 ("it-leads", "erp-admins", "staff", "erp-users",
                                                  "finance-team")}
    assert user.role == "admin" and user.access_groups == ("all", "finance")


def test_starttls_sign_in_upgrades_the_plain_port(slapd):
    found = directory(slapd, url=slapd.ldap_url)
    assert found.transport == "starttls"
    user = found.authenticate(*BOB)
    assert user.role == "employee" and user.access_groups == ("all",)


@pytest.mark.parametrize("which", ["ldaps", "starttls"])
def test_a_certificate_from_another_ca_is_refused(slapd, tmp_path, which):
    other = make_certificates(tmp_path, "other")
    url = slapd.ldaps_url if which == "ldaps" else slapd.ldap_url
    with pytest.raises(DirectoryUnavailable, match="Could not talk to the directory") as refused:
        directory(slapd, url=url, ca_file=str(other.ca)).authenticate(*ALICE)
    assert "certificate" in refused.value.message.lower() or "ssl" in refused.value.message.lower()


def test_a_certificate_for_another_host_is_refused(tmp_path):
    if not slapd_harness.available():
        pytest.skip(slapd_harness.INSTALL_HINT)
    # A second server whose certificate, from the trusted CA, names another host only.
    elsewhere = slapd_harness.Slapd(tmp_path, free_port(), free_port(),
                                    certificate_hosts="DNS:ldap.elsewhere.example").start()
    try:
        for url in (elsewhere.ldaps_url, elsewhere.ldap_url):
            with pytest.raises(DirectoryUnavailable, match="(?i)certificate|match"):
                directory(elsewhere, url=url).authenticate(*ALICE)
    finally:
        elsewhere.stop()


def test_plain_ldap_only_with_the_explicit_setting(slapd):
    plain = directory(slapd, url=slapd.ldap_url, allow_plain=True)
    assert plain.transport == "plain"
    assert plain.authenticate(*BOB).role == "employee"
    assert directory(slapd, url=slapd.ldap_url).status(probe=False)["transport"] == "starttls"


def test_empty_password_is_refused_though_the_server_would_take_it(slapd):
    # The test server, like many, answers a bind with a DN and no password as anonymous success.
    whoami = subprocess.run(["ldapwhoami", "-x", "-H", slapd.ldap_url, "-D", person_dn("alice"),
                             "-w", ""], capture_output=True, text=True)
    assert whoami.returncode == 0 and whoami.stdout.strip() == "anonymous"
    with pytest.raises(DirectoryRefusal) as refused:
        directory(slapd).authenticate("alice", "")
    assert refused.value.reason == "empty_password" and refused.value.status == 401
    with pytest.raises(DirectoryRefusal):  # the template path as well
        directory(slapd, user_dn_template=f"uid={{username}},{PEOPLE}", bind_dn="",
                  bind_password="").authenticate("alice", "")


def test_anonymous_binds_are_refused(slapd):
    with pytest.raises(DirectoryRefusal) as refused:
        directory(slapd).authenticate("", "some-password")
    assert refused.value.reason == "anonymous"
    with pytest.raises(ConfigError, match="anonymous searches are not used"):
        directory(slapd, bind_dn="", bind_password="")
    with pytest.raises(ConfigError, match="bind_password is empty"):
        directory(slapd, bind_password="")


@pytest.mark.parametrize("username", ["*", "alice)(uid=*", "*)(|(uid=*", "al*", "alice\\", "\x00"])
def test_injection_in_the_username_finds_nobody(slapd, username):
    # Unescaped, "(uid=*)" would match the first person and bind as them with their password.
    with pytest.raises(DirectoryRefusal) as refused:
        directory(slapd).authenticate(username, ALICE[1])
    assert refused.value.reason == "not_found" and refused.value.message == "Wrong user name or password."


def test_the_unescaped_filter_would_have_matched(slapd):
    # The control for the test above: the same server does match a wildcard when it is sent raw.
    conn = slapd.admin()
    conn.search(PEOPLE, "(&(objectClass=inetOrgPerson)(uid=*))", attributes=["uid"])
    assert len(conn.entries) == len(PEOPLE_ENTRIES)
    conn.unbind()


def test_dn_template_escapes_the_name(slapd):
    template = directory(slapd, user_dn_template=f"uid={{username}},{PEOPLE}", bind_dn="",
                         bind_password="")
    # A comma in a name is escaped into the RDN, so "lee,jr" binds as itself...
    user = template.authenticate("lee,jr", PEOPLE_ENTRIES["lee,jr"][0])
    assert user.role == "employee" and user.display_name == "Lee Junior"
    # ...and a name carrying DN syntax stays one value: no other entry is reached.
    for name in ("alice,ou=people", "alice+cn=x", f"alice,{PEOPLE}"):
        with pytest.raises(DirectoryRefusal) as refused:
            template.authenticate(name, ALICE[1])
        assert refused.value.reason == "wrong_password"


def test_wrong_password_is_refused(slapd):
    with pytest.raises(DirectoryRefusal) as refused:
        directory(slapd).authenticate("alice", "not-her-password")
    assert refused.value.reason == "wrong_password"


def test_recursive_resolution_survives_a_membership_cycle(slapd):
    # loop-a and loop-b contain each other; bob is in loop-a.
    user = directory(slapd, nested_groups="recursive").authenticate(*BOB)
    groups = {g.lower() for g in user.groups}
    assert {group_dn("loop-a"), group_dn("loop-b")} <= groups
    assert len(user.groups) == len(groups)  # each group once


def test_direct_groups_only_when_nesting_is_off(slapd):
    user = directory(slapd, nested_groups="direct").authenticate(*ALICE)
    assert {g.lower() for g in user.groups} == {group_dn("it-leads"), group_dn("finance-team")}
    assert user.role == "employee" and user.access_groups == ("finance",)


def test_auto_resolves_nesting_recursively_on_openldap(slapd):
    # OpenLDAP does not advertise Active Directory's capability: auto picks the recursive method.
    found = directory(slapd)
    assert found.status(probe=True)["method"] == "recursive"


def test_the_in_chain_filter_escapes_the_dn(slapd):
    # Active Directory's transitive rule cannot run on OpenLDAP (which does not implement it):
    # here only the filter it would send is checked.
    found = directory(slapd, nested_groups="in_chain")
    dn = "cn=R&D (Seoul)*,ou=people,dc=example,dc=test"
    assert found.nested_filter([dn], "in_chain") == (
        f"(member:{IN_CHAIN}:=cn=R&D \\28Seoul\\29\\2a,ou=people,dc=example,dc=test)")
    assert found.nested_filter(["cn=a", "cn=b"], "recursive") == "(|(member=cn=a)(member=cn=b))"


def test_a_user_in_no_mapped_group_is_not_allowed_and_noted(slapd):
    found = directory(slapd)
    user = found.authenticate("carol", PEOPLE_ENTRIES["carol"][0])
    assert not user.allowed and user.role is None and user.access_groups == ()
    assert user.groups == (group_dn("outsiders"),)
    [error] = found.status(probe=False)["errors"]
    assert error["username"] == "carol" and "none of the mapped groups" in error["message"]


def test_an_unreachable_directory_says_so(slapd):
    closed = directory(slapd, url=f"ldaps://127.0.0.1:{free_port()}", connect_timeout_seconds=1)
    with pytest.raises(DirectoryUnavailable, match="local accounts can still sign in"):
        closed.authenticate(*ALICE)
    status = closed.status(probe=True)
    assert status["reachable"] is False and "Could not talk" in status["error"]
    assert status["errors"][0]["username"] == "alice"


def test_a_wrong_service_password_names_the_setting(slapd):
    with pytest.raises(DirectoryUnavailable, match="bind_dn and bind_password"):
        directory(slapd, bind_password="not-the-password").authenticate(*ALICE)


def test_a_reachable_directory_reports_its_settings(slapd):
    status = directory(slapd).status(probe=True)
    assert status["configured"] and status["reachable"] and status["error"] is None
    assert status["transport"] == "ldaps" and status["service_account"] and status["mapped_groups"] == 3


def test_lookup_finds_current_groups_without_a_password(slapd):
    found = directory(slapd)
    assert found.lookup("alice").role == "admin"
    assert found.lookup("nobody-here") is None
    with pytest.raises(DirectoryUnavailable, match="service account"):
        directory(slapd, user_dn_template=f"uid={{username}},{PEOPLE}", bind_dn="",
                  bind_password="").lookup("alice")


@pytest.mark.parametrize("changes, fragment", [
    ({"url": "http://dc1"}, "must start with ldaps://"),
    ({"user_search_base": ""}, "user_search_base"),
    ({"user_filter": "(uid=alice)"}, "{username}"),
    ({"groups": []}, "No directory group may sign in"),
    ({"ca_file": "/nonexistent/ca.pem"}, "does not exist"),
])
def test_settings_that_cannot_work_are_refused(slapd, changes, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        directory(slapd, **changes)


def test_groups_search_base_scopes_the_group_search(slapd):
    # Groups live under ou=groups; searching only ou=people finds none, so nothing maps.
    user = directory(slapd, group_search_base=PEOPLE).authenticate(*ALICE)
    assert user.groups == () and not user.allowed
