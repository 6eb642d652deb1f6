"""What quotas add to a metered request, with the real classes on a real accounts.db.

    .venv/bin/python benchmarks/quotas.py [--requests 20000]

(1) Per request, on the event loop: admission (both limits, for a user and an API key), the
x-ratelimit headers, the prompt tokens at start and the settlement at the end; timed as CPU time
of the measuring thread, so load from elsewhere on the machine does not inflate it. A clock
advanced 0.2 s per request keeps a realistic window (300 admissions in the last minute, under a
limit of 600). (2) The first request of a user after start: the same plus reading the
overrides from SQLite. (3) The write-behind: one flush of a second's counts for 200 users, as
wall time (it includes the WAL's fsync).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from appliance.accounts import Accounts
from appliance.accounts.quotas import Quotas
from appliance.settings import AuthSettings, QuotaSettings


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        accounts = Accounts(Path(tmp) / "accounts.db", AuthSettings())
        users = [accounts.create_user(f"user{i}", None) for i in range(200)]
        _, key = accounts.create_key(users[0].id, "batch")
        clock = Clock()
        settings = QuotaSettings(employee_requests_per_minute=600, employee_tokens_per_day=10**12)
        quotas = Quotas(accounts, settings, clock=clock)
        quotas.set_override("key", key.id, 600, 10**12)
        limits = quotas.limits(users[0], key.id)

        started = time.thread_time()
        for _ in range(args.requests):
            clock.now += 0.2
            ticket = quotas.admit(users[0], key.id, hold=2048, limits=limits)
            quotas.headers(ticket)
            ticket.start(900)
            ticket.completion_tokens = 120
            ticket.close()
        per_request = (time.thread_time() - started) / args.requests

        fresh = Quotas(accounts, settings, clock=clock)
        started = time.thread_time()
        for user in users:
            fresh.admit(user, hold=2048, limits=fresh.limits(user)).close()
        first = (time.thread_time() - started) / len(users)

        flushes = []
        for _ in range(10):
            for user in users:
                clock.now += 0.005
                ticket = quotas.admit(user, hold=2048)
                ticket.start(900)
                ticket.close()
            started = time.perf_counter()
            quotas.flush()
            flushes.append(time.perf_counter() - started)
        accounts.close()
    print(json.dumps({
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "admission_headers_settlement_cpu_us": round(per_request * 1e6, 1),
        "first_request_of_a_user_cpu_us": round(first * 1e6, 1),
        "flush_200_users_ms_median": round(sorted(flushes)[len(flushes) // 2] * 1e3, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
