"""The thin layers: `appliance models` commands and /api/models errors (real SQLite, real app)."""

from __future__ import annotations

import httpx
from click.testing import CliRunner

from appliance.cli import main
from tests.releases.conftest import write_version


def test_cli_import_list_activate_history(tmp_path, monkeypatch, release_settings):
    settings = release_settings()
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("APPLIANCE_RELEASES__MODELS_DIR", settings.releases.models_dir)
    monkeypatch.setenv("APPLIANCE_SERVER__PORT", "9")  # nothing listens: offline mode
    gguf = tmp_path / "small.gguf"
    gguf.write_bytes(b"GGUF" + bytes(4096))
    source = write_version(tmp_path / "incoming", "erp", "v1", gguf, copy=True)
    runner = CliRunner()

    result = runner.invoke(main, ["models", "import", str(source)])
    assert result.exit_code == 0 and "Imported erp/v1 (staged)" in result.output
    result = runner.invoke(main, ["models", "list"])
    assert "erp/v1" in result.output and "staged" in result.output

    result = runner.invoke(main, ["models", "activate", "erp/v1"])
    assert result.exit_code == 2 and "run `appliance models validate` first" in result.output
    result = runner.invoke(main, ["models", "activate", "erp/v1", "--force", "--reason", "lab"])
    assert result.exit_code == 0 and "next starts" in result.output

    result = runner.invoke(main, ["models", "rollback"])  # says why before doing anything
    assert result.exit_code == 2 and result.output == (
        "Error: There is no version to roll back to: erp/v1 is the only version that has served "
        "here, so there is nothing before it to go back to.\n")
    result = runner.invoke(main, ["models", "import", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output

    result = runner.invoke(main, ["models", "history"])
    lines = result.output.strip().splitlines()
    assert "activated" in lines[0] and "forced while staged; lab" in lines[0]
    assert "imported" in lines[1]

    # With somewhere to go, the rollback names it and asks first.
    other = write_version(tmp_path / "incoming", "erp", "v2", gguf, copy=True)
    runner.invoke(main, ["models", "import", str(other)])
    runner.invoke(main, ["models", "activate", "erp/v2", "--force"])
    result = runner.invoke(main, ["models", "rollback"], input="n\n")
    assert result.exit_code == 1 and result.output.startswith(
        "Rollback: erp/v2 -> erp/v1\nRoll back to erp/v1? [y/N]: n\nAborted!")
    assert "erp/v2" in runner.invoke(main, ["models", "list"]).output.splitlines()[1]
    result = runner.invoke(main, ["models", "rollback", "--yes", "--reason", "lab over"])
    assert result.exit_code == 0 and result.output.startswith("Rollback: erp/v2 -> erp/v1\n")
    rows = runner.invoke(main, ["models", "list"]).output.splitlines()
    assert "active" in rows[0] and rows[0].startswith("erp/v1")


def test_api_errors_share_one_shape(release_settings, shared_backend, live_server):
    server = live_server(release_settings(), shared_backend)
    cases = [
        ("POST", "/api/models/erp/missing/activate", None, 404),
        ("POST", "/api/models/import", {"path": "/no/such/folder"}, 404),
        ("POST", "/api/models/import", {}, 400),
        ("POST", "/api/models/rollback", None, 409),
        ("POST", "/api/models/erp/missing/schedule", {"at": "tomorrow"}, 400),
    ]
    for method, path, body, status in cases:
        response = httpx.request(method, f"{server.url}{path}", json=body)
        assert response.status_code == status, (path, response.text)
        error = response.json()["error"]
        assert set(error) == {"status", "code", "message"} and error["status"] == status
    listing = httpx.get(f"{server.url}/api/models").json()
    assert listing["versions"] == [] and listing["active"] is None
