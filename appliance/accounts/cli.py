"""`appliance users|keys|audit`: thin commands over `Accounts` on the data dir's accounts.db.

While a server holds the data folder they act through its admin API (with its local admin token,
or an admin's API key); otherwise they hold the folder and write accounts.db themselves. Either
way a change takes effect at once (a revoked key is refused on its next request) and is audited
as `cli:<os user>`.
"""

from __future__ import annotations

import getpass
import json
import secrets
import sys
from datetime import datetime

import click

from appliance.accounts.remote import RemoteAccounts
from appliance.accounts.store import ROLES, Accounts, User
from appliance.cli_options import command_settings, config_option, data_dir_option
from appliance.datafolder import DataFolderLock
from appliance.errors import ApplianceError
from appliance.remote import find_server


def _remember_api_key(ctx: click.Context, _param, value: str | None) -> None:
    ctx.meta["api_key"] = value


data_options = [
    config_option,
    data_dir_option,
    click.option("--api-key", envvar="APPLIANCE_API_KEY", expose_value=False, callback=_remember_api_key,
                 help="An admin's API key for a running server (default: its local admin token)."),
]


def _with_data_options(fn):
    for option in reversed(data_options):
        fn = option(fn)
    return fn


def _fail(message: str) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(2)


def _open(config_path: str | None, data_dir: str | None, *, create: bool = False,
          reads_only: bool = False, local: bool = False) -> tuple[Accounts | RemoteAccounts, list[str]]:
    """The accounts (the running server's, or accounts.db held by this command) and the default
    groups of new users; only creating commands may start a new accounts.db (a mistyped
    --data-dir must not look like an empty appliance). `local`: accounts.db even while a server
    runs, for commands that read (SQLite lets them beside the server)."""
    try:
        settings = command_settings(config_path, data_dir)
    except ApplianceError as exc:
        _fail(exc.message)
    path = settings.resolved_data_dir() / "accounts.db"
    ctx = click.get_current_context()
    try:
        server = None if local else find_server(settings.resolved_data_dir(), ctx.meta.get("api_key"))
        if server is not None:
            return RemoteAccounts(server), settings.knowledge.default_groups
        if not create and not path.exists():
            _fail(f"No accounts database at {path}: create the first admin with `appliance users "
                  "create-admin`, or point --data-dir / --config at the appliance's data.")
        if not reads_only and not local:  # one writer per data folder: this command, until it exits
            lock = DataFolderLock(settings.resolved_data_dir())
            lock.acquire("command", command=f"appliance {ctx.command_path.split(' ', 1)[-1]}")
            ctx.call_on_close(lock.release)
        return Accounts.open(settings), settings.knowledge.default_groups
    except ApplianceError as exc:
        _fail(exc.message)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _run(accounts: Accounts, fn, action: str | None = None, target: str = "", **detail):
    """Run a store call, turning its errors into messages; audit it when it changed something."""
    try:
        result = fn()
    except ApplianceError as exc:
        _fail(exc.message)
    if action:
        accounts.audit(_actor(), action, target(result) if callable(target) else target, **detail)
    return result


def _password(from_stdin: bool, prompt: str = "Password") -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            _fail("--password-stdin: nothing on standard input; pipe the password in.")
        return line.rstrip("\r\n")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


def _groups(value: str | None) -> list[str] | None:
    return [g.strip() for g in value.split(",") if g.strip()] if value is not None else None


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _user_line(user: User) -> str:
    state = "active" if user.active else "disabled"
    login = "directory" if user.is_directory else "password" if user.has_password else "keys only"
    return (f"{user.id:>4}  {user.username:<24} {user.role:<9} {state:<9} {login:<10} "
            f"{','.join(user.groups) or '-':<24} last login {_when(user.last_login_at)}")


@click.group()
def users() -> None:
    """Users of the appliance: roles (employee, admin), access groups, passwords."""


@users.command("create-admin")
@click.option("--username", default="admin", show_default=True, help="Name of the admin to create.")
@click.option("--display-name", default="", help="Name shown in the web UI.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--generate-password", is_flag=True,
              help="Make up a strong password and print it once (first start of a fresh appliance).")
