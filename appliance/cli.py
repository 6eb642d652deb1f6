"""The `appliance` command line: thin wrappers that turn library errors into readable messages."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from appliance.cli_options import command_settings, data_options
from appliance.errors import ApplianceError, ConfigError
from appliance.settings import settings_markdown


def _fail(exc: ApplianceError) -> None:
    click.secho(f"Error: {exc.message}", fg="red", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="erp-appliance")
def main() -> None:
    """On-prem ERP AI appliance: grounded answers about your ERP from a local LLM."""


@main.command()
@data_options
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="GGUF model to serve.")
def serve(config_path, data_dir, host, port, model_path) -> None:
    """Start the appliance's HTTP server (web UI, OpenAI-compatible API)."""
    from appliance.server.run import run_server

    overrides: dict = {}
    if host or port is not None:
        overrides["server"] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if model_path:  # a file named on the command line is where the shell is
        overrides["engine"] = {"model_path": str(Path(model_path).expanduser().resolve())}
    try:
        settings = command_settings(config_path, data_dir, **overrides)
        run_server(settings)
    except ApplianceError as exc:
        _fail(exc)


def _groups(value: str | None) -> list[str] | None:
    return [g.strip() for g in value.split(",") if g.strip()] if value else None


api_key_option = click.option(
    "--api-key", envvar="APPLIANCE_API_KEY",
    help="An admin's API key for the running server (default: its local admin token, readable by "
    "the service user).")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--groups", help="Access groups of these documents, comma-separated (default: all).")
@data_options
@api_key_option
def ingest(paths, groups, config_path, data_dir, api_key) -> None:
    """Add or update documents (files or folders, recursively) in the knowledge base.

    With a server running on the data folder, the documents go in through it (searchable at
    once); without one, this command writes the data folder itself.
    """
    from rich.progress import Progress

    from appliance.knowledge.ingest import iter_files
    from appliance.remote import writer

    try:
        settings = command_settings(config_path, data_dir)
        files = list(iter_files(Path(p) for p in paths))
        with writer(settings, "appliance ingest", api_key=api_key) as server, \
                Progress(transient=False) as bar:
            task = bar.add_task("Ingesting", total=len(files))
            advance = lambda name: bar.update(task, advance=1, description=name[-40:])  # noqa: E731
            if server is not None:
                report = _ingest_through(server, files, _groups(groups), advance)
            else:
                report = _ingest_here(settings, [Path(p) for p in paths], _groups(groups), advance)
            bar.update(task, description="Ingested")
    except ApplianceError as exc:
        _fail(exc)
    click.echo(f"{len(report.added)} added, {len(report.updated)} updated, "
               f"{len(report.unchanged)} unchanged, {len(report.failed)} failed; "
               f"{report.chunks} chunks in {report.seconds:.1f} s")
    for source, reason in report.failed:
        click.secho(f"  skipped {source}: {reason}", fg="yellow", err=True)
    for source, message in report.warnings:
        click.secho(f"  warning {source}: {message}", fg="yellow", err=True)


@main.command()
@data_options
def rechunk(config_path, data_dir) -> None:
    """Cut every document again whose chunks an older chunker (or other chunk settings) cut.

    The server does this on its own at start; this runs it now, in the foreground. Stopped
    midway, the next run (or start) resumes where it stopped."""
    from rich.progress import Progress

    from appliance.datafolder import DataFolderLock, FolderBusy, read_holder
    from appliance.knowledge.knowledge_base import KnowledgeBase

    try:
        settings = command_settings(config_path, data_dir)
        holder = read_holder(settings.resolved_data_dir())
        if holder is not None and holder.kind == "server":
            raise FolderBusy(f"{holder.describe().capitalize()} serves this data folder; it re-chunks "
                             "on its own at start (GET /api/status shows the progress).")
        lock = DataFolderLock(settings.resolved_data_dir())
        lock.acquire("command", command="appliance rechunk")
        click.get_current_context().call_on_close(lock.release)
        kb = KnowledgeBase.open(settings)
    except ApplianceError as exc:
        _fail(exc)
    try:
        job = kb.begin_rechunk()
        if job is None:
            click.echo(f"Every document is cut by {kb.ingestor.chunker} already; nothing to do.")
            return
        with Progress(transient=False) as bar:
            task = bar.add_task("Re-chunking", total=job.total)
            job.run(kb, progress=lambda j: bar.update(task, completed=j.done))
    except ApplianceError as exc:
        _fail(exc)
    finally:
        kb.close()
    click.echo(f"{job.total} documents re-chunked with {job.chunker}: {job.chunks_before} chunks "
               f"became {job.chunks_after} in {time.time() - job.started:.1f} s")


