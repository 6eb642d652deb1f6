"""The `appliance` command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from appliance.cli import main


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output


def test_serve_help_shows_the_documented_flags():
    result = CliRunner().invoke(main, ["serve", "--help"])
    for flag in ("--config", "--host", "--port", "--data-dir"):
        assert flag in result.output


def test_settings_show_merges_file_and_env(tmp_path):
    config = tmp_path / "a.toml"
    config.write_text("[engine]\nslots = 3\n")
    result = CliRunner().invoke(main, ["settings", "show", "--config", str(config)],
                                env={"APPLIANCE_SERVER__PORT": "9123"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["engine"]["slots"] == 3 and shown["server"]["port"] == 9123


def test_bad_config_is_a_clear_error_not_a_traceback(tmp_path):
    config = tmp_path / "a.toml"
    config.write_text("[engine]\nslots = -1\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "engine.slots" in result.output
    assert "Traceback" not in result.output
