"""Calendar periods in UTC, the way PostgreSQL's date_trunc counts them (weeks start on Monday),
and integer ranges; shared by the row counts per period and the layout proposals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

PERIODS = ("year", "quarter", "month", "week", "day")
"""Coarsest first."""


def coarser_or_equal(period: str) -> tuple[str, ...]:
    """The periods a count per `period` can be summed up to, coarsest first."""
    return PERIODS[: PERIODS.index(period) + 1]


def as_utc(value: datetime | date) -> datetime:
    """A bound as an aware UTC datetime: plain timestamps and dates are read as UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def truncate(value: datetime, period: str) -> datetime:
    v = as_utc(value)
    if period == "year":
        return datetime(v.year, 1, 1, tzinfo=UTC)
    if period == "quarter":
        return datetime(v.year, 3 * ((v.month - 1) // 3) + 1, 1, tzinfo=UTC)
    if period == "month":
        return datetime(v.year, v.month, 1, tzinfo=UTC)
    day = datetime(v.year, v.month, v.day, tzinfo=UTC)
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "day":
        return day
    raise ValueError(f"unknown period {period!r}; one of {', '.join(PERIODS)}")


def advance(start: datetime, period: str, n: int = 1) -> datetime:
    """The start of the period `n` periods after the one starting at `start`."""
    if period in ("year", "quarter", "month"):
        months = {"year": 12, "quarter": 3, "month": 1}[period] * n
        index = start.year * 12 + start.month - 1 + months
        return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    return start + timedelta(days=(7 if period == "week" else 1) * n)


def label(start: datetime, period: str) -> str:
    """The period's part of a partition name: 2023, 2023_q1, 2023_01, 2023_01_02."""
    if period == "year":
        return f"{start.year:04d}"
    if period == "quarter":
        return f"{start.year:04d}_q{(start.month - 1) // 3 + 1}"
    if period == "month":
        return f"{start.year:04d}_{start.month:02d}"
    return f"{start.year:04d}_{start.month:02d}_{start.day:02d}"


def int_label(value: int) -> str:
    return f"m{-value}" if value < 0 else str(value)


def floor_to(value: int, step: int) -> int:
    return (value // step) * step
