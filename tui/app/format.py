"""Pure formatting for the console: sizes, row counts, ages, bars, sort keys, filtering.

Sizes and counts come from tui.core.humanfmt, which the command line uses too.

No Textual here and no SQL: these take numbers and catalog objects and return text, so they are
unit-testable and the widgets stay free of PostgreSQL knowledge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import humanize

from ..core import humanfmt
from ..core.catalog import Forest, PartNode, in_tree_order


def human_bytes(n: int) -> str:
    """The one size style of pgparts (tui.core.humanfmt): '0 B', '8.0 KiB', '1.2 GiB'."""
    return humanfmt.size(n)


def human_rows(n: int, known: bool = True) -> str:
    """'950', '12k', '4.2M', '3.1G' (short for tree rows). When some partitions were never
    analyzed, what the others hold is a lower bound ('≥400k'); '?' when nothing is known."""
    if not known:
        return f"≥{humanfmt.short_count(n)}" if n > 0 else "?"
    return humanfmt.short_count(n)


thousands = humanfmt.count


def unanalyzed_leaves(node: PartNode) -> int:
    """How many leaves under `node` (itself for a leaf) were never analyzed (rows unknown)."""
    return sum(1 for leaf in node.leaves() if not leaf.rows_known)


def postgres_version(server_version: int) -> str:
    """180001 -> '18.1', 150013 -> '15.13' (server_version_num since PostgreSQL 10)."""
    return f"{server_version // 10000}.{server_version % 10000}"


def human_age(when: datetime | None, now: datetime) -> str:
    """'never', or '3 days ago (2024-01-07 10:00 UTC)', relative to `now` (the load time)."""
    if when is None:
        return "never"
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = now - when
    iso = when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{humanize.naturaltime(delta)} ({iso})"


_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: int, maximum: int, width: int = 8) -> str:
    """A left-aligned bar of `width` cells, in eighths of a cell; a non-zero value shows at least
    one eighth so it never reads as empty."""
    if width <= 0:
        return ""
    if maximum <= 0 or value <= 0:
        return " " * width
    eighths = round(min(value / maximum, 1.0) * width * 8)
    eighths = max(eighths, 1)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def fit(text: str, width: int) -> str:
    """Cut to `width` cells with an ellipsis, or pad to it."""
    if len(text) > width:
        return text[: max(width - 1, 0)] + "…"
    return text.ljust(width)


# -- ordering -----------------------------------------------------------------------------------
SORTS = ("bound", "size", "name")


def sort_nodes(nodes: Iterable[PartNode], how: str) -> list[PartNode]:
    items = list(nodes)
    if how == "size":
        return sorted(items, key=lambda n: (-n.total_bytes, n.name))
    if how == "name":
        return sorted(items, key=lambda n: (n.name, n.schema))
    # the order `pgparts tree` prints: partitions by bound, tables by name
    return in_tree_order(items)


# -- filtering ----------------------------------------------------------------------------------
def filter_forest(forest: Forest, text: str) -> tuple[set[int], set[int], int]:
    """Nodes to show for a name filter: matches, their ancestors, and everything under a match.

    Returns (visible oids, oids to expand so every match is on screen, number of matches). The
    match is a case-insensitive substring of the name or the schema-qualified name.
    """
    needle = text.strip().casefold()
    visible: set[int] = set()
    expand: set[int] = set()
    matches = 0
    for node in forest.walk():
        if needle in node.name.casefold() or needle in node.qualified.casefold():
            matches += 1
            for sub in node.walk():
                visible.add(sub.oid)
            parent = forest.parent(node)
            while parent is not None:
                visible.add(parent.oid)
                expand.add(parent.oid)
                parent = forest.parent(parent)
    return visible, expand, matches


def ancestors(forest: Forest, oid: int) -> list[int]:
    out: list[int] = []
    node = forest.nodes.get(oid)
    while node is not None and node.parent_oid:
        out.append(node.parent_oid)
        node = forest.nodes.get(node.parent_oid)
    return out


# -- findings, whatever the shape of their severity -------------------------------------------
SEVERITY_ORDER = ("info", "notice", "warning", "critical")


def severity_name(severity: object) -> str:
    """'critical' / 'warning' / 'info' from an enum, its value or a string."""
    raw = getattr(severity, "value", severity)
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = getattr(severity, "name", str(raw))
    name = str(raw).lower()
    if name in ("error", "crit", "critical"):
        return "critical"
    if name in ("warn", "warning"):
        return "warning"
    return name if name in SEVERITY_ORDER else "info"


def severity_rank(severity: object) -> int:
    return SEVERITY_ORDER.index(severity_name(severity))


SEVERITY_ICON = {"critical": "✖", "warning": "▲", "notice": "●", "info": "●"}
