"""`appliance models ...`: thin commands over ReleaseManager, or over a running server's admin API.

Activation, rollback, schedules and imports must happen inside the serving process (it owns the
models and the data folder), so when a server holds the data folder these commands go through
/api/models, with its local admin token (readable by the service user) or an admin's API key
(`--api-key` or $APPLIANCE_API_KEY).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from appliance.cli_options import command_settings, data_options
from appliance.datafolder import DataFolderLock, read_holder
from appliance.errors import ApplianceError
from appliance.remote import OPERATOR_HEADER, find_server, operator_name
from appliance.settings import Settings


def _fail(message: str) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(2)


def _manager(settings: Settings, **options):
    from appliance.releases import ReleaseManager

    manager = ReleaseManager(settings, **options)
    if read_holder(settings.resolved_data_dir()) is None:  # a server registers new folders itself
        manager.registry.scan()
    return manager


_local_tokens: dict[str, str] = {}  # server URL -> its local admin token, found with the server


def _server_url(settings: Settings, given: str | None) -> str | None:
    """The server holding the data folder (found through its lock), or the one given."""
    if not given:
        try:
            server = find_server(settings.resolved_data_dir(), api_key=None)
        except ApplianceError as exc:
            _fail(exc.message)
        if server is None:
            return None
        _local_tokens[server.url] = server.credential
        return server.url
    try:
        with urllib.request.urlopen(f"{given}/health", timeout=1.5):
            return given
    except (urllib.error.URLError, OSError):
        _fail(f"No appliance server answers at {given}; start it with `appliance serve`.")


def _call(url: str, method: str, path: str, body: dict | None = None, api_key: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", OPERATOR_HEADER: operator_name()}
    api_key = api_key or _local_tokens.get(url)
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{url}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=3600) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        if exc.code in (401, 403):
            message += (" The running server acts on model versions for admins only: pass an admin's "
                        "API key with --api-key or $APPLIANCE_API_KEY (appliance keys create --user "
                        "ADMIN --name cli).")
        _fail(message)
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"The appliance server at {url} stopped answering ({getattr(exc, 'reason', exc)}); "
              "`appliance models history` shows how far the change got.")


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _settings(config_path: str | None, data_dir: str | None) -> Settings:
    try:
        return command_settings(config_path, data_dir)
    except ApplianceError as exc:
        _fail(exc.message)


server_option = click.option("--server", help="Running appliance to act on (default: the configured address).")
api_key_option = click.option("--api-key", envvar="APPLIANCE_API_KEY",
                              help="An admin's API key for the running server (default: $APPLIANCE_API_KEY).")


@click.group()
def models() -> None:
    """Model versions: import, validate, activate, schedule, roll back."""


@models.command("list")
@data_options
def list_versions(config_path, data_dir) -> None:
    """List every known version with its state."""
    settings = _settings(config_path, data_dir)
    manager = _manager(settings)
    rows = manager.list()
    if not rows:
        click.echo(f"No model versions yet; import one into {manager.registry.models_dir}/.")
    for row in rows:
        score = (row["validation"].get("checks", {}).get("golden") or row["validation"].get("golden") or {})
        shown = f"  golden={score['score']:.2f}" if "score" in score else ""
        reason = f"  ({row['reason']})" if row["reason"] else ""
        click.echo(f"{row['name']}/{row['version']:<24} {row['state']:<10} {row['kind']}{shown}{reason}")


@models.command("import")
@click.argument("source", required=False)
@click.option("--upstream", "upstream_model", help="Register a model name served by the OpenAI-compatible upstream.")
@data_options
@api_key_option
def import_version(source, upstream_model, config_path, data_dir, api_key) -> None:
    """Import a version folder or .tar.gz/.zip archive (checksums verified) into the data
    folder's models/<name>/<version>.

    With a server running on the data folder, the server imports it.
    """
    settings = _settings(config_path, data_dir)
    if bool(source) == bool(upstream_model):
        _fail("Give a SOURCE folder or archive, or --upstream MODEL (one of them).")
    url = _server_url(settings, None)
    if url:
        body = ({"upstream_model": upstream_model} if upstream_model
                else {"path": str(Path(source).expanduser().resolve())})
        row = _call(url, "POST", "/api/models/import", body, api_key)
        key, state = f"{row['name']}/{row['version']}", row["state"]
    else:
        with DataFolderLock(settings.resolved_data_dir()) as lock:
            try:
                lock.acquire("command", command="appliance models import")
                manager = _manager(settings)
                record = (manager.register_upstream(upstream_model) if upstream_model
                          else manager.import_path(Path(source).expanduser().resolve()))
            except ApplianceError as exc:
                _fail(exc.message)
        key, state = record.key, record.state
    click.echo(f"Imported {key} ({state}); next: appliance models validate {key}")


@models.command("validate")
@click.argument("ref")
@data_options
@server_option
@api_key_option
def validate(ref, config_path, data_dir, server, api_key) -> None:
    """Run the validation gate: checksums, isolated load, golden QA score and latency.

    With a server running, it validates there (in the background) and this waits for the result.
    """
    settings = _settings(config_path, data_dir)
    url = _server_url(settings, server)
    steps: set[str] = set()
    finished: set[str] = set()

    def progress(step: str, checks: dict) -> None:
        for name, result in checks.items():
            if name not in finished:
                finished.add(name)
                click.echo(f"  {name}: {_figures(result)}")
        if step not in steps and step != "done":
            steps.add(step)
            click.echo(f"{step} ...")

    if url:  # the server compares with the model it serves, and keeps to two models in memory
        name, _, version = _run(lambda: _manager(settings).registry.find(ref)).key.partition("/")
        path = f"/api/models/{name}/{version}"
        _call(url, "POST", f"{path}/validate", api_key=api_key)
        row = _call(url, "GET", path, api_key=api_key)
        while row["state"] == "validating":
            progress(row["validation"].get("step", "queued"), row["validation"].get("checks", {}))
            time.sleep(1.0)
            row = _call(url, "GET", path, api_key=api_key)
        progress("done", row["validation"].get("checks", {}))
        state, reason, key = row["state"], row["reason"], f"{name}/{version}"
    else:
        knowledge = _open_knowledge(settings)
        manager = _manager(settings, knowledge=knowledge)
        try:
            record = asyncio.run(manager.validate(ref, progress=progress))
        except ApplianceError as exc:
            _fail(exc.message)
        finally:
            manager.close()
            if knowledge is not None:
                knowledge.close()
        progress("done", record.validation.get("checks", {}))
        state, reason, key = record.state, record.reason, record.key
    if state == "ready":
        click.secho(f"{key} passed validation and is ready to activate.", fg="green")
    else:
        _fail(f"{key} failed validation: {reason}")


def _figures(result: Any) -> str:
    """One line of a gate step's figures."""
    if not isinstance(result, dict):
        return str(result)
    if "score" in result:
        mode = str(result.get("mode", "open_book")).replace("_", " ")
        return (f"score {result['score']:.2f} ({result['passed']} of {result['items']} passed, {mode}), "
                f"p95 {result['latency_p95']:.1f} s, {result['errors']} errors")
    return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
                     if k != "sample")


