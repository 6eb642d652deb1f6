"""The options every command that touches a data folder takes, read the same way everywhere:
--config (the settings file) and --data-dir (the data folder), both relative to the working
directory when relative. Every relative path inside the settings means a place in the data
folder, so a command does the same from any directory."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.settings import CONFIG_ENV, Settings, load_settings

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False),
    help=f"TOML settings file (default: ${CONFIG_ENV}).")
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False),
    help="The appliance's data folder (default: data_dir in the settings).")


def data_options(fn):
    """--config and --data-dir, as `config_path` and `data_dir` arguments."""
    return config_option(data_dir_option(fn))


def command_settings(config_path: str | None, data_dir: str | None, **overrides) -> Settings:
    """The settings a command acts on: defaults, the file, the environment, then --data-dir and
    `overrides`. Raises ConfigError."""
    if data_dir:
        overrides["data_dir"] = Path(data_dir).expanduser().resolve()
    config = Path(config_path).expanduser().resolve() if config_path else None
    return load_settings(config, **overrides)
