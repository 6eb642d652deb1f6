"""`appliance users|keys|audit` against a real data folder."""

from __future__ import annotations

import json

from click.testing import CliRunner

from appliance.accounts import Accounts
from appliance.cli import main
from appliance.settings import load_settings

from .conftest import PASSWORD


def run(data_dir, *args, input=None):
    return CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)], input=input)


def open_accounts(data_dir) -> Accounts:
    return Accounts.open(load_settings(data_dir=data_dir))


def test_first_admin_from_a_prompt_with_confirmation(tmp_path):
    mismatch = run(tmp_path, "users", "create-admin", input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0 and "do not match" in mismatch.output
    created = run(tmp_path, "users", "create-admin", "--username", "root",
                  input=f"{PASSWORD}\n{PASSWORD}\n")
    assert created.exit_code == 0, created.output
    assert "Created admin root" in created.output and PASSWORD not in created.output
    accounts = open_accounts(tmp_path)
    token, session = accounts.login("root", PASSWORD)
    assert session.user.is_admin and session.user.groups == ("all",)
    again = run(tmp_path, "users", "create-admin", "--username", "root", "--password-stdin",
                input=f"{PASSWORD}\n")
    assert again.exit_code == 2 and "exists already" in again.output


def test_first_start_admin_with_a_generated_password_only_once(tmp_path):
    first = run(tmp_path, "users", "create-admin", "--if-none", "--generate-password")
    assert first.exit_code == 0, first.output
    password = first.output.split("Password for admin: ", 1)[1].split()[0]
    assert len(password) >= 20
    token, session = open_accounts(tmp_path).login("admin", password)
    assert session.user.is_admin
    second = run(tmp_path, "users", "create-admin", "--if-none", "--generate-password")
    assert second.exit_code == 0 and "already exists" in second.output and "Password" not in second.output
    assert [u.username for u in open_accounts(tmp_path).users()] == ["admin"]
    both = run(tmp_path, "users", "create-admin", "--generate-password", "--password-stdin")
    assert both.exit_code == 2 and "not both" in both.output


def test_users_lifecycle(tmp_path):
    created = run(tmp_path, "users", "create", "alice", "--groups", "hr,all", "--password-stdin",
                  input=f"{PASSWORD}\n")
    assert created.exit_code == 0 and "employee alice (groups: all, hr)" in created.output
    robot = run(tmp_path, "users", "create", "robot", "--no-password", "--role", "employee")
    assert robot.exit_code == 0, robot.output
    listed = json.loads(run(tmp_path, "users", "list", "--json").output)
    assert {u["username"]: u["has_password"] for u in listed} == {"alice": True, "robot": False}
    assert "keys only" in run(tmp_path, "users", "list").output

    assert run(tmp_path, "users", "update", "alice", "--groups", "finance").exit_code == 0
    assert run(tmp_path, "users", "disable", "alice").exit_code == 0
    accounts = open_accounts(tmp_path)
    alice = accounts.by_name("alice")
    assert alice.groups == ("finance",) and not alice.active
    assert run(tmp_path, "users", "enable", "alice").exit_code == 0
    reset = run(tmp_path, "users", "set-password", "alice", "--password-stdin",
                input="a new long password\n")
    assert reset.exit_code == 0, reset.output
    assert accounts.login("alice", "a new long password")[1].user.active

    short = run(tmp_path, "users", "set-password", "alice", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    missing = run(tmp_path, "users", "disable", "nobody")
    assert missing.exit_code == 2 and "No user named 'nobody'" in missing.output
    assert run(tmp_path, "users", "delete", "robot", "--yes").exit_code == 0
    assert accounts.by_name("robot") is None


def test_keys_are_printed_once_and_revocable(tmp_path):
    run(tmp_path, "users", "create", "robot", "--no-password")
    created = run(tmp_path, "keys", "create", "--user", "robot", "--name", "erp export")
    assert created.exit_code == 0, created.output
    secret = next(line for line in created.output.splitlines() if line.startswith("erp-"))
    accounts = open_accounts(tmp_path)
    assert accounts.key_user(secret)[0].username == "robot"
    listed = run(tmp_path, "keys", "list")
    assert "erp export" in listed.output and secret not in listed.output
    [key] = json.loads(run(tmp_path, "keys", "list", "--json", "--user", "robot").output)
    revoked = run(tmp_path, "keys", "revoke", str(key["id"]))
    assert revoked.exit_code == 0 and "Revoked key" in revoked.output
    assert accounts.key_user(secret) is None
    assert run(tmp_path, "keys", "revoke", "999").exit_code == 2


def test_cli_changes_are_audited(tmp_path):
    run(tmp_path, "users", "create", "robot", "--no-password")
    run(tmp_path, "keys", "create", "--user", "robot", "--name", "k1")
    entries = json.loads(run(tmp_path, "audit", "--json").output)
    assert [e["action"] for e in entries] == ["key_created", "user_created"]
    assert entries[0]["actor"].startswith("cli") and entries[0]["target"] == "robot/k1"
    shown = run(tmp_path, "audit", "--limit", "1")
    assert "key_created" in shown.output and "user_created" not in shown.output


def test_a_wrong_data_dir_is_named_not_created(tmp_path):
    result = run(tmp_path / "typo", "users", "list")
    assert result.exit_code == 2 and "No accounts database at" in result.output
    assert not (tmp_path / "typo").exists()


def test_directory_check_shows_what_a_user_would_get(tmp_path, slapd):
    from tests.slapd import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, USER_FILTER, group_dn

    config = tmp_path / "appliance.toml"
    config.write_text(f"""[auth.directory]
url = "{slapd.ldaps_url}"
ca_file = "{slapd.ca_file}"
bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PASSWORD}"
user_search_base = "{PEOPLE}"
group_search_base = "{GROUPS}"
user_filter = "{USER_FILTER}"

[[auth.directory.groups]]
group = "{group_dn('erp-admins')}"
role = "admin"
access_groups = ["all"]
""")
    checked = run(tmp_path, "users", "directory", "--user", "alice", "--config", str(config))
    assert checked.exit_code == 0, checked.output
    assert "reachable" in checked.output and "recursive" in checked.output
    assert f"in {group_dn('erp-admins')}" in checked.output.lower()
    assert "-> role admin, access groups all" in checked.output
    carol = run(tmp_path, "users", "directory", "--user", "carol", "--config", str(config))
    assert "refused: in none of the mapped groups" in carol.output
    off = run(tmp_path, "users", "directory")
    assert off.exit_code == 2 and "auth.directory.url" in off.output