def _open_knowledge(settings: Settings):
    """The knowledge base for golden questions with retrieval; None (open book) if it cannot open."""
    from appliance.knowledge.knowledge_base import KnowledgeBase

    try:
        return KnowledgeBase.open(settings)
    except ApplianceError as exc:
        click.echo(f"Knowledge base unavailable ({exc.message}); golden questions run open book.")
        return None


@models.command("activate")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Activate without a passed validation (recorded in history).")
@click.option("--reason", default="", help="Why; kept in the history.")
@data_options
@server_option
@api_key_option
def activate(ref, force, reason, config_path, data_dir, server, api_key) -> None:
    """Swap a version in now (zero downtime when the server is running).

    With a server running, it activates there (in the background) and this waits, printing each
    step (re-embedding progress, load, warm-up, switch, drain) until the version serves.
    """
    settings = _settings(config_path, data_dir)
    url = _server_url(settings, server)
    manager = _manager(settings)
    if url:
        name, _, version = _run(lambda: manager.registry.find(ref)).key.partition("/")
        path = f"/api/models/{name}/{version}"
        started = _call(url, "POST", f"{path}/activate", {"force": force, "reason": reason}, api_key)
        _follow_swap(url, api_key, started, "activated")
        return
    try:
        _echo(asyncio.run(manager.activate(ref, force=force, reason=reason)))
    except ApplianceError as exc:
        _fail(exc.message)
    click.echo("No server is running; the version is served when it next starts.")


def _follow_swap(url: str, api_key: str | None, started: dict, done: str) -> None:
    """Follow the activation (or rollback) job the server started, step by step, to its end."""
    version = started["version"]
    key = f"{version['name']}/{version['version']}"
    if not started["changed"]:
        click.echo(f"{key} is already active and serving.")
        return
    job = _follow_activation(url, f"/api/models/{key}", api_key, version["activation"])
    if not job.get("ok"):
        _fail(f"{key} was not {done}: {job.get('reason') or 'the job stopped'}")
    swap = job.get("swap") or {}
    figures = ", ".join(f"{k.removesuffix('_seconds')} {swap[k]:.1f} s" for k in
                        ("load_seconds", "warmup_seconds", "drain_seconds") if k in swap)
    click.secho(f"{key} is active and serving" + (f" ({figures})." if figures else "."), fg="green")


