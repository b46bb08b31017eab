"""Growth at a glance: rows and size per partition of a time-partitioned table, the rate at which
they grow, and how long the present layout lasts at that rate.

Pure Python over a loaded Forest (no queries), like the findings, which use the same forecast.
The rate is robust on purpose: the median over the newest finished partitions (a partition whose
upper bound is past), per unit of time so partitions of unequal width (months, a consolidated
quarter) compare; the DEFAULT partition, partitions without finite bounds and partitions never
analyzed (their size and row estimates read 0) are left out.

`Growth.rows_series()` / `bytes_series()` are ready for a chart (Textual's Sparkline takes a list
of numbers); `pgparts tree TABLE --growth` draws the same series in the terminal.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import humanize

from .bounds import BoundValue, parse_timestamp
from .catalog import Forest, PartNode
from .humanfmt import plural, short_count, size

# How many of the newest finished partitions the rate is the median of.
RATE_SAMPLE = 5
# A forecast from fewer finished partitions than this is not shown in findings.
MIN_SAMPLES = 2
_TIME_TYPES = ("timestamp", "date")


@dataclass(frozen=True)
class GrowthPoint:
    """One partition of the series: its time range and what it holds."""

    node: PartNode
    lower: datetime
    upper: datetime
    rows: int
    bytes: int
    analyzed: bool  # False: never analyzed, its estimates read 0 (left out of the rate)
    state: str  # "past" (upper bound passed), "current" (holds now) or "future"

    @property
    def width(self) -> timedelta:
        return self.upper - self.lower


@dataclass(frozen=True)
class Growth:
    table: PartNode
    now: datetime
    points: tuple[GrowthPoint, ...]  # by time; DEFAULT and unbounded partitions left out
    default: PartNode | None
    interval: timedelta  # the typical width: median of the newest partitions' widths
    samples: int  # finished, analyzed partitions the rate is the median of
    rows_per_interval: float | None  # None: no finished partition was ever analyzed
    bytes_per_interval: float | None
    limit_bytes: int  # findings.oversized of the table (its policy's, if it sets one)
    covered_until: datetime | None  # the last upper bound; None: open-ended or no partition
    premade: int  # partitions entirely in the future
    open_ended: bool = False  # a partition reaches MAXVALUE: the future is always covered

    # -- the series, for charts ------------------------------------------------------------
    def rows_series(self) -> list[float]:
        return [float(p.rows) for p in self.points]

    def bytes_series(self) -> list[float]:
        return [float(p.bytes) for p in self.points]

    # -- the forecast ----------------------------------------------------------------------
    @property
    def current(self) -> GrowthPoint | None:
        return next((p for p in self.points if p.state == "current"), None)

    @property
    def meaningful(self) -> bool:
        """Whether the rate rests on enough history to forecast from."""
        return self.samples >= MIN_SAMPLES and bool(self.bytes_per_interval)

    @property
    def leaves_per_partition(self) -> int:
        """The current partition's leaves: the size limit holds per leaf, and a week split into
        4 hash partitions passes it when each quarter does (assumed even)."""
        current = self.current
        return max(current.node.leaf_count, 1) if current is not None else 1

    def bytes_per_second(self) -> float | None:
        if not self.bytes_per_interval or self.interval <= timedelta(0):
            return None
        return self.bytes_per_interval / self.interval.total_seconds()

    def current_bytes(self) -> float | None:
        """The current partition's size: measured when it was analyzed, else what the rate
        says it holds by now."""
        current, rate = self.current, self.bytes_per_second()
        if current is None:
            return None
        if current.analyzed:
            return float(current.bytes)
        if rate is None:
            return None
        return rate * max((self.now - current.lower).total_seconds(), 0.0)

    @property
    def fills_at(self) -> datetime | None:
        """When the current partition (each of its leaves) passes the size limit at this rate,
        if that happens before its upper bound; None otherwise or when already past it."""
        current, rate, held = self.current, self.bytes_per_second(), self.current_bytes()
        if current is None or rate is None or held is None:
            return None
        limit = self.limit_bytes * self.leaves_per_partition
        if held > limit:
            return None
        seconds = (limit - held) / rate
        # compared as seconds first: a slow rate gives a date past datetime's range
        if seconds >= (current.upper - self.now).total_seconds():
            return None
        at = self.now + timedelta(seconds=seconds)
        return at if at < current.upper else None

    @property
    def runway(self) -> timedelta | None:
        """Time left until the last upper bound; None when open-ended or without partitions."""
        if self.covered_until is None:
            return None
        return self.covered_until - self.now


def _time(value: BoundValue) -> datetime | None:
    if not value.is_literal or value.text is None:
        return None
    return _parse_time(str(value.text))


@lru_cache(maxsize=65536)  # each bound is the next partition's lower bound too
def _parse_time(text: str) -> datetime | None:
    return parse_timestamp(text)  # 'infinity' is not a timestamp: None


def is_time_partitioned(node: PartNode) -> bool:
    """RANGE partitioned on a timestamp or date first key column (or an expression whose bounds
    all read as times, e.g. a date cast)."""
    if node.strategy != "range":
        return False
    if node.key_expressions is None:
        return bool(node.key_types) and node.key_types[0].lower().startswith(_TIME_TYPES)
    uppers = [c.bound.upper[0] for c in node.children
              if c.bound is not None and c.bound.kind == "range" and c.bound.upper]
    literals = [v for v in uppers if v.is_literal]
    return bool(literals) and all(_time(v) is not None for v in literals)


def _analyzed(node: PartNode) -> bool:
    """Whether every leaf was ever analyzed: reltuples is -1 until the first VACUUM/ANALYZE,
    and relpages 0, so both estimates read 0 (a loop, not walk(): it runs per partition)."""
    if node.is_leaf:
        return node.reltuples >= 0
    stack = list(node.children)
    if not stack:
        return False  # no leaf holds anything
    while stack:
        n = stack.pop()
        if n.is_leaf:
            if n.reltuples < 0:
                return False
        else:
            stack.extend(n.children)
    return True


def growth_of(
    forest: Forest, node: PartNode, *, limit_bytes: int, now: datetime | None = None
) -> Growth | None:
    """The growth of `node`'s partitions over time; None when it is not time partitioned."""
    if not is_time_partitioned(node):
        return None
    now = now or forest.loaded_at
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    points: list[GrowthPoint] = []
    open_ended = False
    default = None
    for child in node.children:
        bound = child.bound
        if bound is None:
            continue
        if bound.is_default:
            default = child
            continue
        if bound.kind != "range" or not bound.lower or not bound.upper:
            continue
        if bound.upper[0].special == "MAXVALUE":
            open_ended = True
        lo, hi = _time(bound.lower[0]), _time(bound.upper[0])
        if lo is None or hi is None or hi <= lo:
            continue
        state = "past" if hi <= now else ("current" if lo <= now else "future")
        points.append(GrowthPoint(child, lo, hi, child.rows, child.total_bytes,
                                  _analyzed(child), state))
    points.sort(key=lambda p: p.lower)
    widths = [p.width for p in points[-RATE_SAMPLE:]]
    interval = statistics.median(widths) if widths else timedelta(0)
    finished = [p for p in points if p.state == "past"][-RATE_SAMPLE:]
    sample = [p for p in finished if p.analyzed]
    rows_rate = bytes_rate = None
    if sample and interval > timedelta(0):
        scale = interval.total_seconds()
        rows_rate = statistics.median(p.rows / p.width.total_seconds() for p in sample) * scale
        bytes_rate = statistics.median(p.bytes / p.width.total_seconds() for p in sample) * scale
    covered = None if open_ended else (max(p.upper for p in points) if points else None)
    return Growth(
        table=node, now=now, points=tuple(points), default=default, interval=interval,
        samples=len(sample), rows_per_interval=rows_rate, bytes_per_interval=bytes_rate,
        limit_bytes=limit_bytes, covered_until=covered,
        premade=sum(1 for p in points if p.state == "future"), open_ended=open_ended,
    )


