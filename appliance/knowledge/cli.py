"""`appliance sources ...`: watched sources, through the server that holds the data folder (its
/api/sources, with its local admin token or an admin's API key), or `--server`; with no server,
run here while this command holds the data folder."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any

import click

from appliance.cli_options import command_settings, config_option, data_dir_option
from appliance.errors import ApplianceError

COUNTS = ("added", "updated", "unchanged", "removed", "skipped", "failed")


def _fail(message: str) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(2)


def _settings(config_path, data_dir):
    try:
        return command_settings(config_path, data_dir)
    except ApplianceError as exc:
        _fail(exc.message)


def _knowledge(config_path, data_dir):
    """The knowledge base, opened while this command holds the data folder (until it exits)."""
    from appliance.datafolder import DataFolderLock
    from appliance.knowledge.knowledge_base import KnowledgeBase

    settings = _settings(config_path, data_dir)
    try:
        lock = DataFolderLock(settings.resolved_data_dir())
        lock.acquire("command", command="appliance sources")
        click.get_current_context().call_on_close(lock.release)
        return KnowledgeBase.open(settings)
    except ApplianceError as exc:
        _fail(exc.message)


def _through(config_path, data_dir, server, api_key) -> tuple[str | None, str | None]:
    """The server to act through, and its credential: --server, or the one holding the data folder."""
    if server:
        return server, api_key
    from appliance.remote import find_server

    try:
        found = find_server(_settings(config_path, data_dir).resolved_data_dir(), api_key)
    except ApplianceError as exc:
        _fail(exc.message)
    return (found.url, found.credential) if found is not None else (None, None)


def _api(server: str, method: str, path: str, api_key: str | None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(method, f"{server.rstrip('/')}{path}", headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        _fail(f"No appliance server answers at {server} ({exc}); start it, or leave out --server "
              "to work on the data folder here.")
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        if response.status_code in (401, 403):
            message += (" Watched sources are for admins: pass an admin's API key with --api-key "
                        "or $APPLIANCE_API_KEY.")
        _fail(message)
    return response.json()


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _schedule(row: dict) -> str:
    if row["cron"]:
        return f"cron {row['cron']}"
    return f"every {row['interval_minutes']:g} min" if row["interval_minutes"] else "on demand"


def _summary(run: dict | None) -> str:
    if not run:
        return "never run"
    counts = ", ".join(f"{run[k]} {k}" for k in COUNTS if run[k]) or "no change"
    took = f" in {run['finished_at'] - run['started_at']:.1f} s" if run.get("finished_at") else ""
    message = f": {run['message']}" if run["message"] else ""
    return f"{run['state']}{took} ({counts}){message}"


def _print_run(name: str, run: dict) -> None:
    color = "red" if run["state"] == "failed" or run["failed"] else "green"
    click.secho(f"{name}: {_summary(run)}", fg=color)
    for error in run["errors"]:
        click.secho(f"  failed {error['file']}: {error['reason']}", fg="yellow")
    for warning in run["warnings"]:
        click.secho(f"  warning {warning['file']}: {warning['message']}", fg="yellow")
    if run["failed"] > len(run["errors"]):
        click.echo(f"  ... and {run['failed'] - len(run['errors'])} more failures")


_options = [
    config_option,
    data_dir_option,
    click.option("--server", help="Act through this running appliance's API (e.g. http://127.0.0.1:8080) "
                 "instead of on the data folder here."),
    click.option("--api-key", envvar="APPLIANCE_API_KEY",
                 help="An admin's API key for --server (default: $APPLIANCE_API_KEY)."),
]


def _with_options(fn):
    for option in reversed(_options):
        fn = option(fn)
    return fn


@click.group()
def sources() -> None:
    """Watched folders ([[knowledge.sources]]): list them, run one now."""


@sources.command("list")
@_with_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_sources(config_path, data_dir, server, api_key, as_json) -> None:
    """Each source: folder, groups, schedule, documents and its last run."""
    server, api_key = _through(config_path, data_dir, server, api_key)
    if server:
        rows = _api(server, "GET", "/api/sources", api_key)["sources"]
    else:
        kb = _knowledge(config_path, data_dir)
        try:
            rows = kb.sources.describe()
        finally:
            kb.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    if not rows:
        click.echo("No watched sources; add [[knowledge.sources]] tables to the settings file "
                   "(docs/knowledge.md).")
    for row in rows:
        last = row["last_run"]
        running = " (running now)" if row["running"] else ""
        click.secho(f"{row['name']}{running}", bold=True)
        click.echo(f"  folder    {row['path']}")
        click.echo(f"  groups    {', '.join(row['groups'])}")
        click.echo(f"  schedule  {_schedule(row)}"
                   + (f", next {row['next_run']}" if row.get("next_run") else ""))
        click.echo(f"  documents {row['documents']}")
        click.echo(f"  last run  {_when(last['started_at']) if last else '-'} {_summary(last)}")


@sources.command("run")
@click.argument("name")
@_with_options
@click.option("--no-wait", is_flag=True, help="With --server: start the run and return.")
def run_source(name, config_path, data_dir, server, api_key, no_wait) -> None:
    """Run one source now: ingest new and changed files, remove deleted ones."""
    server, api_key = _through(config_path, data_dir, server, api_key)
    if server:
        run = _api(server, "POST", f"/api/sources/{name}/run", api_key)["run"]
        click.echo(f"{name}: run {run['id']} started on {server}")
        if no_wait:
            return
        while run["state"] == "running":
            time.sleep(1.0)
            runs = _api(server, "GET", f"/api/sources/{name}?limit=50", api_key)["runs"]
            run = next((r for r in runs if r["id"] == run["id"]), run)
    else:
        kb = _knowledge(config_path, data_dir)
        try:
            run = kb.sources.run(name, "cli", progress=lambda file: click.echo(f"  {file}", err=True))
        except ApplianceError as exc:
            _fail(exc.message)
        finally:
            kb.close()
    _print_run(name, run)
    if run["state"] != "done" or run["failed"]:
        sys.exit(1)
