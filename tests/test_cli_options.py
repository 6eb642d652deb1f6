"""Every command that touches data takes --config and --data-dir the same way, and does the same
from any working directory: relative paths in the settings are places in the data folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.cli_options import config_option, data_dir_option
from tests.conftest import free_port
from tests.releases.conftest import GOLDEN_ITEMS, write_version

# Commands that read or write no data folder.
NO_DATA = {"settings docs", "metrics list"}
# `serve` runs until stopped: test_serve_from_another_directory starts it as a process.
RUN_ELSEWHERE = {"serve"}
PASSWORD = "correct horse battery staple"


def leaf_commands(group: click.Group = main, prefix: str = "") -> dict[str, click.Command]:
    found = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found.update(leaf_commands(command, f"{path} "))
        else:
            found[path] = command
    return found


def test_every_command_that_touches_data_takes_config_and_data_dir_the_same_way():
    wanted = {config_option(lambda: None).__click_params__[0].help: "--config",
              data_dir_option(lambda: None).__click_params__[0].help: "--data-dir"}
    for path, command in leaf_commands().items():
        if path in NO_DATA:
            continue
        shown = {p.help: p.opts[0] for p in command.params if isinstance(p, click.Option)}
        assert {h: shown.get(h) for h in wanted} == wanted, f"appliance {path} lacks the shared options"


@pytest.fixture
def layout(tmp_path, model_path, embedder_dir, monkeypatch):
    """A data folder and a settings file in folders of their own; every path setting relative."""
    data, conf, elsewhere, inputs, out = (tmp_path / n for n in ("data", "conf", "elsewhere", "inputs", "out"))
    for folder in (data, conf, elsewhere, inputs, out, data / "share"):
        folder.mkdir()
    (data / "model.gguf").symlink_to(model_path)
    (data / "embedder-artifact").symlink_to(embedder_dir)
    (data / "golden.jsonl").write_text("".join(json.dumps(i) + "\n" for i in GOLDEN_ITEMS))
    (data / "share" / "leave.md").write_text("# Annual leave\n\nRequest annual leave with HR100.\n")
    (inputs / "docs").mkdir()
    (inputs / "docs" / "credit.md").write_text("# Credit notes\n\nPost credit notes with AR410.\n")
    fake = inputs / "fake.gguf"  # import checks checksums only; validation then fails to load it
    fake.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    write_version(inputs, "erp", "v1", fake, copy=True)
    (conf / "appliance.toml").write_text(
        'data_dir = "../data"\n'
        '[engine]\nmodel_path = "model.gguf"\nslots = 2\nmax_request_tokens = 512\n'
        '[knowledge]\nembedder_path = "embedder-artifact"\ningest_sample_on_first_start = false\n'
        '[[knowledge.sources]]\nname = "hr"\npath = "share"\ninterval_minutes = 0\n'
        '[monitoring]\ngolden_qa_path = "golden.jsonl"\ngolden_interval_hours = 0\n'
        '[releases]\ngolden_path = "golden.jsonl"\n'
        '[backup]\ndir = "my-backups"\n')
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default data folder must stay unused
    for name in [n for n in os.environ if n.startswith("APPLIANCE_") and n != "APPLIANCE_AUTH__ENABLED"]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(elsewhere)
    return tmp_path


@pytest.mark.slow
def test_every_command_works_from_another_directory(layout, monkeypatch):
    data, elsewhere = layout / "data", layout / "elsewhere"
    config = "../conf/appliance.toml"  # relative to the working directory, like a path typed in a shell
    runner = CliRunner()
    ran: set[str] = set()

    def run(command: str, *args: str, stdin: str | None = None, code: int = 0) -> str:
        result = runner.invoke(main, [*command.split(), *args, "--config", config], input=stdin)
        assert result.exit_code == code, f"appliance {command}: {result.output}"
        assert sorted(elsewhere.iterdir()) == [], f"appliance {command} wrote into the working directory"
        ran.add(command)
        return result.output

    shown = json.loads(run("settings show"))
    assert shown["data_dir"] == str(data)

    run("users create-admin", "--username", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    run("users create", "bob", "--no-password")
    run("users list")
    run("users update", "bob", "--groups", "hr")
    run("users set-password", "bob", "--password-stdin", stdin=PASSWORD + "\n")
    run("users disable", "bob")
    run("users enable", "bob")
    assert "auth.directory" in run("users directory", code=2)
    run("keys create", "--user", "admin", "--name", "cli")
    [key] = json.loads(run("keys list", "--json"))
    run("keys revoke", str(key["id"]))
    run("quotas set", "--user", "bob", "--tokens-per-day", "1000")
    run("quotas list")
    run("quotas usage")
    run("audit")
    run("export audit", "--out", "../out/audit.csv")
    run("export usage", "--out", "../out/usage.csv")
    from appliance.accounts import Accounts
    from appliance.accounts.conversations import Conversations
    from appliance.settings import load_settings

    accounts = Accounts.open(load_settings(layout / "conf" / "appliance.toml"))
    conversation = Conversations(accounts).create(accounts.by_name("admin").id, "Leave")
    accounts.close()
    run("export conversation", conversation["id"], "--user", "admin", "--out", "../out/conversation.md")
    run("users delete", "bob", "--yes")

    assert "1 added" in run("ingest", "../inputs/docs")
    run("rechunk")
    assert "credit" in run("search", "credit notes")
    run("sources list")
    run("sources run", "hr")
    assert "leave.md" in run("search", "annual leave")

    from appliance.monitoring.monitor import metrics_db_path
    from appliance.monitoring.store import MetricsStore, Retention
    from appliance.releases import ReleaseManager

    settings = load_settings(layout / "conf" / "appliance.toml")
    MetricsStore(metrics_db_path(settings), Retention.from_settings(settings.monitoring)).close()
    run("metrics")
    run("metrics chart", "--out", "../out/chart.png")
    run("alerts")

    manager = ReleaseManager(settings)  # what the server registers at its first start
    served = manager.register_served_model()
    manager.close()
    assert served.kind == "configured" and served.gguf_path == data / "model.gguf"
    run("models import", "../inputs/erp/v1")
    assert (data / "models" / "erp" / "v1" / "model.gguf").is_file()  # in the data folder's models
    run("models list")
    assert "failed validation" in run("models validate", "erp/v1", code=2)
    run("models activate", "erp/v1", "--force", "--reason", "test")
    run("models schedule", "erp/v1", "--at", "2030-01-01T03:00:00+00:00")
    run("models schedule", "--list")
    assert f"-> {served.key}" in run("models rollback", "--yes")
    assert "rolled_back" in run("models history")

    run("backup", "--out", "../out/backup.tar.gz")
    run("restore", "../out/backup.tar.gz", "--data-dir", "../restored")
    assert (layout / "restored" / "accounts.db").is_file() and (layout / "out" / "backup.tar.gz").is_file()

    missed = set(leaf_commands()) - NO_DATA - RUN_ELSEWHERE - ran
    assert not missed, f"commands not run from another directory: {sorted(missed)}"
    for produced in ("audit.csv", "usage.csv", "conversation.md", "chart.png"):
        assert (layout / "out" / produced).is_file(), produced
    assert {"accounts.db", "releases.db", "metrics.db", "knowledge"} <= {p.name for p in data.iterdir()}
    assert not (layout / "home" / ".local").exists()


@pytest.mark.slow
def test_serve_from_another_directory(layout):
    """The server, started elsewhere, serves the data folder's model and knowledge, and writes
    nothing where it was started."""
    port = free_port()
    env = {**os.environ, "APPLIANCE_SERVER__PORT": str(port)}
    command = [sys.executable, "-m", "appliance.cli", "serve", "--config", "../conf/appliance.toml"]
    log = (layout / "serve.log").open("wb")
    server = subprocess.Popen(command, cwd=layout / "elsewhere", env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (layout / "serve.log").read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).json()
                if ready.get("status") == "ready" and ready["retrieval"]["status"] == "ready":
                    break
                assert ready["retrieval"]["status"] != "unavailable", ready
                assert ready.get("error", {}).get("code") != "model_load_failed", ready
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (layout / "serve.log").read_text()
            time.sleep(0.2)
        models = httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=30).json()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
        log.close()
    [served] = models["versions"]
    assert served["kind"] == "configured" and served["serving"]
    assert Path(served["path"]).is_relative_to(layout / "data" / "models")
    assert sorted((layout / "elsewhere").iterdir()) == []
    assert {"accounts.db", "releases.db", "metrics.db", "knowledge"} <= {p.name for p in (layout / "data").iterdir()}