# -- words for messages --------------------------------------------------------------------------
_NAMED_INTERVALS = (
    (timedelta(hours=1), timedelta(hours=1), "hour"),
    (timedelta(days=1), timedelta(days=1), "day"),
    (timedelta(days=7), timedelta(days=7), "week"),
    (timedelta(days=28), timedelta(days=31), "month"),
    (timedelta(days=89), timedelta(days=92), "quarter"),
    (timedelta(days=365), timedelta(days=366), "year"),
)


def about(delta: timedelta) -> str:
    """A forecast's distance in one unit, rounded: '45 minutes', '9 hours', '18 days',
    '5 months', '3 years' (humanize's naturaldelta reads 18 days as 'a month')."""
    seconds = abs(delta.total_seconds())
    for limit, unit, span in (
        (2 * 3600, "minute", 60), (2 * 86400, "hour", 3600), (60 * 86400, "day", 86400),
        (730 * 86400, "month", 30 * 86400), (float("inf"), "year", 365 * 86400),
    ):
        if seconds < limit:
            n = max(round(seconds / span), 1) if seconds else 0
            return f"{n} {unit}{'' if n == 1 else 's'}"
    raise AssertionError("unreachable")


def interval_name(interval: timedelta) -> str:
    """'week' for 7 days, 'month' for 28 to 31 days, ..., else humanize's '10 days'."""
    for low, high, name in _NAMED_INTERVALS:
        if low <= interval <= high:
            return name
    return humanize.naturaldelta(interval)


