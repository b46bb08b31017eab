"""The details pane: everything the catalog says about one relation, as a Rich renderable."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..core.catalog import Forest, PartNode
from ..core.plans.remedies import remedy_for, remedy_text
from .format import (
    SEVERITY_ICON,
    human_age,
    human_bytes,
    severity_name,
    thousands,
    unanalyzed_leaves,
)
from .tree_view import SEVERITY_STYLE

_PERSISTENCE = {"u": "unlogged", "t": "temporary"}


def _kind(node: PartNode, forest: Forest) -> str:
    parts: list[str] = []
    if node.is_root:
        parts.append(f"partitioned table ({node.strategy})")
    else:
        parent = forest.parent(node)
        where = f"partition of {parent.qualified}" if parent is not None else "partition"
        if node.is_partitioned:
            where = f"sub-partitioned {where} ({node.strategy})"
        elif node.relkind == "f":
            where = f"foreign-table {where}"
        parts.append(where)
    if node.is_default:
        parts.append("DEFAULT partition")
    if node.persistence in _PERSISTENCE:
        parts.append(_PERSISTENCE[node.persistence])
    if node.detach_pending:
        parts.append("DETACH PENDING")
    return " · ".join(parts)


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def render_details(
    node: PartNode,
    forest: Forest,
    *,
    findings: list[Any],
    exact_rows: tuple[int, float] | None,
    counting: bool,
    checked: bool,
    lifecycle: list[RenderableType] | None = None,
) -> RenderableType:
    """`checked`: the health checks have finished (or failed) for this forest. `lifecycle`:
    a partitioned table's policy, growth and pg_partman sections (details_extra.py), last."""
    out: list[RenderableType] = []
    title = Text(node.qualified, style="bold")
    out.append(title)
    out.append(Text(_kind(node, forest), style="italic"))
    out.append(Text(""))

    grid = _grid()
    if node.key:
        grid.add_row("key", Text(node.key))  # text, not markup: IN ('[b]') stays
    if node.bound_text:
        grid.add_row("bound", Text(node.bound_text))
    if node.is_partitioned:
        direct = len(node.children)
        has_default = node.default_partition_oid is not None
        grid.add_row(
            "partitions",
            f"{thousands(direct)} direct · {thousands(node.leaf_count)} leaves"
            + (" · has DEFAULT" if has_default else " · no DEFAULT"),
        )
    exact = forest.exact_sizes or node.exact_sizes
    how = "exact" if exact else "estimate from relpages"
    if node.is_partitioned:
        how += f", sum over {thousands(node.leaf_count)} leaves"
    heap = node.total_table_bytes - node.total_toast_bytes
    grid.add_row("size", Text.assemble((human_bytes(node.total_bytes), "bold"), f"  ({how})"))
    for label, value in (("  table", heap), ("  indexes", node.total_index_bytes),
                         ("  toast", node.total_toast_bytes)):
        grid.add_row(label, human_bytes(value))
    rows_text = Text()
    if node.rows_known:
        rows_text.append(thousands(node.rows), style="bold")
        rows_text.append(" estimate (reltuples)" if node.is_leaf else
                         " estimate (sum of partitions' reltuples)")
    elif node.is_partitioned and node.rows > 0:
        # the analyzed partitions' estimates are a lower bound for the whole
        missing = unanalyzed_leaves(node)
        rows_text.append(f"at least {thousands(node.rows)}", style="bold")
        rows_text.append(" estimate (sum of analyzed partitions' reltuples)")
        rows_text.append(f"\n{thousands(missing)} of {thousands(node.leaf_count)} partitions "
                         "never analyzed", style="yellow")
    elif node.is_partitioned:
        rows_text.append("unknown: no partition analyzed yet", style="yellow")
    else:
        rows_text.append("unknown: never analyzed", style="yellow")
    if counting:
        rows_text.append("\ncounting…", style="italic")
    elif exact_rows is not None:
        count, seconds = exact_rows
        rows_text.append(f"\n{thousands(count)}", style="bold green")
        rows_text.append(f" exact (count(*), {seconds:.2f}s)")
    else:
        rows_text.append("\npress x for an exact count(*)", style="dim")
    grid.add_row("rows", rows_text)
    if node.is_leaf:
        grid.add_row("dead rows", thousands(node.n_dead_tup))
        now = forest.loaded_at
        grid.add_row("last vacuum", human_age(node.last_vacuum, now))
        grid.add_row("last autovacuum", human_age(node.last_autovacuum, now))
        grid.add_row("last analyze", human_age(node.last_analyze, now))
        grid.add_row("last autoanalyze", human_age(node.last_autoanalyze, now))
    out.append(grid)

    out.append(Text(""))
    if not forest.indexes_loaded:
        # reading them follows the tree; if that failed, the status line says why
        out.append(Text("indexes (not read)" if checked else "indexes (reading…)", style="bold"))
    else:
        out.append(Text(f"indexes ({len(node.indexes)})", style="bold"))
    if node.indexes:
        ix = Table.grid(padding=(0, 1))
        ix.add_column(no_wrap=True)
        ix.add_column(overflow="fold")
        for info in sorted(node.indexes, key=lambda i: i.name):
            flags = []
            if info.is_primary:
                flags.append("primary key")
            elif info.is_unique:
                flags.append("unique")
            if info.relkind == "I":
                flags.append("partitioned")
            elif info.parent_index:
                flags.append("attached")
            if info.relkind != "I":
                flags.append(human_bytes(info.est_bytes))
            line = Text(info.name)
            if not info.valid:
                line.append(" INVALID", style="bold red")
            line.append(f"  {', '.join(flags)}", style="dim")
            icon = Text("✓", style="green") if info.valid else Text("✗", style="bold red")
            ix.add_row(icon, line)
        out.append(ix)
    else:
        out.append(Text("none", style="dim"))

    out.append(Text(""))
    out.append(Text(f"findings ({len(findings)})", style="bold"))
    if findings:
        for f in findings:
            sev = severity_name(f.severity)
            line = Text()
            line.append(f"{SEVERITY_ICON[sev]} {sev}", style=SEVERITY_STYLE[sev])
            line.append(f"  {f.code}", style="bold")
            out.append(line)
            out.append(Padding(Text(f.message), (0, 0, 0, 2)))
            remedy = remedy_text(f)
            if remedy:
                fixable = remedy_for(f) is not None
                hint = Text(remedy, style="green" if fixable else "dim")
                if fixable:
                    hint.append(" · f: preview it", style="bold green")
                out.append(Padding(hint, (0, 0, 0, 2)))
    else:
        out.append(Text("none", style="dim"))
    if lifecycle:
        out.append(Text(""))
        out += lifecycle
    return Group(*out)
