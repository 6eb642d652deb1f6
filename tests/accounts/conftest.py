"""Accounts fixtures: a real accounts.db (SQLite, WAL) in a temp folder, real Argon2 hashing."""

from __future__ import annotations

import pytest

from appliance.accounts import Accounts
from appliance.settings import AuthSettings

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(tmp_path):
    opened = Accounts(tmp_path / "accounts.db", AuthSettings(login_max_failures=3, login_window_seconds=60))
    yield opened
    opened.close()
