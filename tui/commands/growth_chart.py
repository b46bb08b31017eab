"""`pgparts tree TABLE --growth`: a per-partition bar chart of size over time, 80 columns wide,
then the growth rate and the runway (tui/core/growth.py computes them)."""

from __future__ import annotations

import textwrap
from datetime import datetime

from ..core.growth import Growth, interval_name, summary_lines
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
    for line in summary_lines(growth, unit):
        # long table names: wrap rather than pass the 80 columns
        lines.extend(textwrap.wrap(line, WIDTH, subsequent_indent="  ", break_long_words=True,
                                   break_on_hyphens=False))
    return "\n".join(lines) + "\n"
