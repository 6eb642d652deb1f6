"""`appliance quotas list|set|usage`: limits per user and per API key, and what they used.

Like `appliance users`, these act through the running server's API while one holds the data
folder, and on accounts.db otherwise. Changes are audited as `cli:<os user>`.
"""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import click

from appliance.accounts.cli import _open, _run, _with_data_options
from appliance.accounts.exports import Period
from appliance.accounts.quotas import Override, Quotas
from appliance.accounts.remote import RemoteAccounts, RemoteQuotas
from appliance.cli_options import command_settings


def open_quotas(config_path, data_dir, *, local: bool = False) -> Quotas | RemoteQuotas:
    """The running server's quotas, or those over the data dir's accounts.db (which must exist);
    `local` reads accounts.db even while a server runs (exports)."""
    accounts, _ = _open(config_path, data_dir, local=local)  # checks the settings and the database
    settings = command_settings(config_path, data_dir)
    if isinstance(accounts, RemoteAccounts):
        return RemoteQuotas(accounts, ZoneInfo(settings.quotas.timezone))
    return Quotas(accounts, settings.quotas)


class LimitType(click.ParamType):
    """A whole number (0: no limit) or `default` (inherit)."""

    name = "N|default"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) or value == "default":
            return value
        if str(value).isdigit():
            return int(value)
        self.fail("use a whole number (0 for no limit) or 'default'", param, ctx)


LIMIT = LimitType()


def _limit(value: int) -> str:
    return f"{value:,}" if value else "no limit"


def _shown(override: dict, limits: dict, name: str) -> str:
    mark = "" if override[name] is None else " *"
    return _limit(limits[name]) + mark


@click.group()
def quotas() -> None:
    """Requests per minute and tokens per day, per user and per API key (0: no limit)."""


@quotas.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_data_options
def list_quotas(as_json, config_path, data_dir) -> None:
    """Role defaults, then every user and key with their limits and today's use (* = set by an admin)."""
    found = open_quotas(config_path, data_dir)
    overview = _run(found.accounts, found.overview)
    if as_json:
        click.echo(json.dumps(overview, indent=2))
        return
    click.echo(f"Day {overview['day']} ({overview['timezone']}). Role defaults:")
    for role, limits in overview["defaults"].items():
        click.echo(f"  {role:<9} {_limit(limits['requests_per_minute'])} requests/min, "
                   f"{_limit(limits['tokens_per_day'])} tokens/day")
    click.echo(f"{'user':<24} {'requests/min':>14} {'tokens/day':>14} {'requests today':>15} "
               f"{'refused':>8} {'tokens today':>13}")
    for user in overview["users"]:
        click.echo(f"{user['username']:<24} {_shown(user['override'], user['limits'], 'requests_per_minute'):>14} "
                   f"{_shown(user['override'], user['limits'], 'tokens_per_day'):>14} "
                   f"{user['requests_today']:>15,} {user['refused_today']:>8,} {user['tokens_today']:>13,}")
    keys = [k for k in overview["keys"] if k["active"]]
    if keys:
        click.echo(f"\n{'key':<40} {'requests/min':>14} {'tokens/day':>14} {'requests today':>15} "
                   f"{'refused':>8} {'tokens today':>13}")
    for key in keys:
        label = f"{key['id']} {key['username']}/{key['name']}"[:40]
        click.echo(f"{label:<40} {_shown(key['override'], key['limits'], 'requests_per_minute'):>14} "
                   f"{_shown(key['override'], key['limits'], 'tokens_per_day'):>14} "
                   f"{key['requests_today']:>15,} {key['refused_today']:>8,} {key['tokens_today']:>13,}")


@quotas.command("set")
@click.option("--user", "username", help="The user whose limits to set.")
@click.option("--key", "key_id", type=int, help="The API key (id from `appliance keys list`) whose limits to set.")
@click.option("--requests-per-minute", type=LIMIT, help="A number (0: no limit) or 'default'.")
@click.option("--tokens-per-day", type=LIMIT, help="A number (0: no limit) or 'default'.")
@_with_data_options
def set_quota(username, key_id, requests_per_minute, tokens_per_day, config_path, data_dir) -> None:
    """Override the limits of a user (over their role's) or of a key (on top of its user's).

    'default' returns a limit to the role's default (for a key: no limit of its own); a limit not
    named stays as it is.
    """
    if (username is None) == (key_id is None):
        raise click.UsageError("Name either --user or --key.")
    if requests_per_minute is None and tokens_per_day is None:
        raise click.UsageError("Give --requests-per-minute and/or --tokens-per-day.")
    found = open_quotas(config_path, data_dir)
    accounts = found.accounts
    if username is not None:
        kind, ident = "user", _run(accounts, lambda: accounts.find(username)).id
        label = username
    else:
        key = _run(accounts, lambda: accounts.key(key_id))
        kind, ident, label = "key", key.id, f"{key.username}/{key.name}"
    current = found.override((kind, ident))
    pick = lambda given, old: old if given is None else (None if given == "default" else given)  # noqa: E731
    wanted = Override(pick(requests_per_minute, current.requests_per_minute),
                      pick(tokens_per_day, current.tokens_per_day))
    _run(accounts, lambda: found.set_override(kind, ident, wanted.requests_per_minute, wanted.tokens_per_day),
         "quota_changed", label, **wanted.public())
    shown = {k: "default" if v is None else _limit(v) for k, v in wanted.public().items()}
    click.echo(f"Limits of {kind} {label}: {shown['requests_per_minute']} requests/min, "
               f"{shown['tokens_per_day']} tokens/day.")


@quotas.command("usage")
@click.option("--since", help="First day, YYYY-MM-DD (default: 30 days ago).")
@click.option("--until", help="Last day, YYYY-MM-DD (default: today).")
@click.option("--user", "username", help="Only this user.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_data_options
def usage(since, until, username, as_json, config_path, data_dir) -> None:
    """Requests, refusals and tokens per day, user and key (`appliance export usage` writes CSV)."""
    found = open_quotas(config_path, data_dir)
    accounts = found.accounts
    period = _run(accounts, lambda: Period.parse(since, until, found.zone))
    user_id = _run(accounts, lambda: accounts.find(username)).id if username else None
    rows = _run(accounts, lambda: found.usage(period.since.isoformat(), period.until.isoformat(),
                                              user_id=user_id))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"No usage from {period.since} to {period.until}.")
    for row in rows:
        via = f"key {row['key_id']} {row['key_name']}" if row["key_id"] else "web UI"
        click.echo(f"{row['day']}  {row['username']:<20} {via[:28]:<28} {row['requests']:>7,} requests "
                   f"{row['refused']:>5,} refused {row['total_tokens']:>10,} tokens")