def _follow_activation(url: str, path: str, api_key: str | None, job: dict) -> dict:
    """Poll a running activation, printing each new step once; returns the finished job."""
    shown: set[str] = set()
    last_progress = None
    while True:
        step = job.get("step", "queued")
        reembed = job.get("reembed") or (job.get("steps") or {}).get("reembed")
        # A re-embedding that ran between two polls is still reported, before what followed.
        missed = ("reembed",) if isinstance(reembed, dict) and step != "reembed" else ()
        for name in (*missed, step):
            if name not in shown:
                shown.add(name)
                click.echo(f"{_STEP_NAMES.get(name, name)} ...")
            if name == "reembed" and isinstance(reembed, dict) and reembed.get("chunks_total"):
                progress = (reembed["chunks_done"], reembed["chunks_total"])
                if progress != last_progress:
                    last_progress = progress
                    click.echo(f"  {progress[0]} of {progress[1]} passages re-embedded")
        if not job.get("running"):
            return job
        time.sleep(0.5)
        job = _call(url, "GET", path, api_key=api_key)["activation"]


_STEP_NAMES = {"queued": "waiting for a validation to finish (one extra model at a time)",
               "starting": "starting", "golden_reference": "scoring the serving version (for probation)",
               "reembed": "re-embedding the knowledge base with the new embedder",
               "load": "loading the new model", "warmup": "warming it up",
               "switch": "switching new requests to it",
               "drain": "letting answers in progress finish on the old model"}


@models.command("schedule")
@click.argument("ref", required=False)
@click.option("--at", "at", help="ISO 8601 time; omitted means the next maintenance window.")
@click.option("--list", "list_only", is_flag=True, help="Show the schedules instead.")
@click.option("--cancel", "cancel_id", help="Cancel a pending schedule by its id.")
@data_options
@server_option
@api_key_option
def schedule(ref, at, list_only, cancel_id, config_path, data_dir, server, api_key) -> None:
    """Activate a ready version at a time or in the maintenance window (survives restarts)."""
    settings = _settings(config_path, data_dir)
    manager = _manager(settings)
    if list_only:
        _echo(manager.scheduler.list())
        return
    url = _server_url(settings, server)
    if cancel_id:
        if url:
            _echo(_call(url, "DELETE", f"/api/models/schedules/{cancel_id}", api_key=api_key))
        else:
            _echo(_run(lambda: manager.scheduler.cancel(cancel_id)))
        return
    if not ref:
        _fail("Give the version to schedule (name/version), or --list / --cancel ID.")
    if url:
        name, _, version = _run(lambda: manager.registry.find(ref)).key.partition("/")
        _echo(_call(url, "POST", f"/api/models/{name}/{version}/schedule", {"at": at}, api_key))
        return
    when = None
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            _fail(f"{at!r} is not an ISO 8601 time such as 2026-05-01T03:00:00+09:00.")
    _echo(_run(lambda: manager.schedule(ref, at=when)))
    click.echo("Saved; it runs when the server is running at that time.")


@models.command("rollback")
@click.argument("ref", required=False)
@click.option("--reason", default="", help="Why; kept in the history.")
@click.option("--yes", "-y", is_flag=True,
              help="Roll back without asking (the target is still printed).")
@data_options
@server_option
@api_key_option
def rollback(ref, reason, yes, config_path, data_dir, server, api_key) -> None:
    """Go back to the previous good version, or to REF.

    It names the version it goes back to and asks before acting. With a server running, the
    rollback runs there (in the background, like an activation) and this waits, printing each
    step until the version serves.
    """
    settings = _settings(config_path, data_dir)
    url = _server_url(settings, server)
    manager = None if url else _manager(settings)
    plan = _call(url, "GET", "/api/models/rollback", api_key=api_key) if url \
        else manager.rollback_plan()
    target = plan["target"]
    if ref:
        target = _run(lambda: (manager or _manager(settings)).registry.find(ref)).key
    if target is None:
        _fail(plan["reason"])
    click.echo(f"Rollback: {plan['from'] or 'nothing active'} -> {target}")
    if not yes:
        click.confirm(f"Roll back to {target}?", abort=True)
    if url:
        started = _call(url, "POST", "/api/models/rollback", {"to": target, "reason": reason},
                        api_key)
        _follow_swap(url, api_key, started, "rolled back to")
        return
    try:
        _echo(asyncio.run(manager.rollback(target, reason=reason)))
    except ApplianceError as exc:
        _fail(exc.message)


@models.command("history")
@click.option("--limit", default=50, show_default=True, help="Most recent events shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@data_options
def history(limit, as_json, config_path, data_dir) -> None:
    """Every import, validation, activation, rollback and failure, newest first, with reasons."""
    rows = _manager(_settings(config_path, data_dir)).history(limit)
    if as_json:
        _echo(rows)
        return
    for row in rows:
        reason = f"  {row['reason']}" if row["reason"] else ""
        previous = f" (was {row['previous']})" if row["previous"] else ""
        click.echo(f"{row['at']}  {row['event']:<18} {row['name']}/{row['version']}{previous}"
                   f"  by {row['actor']}{reason}")


def _run(fn):
    try:
        return fn()
    except ApplianceError as exc:
        _fail(exc.message)