def _ingest_here(settings, paths, groups, progress):
    from appliance.knowledge.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(settings)
    try:
        return kb.ingest(paths, groups, progress=progress)
    finally:
        kb.close()


def _ingest_through(server, files, groups, progress):
    """Upload each file to the running server (one request per file, so the bar moves)."""
    import time

    from appliance.knowledge.ingest import IngestReport
    from appliance.knowledge.parsers import supported

    server.wait_knowledge()
    report = IngestReport()
    started = time.perf_counter()
    for file, source in files:
        progress(source)
        if not supported(file.name):
            report.failed.append((source, f"unsupported format {file.suffix or '(none)'}"))
            continue
        try:
            data = file.read_bytes()
        except OSError as exc:
            report.failed.append((source, str(exc)))
            continue
        # The file part's name is the document's source, as a direct ingest names it.
        form = {"groups": ",".join(groups)} if groups else {}
        body = server.call("POST", "/api/documents", files={"file": (source, data)}, data=form)
        for result in body["results"]:
            report.warnings += [(source, message) for message in result.get("warnings") or []]
            if result["status"] == "failed":
                report.failed.append((source, result["reason"]))
            else:
                getattr(report, result["status"]).append(source)
                report.bytes += len(data)
                if result["status"] != "unchanged":
                    report.chunks += result.get("chunks") or 0
    report.seconds = time.perf_counter() - started
    return report


@main.command()
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="How many chunks to show.")
@click.option("--groups", help="Search as a caller in these groups (default: every document).")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "keyword"]), default="hybrid",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@data_options
@api_key_option
def search(query, k, groups, mode, as_json, config_path, data_dir, api_key) -> None:
    """Search the knowledge base and print the best chunks with their sources."""
    from appliance.remote import find_server

    try:
        settings = command_settings(config_path, data_dir)
        server = find_server(settings.resolved_data_dir(), api_key)
        if server is not None:  # the server's indexes are the live ones
            server.wait_knowledge()
            body = {"query": query, "k": k, "mode": mode, **({"groups": _groups(groups)} if groups else {})}
            hits = server.call("POST", "/api/search", json=body)["results"]
        else:
            hits = [h.as_dict() for h in _search_here(settings, query, k, _groups(groups), mode)]
    except ApplianceError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(hits, ensure_ascii=False, indent=2))
        return
    for rank, hit in enumerate(hits, start=1):
        where = " > ".join(p for p in (hit["title"], hit["heading"]) if p)
        click.secho(f"{rank}. {hit['document']}  ({where})  score {hit['score']:.4f}", bold=True)
        click.echo(f"   {hit['snippet']}")


def _search_here(settings, query, k, groups, mode):
    from appliance.datafolder import DataFolderLock
    from appliance.knowledge.knowledge_base import KnowledgeBase

    # Opening repairs the indexes (a write), so it holds the folder like any writer.
    with DataFolderLock(settings.resolved_data_dir()) as lock:
        lock.acquire("command", command="appliance search")
        kb = KnowledgeBase.open(settings)
        try:
            return kb.search(query, k, groups=groups, mode=mode)
        finally:
            kb.close()


@main.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The backup file to write (.tar.gz).")
@click.option("--with-models", is_flag=True,
              help="Copy the model files too (by default they are referenced by their checksums).")
