"""Parsing of the sizes and durations people write in config files and on the command line."""

from __future__ import annotations

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


def parse_size(value: int | float | str) -> int:
    """'1GB', '512 MB', 1073741824 -> bytes. Raises ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '1GB', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    m = _NUM_UNIT.match(value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"expected a size like '1GB' or '500MB', got {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_seconds(value: int | float | str) -> float:
    """'2s', '500ms', '1 min', 30 -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '2s', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    m = _NUM_UNIT.match(value)
    unit = m.group(2).lower() if m else ""
    if not m or (unit and unit not in _DURATION_UNITS):
        raise ValueError(f"expected a duration like '2s', '500ms' or '5min', got {value!r}")
    return float(m.group(1)) * (_DURATION_UNITS[unit] if unit else 1)


def parse_age(value: str) -> timedelta:
    """'3 months', '12weeks', '90d' -> a timedelta (a month counts as 30 days, a year 365)."""
    m = _NUM_UNIT.match(str(value))
    if not m:
        raise ValueError(f"expected an age like '3 months' or '12 weeks', got {value!r}")
    n, unit = float(m.group(1)), m.group(2).lower()
    if unit in _MONTH_WORDS:
        return timedelta(days=30 * n)
    if unit in _YEAR_WORDS:
        return timedelta(days=365 * n)
    if unit in _DURATION_UNITS and unit not in ("", "ms"):
        return timedelta(seconds=n * _DURATION_UNITS[unit])
    raise ValueError(f"expected an age like '3 months' or '12 weeks', got {value!r}")