@click.option("--if-none", is_flag=True, help="Do nothing, successfully, when an admin already exists.")
@_with_data_options
def create_admin(username, display_name, password_stdin, generate_password, if_none, config_path,
                 data_dir) -> None:
    """Create an admin (the first one, typically), with a password for the web UI."""
    if password_stdin and generate_password:
        _fail("Use either --password-stdin or --generate-password, not both.")
    accounts, default_groups = _open(config_path, data_dir, create=True)
    if if_none and accounts.admin_count() > 0:
        click.echo(f"An admin already exists in {accounts.path}; nothing to do.")
        return
    password = secrets.token_urlsafe(15) if generate_password else _password(password_stdin)
    user = _run(accounts, lambda: accounts.create_user(username, password, role="admin",
                                                       groups=default_groups, display_name=display_name),
                "user_created", username, role="admin")
    click.echo(f"Created admin {user.username} (groups: {', '.join(user.groups) or 'none'}) in "
               f"{accounts.path}.")
    if generate_password:
        click.secho(f"Password for {user.username}: {password}", bold=True)
        click.echo("It is shown only now; change it after signing in, or set a new one with "
                   f"`appliance users set-password {user.username}`.")
    click.echo(f"Sign in at the web UI, or create an API key: appliance keys create --user "
               f"{user.username} --name NAME")


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="employee", show_default=True)
@click.option("--groups", help="Access groups, comma-separated (default: knowledge.default_groups).")
@click.option("--display-name", default="", help="Name shown in the web UI.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="No password: the user works through API keys only.")
@_with_data_options
def create(username, role, groups, display_name, password_stdin, no_password, config_path, data_dir) -> None:
    """Create a user."""
    accounts, default_groups = _open(config_path, data_dir, create=True)
    password = None if no_password else _password(password_stdin)
    chosen = _groups(groups)
    user = _run(accounts, lambda: accounts.create_user(
        username, password, role=role, groups=default_groups if chosen is None else chosen,
        display_name=display_name), "user_created", username, role=role)
    click.echo(f"Created {user.role} {user.username} (groups: {', '.join(user.groups) or 'none'}).")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_data_options
def list_users(as_json, config_path, data_dir) -> None:
    """Every user with role, state, groups and last login."""
    accounts, _ = _open(config_path, data_dir, reads_only=True)
    found = _run(accounts, accounts.users)
    if as_json:
        click.echo(json.dumps([u.public() for u in found], indent=2))
        return
    if not found:
        click.echo("No users yet; create the first admin with `appliance users create-admin`.")
    for user in found:
        click.echo(_user_line(user))


@users.command("update")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), help="New role.")
@click.option("--groups", help="New access groups, comma-separated (replaces the old ones; '' for none).")
@click.option("--display-name", help="New display name.")
@_with_data_options
def update(username, role, groups, display_name, config_path, data_dir) -> None:
    """Change a user's role, groups or display name."""
    accounts, _ = _open(config_path, data_dir)
    user = _run(accounts, lambda: accounts.find(username))
    changed = {k: v for k, v in {"role": role, "groups": _groups(groups),
                                 "display_name": display_name}.items() if v is not None}
    if not changed:
        _fail("Nothing to change: give --role, --groups or --display-name.")
    user = _run(accounts, lambda: accounts.update_user(user.id, **changed), "user_changed",
                user.username, **changed)
    click.echo(_user_line(user))


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_with_data_options
def set_password(username, password_stdin, config_path, data_dir) -> None:
    """Set a user's password; their sessions end."""
    accounts, _ = _open(config_path, data_dir)
    user = _run(accounts, lambda: accounts.find(username))
    password = _password(password_stdin, "New password")
    _run(accounts, lambda: accounts.set_password(user.id, password), "user_changed", user.username,
         password_reset=True)
    click.echo(f"Password of {user.username} set; their sessions have ended.")


def _set_active(username: str, active: bool, config_path, data_dir) -> None:
    accounts, _ = _open(config_path, data_dir)
    user = _run(accounts, lambda: accounts.find(username))
    user = _run(accounts, lambda: accounts.update_user(user.id, active=active), "user_changed",
                user.username, active=active)
    click.echo(f"{user.username} is {'enabled' if active else 'disabled: their sessions and keys stop working'}.")


@users.command("disable")
@click.argument("username")
@_with_data_options
def disable(username, config_path, data_dir) -> None:
    """Disable a user: sessions end and keys stop working, history is kept."""
    _set_active(username, False, config_path, data_dir)


@users.command("enable")
@click.argument("username")
@_with_data_options
def enable(username, config_path, data_dir) -> None:
    """Enable a disabled user again."""
    _set_active(username, True, config_path, data_dir)