@data_options
def backup(out, with_models, config_path, data_dir) -> None:
    """Back up the data folder (safe while the appliance serves): databases, indexes, settings,
    model manifests."""
    from appliance.backup import create_backup

    try:
        report = create_backup(command_settings(config_path, data_dir), Path(out),
                               with_models=with_models, config_path=config_path)
    except ApplianceError as exc:
        _fail(exc)
    click.echo(f"Wrote {report.path}: {report.summary()}.")
    if not with_models and report.models:
        click.echo("Model files are referenced by checksum; keep them, or back up with --with-models.")


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@data_options
def restore(archive, config_path, data_dir) -> None:
    """Restore a backup onto an empty data folder (--data-dir); then start the appliance on it."""
    from appliance.backup import restore_backup

    try:
        target = command_settings(config_path, data_dir).resolved_data_dir()
        report = restore_backup(Path(archive), target)
    except ApplianceError as exc:
        _fail(exc)
    click.echo(f"Restored {len(report.databases)} databases and {report.files} files into "
               f"{report.data_dir} in {report.seconds:.1f} s.")
    click.echo(f"The settings of the backed-up appliance are in {report.settings_dir}; compare them "
               "with this one's.")
    for missing in report.missing_models:
        click.secho(f"  missing model file: {missing}", fg="yellow", err=True)
    if report.missing_models:
        click.secho("Copy the model files back (their checksums must match), or import the versions "
                    "again; the appliance serves the configured model meanwhile.", fg="yellow", err=True)


@main.group()
def settings() -> None:
    """Inspect the appliance's settings."""


@settings.command("show")
@data_options
def settings_show(config_path, data_dir) -> None:
    """Print the effective settings (defaults, file and environment merged) as JSON."""
    try:
        loaded = command_settings(config_path, data_dir)
    except ApplianceError as exc:
        _fail(exc)
    click.echo(json.dumps(loaded.model_dump(mode="json"), indent=2))


@settings.command("docs")
def settings_docs() -> None:
    """Print the Markdown reference table of every setting."""
    click.echo(settings_markdown(), nl=False)


