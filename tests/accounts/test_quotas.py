"""Quotas on a real accounts.db: limits from roles and overrides, the per-minute window, the daily
token rule, exact counts under concurrent admission, and counts that survive a reopen. Time is a
clock the test moves, so windows and midnights are exact without waiting."""

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from appliance.accounts import Accounts
from appliance.accounts.quotas import WINDOW_SECONDS, Limits, QuotaExceeded, Quotas
from appliance.errors import ConfigError, InvalidRequest, NotFound
from appliance.llm.base import Finished, TextDelta
from appliance.settings import AuthSettings, QuotaSettings, load_settings

SEOUL = ZoneInfo("Asia/Seoul")
NOON = datetime(2026, 5, 4, 12, 0, tzinfo=SEOUL).timestamp()


class Clock:
    def __init__(self, now: float = NOON):
        self.now = now

    def __call__(self) -> float:
        return self.now


def quota_settings(**changes) -> QuotaSettings:
    values = {"employee_requests_per_minute": 0, "employee_tokens_per_day": 0, "timezone": "Asia/Seoul"}
    return QuotaSettings(**{**values, **changes})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kim(accounts):
    return accounts.create_user("kim", None, groups=["all"])


def refused(quotas: Quotas, user, key_id=None, **kwargs) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as error:
        quotas.admit(user, key_id, **kwargs)
    return error.value


def test_limits_come_from_the_role_unless_an_admin_overrides_them(accounts, kim):
    boss = accounts.create_user("boss", None, role="admin")
    quotas = Quotas(accounts, QuotaSettings(employee_requests_per_minute=30, employee_tokens_per_day=5000))
    _, key = accounts.create_key(kim.id, "script")
    assert quotas.cached_limits(kim) is None  # not read yet: admission reads it off the event loop
    assert quotas.limits(kim) == {("user", kim.id): Limits(30, 5000)}
    assert quotas.cached_limits(kim) == quotas.limits(kim)
    assert quotas.limits(boss) == {("user", boss.id): Limits(0, 0)}  # admins: no limit by default
    # A key has no limits of its own until an admin sets some; its user's still apply.
    assert quotas.limits(kim, key.id) == {("user", kim.id): Limits(30, 5000), ("key", key.id): Limits(0, 0)}

    quotas.set_override("user", kim.id, None, 0)  # tokens: no limit; requests: the role's
    quotas.set_override("key", key.id, 5, None)
    assert quotas.limits(kim, key.id) == {("user", kim.id): Limits(30, 0), ("key", key.id): Limits(5, 0)}
    quotas.set_override("user", kim.id, None, None)  # back to the role's defaults
    assert quotas.limits(kim)[("user", kim.id)] == Limits(30, 5000)
    assert quotas.overrides("user") == {}

    with pytest.raises(InvalidRequest, match="tokens_per_day"):
        quotas.set_override("user", kim.id, None, -1)
    with pytest.raises(NotFound, match="No API key"):
        quotas.set_override("key", 999, 1, 1)


