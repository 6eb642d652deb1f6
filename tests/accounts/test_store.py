"""The accounts store on a real accounts.db: hashing, keys, sessions, throttling, roles, audit."""

from __future__ import annotations

import hashlib
import sqlite3
import time

import pytest
from argon2 import PasswordHasher

from appliance.accounts import LOCAL_USER, Accounts, Conversations
from appliance.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TooManyLogins,
)
from appliance.settings import AuthSettings

from .conftest import PASSWORD


def raw(accounts: Accounts, sql: str, params=()) -> list[dict]:
    return accounts.rows(sql, params)


def stored_bytes(accounts: Accounts) -> bytes:
    """Everything SQLite keeps on disk for this database, WAL included."""
    accounts.db.execute("PRAGMA wal_checkpoint(FULL)")
    files = [accounts.path, accounts.path.with_name(accounts.path.name + "-wal")]
    return b"".join(p.read_bytes() for p in files if p.exists())


def test_passwords_are_stored_as_argon2id_hashes(accounts):
    user = accounts.create_user("alice", PASSWORD, groups=["all"])
    [row] = raw(accounts, "SELECT password_hash FROM users WHERE id = ?", [user.id])
    assert row["password_hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(row["password_hash"], PASSWORD)
    assert PASSWORD.encode() not in stored_bytes(accounts)
    assert user.has_password and "password_hash" not in user.public()


def test_short_passwords_are_refused_with_the_rule(accounts):
    with pytest.raises(InvalidRequest, match="at least 10 characters"):
        accounts.create_user("bob", "short")
    assert accounts.by_name("bob") is None  # nothing half-created


def test_api_keys_are_stored_only_as_hashes(accounts):
    user = accounts.create_user("robot", None)
    secret, key = accounts.create_key(user.id, "nightly export")
    assert secret.startswith("erp-") and len(secret) > 40
    [row] = raw(accounts, "SELECT prefix, key_hash FROM api_keys WHERE id = ?", [key.id])
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret[len(row["prefix"]):].encode() not in stored_bytes(accounts)
    assert "key" not in key.public() and "key_hash" not in key.public()
    found_user, found_key = accounts.key_user(secret)
    assert found_user.username == "robot" and found_key.id == key.id
    assert accounts.key(key.id).last_used_at is not None


def test_revoked_and_disabled_keys_are_rejected(accounts):
    admin = accounts.create_user("root", PASSWORD, role="admin")
    user = accounts.create_user("robot", None)
    first, key = accounts.create_key(user.id, "one")
    second, _ = accounts.create_key(user.id, "two")
    accounts.revoke_key(key.id)
    assert accounts.key_user(first) is None
    assert accounts.key_user(second) is not None
    accounts.update_user(user.id, active=False)
    assert accounts.key_user(second) is None
    assert accounts.key_user("erp-not-a-key") is None and accounts.key_user("sk-other") is None
    assert accounts.key_user(accounts.create_key(admin.id, "admin")[0])[0].is_admin


def test_login_creates_a_session_that_expires_when_idle(accounts):
    accounts.create_user("alice", PASSWORD)
    token, session = accounts.login("ALICE", PASSWORD, ip="10.0.0.1")  # names are case-insensitive
    assert session.user.username == "alice" and session.csrf_token
    assert accounts.session(token).user.username == "alice"
    assert accounts.user(session.user.id).last_login_at is not None
    # An idle session past auth.session_hours: move its last activity back instead of waiting.
    with accounts.write() as db:
        db.execute("UPDATE sessions SET last_seen_at = last_seen_at - ?", [accounts.lifetime + 1])
    assert accounts.session(token) is None
    assert raw(accounts, "SELECT count(*) AS n FROM sessions")[0]["n"] == 0
    assert accounts.session("made-up-token") is None


def test_an_active_session_ends_at_its_absolute_lifetime(tmp_path):
    accounts = Accounts(tmp_path / "accounts.db", AuthSettings(session_hours=12, session_max_hours=24))
    accounts.create_user("alice", PASSWORD)
    token, session = accounts.login("alice", PASSWORD)
    assert session.expires_at == pytest.approx(time.time() + 12 * 3600, abs=5)  # idle limit first

    def signed_in_hours_ago(hours: float) -> None:
        """The login happened `hours` ago, and the user was active a minute ago all along."""
        now = time.time()
        with accounts.write() as db:
            db.execute("UPDATE sessions SET created_at = ?, last_seen_at = ?",
                       [now - hours * 3600, now - 60])

    signed_in_hours_ago(23)
    live = accounts.session(token)
    assert live is not None and live.expires_at == pytest.approx(time.time() + 3600, abs=5)
    signed_in_hours_ago(24.01)
    assert accounts.session(token) is None  # however active: sign in again
    assert raw(accounts, "SELECT count(*) AS n FROM sessions")[0]["n"] == 0

    fresh, _ = accounts.login("alice", PASSWORD)
    other, _ = accounts.login("alice", PASSWORD)
    with accounts.write() as db:  # one login past the limit, the other not; both recently used
        db.execute("UPDATE sessions SET created_at = ?, last_seen_at = ? WHERE token_hash = ?",
                   [time.time() - 25 * 3600, time.time(), hashlib.sha256(fresh.encode()).hexdigest()])
    assert accounts.purge_sessions() == 1
    assert accounts.session(other) is not None and accounts.session(fresh) is None
    accounts.close()


def test_audit_entries_past_their_retention_are_pruned(tmp_path):
    accounts = Accounts(tmp_path / "accounts.db", AuthSettings(audit_retention_days=30))
    now = time.time()
    for age_days in (400, 31, 29, 0):
        accounts.audit("root", "user_created", f"{age_days}-days-old", status=201)
        with accounts.write() as db:
            db.execute("UPDATE audit SET ts = ? WHERE id = (SELECT max(id) FROM audit)",
                       [now - age_days * 86400])
    assert accounts.housekeeping() == {"sessions": 0, "audit": 2}
    entries = accounts.audit_log()
    assert [e["target"] for e in entries] == ["audit", "0-days-old", "29-days-old"]
    assert entries[0]["actor"] == "system" and entries[0]["action"] == "audit_pruned"
    assert entries[0]["detail"]["removed"] == 2 and entries[0]["detail"]["retention_days"] == 30
    assert accounts.prune_audit() == 0  # nothing more to cut, and no entry saying so
    assert len(accounts.audit_log()) == 3
    accounts.close()

    keep_all = Accounts(tmp_path / "accounts.db", AuthSettings(audit_retention_days=0))
    with keep_all.write() as db:
        db.execute("UPDATE audit SET ts = ?", [now - 3650 * 86400])
    assert keep_all.prune_audit() == 0 and len(keep_all.audit_log()) == 3
    keep_all.close()


def test_password_change_and_disabling_end_sessions(accounts):
    user = accounts.create_user("alice", PASSWORD)
    token, _ = accounts.login("alice", PASSWORD)
    with pytest.raises(PermissionDenied, match="current password is wrong"):
        accounts.change_password(user.id, "not the password", "another long password")
    accounts.change_password(user.id, PASSWORD, "another long password")
    assert accounts.session(token) is None
    with pytest.raises(AuthenticationRequired):
        accounts.login("alice", PASSWORD)
    token, _ = accounts.login("alice", "another long password")
    accounts.update_user(user.id, active=False)
    assert accounts.session(token) is None
    with pytest.raises(AuthenticationRequired, match="disabled"):
        accounts.login("alice", "another long password")


def test_failed_logins_are_throttled_with_retry_after(accounts):
    accounts.create_user("alice", PASSWORD)
    for _ in range(3):  # login_max_failures = 3 in this fixture
        with pytest.raises(AuthenticationRequired, match="Wrong user name or password"):
            accounts.login("alice", "guess", ip="10.0.0.9")
    with pytest.raises(TooManyLogins) as refused:
        accounts.login("alice", PASSWORD, ip="10.0.0.9")  # even the right password, for a while
    retry = int(refused.value.headers["Retry-After"])
    assert refused.value.status == 429 and 50 <= retry <= 61
    # Unknown names are throttled the same way, so guessing names gains nothing.
    for _ in range(3):
        with pytest.raises(AuthenticationRequired):
            accounts.login("nobody", "guess", ip="10.0.0.10")
    with pytest.raises(TooManyLogins):
        accounts.login("nobody", "guess", ip="10.0.0.10")


def test_one_address_gets_more_failures_than_one_name(accounts):
    for name in ("a1", "a2", "a3", "a4", "a5"):
        accounts.create_user(name, PASSWORD)
    for name in ("a1", "a2", "a3", "a4"):
        for _ in range(3):
            with pytest.raises(AuthenticationRequired):
                accounts.login(name, "guess", ip="192.0.2.1")
    with pytest.raises(TooManyLogins):  # 12 failures from one address: the address is throttled
        accounts.login("a5", PASSWORD, ip="192.0.2.1")
    token, _ = accounts.login("a5", PASSWORD, ip="192.0.2.2")  # the same user elsewhere is not
    assert accounts.session(token).user.username == "a5"


def test_a_successful_admin_reset_lifts_the_throttle(accounts):
    user = accounts.create_user("alice", PASSWORD)
    for _ in range(3):
        with pytest.raises(AuthenticationRequired):
            accounts.login("alice", "guess", ip="10.0.0.1")
    accounts.set_password(user.id, "a brand new password")
    token, _ = accounts.login("alice", "a brand new password", ip="10.0.0.2")
    assert accounts.session(token) is not None


def test_the_last_admin_cannot_be_removed(accounts):
    admin = accounts.create_user("root", PASSWORD, role="admin")
    for change in ({"role": "employee"}, {"active": False}):
        with pytest.raises(Conflict, match="last active admin"):
            accounts.update_user(admin.id, **change)
    with pytest.raises(Conflict, match="last active admin"):
        accounts.delete_user(admin.id)
    second = accounts.create_user("root2", PASSWORD, role="admin")
    accounts.update_user(admin.id, role="employee")
    assert accounts.admin_count() == 1 and accounts.user(second.id).is_admin


def test_names_roles_and_groups_are_checked(accounts):
    with pytest.raises(InvalidRequest, match="User names"):
        accounts.create_user("bad name!", None)
    with pytest.raises(InvalidRequest, match="Unknown role 'owner'"):
        accounts.create_user("carol", None, role="owner")
    with pytest.raises(InvalidRequest, match="Group name"):
        accounts.create_user("carol", None, groups=["no spaces please"])
    accounts.create_user("carol", None, groups=[" hr", "all", "hr"])
    assert accounts.by_name("carol").groups == ("all", "hr")
    with pytest.raises(Conflict, match="exists already"):
        accounts.create_user("Carol", None)
    with pytest.raises(NotFound, match="appliance users list"):
        accounts.user(999)


def test_the_local_developer_can_never_sign_in(accounts):
    with pytest.raises(InvalidRequest, match="reserved"):
        accounts.create_user(LOCAL_USER, PASSWORD)
    local = accounts.local_user(["all"])
    assert local.is_admin and local.active  # as requests see it while auth is off
    stored = accounts.user(local.id)
    assert not stored.active and not stored.has_password  # as it is stored
    assert accounts.admin_count() == 0  # does not count as "an admin exists"
    assert accounts.local_user().id == local.id
    with pytest.raises(InvalidRequest):
        accounts.create_key(local.id, "k")
    with pytest.raises(InvalidRequest):
        accounts.set_password(local.id, PASSWORD)
    with pytest.raises(InvalidRequest):
        accounts.update_user(local.id, active=True)
    with pytest.raises(AuthenticationRequired):
        accounts.login(LOCAL_USER, "")


def test_outdated_password_hashes_are_upgraded_at_login(accounts):
    user = accounts.create_user("alice", PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with accounts.write() as db:
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", [weak, user.id])
    accounts.login("alice", PASSWORD)
    [row] = raw(accounts, "SELECT password_hash FROM users WHERE id = ?", [user.id])
    assert row["password_hash"] != weak and not accounts.passwords.needs_rehash(row["password_hash"])


def test_writes_are_atomic(accounts):
    user = accounts.create_user("alice", PASSWORD)
    accounts.login("alice", PASSWORD)
    with pytest.raises(sqlite3.OperationalError):
        with accounts.write() as db:
            db.execute("DELETE FROM sessions")
            db.execute("UPDATE no_such_table SET x = 1")
    assert raw(accounts, "SELECT count(*) AS n FROM sessions WHERE user_id = ?", [user.id])[0]["n"] == 1


def test_audit_log_pages_newest_first(accounts):
    for i in range(5):
        accounts.audit("root", "user_created", f"user{i}", status=201, ip="10.0.0.1", role="employee")
    accounts.audit("alice", "login", "alice", status=200)
    newest = accounts.audit_log(limit=3)
    assert [e["target"] for e in newest] == ["alice", "user4", "user3"]
    older = accounts.audit_log(limit=3, before_id=newest[-1]["id"])
    assert [e["target"] for e in older] == ["user2", "user1", "user0"]
    assert older[0]["detail"] == {"role": "employee"} and older[0]["ip"] == "10.0.0.1"
    assert [e["actor"] for e in accounts.audit_log(action="login")] == ["alice"]


def test_conversations_belong_to_their_user(accounts):
    alice = accounts.create_user("alice", None)
    bob = accounts.create_user("bob", None)
    conversations = Conversations(accounts)
    chat = conversations.create(alice.id, "  Leave   questions ")
    assert chat["title"] == "Leave questions" and chat["messages"] == []
    sources = [{"chunk_id": 7, "document": "hr/leave.md", "snippet": "연차는 ..."}]
    updated = conversations.append(alice.id, chat["id"], [
        {"role": "user", "content": "How do I request leave?"},
        {"role": "assistant", "content": "Use the HR portal [1].", "sources": sources,
         "response_id": "chatcmpl-1"}])
    assert [m["role"] for m in updated["messages"]] == ["user", "assistant"]
    assert updated["messages"][1]["sources"] == sources and updated["messages"][1]["rating"] is None
    for call in (lambda: conversations.get(bob.id, chat["id"]),
                 lambda: conversations.append(bob.id, chat["id"], [{"role": "user", "content": "x"}]),
                 lambda: conversations.rename(bob.id, chat["id"], "mine now"),
                 lambda: conversations.delete(bob.id, chat["id"])):
        with pytest.raises(NotFound):
            call()
    assert not conversations.rate(bob.id, "chatcmpl-1", "down")
    assert conversations.rate(alice.id, "chatcmpl-1", "up")
    assert conversations.get(alice.id, chat["id"])["messages"][1]["rating"] == "up"
    with pytest.raises(InvalidRequest):
        conversations.append(alice.id, chat["id"], [{"role": "system", "content": "x"}])
    assert len(conversations.get(alice.id, chat["id"])["messages"]) == 2  # the bad batch added nothing
    assert [c["message_count"] for c in conversations.list(alice.id)] == [2]
    assert conversations.list(bob.id) == []
    accounts.delete_user(alice.id)
    assert raw(accounts, "SELECT count(*) AS n FROM messages")[0]["n"] == 0  # cascaded


def test_a_saved_answer_keeps_how_it_was_made(accounts):
    alice = accounts.create_user("alice", None)
    conversations = Conversations(accounts)
    chat = conversations.create(alice.id, "Leave")
    sources = [{"chunk_id": 2, "document": "hr/leave-ko.md", "spans": [[0, 59], [60, 117]]}]
    saved = conversations.append(alice.id, chat["id"], [
        {"role": "user", "content": "취소하려면요?"},
        {"role": "assistant", "content": "연차휴가 › 4. 신청 취소:\n- 취소 요청 [1]", "sources": sources,
         "answer_mode": "extractive", "support": 0.375,
         "retrieval_query": "연차 신청은 어떻게 하나요? 취소하려면요?"},
        {"role": "assistant", "content": "Ask HR [1].", "answer_mode": "generated_with_removals",
         "support": 0.8, "removed": 2}])["messages"]
    assert saved[0]["answer_mode"] is None and saved[0]["retrieval_query"] is None
    assert saved[1]["sources"][0]["spans"] == [[0, 59], [60, 117]]
    assert (saved[1]["answer_mode"], saved[1]["support"], saved[1]["removed"]) == ("extractive", 0.375, None)
    assert saved[1]["retrieval_query"] == "연차 신청은 어떻게 하나요? 취소하려면요?"
    assert (saved[2]["answer_mode"], saved[2]["removed"]) == ("generated_with_removals", 2)
    with pytest.raises(InvalidRequest, match="answer_mode"):
        conversations.append(alice.id, chat["id"], [{"role": "assistant", "content": "x", "answer_mode": "guessed"}])
