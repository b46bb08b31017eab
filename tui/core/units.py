"""Parsing of the sizes and durations people write in config files and on the command line."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1024, "k": 1024, "kib": 1024,
    "mb": 1024**2, "m": 1024**2, "mib": 1024**2,
    "gb": 1024**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1024**4, "t": 1024**4, "tib": 1024**4,
}

_DURATION_UNITS = {
    "ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 7 * 86400, "week": 7 * 86400, "weeks": 7 * 86400,
}
_MONTH_WORDS = {"mon", "month", "months", "mons"}
_YEAR_WORDS = {"y", "year", "years"}

_NUM_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

MAX_SIZE = 2**63 - 1  # what PostgreSQL's bigint sizes can hold
# a month of 30 days, a year of 365: ages beyond this would take dates before year 1000
MAX_AGE = timedelta(days=365 * 1000)


def _finite(value: float, what: str) -> float:
    """Refuse NaN and infinities (TOML has `nan` and `inf`; 1e400 reads as inf)."""
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return value


def parse_size(value: int | float | str) -> int:
    """'1GB', '512 MB', 1073741824 -> bytes. Raises ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '1GB', got {value!r}")
    if isinstance(value, int | float):
        size = _finite(float(value), "a size") if isinstance(value, float) else value
    else:
        m = _NUM_UNIT.match(value)
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"expected a size like '1GB' or '500MB', got {value!r}")
        size = _finite(float(m.group(1)), "a size") * _SIZE_UNITS[m.group(2).lower()]
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_SIZE:
        raise ValueError(f"a size must be at most {MAX_SIZE} bytes, got {value!r}")
    return int(size)


def parse_seconds(value: int | float | str) -> float:
    """'2s', '500ms', '1 min', 30 -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '2s', got {value!r}")
    if isinstance(value, int | float):
        seconds = _finite(float(value), "a duration")
    else:
        m = _NUM_UNIT.match(value)
        unit = m.group(2).lower() if m else ""
        if not m or (unit and unit not in _DURATION_UNITS):
            raise ValueError(f"expected a duration like '2s', '500ms' or '5min', got {value!r}")
        seconds = _finite(float(m.group(1)) * (_DURATION_UNITS[unit] if unit else 1),
                          "a duration")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_age(value: str) -> timedelta:
    """'3 months', '12weeks', '90d' -> a timedelta (a month counts as 30 days, a year 365).

    Positive and at most MAX_AGE (1000 years): a larger one overflows date arithmetic."""
    m = _NUM_UNIT.match(str(value))
    if not m:
        raise ValueError(f"expected an age like '3 months' or '12 weeks', got {value!r}")
    n, unit = _finite(float(m.group(1)), "an age"), m.group(2).lower()
    if unit in _MONTH_WORDS:
        days = 30 * n
    elif unit in _YEAR_WORDS:
        days = 365 * n
    elif unit in _DURATION_UNITS and unit not in ("", "ms"):
        days = n * _DURATION_UNITS[unit] / 86400
    else:
        raise ValueError(f"expected an age like '3 months' or '12 weeks', got {value!r}")
    if days <= 0:
        raise ValueError(f"an age must be more than zero, got {value!r}")
    if days > MAX_AGE.days:
        raise ValueError(f"an age must be at most 1000 years, got {value!r}")
    return timedelta(days=days)
