"""Directory users in the accounts store, against a real slapd: created at first sign-in without a
password, kept in line with the directory at every sign-in and by the periodic check, shut out
(sessions and keys) when removed, disabled or unmapped; local accounts keep working beside them."""

from __future__ import annotations

import itertools

import pytest

from appliance.accounts import Accounts
from appliance.errors import (
    AuthenticationRequired,
    ConfigError,
    DirectoryUnavailable,
    InvalidRequest,
)
from appliance.settings import AuthSettings
from tests.conftest import free_port
from tests.slapd import PEOPLE_ENTRIES, directory_settings, person_dn

from .conftest import PASSWORD

_names = itertools.count()


@pytest.fixture
def open_accounts(tmp_path):
    """Accounts stores on one accounts.db, each with its own directory settings."""
    opened = []

    def make(directory) -> Accounts:
        accounts = Accounts(tmp_path / "accounts.db", AuthSettings(
            login_max_failures=50, login_window_seconds=60, directory=directory))
        opened.append(accounts)
        return accounts

    yield make
    for accounts in opened:
        accounts.close()


@pytest.fixture
def accounts(open_accounts, slapd) -> Accounts:
    return open_accounts(directory_settings(slapd))


@pytest.fixture
def person(slapd):
    """A fresh directory person in the given groups, so tests may change the directory freely."""

    def make(*groups: str) -> tuple[str, str, str]:
        uid = f"person{next(_names)}"
        password = f"{uid}-password-1"
        return uid, password, slapd.add_person(uid, password, f"Person {uid}", groups)

    return make


def test_first_sign_in_creates_a_directory_user_without_a_stored_password(accounts):
    token, session = accounts.login("alice", PEOPLE_ENTRIES["alice"][0])
    user = session.user
    assert user.is_directory and user.directory_dn == person_dn("alice")
    assert user.role == "admin" and user.groups == ("all", "finance")
    assert user.display_name == "김앨리스" and not user.has_password
    assert user.public()["source"] == "directory"
    [row] = accounts.rows("SELECT password_hash FROM users WHERE username = 'alice'")
    assert row["password_hash"] is None
    assert accounts.session(token).user.id == user.id
    [entry] = accounts.audit_log(action="directory_user_synced")
    assert entry["actor"] == "directory" and entry["detail"]["created"] is True


def test_a_group_removal_takes_effect_at_the_next_sign_in(accounts, slapd, person):
    uid, password, dn = person("staff", "finance-team")
    _, first = accounts.login(uid, password)
    assert first.user.role == "employee" and first.user.groups == ("all", "finance")

    slapd.remove_member("finance-team", dn)
    slapd.add_member("erp-admins", dn)
    _, second = accounts.login(uid, password)
    assert second.user.role == "admin" and second.user.groups == ("all",)

    slapd.remove_member("staff", dn)
    slapd.remove_member("erp-admins", dn)
    with pytest.raises(AuthenticationRequired, match="none of the groups"):
        accounts.login(uid, password)
    user = accounts.by_name(uid)
    assert user.directory_state == "not_mapped"


def test_sessions_end_when_the_directory_refuses_at_the_next_sign_in(accounts, slapd, person):
    uid, password, dn = person("staff")
    token, _ = accounts.login(uid, password)
    slapd.remove_member("staff", dn)
    with pytest.raises(AuthenticationRequired):
        accounts.login(uid, password)
    assert accounts.session(token) is None
    [entry] = accounts.audit_log(action="directory_access_ended")
    assert entry["target"] == uid and entry["detail"] == {"reason": "not_mapped", "sessions_ended": 1}


def test_the_periodic_check_cuts_a_disabled_users_sessions_and_keys(accounts, slapd, person):
    uid, password, dn = person("staff")
    token, session = accounts.login(uid, password)
    secret, _ = accounts.create_key(session.user.id, "script")
    slapd.set_attribute(dn, "employeeType", ["disabled"])  # the user filter excludes them now

    assert accounts.check_directory_users() == {"checked": 1, "shut_out": 1}
    assert accounts.session(token) is None and accounts.key_user(secret) is None
    assert accounts.by_name(uid).directory_state == "not_found"
    with pytest.raises(AuthenticationRequired, match="Wrong user name or password"):
        accounts.login(uid, password)

    # Enabled again in the directory: the next sign-in restores access, keys included.
    slapd.set_attribute(dn, "employeeType", [])
    accounts.login(uid, password)
    assert accounts.by_name(uid).directory_state is None and accounts.key_user(secret) is not None


def test_the_periodic_check_cuts_a_user_deleted_from_the_directory(accounts, slapd, person):
    uid, password, dn = person("staff")
    token, _ = accounts.login(uid, password)
    slapd.delete(dn)
    assert accounts.check_directory_users()["shut_out"] == 1
    assert accounts.session(token) is None


