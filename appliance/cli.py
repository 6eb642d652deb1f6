"""The `appliance` command line: thin wrappers that turn library errors into readable messages."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from appliance.errors import ApplianceError
from appliance.settings import load_settings, settings_markdown


def _fail(exc: ApplianceError) -> None:
    click.secho(f"Error: {exc.message}", fg="red", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="erp-appliance")
def main() -> None:
    """On-prem ERP AI appliance: grounded answers about your ERP from a local LLM."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder for databases and indexes.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="GGUF model to serve.")
def serve(config_path, host, port, data_dir, model_path) -> None:
    """Start the appliance's HTTP server (web UI, OpenAI-compatible API)."""
    from appliance.server.run import run_server

    overrides: dict = {}
    if host or port is not None:
        overrides["server"] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if model_path:
        overrides["engine"] = {"model_path": model_path}
    if data_dir:
        overrides["data_dir"] = Path(data_dir)
    try:
        settings = load_settings(config_path, **overrides)
        run_server(settings)
    except ApplianceError as exc:
        _fail(exc)


def _knowledge(config_path, data_dir):
    from appliance.knowledge.knowledge_base import KnowledgeBase

    overrides = {"data_dir": Path(data_dir)} if data_dir else {}
    return KnowledgeBase.open(load_settings(config_path, **overrides))


def _groups(value: str | None) -> list[str] | None:
    return [g.strip() for g in value.split(",") if g.strip()] if value else None


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--groups", help="Access groups of these documents, comma-separated (default: all).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder for databases and indexes.")
def ingest(paths, groups, config_path, data_dir) -> None:
    """Add or update documents (files or folders, recursively) in the knowledge base."""
    from rich.progress import Progress

    from appliance.knowledge.ingest import iter_files

    try:
        kb = _knowledge(config_path, data_dir)
    except ApplianceError as exc:
        _fail(exc)
    try:
        total = sum(1 for _ in iter_files(Path(p) for p in paths))
        with Progress(transient=False) as bar:
            task = bar.add_task("Ingesting", total=total)
            report = kb.ingest([Path(p) for p in paths], _groups(groups),
                               progress=lambda name: bar.update(task, advance=1, description=name[-40:]))
            bar.update(task, description="Ingested")
    finally:
        kb.close()
    click.echo(f"{len(report.added)} added, {len(report.updated)} updated, "
               f"{len(report.unchanged)} unchanged, {len(report.failed)} failed; "
               f"{report.chunks} chunks in {report.seconds:.1f} s")
    for source, reason in report.failed:
        click.secho(f"  skipped {source}: {reason}", fg="yellow", err=True)


@main.command()
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="How many chunks to show.")
@click.option("--groups", help="Search as a caller in these groups (default: every document).")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "keyword"]), default="hybrid",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder for databases and indexes.")
def search(query, k, groups, mode, as_json, config_path, data_dir) -> None:
    """Search the knowledge base and print the best chunks with their sources."""
    try:
        kb = _knowledge(config_path, data_dir)
    except ApplianceError as exc:
        _fail(exc)
    try:
        hits = kb.search(query, k, groups=_groups(groups), mode=mode)
    finally:
        kb.close()
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    for rank, hit in enumerate(hits, start=1):
        where = " > ".join(p for p in (hit.title, hit.heading) if p)
        click.secho(f"{rank}. {hit.document}  ({where})  score {hit.score:.4f}", bold=True)
        click.echo(f"   {hit.snippet}")


@main.group()
def settings() -> None:
    """Inspect the appliance's settings."""


@settings.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML settings file.")
def settings_show(config_path) -> None:
    """Print the effective settings (defaults, file and environment merged) as JSON."""
    try:
        loaded = load_settings(config_path)
    except ApplianceError as exc:
        _fail(exc)
    click.echo(json.dumps(loaded.model_dump(mode="json"), indent=2))


@settings.command("docs")
def settings_docs() -> None:
    """Print the Markdown reference table of every setting."""
    click.echo(settings_markdown(), nl=False)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise


if __name__ == "__main__":
    main()
