"""Times as the API and CLI accept them: Unix seconds, ISO 8601, or a span back from now ("90m")."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

from appliance.errors import InvalidRequest

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: str | float, *, param: str = "step") -> float:
    """Positive seconds from 300, "300" or "5m"."""
    seconds = None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif match := _SPAN.match(value):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        try:
            seconds = float(value)
        except ValueError:
            pass
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise InvalidRequest(f"{param}={value!r} is not a duration; use positive seconds or e.g. "
                             "90s, 15m, 6h, 7d.", param=param)
    return seconds


def parse_time(value: str | float | None, *, now: float | None = None, param: str = "since") -> float | None:
    """Unix seconds from "1732500000", "2026-11-25T03:00:00" or a span ago like "24h"."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif _SPAN.match(value):
        seconds = now - parse_duration(value, param=param)
    else:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = datetime.fromisoformat(value).timestamp()
            except ValueError:
                seconds = math.nan
    if not math.isfinite(seconds) or not 0 <= seconds < 1e11:
        raise InvalidRequest(f"{param}={value!r} is not a time; use Unix seconds, ISO 8601, "
                             "or a span back from now such as 24h.", param=param)
    return seconds
