"""What the EXPLAIN screen draws, as Rich text: the pruning report and the plan-tree labels.

Pure functions over the core's report objects (no widgets, no database), so they can be read and
tested without a running console. The verdict colours follow what the plan shows:

- green ("pruned"): partitions were pruned and no level of the tree kept all of its partitions;
- yellow ("partial"): some partitions were pruned, but some level kept every partition it has
  (e.g. the week is pruned, its HASH sub-partitions are all scanned);
- red ("none"): every partition is scanned.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.catalog import Forest, PartNode
from ..core.explain import ExplainReport, TableReference
from ..core.explain.plan_tree import PlanNode
from .format import fit, sort_nodes, thousands

PRUNED, PARTIAL, NONE, EMPTY = "pruned", "partial", "none", "empty"
VERDICT_STYLE = {PRUNED: "bold green", PARTIAL: "bold yellow", NONE: "bold red", EMPTY: "dim"}
VERDICT_MARK = {PRUNED: "✓", PARTIAL: "◐", NONE: "✗", EMPTY: "·"}
NAME_MAX = 40


# -- the verdict -------------------------------------------------------------------------------
def pruning_state(ref: TableReference) -> str:
    """PRUNED / PARTIAL / NONE / EMPTY for one reference (see the module docstring)."""
    if ref.status == "empty":
        return EMPTY
    if ref.status == "full":
        return NONE
    return PARTIAL if unpruned_levels(ref) else PRUNED


def unpruned_levels(ref: TableReference) -> list[PartNode]:
    """Partitioned tables (at or below the reported one) on the way to a scanned partition that
    kept every one of their populated partitions: the levels where nothing was pruned."""
    alive: set[int] = set()
    for p in ref.partitions:
        if p.executed is not False:  # never executed (ANALYZE) counts as pruned at run time
            alive.update(p.node.path)
    out: list[PartNode] = []
    seen: set[int] = set()
    for p in ref.partitions:
        if p.executed is False:
            continue
        path = p.node.path
        start = path.index(ref.table.oid) if ref.table.oid in path else 0
        for oid in path[start:-1]:
            if oid in seen:
                continue
            seen.add(oid)
            node = p.forest.nodes.get(oid)
            if node is None or not node.is_partitioned:
                continue
            populated = [c for c in node.children
                         if (c.is_leaf or c.leaf_count > 0) and not c.detach_pending]
            if len(populated) > 1 and all(c.oid in alive for c in populated):
                out.append(node)
    return out


# -- the pruning report -------------------------------------------------------------------------
def _elide(name: str, table: PartNode) -> str:
    """account_balances_2026_11_08_hash_2 under account_balances -> …_2026_11_08_hash_2: the
    table's name is on the line above, and the panes are narrow."""
    if name.startswith(table.name + "_") and len(name) > len(table.name) + 1:
        return "…" + name[len(table.name):]
    return name


def _counts(ref: TableReference) -> Text:
    """Two aligned lines: partitions / scanned, pruned at plan time / start-up, never executed."""
    nums = [thousands(v) for v in (ref.partitions_total, ref.partitions_scanned,
                                   ref.pruned_at_plan, ref.pruned_at_startup)]
    w = max(len(n) for n in nums)
    never = "–" if ref.never_executed is None else thousands(ref.never_executed)
    text = Text()
    rows = [("partitions", nums[0], "pruned at plan time", nums[2], None, None),
            ("scanned   ", nums[1], "pruned at start-up ", nums[3], "never executed", never)]
    for label, value, label2, value2, label3, value3 in rows:
        text.append(f"  {label} ")
        text.append(value.rjust(w), style="bold")
        text.append(f"   {label2} ")
        text.append(value2.rjust(w), style="bold")
        if label3 is not None:
            text.append(f"   {label3} ")
            text.append(str(value3), style="bold" if ref.never_executed is not None else "dim")
        text.append("\n")
    return text


