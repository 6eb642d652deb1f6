"""Settings: defaults, TOML file, environment overrides, clear errors, and docs that list them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.settings import iter_settings, load_settings, settings_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_defaults_follow_the_seed():
    settings = load_settings()
    assert settings.engine.slots == 32
    assert settings.engine.admission_window_ms == 100
    assert settings.cache.max_entries == 10_000 and settings.cache.ttl_seconds == 3600


def test_file_then_env_then_flags(tmp_path, monkeypatch):
    config = tmp_path / "appliance.toml"
    config.write_text('[server]\nport = 9001\nhost = "0.0.0.0"\n[engine]\nslots = 8\n')
    monkeypatch.setenv("APPLIANCE_ENGINE__SLOTS", "12")
    settings = load_settings(config, server={"port": 9002})
    assert settings.server.host == "0.0.0.0"  # from the file
    assert settings.engine.slots == 12  # env beats the file
    assert settings.server.port == 9002  # flags beat everything


def test_config_from_env_variable(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text("[cache]\nenabled = false\n")
    monkeypatch.setenv("APPLIANCE_CONFIG", str(config))
    assert load_settings().cache.enabled is False


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[engine]\nslots = 0\n", "engine.slots"),
        ("[engine]\nslotz = 3\n", "engine.slotz"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_config_says_what_is_wrong(tmp_path, text, fragment):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert fragment in err.value.message


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_every_setting_has_help_text():
    for name, _type, _default, help_text in iter_settings():
        assert help_text.strip(), f"{name} has no help text"


def test_docs_list_every_setting():
    assert settings_markdown() in DOCS.read_text(encoding="utf-8"), (
        "docs/configuration.md is out of date: paste `appliance settings docs` into it"
    )


def test_auth_is_on_by_default(monkeypatch):
    monkeypatch.delenv("APPLIANCE_AUTH__ENABLED", raising=False)  # the test suite turns it off
    assert load_settings().auth.enabled is True
    monkeypatch.setenv("APPLIANCE_AUTH__ENABLED", "false")
    assert load_settings().auth.enabled is False


def test_relative_paths_in_the_settings_are_inside_the_data_folder(tmp_path, monkeypatch):
    from appliance.accounts.directory import check_settings
    from appliance.backup import backup_dir
    from appliance.knowledge.knowledge_base import embedder_path
    from appliance.releases import ReleaseManager
    from appliance.releases.baseline import served_model

    config = tmp_path / "conf" / "appliance.toml"
    config.parent.mkdir()
    config.write_text(
        'data_dir = "../data"\n[engine]\nmodel_path = "gguf/model.gguf"\n'
        '[knowledge]\nembedder_path = "emb"\n'
        '[[knowledge.sources]]\nname = "share"\npath = "mnt/share"\n'
        '[releases]\ngolden_path = "golden.jsonl"\n[backup]\ndir = "nightly"\n'
        '[auth.directory]\nurl = "ldaps://ldap.example"\nca_file = "ca.pem"\n'
        'user_dn_template = "uid={username},dc=example"\nuser_search_base = "dc=example"\n'
        '[[auth.directory.groups]]\ngroup = "staff"\n')
    monkeypatch.chdir(tmp_path / "conf")  # neither the shell's folder nor the file's counts
    settings = load_settings(config)
    data = tmp_path / "data"
    assert settings.resolved_data_dir() == data
    manager = ReleaseManager(settings)
    assert manager.registry.models_dir == data / "models"
    assert manager.validator.golden_path() == str(data / "golden.jsonl")
    manager.close()
    assert served_model(settings) == (data / "gguf" / "model.gguf", "configured")
    assert embedder_path(settings) == data / "emb"
    source = settings.knowledge.sources[0]
    assert source.resolve(source.path) == data / "mnt" / "share"
    assert backup_dir(settings) == data / "nightly"
    with pytest.raises(ConfigError, match=f"ca_file {data / 'ca.pem'} does not exist"):
        check_settings(settings.auth.directory)
    settings.data_dir = tmp_path / "moved"  # every part follows a new data folder
    assert embedder_path(settings) == tmp_path / "moved" / "emb"
    assert source.resolve(source.path) == tmp_path / "moved" / "mnt" / "share"


def test_every_path_setting_says_where_a_relative_path_is():
    for name, _type, _default, help_text in iter_settings():
        if name.rsplit(".", 1)[-1].endswith(("path", "dir", "_file", "_uri", "sources")):
            assert "data_dir" in help_text or "docs/knowledge.md" in help_text, name


def test_a_relative_data_dir_is_read_from_the_settings_file_or_the_working_directory(tmp_path,
                                                                                    monkeypatch):
    config = tmp_path / "conf" / "appliance.toml"
    config.parent.mkdir()
    config.write_text('data_dir = "data"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(config).data_dir == tmp_path / "conf" / "data"
    assert load_settings(data_dir="elsewhere").data_dir == tmp_path / "elsewhere"
    monkeypatch.setenv("APPLIANCE_DATA_DIR", "from-env")
    assert load_settings(config).data_dir == tmp_path / "from-env"
