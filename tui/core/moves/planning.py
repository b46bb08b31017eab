"""Bounds math for moving rows: bounds in, bounds out, no server.

Values are Python values that order like the partition key: datetimes, dates, ints and Decimals
as psycopg loads them, or ranks the server gave (keys.py types every value a user typed or a
bound holds, so the server's cast and ordering decide). A range is (lower, upper), half-open,
either end possibly MINVALUE / MAXVALUE. A list value is a value or None (NULL).

- split_range: one range cut at one or more values;
- merge_ranges / merge_lists: adjacent ranges (or list partitions) into one;
- rebound: move the boundary between two neighbours;
- move_list_values: values from one list partition to another (or a new one);
- range_gaps: the holes between ranges; gap_partitions: fill-gaps' partitions for them, cut
  on the newest partition's grid and named after its pattern;
- propose_partitions: drain-default's proposal, from the existing ranges and where the DEFAULT's
  rows lie: partitions shaped like the newest one (its interval, its naming pattern) on the grid
  its bounds define, covering every row, before the first partition and after the last too,
  clipped where existing partitions are in the way.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..infinity import is_infinite
from ..names import check_identifier_length

MAX_PROPOSALS = 1000


class PlanningError(ValueError):
    """Input that cannot make a valid layout; the message is one line, fit for a form."""


class _Infinity:
    def __init__(self, name: str, sign: int) -> None:
        self.name, self.sign = name, sign

    def __repr__(self) -> str:
        return self.name


MINVALUE: Any = _Infinity("MINVALUE", -1)
MAXVALUE: Any = _Infinity("MAXVALUE", 1)


def lt(a: Any, b: Any) -> bool:
    """a < b, with MINVALUE below and MAXVALUE above every value."""
    if a is b:
        return False
    if isinstance(a, _Infinity):
        return a.sign < 0
    if isinstance(b, _Infinity):
        return b.sign > 0
    return bool(a < b)


def _eq(a: Any, b: Any) -> bool:
    return not lt(a, b) and not lt(b, a)


def show(v: Any) -> str:
    if isinstance(v, datetime) and (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0):
        return v.strftime("%Y-%m-%d")
    return repr(v) if isinstance(v, _Infinity) else str(v)


Range = tuple[Any, Any]


# -- range and list edits ----------------------------------------------------------------------
def split_range(bound: Range, at: Sequence[Any]) -> list[Range]:
    lo, hi = bound
    if not at:
        raise PlanningError("give at least one value to split at")
    for prev, cur in zip(at, at[1:], strict=False):
        if not lt(prev, cur):
            raise PlanningError(f"split values must increase strictly: {show(prev)} then "
                                f"{show(cur)}")
    for v in at:
        if not (lt(lo, v) and lt(v, hi)):
            raise PlanningError(f"{show(v)} is not inside the partition's bound "
                                f"[{show(lo)}, {show(hi)})")
    edges = [lo, *at, hi]
    return list(zip(edges, edges[1:], strict=False))


def _sorted(ranges: Iterable[Range]) -> list[Range]:
    return sorted(ranges, key=functools.cmp_to_key(
        lambda a, b: -1 if lt(a[0], b[0]) else (1 if lt(b[0], a[0]) else 0)))


def merge_ranges(ranges: Sequence[Range]) -> Range:
    if len(ranges) < 2:
        raise PlanningError("merging needs at least two partitions")
    ordered = _sorted(ranges)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if not _eq(a[1], b[0]):
            what = "overlap" if lt(b[0], a[1]) else "are not adjacent"
            raise PlanningError(f"[{show(a[0])}, {show(a[1])}) and [{show(b[0])}, {show(b[1])}) "
                                f"{what}: only neighbours can be merged")
    return ordered[0][0], ordered[-1][1]


def rebound(left: Range, right: Range, at: Any) -> tuple[Range, Range]:
    """Move the boundary between two neighbours (left.upper == right.lower) to `at`."""
    if not _eq(left[1], right[0]):
        raise PlanningError(f"[{show(left[0])}, {show(left[1])}) and [{show(right[0])}, "
                            f"{show(right[1])}) are not neighbours")
    if not (lt(left[0], at) and lt(at, right[1])):
        raise PlanningError(f"{show(at)} is outside [{show(left[0])}, {show(right[1])}): the "
                            f"new boundary must leave both partitions non-empty bounds")
    if _eq(at, left[1]):
        raise PlanningError(f"the boundary is already at {show(at)}")
    return (left[0], at), (at, right[1])


def range_gaps(ranges: Sequence[Range], ends: bool = False) -> list[Range]:
    """Holes between ranges; with `ends`, also below the first and above the last (when they
    are not MINVALUE / MAXVALUE)."""
    ordered = _sorted(ranges)
    gaps: list[Range] = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        if lt(b[0], a[1]):
            raise PlanningError(f"[{show(a[0])}, {show(a[1])}) and [{show(b[0])}, {show(b[1])}) "
                                f"overlap")
        if lt(a[1], b[0]):
            gaps.append((a[1], b[0]))
    if ends and ordered:
        if ordered[0][0] is not MINVALUE:
            gaps.insert(0, (MINVALUE, ordered[0][0]))
        if ordered[-1][1] is not MAXVALUE:
            gaps.append((ordered[-1][1], MAXVALUE))
    return gaps


def gap_partitions(existing: Sequence[Existing], parent: str,
                   taken_names: Iterable[str] = ()) -> list[Proposal]:
    """Partitions for the holes between range partitions (fill-gaps): cells of the newest
    partition's interval anchored on its lower bound, each clipped to its hole, named after the
    newest partition's pattern (a taken name gets `_2`, `_3`, ...). A hole narrower than the
    interval, or off the grid, gets the pieces the grid cuts it into."""
    gaps = range_gaps([(e.lower, e.upper) for e in existing])
    if not gaps:
        return []
    # MINVALUE / MAXVALUE, and 'infinity' as a bound: no interval to follow
    bounded = [e for e in existing
               if not any(isinstance(v, _Infinity) or is_infinite(v) for v in (e.lower, e.upper))]
    if not bounded:
        raise PlanningError("no bounded range partition to take the new partitions' interval "
                            "from")
    newest = max(bounded, key=lambda e: e.lower)
    interval = infer_interval(newest.lower, newest.upper)
    pattern = infer_name_pattern(newest.name, newest.lower, parent, interval)
    names = set(taken_names) | {e.name for e in existing}
    out: list[Proposal] = []
    for lo, hi in gaps:
        k0, k1 = cell_of(newest.lower, interval, lo), cell_of(newest.lower, interval, hi)
        if _eq(grid_start(newest.lower, interval, k1), hi):
            k1 -= 1  # the hole ends on a cell's start: that cell is not in it
        if k1 - k0 + 1 + len(out) > MAX_PROPOSALS:
            raise PlanningError(f"the holes would need more than {MAX_PROPOSALS} partitions of "
                                f"the newest partition's size")
        for k in range(k0, k1 + 1):
            c_lo = grid_start(newest.lower, interval, k)
            c_hi = grid_start(newest.lower, interval, k + 1)
            p_lo = lo if lt(c_lo, lo) else c_lo
            p_hi = hi if lt(hi, c_hi) else c_hi
            out.append(Proposal(_free_name(pattern.name(p_lo), names), p_lo, p_hi))
    return out


def _free_name(base: str, names: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... the first not in `names` (which it joins), refused
    when longer than an identifier may be."""
    name, n = base, 1
    while name in names:
        n += 1
        name = f"{base}_{n}"
    try:
        check_identifier_length(name)
    except ValueError as exc:
        raise PlanningError(str(exc)) from None
    names.add(name)
    return name