def render_reference(ref: TableReference, bounds_limit: int | None) -> Group:
    state = pruning_state(ref)
    style = VERDICT_STYLE[state]
    text = Text()
    text.append(f"{VERDICT_MARK[state]} ", style=style)
    text.append(ref.table.qualified, style="bold")
    if ref.label and ref.label not in (ref.table.name, ref.table.qualified):
        text.append(f" (as {ref.label})", style="dim")
    text.append("\n  ")
    text.append(ref.verdict, style=style)
    text.append("\n")
    text.append_text(_counts(ref))

    levels = unpruned_levels(ref) if state == PARTIAL else []
    if levels:
        keys = sorted({_key_text(n) for n in levels})
        text.append("  nothing pruned at ", style="yellow")
        text.append(", ".join(keys), style="yellow")
        where = [n for n in levels if n.oid != ref.table.oid]
        if where:
            names = ", ".join(_elide(n.name, ref.table) for n in where[:3])
            more = f" and {len(where) - 3} more" if len(where) > 3 else ""
            text.append(f" (in {names}{more})", style="dim")
        text.append("\n")
    text.rstrip()
    parts: list[RenderableType] = [text]
    # why before which: the advice is what the operator acts on
    why = Table.grid(padding=(0, 1), pad_edge=False)
    why.add_column(no_wrap=True)
    why.add_column(ratio=1)
    for note in ref.notes:
        why.add_row(Text("  ·", style="dim"), Text(note, style="dim"))
    for a in ref.advice:
        why.add_row(Text("  ▸", style="yellow"), Text(a.message))
        if a.suggestion:
            why.add_row(Text(""), Text.assemble(("try: ", "bold"), (a.suggestion, "green")))
    if why.row_count:
        parts.append(why)

    text = Text()
    shown = ref.partitions if bounds_limit is None else ref.partitions[:bounds_limit]
    if shown:
        text.append("  scanned:\n", style="dim")
        names = [_elide(p.node.name, ref.table) if p.node.schema == ref.table.schema
                 else p.node.qualified for p in shown]
        width = min(max(len(n) for n in names), NAME_MAX)
        for p, name in zip(shown, names, strict=True):
            line = Text("    ")
            line.append(fit(name, width), style="dim" if p.executed is False else "")
            line.append("  ")
            line.append(p.bounds, style="cyan")
            if p.executed is False:
                line.append("  never executed", style="green")
            elif not p.in_plan:
                line.append("  removed at start-up with NULL arguments", style="dim")
            text.append_text(line)
            text.append("\n")
        if len(ref.partitions) > len(shown):
            text.append(f"    … and {thousands(len(ref.partitions) - len(shown))} more "
                        "(pgparts explain --json lists them all)\n", style="dim")
    text.rstrip()
    if text:
        parts.append(text)
    return Group(*parts)


def _key_text(node: PartNode) -> str:
    if node.key_expressions:
        return node.key_expressions
    cols = ", ".join(node.key_columns)
    return f"{(node.strategy or '').upper()} ({cols})"


def render_report(report: ExplainReport, bounds_limit: int | None) -> Group:
    parts: list[RenderableType] = []
    if not report.references:
        parts.append(Text("No partitioned table is scanned by this query.", style="dim"))
    for i, ref in enumerate(report.references):
        if i:
            parts.append(Text(""))
        parts.append(render_reference(ref, bounds_limit))
    for a in report.general:
        parts.append(Text.assemble(("▸ ", "yellow"), a.text()))
    return Group(*parts)


def summary_line(report: ExplainReport, seconds: float, timings: bool = True) -> Text:
    """The status line after a run: mode, timings (left out for reproducible screenshots), one
    mark per table."""
    raw = report.raw
    text = Text()
    mode = "EXPLAIN ANALYZE" if raw.analyze else "EXPLAIN"
    if raw.generic:
        mode += " (generic plan)"
    text.append(mode, style="bold")
    plan = report.plan
    if timings and plan.planning_ms is not None:
        text.append(f" · planning {plan.planning_ms:.1f} ms")
    if timings and plan.execution_ms is not None:
        text.append(f" · execution {plan.execution_ms:.1f} ms")
    if timings:
        text.append(f" · {seconds:.2f} s in all", style="dim")
    if raw.analyze:
        text.append(" · rolled back", style="dim")
    for ref in report.references:
        state = pruning_state(ref)
        text.append("  ")
        text.append(f"{VERDICT_MARK[state]} {ref.table.name} "
                    f"{ref.partitions_executed}/{ref.partitions_total}",
                    style=VERDICT_STYLE[state])
    return text


# -- the plan tree ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AppendInfo:
    """An Append/Merge Append that gathers partitions of one reference."""

    ref: TableReference
    top: bool  # the outermost Append of the reference (the one that gets the summary)


def append_index(report: ExplainReport) -> dict[int, AppendInfo]:
    out: dict[int, AppendInfo] = {}
    for ref in report.references:
        for i, node in enumerate(ref.append_nodes):
            out.setdefault(id(node), AppendInfo(ref, i == 0))
    return out


def scan_index(report: ExplainReport) -> dict[int, TableReference]:
    """The reference each partition scan of the plan belongs to."""
    return {id(s): ref for ref in report.references for s in ref.scan_nodes}


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def figures(node: PlanNode) -> Text:
    """'cost 12.5 · rows 100', then with ANALYZE 'actual 0.12 ms · rows 5 ×3' or 'never
    executed'."""
    text = Text()
    if node.total_cost is not None:
        text.append(f"cost {_number(node.total_cost)}", style="dim")
    if node.plan_rows is not None:
        text.append(f" · rows {_number(node.plan_rows)}", style="dim")
    if node.actual_loops is not None:
        if node.never_executed:
            text.append("  never executed", style="green")
        else:
            text.append("  actual ", style="cyan")
            time = node.actual_total_time
            text.append(f"{time:,.3f} ms" if time is not None else "? ms", style="cyan")
            text.append(f" · rows {_number(node.actual_rows)}", style="cyan")
            if node.actual_loops and node.actual_loops > 1:
                text.append(f" ×{node.actual_loops} loops", style="cyan")
    return text