def _open_store(config_path, data_dir):
    """The data dir's metrics.db, read as the server writes it (WAL allows both at once)."""
    from appliance.monitoring.monitor import metrics_db_path
    from appliance.monitoring.store import MetricsStore, Retention

    loaded = command_settings(config_path, data_dir)
    path = metrics_db_path(loaded)
    if not path.exists():
        raise ConfigError(f"No metrics database at {path}; start the appliance (appliance serve) "
                          "first, or point --data-dir at its data folder.")
    return MetricsStore(path, Retention.from_settings(loaded.monitoring))


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _fmt(value, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None else f"{value * scale:.{digits}g}{unit}"


@main.group(invoke_without_command=True)
@data_options
@click.option("--since", default="24h", show_default=True, help="Period start: 24h, 7d, ISO time or Unix seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def metrics(ctx, config_path, data_dir, since, as_json) -> None:
    """Summarize request, system and accuracy metrics from the data folder's metrics.db."""
    ctx.ensure_object(dict).update(config_path=config_path, data_dir=data_dir)
    if ctx.invoked_subcommand is not None:
        return
    from appliance.monitoring.timespec import parse_time

    try:
        store = _open_store(config_path, data_dir)
        summary = store.summary(parse_time(since))
        store.close()
    except ApplianceError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    sample = summary["latest_sample"] or {}
    golden = summary["golden"] or {}
    rows = [
        ("period", f"{_when(summary['since'])} .. {_when(summary['until'])}"),
        ("requests", f"{summary['requests']} ({_fmt(summary['requests_per_second'], '/min', 60)})"),
        ("error rate (5xx, 429)", _fmt(summary["error_rate"], " %", 100)),
        ("client errors (4xx)", _fmt(summary["client_error_rate"], " %", 100)),
        ("cache hit rate", _fmt(summary["cache_hit_rate"], " %", 100)),
        ("latency p50 / p95", f"{_fmt(summary['latency_p50_seconds'], ' s')} / "
                              f"{_fmt(summary['latency_p95_seconds'], ' s')}"),
        ("time to first token p95", _fmt(summary["ttft_p95_seconds"], " s")),
        ("decode speed (avg)", _fmt(summary["tokens_per_second_avg"], " tokens/s")),
        ("feedback", f"{summary['feedback']['up']} up, {summary['feedback']['down']} down"),
        ("golden QA accuracy", f"{_fmt(golden.get('score'), ' %', 100)} at {_when(golden.get('ts'))}"
         if golden else "no run yet"),
        ("process memory (RSS)", _fmt(sample.get("rss_bytes"), " MiB", 1 / 2**20, 4)),
        ("system memory used", _fmt(sample.get("memory_used_percent"), " %")),
        ("queue depth / busy slots", f"{_fmt(sample.get('queue_depth'))} / {_fmt(sample.get('slots_busy'))}"),
        ("GPU utilization", _fmt(sample.get("gpu_utilization_percent"), " %") if sample.get(
            "gpu_utilization_percent") is not None else "no GPU"),
        ("metrics.db", _fmt(summary["db_bytes"], " MiB", 1 / 2**20, 3)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


@metrics.command("list")
def metrics_list() -> None:
    """The metrics that series, charts and alert rules can name."""
    from appliance.monitoring.store import describe_metrics

    for m in describe_metrics():
        click.echo(f"{m['name']:<26} {m['help']}")


@metrics.command("chart")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--metric", "metric_name", help="One metric (default: the dashboard of five panels).")
@click.option("--aggregate", default="avg", show_default=True, help="avg, p95, max, rate, ...")
@click.option("--since", default="24h", show_default=True, help="Period start.")
@click.option("--step", default="5m", show_default=True, help="Bucket width: 60s, 5m, 1h...")
@data_options
@click.pass_context
def metrics_chart(ctx, out, metric_name, aggregate, since, step, config_path, data_dir) -> None:
    """Render latency, throughput, errors, memory and accuracy over time to a PNG."""
    from appliance.monitoring.charts import DASHBOARD, Panel, render_png
    from appliance.monitoring.store import check_aggregate, metric
    from appliance.monitoring.timespec import parse_duration, parse_time

    try:
        store = _open_store(config_path or ctx.obj["config_path"], data_dir or ctx.obj["data_dir"])
        panels = [Panel(f"{aggregate}({metric_name})", metric(metric_name).name,
                        check_aggregate(aggregate))] if metric_name else list(DASHBOARD)
        png = render_png(store, panels, since=parse_time(since), step=parse_duration(step))
        store.close()
    except ApplianceError as exc:
        _fail(exc)
    Path(out).write_bytes(png)
    click.echo(f"wrote {out} ({len(png) // 1024} KiB)")


@main.command()
@data_options
@click.option("--state", type=click.Choice(["firing", "resolved"]), help="Only alerts in this state.")
@click.option("--limit", type=int, default=20, show_default=True, help="Most alerts shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with each alert's history.")
def alerts(config_path, data_dir, state, limit, as_json) -> None:
    """List alerts, newest first: firing ones and their recent history."""
    try:
        store = _open_store(config_path, data_dir)
        found = store.alerts(state, limit)
        store.close()
    except ApplianceError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    firing = sum(a["state"] == "firing" for a in found)
    click.echo(f"{firing} firing, {len(found) - firing} resolved (newest {len(found)} shown)")
    for a in found:
        ended = f" -> resolved {_when(a['resolved_at'])}" if a["state"] == "resolved" else ""
        click.echo(f"#{a['id']} {a['state'].upper():<8} {a['severity']:<8} {a['rule']}: "
                   f"since {_when(a['started_at'])}{ended}")
        click.echo(f"    {a['message']}")
        delivered = [h for h in a["history"] if h["kind"].startswith("notify_")]
        if delivered:
            click.echo(f"    notified: {'; '.join(h['detail'] for h in delivered[-3:])}")
from appliance.accounts.cli import audit, keys, users  # noqa: E402  (command groups of their own modules)
from appliance.accounts.export_cli import export  # noqa: E402
from appliance.accounts.quota_cli import quotas  # noqa: E402
from appliance.knowledge.cli import sources  # noqa: E402
from appliance.releases.cli import models  # noqa: E402

for command in (models, users, keys, audit, quotas, export, sources):
    main.add_command(command)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # A line per upstream call or scheduled job is noise, and FAISS reports at INFO (with a
    # ModuleNotFoundError) which of its CPU builds it could not load before loading another.
    for noisy in ("httpx", "apscheduler", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    main()