def merge_lists(lists: Sequence[Sequence[Any]]) -> list[Any]:
    if len(lists) < 2:
        raise PlanningError("merging needs at least two partitions")
    out: list[Any] = []
    for values in lists:
        for v in values:
            if v in out:
                raise PlanningError(f"{_show_list(v)} is in two of the partitions")
            out.append(v)
    return out


def _show_list(v: Any) -> str:
    return "NULL" if v is None else show(v)


def move_list_values(source: Sequence[Any], move: Sequence[Any],
                     target: Sequence[Any] | None = None) -> tuple[list[Any], list[Any]]:
    """(source's values left, target's values after) when `move` goes from source to target
    (None: a new partition). NULL is a value like any other (None)."""
    if not move:
        raise PlanningError("give at least one value to move")
    seen: list[Any] = []
    for v in move:
        if v in seen:
            raise PlanningError(f"{_show_list(v)} is given twice")
        if v not in source:
            raise PlanningError(f"{_show_list(v)} is not a value of the source partition")
        if target is not None and v in target:
            raise PlanningError(f"{_show_list(v)} is already a value of the target partition")
        seen.append(v)
    left = [v for v in source if v not in seen]
    if not left:
        raise PlanningError("moving every value would leave the source partition with none: "
                            "merge the two partitions instead")
    return left, [*(target or []), *seen]


