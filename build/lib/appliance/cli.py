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


if __name__ == "__main__":
    main()
