"""Times and spans as the metrics API and CLI accept them; bad ones are 400s, never 500s."""

from __future__ import annotations

import pytest

from appliance.errors import InvalidRequest
from appliance.monitoring.timespec import parse_duration, parse_time


def test_spans_times_and_iso():
    assert parse_duration("5m") == 300 and parse_duration("60") == 60 and parse_duration("1.5h") == 5400
    assert parse_time("24h", now=100_000) == 100_000 - 86400
    assert parse_time("1732500000") == 1732500000
    assert parse_time("2026-11-25T03:00:00+00:00") == 1795575600
    assert parse_time(None) is None


@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf", "soon", "5y"])
def test_bad_durations_say_what_to_send(bad):
    with pytest.raises(InvalidRequest, match="90s, 15m, 6h, 7d"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["-inf", "nan", "1e300", "yesterday", "-5"])
def test_bad_times_say_what_to_send(bad):
    with pytest.raises(InvalidRequest, match="Unix seconds, ISO 8601"):
        parse_time(bad)