@users.command("delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_with_data_options
def delete(username, yes, config_path, data_dir) -> None:
    """Delete a user with their keys, sessions and conversations."""
    accounts, _ = _open(config_path, data_dir)
    user = _run(accounts, lambda: accounts.find(username))
    if not yes:
        click.confirm(f"Delete {user.username} with their keys and conversations?", abort=True)
    _run(accounts, lambda: accounts.delete_user(user.id), "user_deleted", user.username)
    click.echo(f"Deleted {user.username}.")


@users.command("directory")
@click.option("--user", "username", help="Also look this user up (service account): DN, groups "
              "and the role and access groups they would get.")
@_with_data_options
def directory(username, config_path, data_dir) -> None:
    """Check directory sign-in (auth.directory): does the directory answer, what would a user get."""
    from appliance.accounts.directory import Directory

    try:
        settings = command_settings(config_path, data_dir)
        found = Directory.from_settings(settings.auth.directory)
    except ApplianceError as exc:
        _fail(exc.message)
    if found is None:
        _fail("Directory sign-in is off: set auth.directory.url (see docs/configuration.md).")
    status = found.status(probe=True)
    click.echo(f"{status['url']} ({status['transport']}): "
               + ("reachable" if status["reachable"] else f"NOT reachable: {status['error']}"))
    if not status["reachable"]:
        sys.exit(1)
    click.echo(f"nested groups: {status['nested_groups']} -> {status['method']}; "
               f"{status['mapped_groups']} mapped groups")
    if username:
        try:
            user = found.lookup(username)
        except ApplianceError as exc:
            _fail(exc.message)
        if user is None:
            _fail(f"{username}: not found by auth.directory.user_filter under "
                  f"{settings.auth.directory.user_search_base}.")
        click.echo(f"{user.username}: {user.dn} ({user.display_name})")
        for group in user.groups:
            click.echo(f"  in {group}")
        click.echo(f"  -> role {user.role}, access groups {', '.join(user.access_groups) or 'none'}"
                   if user.allowed else "  -> refused: in none of the mapped groups")


@click.group()
def keys() -> None:
    """API keys for programs: shown once, stored hashed, revocable."""


@keys.command("create")
@click.option("--user", "username", required=True, help="The user the key acts as.")
@click.option("--name", required=True, help="A label, e.g. the program that uses the key.")
@_with_data_options
def create_key(username, name, config_path, data_dir) -> None:
    """Create a key and print its secret (once: only its hash is stored)."""
    accounts, _ = _open(config_path, data_dir)
    user = _run(accounts, lambda: accounts.find(username))
    secret, key = _run(accounts, lambda: accounts.create_key(user.id, name), "key_created",
                       f"{user.username}/{name.strip()}")
    click.echo(secret)
    click.secho(f"Key {key.id} ({key.prefix}...) for {user.username}. Copy it now: it cannot be "
                "shown again. Send it as `Authorization: Bearer <key>`.", err=True)


@keys.command("list")
@click.option("--user", "username", help="Only this user's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_data_options
def list_keys(username, as_json, config_path, data_dir) -> None:
    """Every key (never its secret): owner, label, last use, revocation."""
    accounts, _ = _open(config_path, data_dir, reads_only=True)
    user_id = _run(accounts, lambda: accounts.find(username)).id if username else None
    found = _run(accounts, lambda: accounts.keys(user_id))
    if as_json:
        click.echo(json.dumps([k.public() for k in found], indent=2))
        return
    if not found:
        click.echo("No API keys yet; create one with `appliance keys create --user NAME --name LABEL`.")
    for key in found:
        state = f"revoked {_when(key.revoked_at)}" if key.revoked_at else "active"
        click.echo(f"{key.id:>4}  {key.prefix}...  {key.username:<20} {key.name:<24} {state:<24} "
                   f"last used {_when(key.last_used_at)}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@_with_data_options
def revoke_key(key_id, config_path, data_dir) -> None:
    """Revoke a key at once."""
    accounts, _ = _open(config_path, data_dir)
    key = _run(accounts, lambda: accounts.revoke_key(key_id), "key_revoked",
               lambda k: f"{k.username}/{k.name}", key_id=key_id)
    click.echo(f"Revoked key {key.id} ({key.prefix}...) of {key.username}.")


@click.command()
@click.option("--limit", default=50, show_default=True, help="Most recent entries shown.")
@click.option("--actor", help="Only entries by this user (or cli:NAME).")
@click.option("--action", help="Only this action, e.g. login_failed, key_created.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_data_options
def audit(limit, actor, action, as_json, config_path, data_dir) -> None:
    """The audit log, newest first: admin actions, logins, key and user changes."""
    accounts, _ = _open(config_path, data_dir, reads_only=True)
    entries = _run(accounts, lambda: accounts.audit_log(limit=limit, actor=actor, action=action))
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=str))
        return
    for entry in entries:
        status = f" -> {entry['status']}" if entry["status"] else ""
        click.echo(f"{_when(entry['ts'])}  {entry['actor']:<20} {entry['action']:<20} "
                   f"{entry['target']}{status}")
