"""`appliance quotas` and `appliance export` against a real data folder."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from appliance.accounts import Accounts, Conversations
from appliance.accounts.quotas import Quotas
from appliance.cli import main
from appliance.settings import load_settings


def run(data_dir, *args):
    return CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])


def open_accounts(data_dir) -> Accounts:
    return Accounts.open(load_settings(data_dir=data_dir))


def test_set_and_list_limits_of_a_user_and_a_key(tmp_path):
    accounts = open_accounts(tmp_path)
    kim = accounts.create_user("kim", None)
    _, key = accounts.create_key(kim.id, "batch")
    set_user = run(tmp_path, "quotas", "set", "--user", "kim", "--requests-per-minute", "5")
    assert set_user.exit_code == 0, set_user.output
    assert "user kim: 5 requests/min, default tokens/day" in set_user.output
    assert run(tmp_path, "quotas", "set", "--user", "kim", "--tokens-per-day", "0").exit_code == 0
    assert run(tmp_path, "quotas", "set", "--key", str(key.id), "--tokens-per-day", "1000").exit_code == 0
    quotas = Quotas(accounts)
    assert quotas.override(("user", kim.id)).public() == {"requests_per_minute": 5, "tokens_per_day": 0}

    listed = run(tmp_path, "quotas", "list")
    assert listed.exit_code == 0, listed.output
    assert "employee  60 requests/min, 200,000 tokens/day" in listed.output
    kim_line = next(line for line in listed.output.splitlines() if line.startswith("kim "))
    assert "5 *" in kim_line and "no limit *" in kim_line
    assert f"{key.id} kim/batch" in listed.output and "1,000 *" in listed.output
    as_json = json.loads(run(tmp_path, "quotas", "list", "--json").output)
    assert [u["limits"] for u in as_json["users"]] == [{"requests_per_minute": 5, "tokens_per_day": 0}]

    back = run(tmp_path, "quotas", "set", "--user", "kim", "--requests-per-minute", "default")
    assert back.exit_code == 0 and "default requests/min, no limit tokens/day" in back.output
    assert [e["action"] for e in accounts.audit_log(action="quota_changed")] == ["quota_changed"] * 4
    for wrong in (["--user", "kim", "--key", "1", "--tokens-per-day", "1"], ["--user", "kim"],
                  ["--user", "kim", "--tokens-per-day", "lots"], ["--user", "nobody", "--tokens-per-day", "1"]):
        assert run(tmp_path, "quotas", "set", *wrong).exit_code == 2, wrong


def test_usage_and_audit_exports_as_csv(tmp_path):
    accounts = open_accounts(tmp_path)
    kim = accounts.create_user("kim", None)
    quotas = Quotas(accounts)
    ticket = quotas.admit(kim, hold=100)
    ticket.count(12)
    ticket.close()
    quotas.flush()
    day = quotas.day()

    shown = run(tmp_path, "quotas", "usage")
    assert shown.exit_code == 0 and f"{day}  kim" in shown.output and "12 tokens" in shown.output
    usage = run(tmp_path, "export", "usage", "--since", day, "--until", day, "-o", "-")
    assert usage.exit_code == 0, usage.output
    table = list(csv.reader(io.StringIO(usage.output.lstrip("\ufeff"))))
    assert table[1][:2] == [day, "kim"] and table[1][-1] == "12"

    out = tmp_path / "audit.csv"
    audit = run(tmp_path, "export", "audit", "--out", str(out))
    assert audit.exit_code == 0, audit.output
    assert "usage_exported" in out.read_text(encoding="utf-8")  # the export before this one
    assert accounts.audit_log(action="audit_exported")
    bad = run(tmp_path, "export", "audit", "--since", "yesterday")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output


def test_export_a_users_conversation(tmp_path, monkeypatch):
    accounts = open_accounts(tmp_path)
    kim = accounts.create_user("kim", None)
    conversations = Conversations(accounts)
    conversation = conversations.create(kim.id, "연차 신청")
    conversations.append(kim.id, conversation["id"], [{"role": "user", "content": "연차는?"}])
    monkeypatch.chdir(tmp_path)
    written = run(tmp_path, "export", "conversation", conversation["id"], "--user", "kim", "--lang", "ko")
    assert written.exit_code == 0, written.output
    [path] = tmp_path.glob("연차-신청-*.md")
    assert path.read_text(encoding="utf-8").startswith("# 연차 신청\n") and "## 나 · " in path.read_text(encoding="utf-8")
    as_json = run(tmp_path, "export", "conversation", conversation["id"], "--user", "kim",
                  "--format", "json", "-o", "-")
    assert json.loads(as_json.output)["conversation"]["messages"][0]["content"] == "연차는?"
    other = run(tmp_path, "export", "conversation", conversation["id"], "--user", "kim2")
    assert other.exit_code == 2
