"""The installer's self-test against a server with the shipped settings: auth on, no users yet."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from installer import selftest
from installer.service import ServiceCommand

ROOT = Path(__file__).resolve().parents[2]


def test_self_test_answers_on_a_fresh_install_with_auth_on(tmp_path, model_path):
    config = tmp_path / "appliance.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[engine]\nmodel_path = "{model_path}"\n'
                      "slots = 2\nmax_request_tokens = 512\n")
    command = ServiceCommand(
        argv=[sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)],
        # Only what the unit itself would set: nothing turns auth off but the self-test.
        environment={"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "build" / "src")]),
                     "HF_HUB_OFFLINE": "1"},
        user=None, working_directory=str(tmp_path))
    said: list[str] = []
    result = selftest.run(command, python=Path(sys.executable), timeout=300, log=said.append)
    assert result.answer and result.sources_checked
    # Whether scanned documents can be read on this server (the test machine has Tesseract).
    assert "Self-test: OCR: available (tesseract 5" in "\n".join(said)