def rate_text(growth: Growth) -> str | None:
    """'about 1.2M rows (1.1 GiB) per week', or None without a rate."""
    if growth.rows_per_interval is None or growth.bytes_per_interval is None:
        return None
    return (f"about {short_count(round(growth.rows_per_interval))} rows "
            f"({size(growth.bytes_per_interval)}) per {interval_name(growth.interval)}")


def fill_text(growth: Growth) -> str | None:
    """'partition X will pass 1 GiB in about 9 days' when the forecast is meaningful."""
    at, current = growth.fills_at, growth.current
    if not growth.meaningful or at is None or current is None:
        return None
    when = about(at - growth.now)
    n = growth.leaves_per_partition
    if n > 1:
        return (f"the {n} partitions of {current.node.qualified} will pass "
                f"{size(growth.limit_bytes)} each in about {when}")
    return (f"partition {current.node.qualified} will pass {size(growth.limit_bytes)} "
            f"in about {when}")


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def growth_dict(growth: Growth) -> dict[str, Any]:
    """The series and the forecast as plain JSON values (`pgparts tree TABLE --growth --json`)."""
    current = growth.current
    runway = growth.runway
    return {
        "table": growth.table.qualified,
        "now": _iso(growth.now),
        "interval": interval_name(growth.interval),
        "interval_seconds": growth.interval.total_seconds(),
        "partitions": [
            {"partition": p.node.qualified, "lower": _iso(p.lower), "upper": _iso(p.upper),
             "rows": p.rows, "bytes": p.bytes, "analyzed": p.analyzed, "state": p.state}
            for p in growth.points
        ],
        "default": None if growth.default is None else {
            "partition": growth.default.qualified, "rows": growth.default.rows,
            "bytes": growth.default.total_bytes,
        },
        "rate": {
            "rows_per_interval": growth.rows_per_interval,
            "bytes_per_interval": growth.bytes_per_interval,
            "samples": growth.samples,
            "meaningful": growth.meaningful,
        },
        "forecast": {
            "limit_bytes": growth.limit_bytes,
            "current": current.node.qualified if current is not None else None,
            "current_bytes": growth.current_bytes(),
            "fills_at": _iso(growth.fills_at),
            "covered_until": _iso(growth.covered_until),
            "open_ended": growth.open_ended,
            "runway_seconds": runway.total_seconds() if runway is not None else None,
            "premade": growth.premade,
        },
    }


def _end(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M").removesuffix(" 00:00")


def summary_lines(growth: Growth, unit: str | None = None) -> list[str]:
    """The rate, when the current partition fills and the runway, one line each (`tree
    --growth` and the console's details)."""
    if unit is None:
        unit = interval_name(growth.interval) if growth.interval.total_seconds() > 0 \
            else "interval"
    out: list[str] = []
    rate = rate_text(growth)
    if rate is None:
        out.append("rate: unknown: no finished partition was analyzed (ANALYZE the table)")
    else:
        out.append(f"rate: {rate} (median of the last {plural(growth.samples, 'finished ' + unit)}"
                   f"{'' if growth.meaningful else '; too few to forecast from'})")
    limit = size(growth.limit_bytes)
    current = growth.current
    fill = fill_text(growth)
    if fill is not None:
        out.append(f"fills: {fill} (findings.oversized)")
    elif current is None:
        out.append("fills: no partition holds the present")
    elif growth.meaningful and growth.bytes_per_interval is not None:
        held = growth.current_bytes() or 0
        n = growth.leaves_per_partition
        # the limit holds per leaf: a week of 4 hash partitions may hold 4 times as much
        what = (f"the {n} partitions of {current.node.qualified}" if n > 1
                else current.node.qualified)
        each = " each" if n > 1 else ""
        if held > growth.limit_bytes * n:
            out.append(f"fills: {what} {'are' if n > 1 else 'is'} already over {limit}{each}")
        else:
            out.append(f"fills: {what} {'stay' if n > 1 else 'stays'} under {limit}{each} "
                       f"until {_end(current.upper)} at this rate")
    if growth.open_ended:
        out.append("runway: open-ended (a partition reaches MAXVALUE)")
    elif growth.covered_until is None:
        out.append("runway: none (no partition with time bounds)")
    else:
        left = growth.covered_until - growth.now
        if left.total_seconds() <= 0:
            when = f"ran out {about(-left)} ago"
        else:
            when = f"{about(left)} ahead"
        out.append(f"runway: partitions until {_end(growth.covered_until)} ({when}; "
                   f"{plural(growth.premade, 'partition')} ahead)")
    return out