# -- drain-default: intervals, names, proposal -------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """The width of the newest partitions: calendar months, or a fixed step (timedelta or a
    number)."""

    months: int = 0
    step: Any = None

    def trunc_unit(self) -> str:
        """The date_trunc unit the DEFAULT's rows are summarized by (at most one period per
        partition)."""
        if self.months:
            return "year" if self.months % 12 == 0 else "month"
        if isinstance(self.step, timedelta):
            return "day" if self.step % timedelta(days=1) == timedelta(0) else "hour"
        return ""


def _midnight(v: Any) -> bool:
    return not isinstance(v, datetime) or (v.hour, v.minute, v.second, v.microsecond) == (
        0, 0, 0, 0)


def add_months(v: Any, n: int) -> Any:
    y, m = divmod(v.year * 12 + v.month - 1 + n, 12)
    day = min(v.day, calendar.monthrange(y, m + 1)[1])
    return v.replace(year=y, month=m + 1, day=day)


def infer_interval(lo: Any, hi: Any) -> Interval:
    if isinstance(lo, _Infinity) or isinstance(hi, _Infinity):
        raise PlanningError("the newest partition is unbounded: no interval to follow")
    if isinstance(lo, date):  # datetime too
        if lo.day == 1 and hi.day == 1 and _midnight(lo) and _midnight(hi):
            months = (hi.year - lo.year) * 12 + hi.month - lo.month
            if months > 0 and add_months(lo, months) == hi:
                return Interval(months=months)
        return Interval(step=hi - lo)
    if isinstance(lo, int | Decimal | float):
        return Interval(step=hi - lo)
    raise PlanningError("drain-default proposes partitions for time and number keys only")


def grid_start(anchor: Any, interval: Interval, k: int) -> Any:
    if interval.months:
        return add_months(anchor, interval.months * k)
    return anchor + interval.step * k


def cell_of(anchor: Any, interval: Interval, v: Any) -> int:
    """k such that grid_start(k) <= v < grid_start(k + 1)."""
    if interval.months:
        m = (v.year - anchor.year) * 12 + v.month - anchor.month
        k = m // interval.months
    else:
        k = int((v - anchor) // interval.step)
    while lt(v, grid_start(anchor, interval, k)):
        k -= 1
    while not lt(v, grid_start(anchor, interval, k + 1)):
        k += 1
    return k


_DATE_FORMATS = ("%Y_%m_%d", "%Y%m%d", "%Y_%m", "%Y%m", "%Y")


@dataclass(frozen=True)
class NamePattern:
    prefix: str
    fmt: str  # strftime format, or "" for a number's str()
    suffix: str

    def name(self, v: Any) -> str:
        core = v.strftime(self.fmt) if self.fmt else str(v)
        return f"{self.prefix}{core}{self.suffix}"


def infer_name_pattern(name: str, lo: Any, parent: str, interval: Interval) -> NamePattern:
    """How the newest partition's name spells its lower bound (`payment_2023` -> payment_%Y,
    `account_balances_2026_08_02` -> account_balances_%Y_%m_%d); else `<parent>_p<lower>`."""
    if isinstance(lo, date):
        for fmt in sorted(_DATE_FORMATS, key=lambda f: -len(lo.strftime(f))):
            token = lo.strftime(fmt)
            i = name.rfind(token)
            if i >= 0:
                return NamePattern(name[:i], fmt, name[i + len(token):])
        fmt = "%Y_%m_%d"
        if interval.months:
            fmt = "%Y" if interval.months % 12 == 0 else "%Y_%m"
        return NamePattern(f"{parent}_p", fmt, "")
    token = str(lo)
    i = name.rfind(token)
    if i >= 0:
        return NamePattern(name[:i], "", name[i + len(token):])
    return NamePattern(f"{parent}_p", "", "")


@dataclass(frozen=True)
class Existing:
    name: str
    lower: Any
    upper: Any


@dataclass(frozen=True)
class Proposal:
    name: str
    lower: Any
    upper: Any


def _subtract(piece: Range, taken: Sequence[Range]) -> list[Range]:
    out = [piece]
    for t_lo, t_hi in taken:
        nxt: list[Range] = []
        for lo, hi in out:
            if not (lt(t_lo, hi) and lt(lo, t_hi)):
                nxt.append((lo, hi))
                continue
            if lt(lo, t_lo):
                nxt.append((lo, t_lo))
            if lt(t_hi, hi):
                nxt.append((t_hi, hi))
        out = nxt
    return out


def propose_partitions(existing: Sequence[Existing], occupied: Sequence[tuple[Any, Any]],
                       parent: str, taken_names: Iterable[str] = (),
                       name_for: Callable[[Any], str] | None = None) -> list[Proposal]:
    """Partitions for the DEFAULT's rows. `occupied` lists closed intervals [first, last] of key
    values holding rows (a time period's first and last instant, or min and max). Cells follow
    the newest range partition: its interval, anchored on its lower bound, extended both ways;
    a cell is clipped to what existing partitions leave free, and kept when rows lie in it."""
    # MINVALUE / MAXVALUE, and 'infinity' as a bound: no interval to follow
    bounded = [e for e in existing
               if not any(isinstance(v, _Infinity) or is_infinite(v) for v in (e.lower, e.upper))]
    if not bounded:
        raise PlanningError("no bounded range partition to take the shape from")
    newest = max(bounded, key=lambda e: e.lower)
    interval = infer_interval(newest.lower, newest.upper)
    pattern = infer_name_pattern(newest.name, newest.lower, parent, interval)
    anchor = newest.lower
    taken = [(e.lower, e.upper) for e in existing]
    cells: set[int] = set()
    for first, last in occupied:
        k0, k1 = cell_of(anchor, interval, first), cell_of(anchor, interval, last)
        if k1 - k0 + len(cells) > MAX_PROPOSALS:
            raise PlanningError(f"the DEFAULT's rows would need more than {MAX_PROPOSALS} "
                                f"partitions of the newest partition's size")
        cells.update(range(k0, k1 + 1))
    names = set(taken_names) | {e.name for e in existing}
    out: list[Proposal] = []
    for k in sorted(cells):
        cell = (grid_start(anchor, interval, k), grid_start(anchor, interval, k + 1))
        for lo, hi in _subtract(cell, taken):
            if not any(not lt(last, lo) and lt(first, hi) for first, last in occupied):
                continue
            out.append(Proposal(_free_name((name_for or pattern.name)(lo), names), lo, hi))
    return out
