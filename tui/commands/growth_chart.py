"""`pgparts tree TABLE --growth`: a per-partition bar chart of size over time, 80 columns wide,
then the growth rate and the runway (tui/core/growth.py computes them)."""

from __future__ import annotations

import textwrap
from datetime import datetime

from ..core.growth import Growth, about, fill_text, interval_name, rate_text
from ..core.humanfmt import plural, short_count, size

WIDTH = 80
# the newest partitions shown; older ones are counted in the heading
MAX_LINES = 40
_EIGHTHS = " ▏▎▍▌▋▊▉"
_MARK = {"current": "now", "future": "ahead", "past": ""}


def _label(t: datetime, with_time: bool) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if with_time else t.strftime("%Y-%m-%d")


def _bar(value: float, top: float, width: int, fancy: bool) -> str:
    if top <= 0 or value <= 0:
        return ""
    eighths = max(round(value / top * width * 8), 1)  # anything above 0 shows
    full, part = divmod(eighths, 8)
    if not fancy:
        return "#" * max(full + (part >= 4), 1)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _end(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M").removesuffix(" 00:00")


def render_growth(growth: Growth, *, fancy: bool = True) -> str:
    points = list(growth.points)
    hidden = max(len(points) - MAX_LINES, 0)
    shown = points[hidden:]
    unit = interval_name(growth.interval) if growth.interval.total_seconds() > 0 else "interval"
    head = (f"growth of {growth.table.qualified} by {unit}: "
            f"{plural(len(points), 'time partition')}")
    if hidden:
        head += f" ({hidden} older not shown)"
    lines = textwrap.wrap(head, WIDTH, subsequent_indent="  ")
    if not shown:
        lines.append("  no partitions with time bounds")
    else:
        with_time = any((p.lower.hour, p.lower.minute) != (0, 0) for p in shown)
        label_w = 16 if with_time else 10
        # label, bar, mark (5), rows (5), size (8): two spaces between columns but one
        bar_w = WIDTH - label_w - 2 - 1 - 5 - 1 - 5 - 2 - 8
        top = max((p.bytes for p in shown if p.analyzed), default=0)
        lines.append(f"{'from':<{label_w}}  {'':<{bar_w}} {'':<5} {'rows':>5}  {'size':>8}")
        for p in shown:
            if p.analyzed:
                bar = _bar(p.bytes, top, bar_w, fancy)
                rows, bytes_ = short_count(p.rows), size(p.bytes)
            else:
                bar, rows, bytes_ = "", "?", "?"
            lines.append(
                f"{_label(p.lower, with_time):<{label_w}}  {bar:<{bar_w}} "
                f"{_MARK[p.state]:<5} {rows:>5}  {bytes_:>8}".rstrip()
            )
        if any(not p.analyzed for p in shown):
            lines.append("? never analyzed: its estimates read 0; ANALYZE it to chart it")
    if growth.default is not None:
        d = growth.default
        lines.extend(textwrap.wrap(
            f"DEFAULT {d.qualified}: {short_count(d.rows)} rows, {size(d.total_bytes)} "
            f"(left out of the rate)", WIDTH, subsequent_indent="  "))
    for line in _summary(growth, unit):
        # long table names: wrap rather than pass the 80 columns
        lines.extend(textwrap.wrap(line, WIDTH, subsequent_indent="  ", break_long_words=True,
                                   break_on_hyphens=False))
    return "\n".join(lines) + "\n"


def _summary(growth: Growth, unit: str) -> list[str]:
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