def test_the_periodic_check_applies_group_changes(accounts, slapd, person):
    uid, password, dn = person("staff")
    token, _ = accounts.login(uid, password)
    slapd.add_member("finance-team", dn)
    assert accounts.check_directory_users() == {"checked": 1, "shut_out": 0}
    assert accounts.session(token).user.groups == ("all", "finance")


def test_one_check_round_covers_every_user_who_can_act(accounts, slapd, person):
    staying, leaving = person("staff"), person("staff")
    tokens = [accounts.login(uid, password)[0] for uid, password, _ in (staying, leaving)]
    slapd.remove_member("staff", leaving[2])
    assert accounts.check_directory_users() == {"checked": 2, "shut_out": 1}
    assert accounts.session(tokens[0]) is not None and accounts.session(tokens[1]) is None


def test_the_periodic_check_skips_users_who_cannot_act(accounts, slapd, person):
    uid, password, dn = person("staff")
    token, _ = accounts.login(uid, password)
    accounts.logout(token)  # no session, no key: the next sign-in will check them
    slapd.delete(dn)
    assert accounts.check_directory_users()["checked"] == 0


def test_a_directory_outage_changes_nothing(open_accounts, slapd, person):
    uid, password, _ = person("staff")
    online = open_accounts(directory_settings(slapd))
    token, _ = online.login(uid, password)
    offline = open_accounts(directory_settings(slapd, url=f"ldaps://127.0.0.1:{free_port()}",
                                               connect_timeout_seconds=1))
    with pytest.raises(DirectoryUnavailable):
        offline.check_directory_users()
    with pytest.raises(DirectoryUnavailable):  # a 503, not a wrong password: nothing is counted
        offline.login(uid, password)
    assert offline.session(token) is not None
    assert not offline.rows("SELECT * FROM login_failures WHERE key = ?", [f"user:{uid}"])


def test_a_local_account_keeps_its_name_and_works_while_the_directory_is_down(open_accounts, slapd):
    offline = open_accounts(directory_settings(slapd, url=f"ldaps://127.0.0.1:{free_port()}",
                                               connect_timeout_seconds=1))
    offline.create_user("alice", PASSWORD, role="admin")  # the break-glass admin, say
    _, session = offline.login("alice", PASSWORD)
    assert not session.user.is_directory and session.user.role == "admin"
    online = open_accounts(directory_settings(slapd))
    # The directory's alice cannot take over the local account of that name.
    with pytest.raises(AuthenticationRequired, match="Wrong user name or password"):
        online.login("alice", PEOPLE_ENTRIES["alice"][0])


def test_directory_users_roles_groups_and_passwords_belong_to_the_directory(accounts):
    _, session = accounts.login("bob", PEOPLE_ENTRIES["bob"][0])
    bob = session.user
    with pytest.raises(InvalidRequest, match="come from the directory"):
        accounts.update_user(bob.id, role="admin")
    with pytest.raises(InvalidRequest, match="come from the directory"):
        accounts.update_user(bob.id, groups=["all", "hr"])
    with pytest.raises(InvalidRequest, match="change it in the directory"):
        accounts.set_password(bob.id, "a-new-password-1")
    with pytest.raises(InvalidRequest, match="change it in the directory"):
        accounts.change_password(bob.id, PEOPLE_ENTRIES["bob"][0], "a-new-password-1")
    # The same values, or the name and state, may be saved (the console sends them all).
    accounts.update_user(bob.id, role="employee", groups=["all"], display_name="Bob P.")


def test_an_admin_can_disable_a_directory_user(accounts):
    token, session = accounts.login("bob", PEOPLE_ENTRIES["bob"][0])
    accounts.update_user(session.user.id, active=False)
    assert accounts.session(token) is None
    with pytest.raises(AuthenticationRequired, match="disabled"):
        accounts.login("bob", PEOPLE_ENTRIES["bob"][0])


@pytest.mark.parametrize("username, password", [
    ("alice", ""),  # empty password
    ("", "whatever-password"),  # anonymous
    ("*", PEOPLE_ENTRIES["alice"][0]),  # injection
    ("alice)(uid=*", PEOPLE_ENTRIES["alice"][0]),
])
def test_refused_sign_ins_count_as_failures(accounts, username, password):
    with pytest.raises(AuthenticationRequired, match="Wrong user name or password"):
        accounts.login(username, password)
    assert accounts.rows("SELECT count(*) AS n FROM login_failures")[0]["n"] == 2
    assert accounts.by_name(username) is None


def test_a_mapping_to_a_bad_access_group_stops_the_start(tmp_path, slapd):
    broken = directory_settings(slapd, groups=[{"group": "staff", "access_groups": ["no spaces"]}])
    with pytest.raises(ConfigError, match=r"auth.directory.groups \(staff\)"):
        Accounts(tmp_path / "broken.db", AuthSettings(directory=broken))


def test_directory_status_without_a_directory(tmp_path):
    plain = Accounts(tmp_path / "plain.db", AuthSettings())
    assert plain.directory is None and plain.directory_status() == {"configured": False}
    assert plain.check_directory_users() == {"checked": 0, "shut_out": 0}
    plain.close()
