"""`appliance export audit|usage|conversation`: the same files the API and the console download."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.accounts.cli import _actor, _run, _with_data_options
from appliance.accounts.conversations import Conversations
from appliance.accounts.exports import (
    FORMATS,
    Period,
    audit_csv,
    conversation_json,
    conversation_markdown,
    filename,
    usage_csv,
)
from appliance.accounts.quota_cli import open_quotas

period_options = [
    click.option("--since", help="First day, YYYY-MM-DD in quotas.timezone (default: 30 days ago)."),
    click.option("--until", help="Last day, YYYY-MM-DD (default: today)."),
]


def _with_period(fn):
    for option in reversed(period_options):
        fn = option(fn)
    return fn


def _write(text: str, out: str | None, default_name: str) -> None:
    """To the file named, '-' for standard output; without --out, a file named after the export."""
    if out == "-":
        sys.stdout.write(text)
        return
    path = Path(out or default_name)
    path.write_text(text, encoding="utf-8", newline="")
    click.echo(f"Wrote {path} ({len(text.encode()):,} bytes).", err=True)


@click.group()
def export() -> None:
    """Write the audit log or usage as CSV, or a user's conversation as Markdown or JSON."""


@export.command("audit")
@_with_period
@click.option("-o", "--out", help="File to write ('-': standard output; default: audit-SINCE-to-UNTIL.csv).")
@_with_data_options
def export_audit(since, until, out, config_path, data_dir) -> None:
    """The audit log of a period as CSV (UTF-8, for spreadsheets)."""
    quotas = open_quotas(config_path, data_dir, local=True)  # reads beside a running server
    period = _run(quotas.accounts, lambda: Period.parse(since, until, quotas.zone))
    text = _run(quotas.accounts, lambda: audit_csv(quotas.accounts, period), "audit_exported",
                f"{period.since}..{period.until}")
    _write(text, out, period.name("audit"))


@export.command("usage")
@_with_period
@click.option("-o", "--out", help="File to write ('-': standard output; default: usage-SINCE-to-UNTIL.csv).")
@_with_data_options
def export_usage(since, until, out, config_path, data_dir) -> None:
    """Requests, refusals and tokens per day, user and API key, as CSV."""
    quotas = open_quotas(config_path, data_dir, local=True)  # reads beside a running server
    period = _run(quotas.accounts, lambda: Period.parse(since, until, quotas.zone))
    text = _run(quotas.accounts, lambda: usage_csv(quotas.usage(period.since.isoformat(),
                                                                period.until.isoformat())),
                "usage_exported", f"{period.since}..{period.until}")
    _write(text, out, period.name("usage"))


@export.command("conversation")
@click.argument("conversation_id")
@click.option("--user", "username", required=True, help="The user the conversation belongs to.")
@click.option("--format", "export_format", type=click.Choice(FORMATS), default="md", show_default=True)
@click.option("--lang", type=click.Choice(["en", "ko"]), default="en", show_default=True,
              help="Language of the Markdown's labels.")
@click.option("-o", "--out", help="File to write ('-': standard output; default: named after the title).")
@_with_data_options
def export_conversation(conversation_id, username, export_format, lang, out, config_path, data_dir) -> None:
    """One of a user's conversations (`GET /api/conversations` lists their ids)."""
    quotas = open_quotas(config_path, data_dir, local=True)  # reads beside a running server
    accounts = quotas.accounts
    user = _run(accounts, lambda: accounts.find(username))
    conversation = _run(accounts, lambda: Conversations(accounts).get(user.id, conversation_id))
    if export_format == "json":
        text = conversation_json(conversation, username=user.username, zone=quotas.zone)
    else:
        text = conversation_markdown(conversation, username=user.username, zone=quotas.zone, lang=lang)
    accounts.audit(_actor(), "conversation_exported", f"{user.username}/{conversation_id}")
    _write(text, out, filename(conversation["title"], conversation["id"], export_format)[1])