def test_a_bad_time_zone_is_refused_when_settings_load(monkeypatch):
    monkeypatch.setenv("APPLIANCE_QUOTAS__TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="quotas.timezone.*Mars/Olympus"):
        load_settings()


def test_requests_per_minute_is_a_sliding_window(accounts, kim, clock):
    quotas = Quotas(accounts, quota_settings(employee_requests_per_minute=3), clock=clock)
    for step in range(3):
        quotas.admit(kim).close()
        clock.now += 10
    error = refused(quotas, kim)  # three in the last 30 s
    assert error.code == "requests_per_minute_exceeded" and error.status == 429
    assert error.retry_after == 30 and "requests_per_minute (3)" in error.message
    assert error.headers["Retry-After"] == "30"
    clock.now += 29
    refused(quotas, kim)  # refusals do not count, but the first admission is still 59 s old
    clock.now += 1
    quotas.admit(kim).close()  # the first left the window
    assert quotas.live(("user", kim.id), Limits(3, 0))["requests_last_minute"] == 3


def test_a_key_and_its_user_are_both_counted(accounts, kim, clock):
    quotas = Quotas(accounts, quota_settings(employee_requests_per_minute=4), clock=clock)
    _, first = accounts.create_key(kim.id, "first")
    _, second = accounts.create_key(kim.id, "second")
    quotas.set_override("key", first.id, 2, None)
    quotas.admit(kim, first.id)
    quotas.admit(kim, first.id)
    error = refused(quotas, kim, first.id)
    assert "This API key" in error.message and "the key's" in error.message
    quotas.admit(kim, second.id)
    quotas.admit(kim)  # the web UI's session: the user's fourth request
    error = refused(quotas, kim, second.id)
    assert error.message.startswith("You have sent 4 requests")


def test_tokens_per_day_holds_one_request_and_counts_what_was_used(accounts, kim, clock):
    quotas = Quotas(accounts, quota_settings(employee_tokens_per_day=1000), clock=clock)
    first = quotas.admit(kim, hold=600)  # holds one request's most: the model's context
    second = quotas.admit(kim, hold=600)  # holds the 400 that are left
    assert second.holds == {("user", kim.id): 400}
    busy = refused(quotas, kim, hold=600)
    assert busy.code == "tokens_per_day_exceeded" and busy.retry_after == 2
    assert "in progress" in busy.message
    quotas.admit(kim)  # a request that uses no tokens (search) is not held up

    first.start(120)  # prompt tokens count as the answer starts
    assert quotas.live(("user", kim.id), Limits(0, 1000))["tokens_today"] == 120
    first.on_event(TextDelta("Hello"))
    first.on_event(Finished("stop", 120, 30))
    first.close()
    second.close()  # failed before its answer started: nothing used
    live = quotas.live(("user", kim.id), Limits(0, 1000))
    assert live["tokens_today"] == 150 and live["tokens_held"] == 0 and live["tokens_left"] == 850

    # An answer under way is never cut off: it may pass the limit, and then the day is over.
    last = quotas.admit(kim, hold=2000)
    assert last.holds == {("user", kim.id): 850}
    last.start(900)
    last.on_event(Finished("length", 900, 40))
    last.close()
    assert quotas.live(("user", kim.id), Limits(0, 1000))["tokens_today"] == 1090
    spent = refused(quotas, kim, hold=600)
    midnight = datetime(2026, 5, 5, 0, 0, tzinfo=SEOUL).timestamp()
    assert spent.retry_after == midnight - clock.now
    assert "1,090 tokens today" in spent.message and "Asia/Seoul" in spent.message and "12 h 0 min" in spent.message

    clock.now = midnight + 1  # a new day in quotas.timezone
    quotas.admit(kim, hold=600).close()
    quotas.flush()
    days = {r["day"]: r["total_tokens"] for r in quotas.usage("2026-05-04", "2026-05-05")}
    assert days == {"2026-05-04": 1090, "2026-05-05": 0}


def test_a_stream_the_client_left_counts_what_was_streamed(accounts, kim, clock):
    quotas = Quotas(accounts, quota_settings(employee_tokens_per_day=1000), clock=clock)
    ticket = quotas.admit(kim, hold=500)
    ticket.start(40)
    for _ in range(7):
        ticket.on_event(TextDelta("x"))
    ticket.close()  # no Finished event: the client went away
    ticket.close()  # closing twice changes nothing
    assert quotas.live(("user", kim.id), Limits(0, 1000))["tokens_today"] == 47


def test_concurrent_admissions_are_counted_exactly(accounts, kim, clock):
    quotas = Quotas(accounts, quota_settings(employee_requests_per_minute=50,
                                             employee_tokens_per_day=100_000), clock=clock)
    _, key = accounts.create_key(kim.id, "batch")
    admitted, refusals = [], []
    start = threading.Barrier(16)

    def client() -> None:
        start.wait()
        for _ in range(20):
            try:
                ticket = quotas.admit(kim, key.id, hold=100)
            except QuotaExceeded as error:
                refusals.append(error.code)
                continue
            ticket.start(10)
            ticket.on_event(Finished("stop", 10, 3))
            ticket.close()
            admitted.append(ticket)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 50 and len(refusals) == 16 * 20 - 50
    assert set(refusals) == {"requests_per_minute_exceeded"}
    quotas.flush()
    [row] = quotas.usage("2026-05-04", "2026-05-04")
    assert (row["requests"], row["refused"], row["prompt_tokens"], row["completion_tokens"]) == \
        (50, 270, 500, 150)
    assert row["key_name"] == "batch" and row["username"] == "kim"


def test_counts_hold_across_a_reopen(tmp_path, clock):
    path = tmp_path / "accounts.db"
    accounts = Accounts(path, AuthSettings())
    kim = accounts.create_user("kim", None)
    _, key = accounts.create_key(kim.id, "script")
    settings = quota_settings(employee_requests_per_minute=3, employee_tokens_per_day=500)
    quotas = Quotas(accounts, settings, clock=clock)
    for _ in range(3):
        ticket = quotas.admit(kim, key.id, hold=100)
        ticket.start(60)
        ticket.on_event(Finished("stop", 60, 40))
        ticket.close()
    quotas.flush()
    accounts.close()

    clock.now += 5  # a restart a few seconds later
    reopened = Quotas(Accounts(path, AuthSettings()), settings, clock=clock)
    assert refused(reopened, kim, key.id).code == "requests_per_minute_exceeded"
    assert reopened.live(("user", kim.id), Limits(3, 500))["tokens_today"] == 300
    assert reopened.live(("key", key.id), Limits())["tokens_today"] == 300
    clock.now += WINDOW_SECONDS
    reopened.admit(kim, key.id, hold=100).close()  # the restored window moved on
    reopened.accounts.close()


def test_an_override_set_by_another_process_applies_after_the_next_flush(tmp_path, clock):
    path = tmp_path / "accounts.db"
    server = Accounts(path, AuthSettings())
    kim = server.create_user("kim", None)
    quotas = Quotas(server, quota_settings(), clock=clock)
    quotas.admit(kim).close()  # the override (none) is cached now
    cli = Accounts(path, AuthSettings())  # the CLI's own connection
    Quotas(cli, quota_settings(), clock=clock).set_override("user", kim.id, 1, None)
    quotas.flush()  # notices the database changed under it and reads overrides again
    assert refused(quotas, kim).code == "requests_per_minute_exceeded"
    cli.close()
    server.close()


def test_usage_of_a_user_deleted_before_the_write_is_dropped(accounts, kim, clock):
    quotas = Quotas(accounts, quota_settings(), clock=clock)
    other = accounts.create_user("lee", None)
    quotas.admit(kim).close()
    quotas.admit(other).close()
    accounts.delete_user(kim.id)
    quotas.flush()
    assert [r["username"] for r in quotas.usage("2026-05-01", "2026-05-31")] == ["lee"]


def test_a_failed_write_keeps_the_counts_for_the_next(accounts, kim, clock, monkeypatch):
    quotas = Quotas(accounts, quota_settings(employee_requests_per_minute=10), clock=clock)
    quotas.admit(kim).close()

    def locked():
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(accounts, "write", locked)
        with pytest.raises(OSError):
            quotas.flush()
    quotas.admit(kim).close()
    quotas.flush()
    assert quotas.usage("2026-05-04", "2026-05-04")[0]["requests"] == 2
