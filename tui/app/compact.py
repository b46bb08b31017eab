"""Short forms for narrow terminals: a range bound as its start and span ('2026-08-02 +1w').

The full bound of a weekly partition, '2026-08-02 → 2026-08-09', takes 23 cells; at 80 columns
the tree and the consolidation table cannot spare them next to a name, a size and a row count.
The start and the span say the same thing in 14. Bounds that are not a single temporal range
column with a whole span (MINVALUE, several columns, numbers) keep their full form without the
spaces around the arrow.
"""

from __future__ import annotations

from datetime import datetime

from ..core.bounds import Bound


def _stamp(ts: datetime) -> str:
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%d %H:%M")


def span_text(lo: datetime, hi: datetime) -> str | None:
    """'+1w', '+3d', '+1mo', '+1y', '+6h', '+15min' for a whole span; None otherwise."""
    if hi <= lo:
        return None
    same_clock = (lo.hour, lo.minute, lo.second, lo.microsecond) == \
        (hi.hour, hi.minute, hi.second, hi.microsecond)
    if same_clock and lo.day == hi.day:
        months = (hi.year - lo.year) * 12 + hi.month - lo.month
        if months % 12 == 0:
            return f"+{months // 12}y"
        return f"+{months}mo"
    delta = hi - lo
    if delta.microseconds:
        return None
    if delta.seconds == 0:
        days = delta.days
        return f"+{days // 7}w" if days % 7 == 0 else f"+{days}d"
    if delta.days:
        return None
    if delta.seconds % 3600 == 0:
        return f"+{delta.seconds // 3600}h"
    if delta.seconds % 60 == 0:
        return f"+{delta.seconds // 60}min"
    return None


def start_and_span(lo: datetime, hi: datetime) -> str | None:
    """'2026-08-02 +1w' for [2026-08-02, 2026-08-09); None when the span is not a whole one."""
    span = span_text(lo, hi)
    return f"{_stamp(lo)} {span}" if span is not None else None


def compact_bound(bound: Bound | None, full: str) -> str:
    """The short form of `bound` whose full tree form is `full`."""
    if bound is None or bound.kind != "range" or len(bound.lower) != 1 or len(bound.upper) != 1:
        return full
    lo, hi = bound.lower[0].as_datetime(), bound.upper[0].as_datetime()
    if lo is not None and hi is not None:
        text = start_and_span(lo, hi)
        if text is not None:
            return text
    return full.replace(" → ", "→")