def append_title(node: PlanNode, info: AppendInfo) -> Text:
    """'Append over 4 of 52 partitions of account_balances' (+ what was removed / never ran)."""
    ref = info.ref
    scans = [s for s in node.walk() if s.is_scan]
    if info.top:
        kept = ref.partitions_scanned
        total = ref.partitions_total
        noun = "partition" if total == 1 else "partitions"
        title = f"{node.node_type} over {kept} of {thousands(total)} {noun} of {ref.table.name}"
    else:
        title = f"{node.node_type} over {len(scans)} partitions"
    text = Text(title, style="bold")
    extra = []
    if node.subplans_removed:
        extra.append(f"{node.subplans_removed} removed at start-up")
    never = sum(1 for s in scans if s.never_executed)
    if never:
        extra.append(f"{never} never executed")
    if extra:
        text.append(f" ({', '.join(extra)})", style="green")
    return text


def plan_label(node: PlanNode, ref: TableReference | None = None) -> str:
    """Like PlanNode.label() but shorter for narrow panes: no 'public.', a partition's name
    elided under its table's (…_2026_11_08_hash_2), the aliases PostgreSQL gives each
    partition of one reference (account_balances_1, a_2, ...) left out."""
    table = ref.table if ref is not None else None
    rel = node.relation
    if rel is None or node.node_type == "ModifyTable":
        return node.label()
    text = node.node_type
    name = rel.name
    if table is not None and (rel.schema or "public") == table.schema:
        name = _elide(rel.name, table)
    elif rel.schema and rel.schema != "public":
        name = f"{rel.schema}.{rel.name}"
    text += f" on {name}"
    alias = rel.alias
    if alias and alias != rel.name and not (ref is not None and _auto_alias(alias, ref)):
        text += f" {alias}"
    if node.subplan_name:
        text = f"{node.subplan_name}: {text}"
    return text


def _auto_alias(alias: str, ref: TableReference) -> bool:
    names = {ref.table.name, ref.label}
    if alias in names:
        return True
    base, _, digits = alias.rpartition("_")
    return base in names and digits.isdigit()


def node_label(node: PlanNode, info: AppendInfo | None = None,
               ref: TableReference | None = None) -> Text:
    """The tree line of a plan node: what it does, then its figures. `info`: the node is an
    Append over partitions; `ref`: the node scans a partition of that reference."""
    text = append_title(node, info) if info is not None else Text(plan_label(node, ref))
    if ref is not None and not ref.append_nodes:
        text.append(f"  1 of {thousands(ref.partitions_total)} partitions of "
                    f"{ref.table.name}", style="green")
    text.append("  ")
    text.append_text(figures(node))
    return text


def condition_label(name: str, value: str) -> Text:
    return Text.assemble((f"{name}: ", "dim italic"), (value, "dim"))


# -- the starting text ---------------------------------------------------------------------------
def starting_query(node: PartNode | None, forest: Forest | None) -> str:
    """A query to start from for the table selected in the tree: its root table, constrained to
    the newest range partition that holds rows when the key allows (a query that prunes, ready
    to edit)."""
    if node is None or forest is None:
        return ""
    root = forest.nodes.get(node.root_oid) or node
    if not root.is_partitioned:
        return ""
    table = sql.Identifier(root.schema, root.name)
    where: sql.Composable = sql.SQL("")
    if root.strategy == "range" and len(root.key_columns) == 1 and not root.key_expressions:
        col = sql.Identifier(root.key_columns[0])
        ranged = [c for c in sort_nodes(root.children, "bound") if c.bound is not None
                  and c.bound.kind == "range" and c.bound.lower and c.bound.upper
                  and c.bound.lower[0].is_literal and c.bound.upper[0].is_literal]
        # the newest partition holding rows (future partitions made ahead are empty)
        filled = [c for c in ranged if c.rows > 0] or ranged
        if filled:
            last = filled[-1].bound
            assert last is not None
            where = sql.SQL("\nWHERE {col} >= {lo}\n  AND {col} < {hi}").format(
                col=col, lo=sql.Literal(last.lower[0].text), hi=sql.Literal(last.upper[0].text))
    elif len(root.key_columns) == 1 and not root.key_expressions:
        where = sql.SQL("\nWHERE {col} = ").format(col=sql.Identifier(root.key_columns[0]))
    return sql.SQL("SELECT *\nFROM {table}{where}").format(table=table, where=where).as_string()
