"""`pgparts tree [TABLE] [--json] [--exact-sizes]`: print the partition trees.

Text output is an indented tree (name, bound, total size, rows, findings) for people; --json is one
object per relation in tree order, for scripts. Sizes are the catalog's estimates (no locks) unless
--exact-sizes asks for pg_table_size/pg_indexes_size, which take brief locks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg

from ..context import CliError, Context
from ..core.catalog import Forest, PartNode, in_tree_order, load_forest
from ..core.errors import first_line as _first_line
from ..core.findings import (
    Finding,
    FindingCounts,
    check_forest,
    findings_by_oid,
    subtree_counts,
    worst_severity,
)
from ..core.growth import growth_dict, growth_of, is_time_partitioned
from ..core.humanfmt import count, plural, size
from ..core.partman import PartmanConfig, PartmanState, read_partman
from ..core.policy import resolve_policies, thresholds_by_oid
from .growth_chart import render_growth

_MARK = {"critical": "!!", "warning": "!", "info": "i"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "table", nargs="?", default=None,
        help="show only this table's subtree ('name' or 'schema.name'; quote odd names)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per relation")
    parser.add_argument(
        "--exact-sizes", action="store_true",
        help="measure sizes with pg_table_size/pg_indexes_size (takes brief locks) "
        "instead of the estimates from the last VACUUM/ANALYZE",
    )
    parser.add_argument(
        "--growth", action="store_true",
        help="for TABLE, range partitioned by time: rows and size per partition, the growth "
        "rate and the runway (with --json: one object)",
    )


# -- shared with `check` -------------------------------------------------------------------------
def load(ctx: Context, *, exact_sizes: bool = False, purpose: str = "cli") -> Forest:
    """Connect, read the forest, close; database errors become one-line CliErrors."""
    return _load(ctx, exact_sizes, purpose, partman=False)[0]


def _load(
    ctx: Context, exact_sizes: bool, purpose: str, *, partman: bool
) -> tuple[Forest, PartmanState]:
    """The forest and, when asked, pg_partman's configuration, over one connection."""
    conn = ctx.connect(purpose=purpose)
    try:
        forest = load_forest(conn, exact_sizes=exact_sizes)
        return forest, (read_partman(conn) if partman else PartmanState())
    except psycopg.errors.LockNotAvailable:
        raise CliError(
            "measuring exact sizes waited too long for a lock that another session holds; "
            "try again, or leave out --exact-sizes"
        ) from None
    except psycopg.Error as exc:
        raise CliError(f"reading the partition catalog failed: {_first_line(exc)}") from None
    finally:
        conn.close()


def warn_policy_problems(forest: Forest, ctx: Context) -> None:
    """Say on stderr which [policy] sections match no table here: they would silently do
    nothing."""
    if not ctx.config.policies:
        return
    for problem in resolve_policies(forest, ctx.config.policies).problems:
        print(one_line(f"pgparts: warning: {problem}"), file=sys.stderr)


def select(forest: Forest, table: str | None) -> list[PartNode]:
    """The roots to show: every tree, or the subtree of TABLE."""
    if table is None:
        return in_tree_order(forest.roots)
    try:
        return [forest.find(table)]
    except (LookupError, ValueError) as exc:
        raise CliError(str(exc)) from None


def emit(text: str) -> None:
    """Write text, degrading characters the terminal's encoding cannot show."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = text.encode(encoding, "replace").decode(encoding, "replace")
    sys.stdout.write(text)
    sys.stdout.flush()


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}


def one_line(text: str) -> str:
    """Escape control characters (quoted names may hold newlines) so one item stays one line."""
    return text.translate(_CONTROL)


def _can_draw() -> bool:
    try:
        "├─│└→∞".encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# -- formatting ----------------------------------------------------------------------------------
def human_rows(node: PartNode) -> str:
    n = node.rows
    if not node.rows_known:
        # some partitions were never analyzed: what is known is a lower bound
        return f"≥{_count(n)} rows" if n > 0 else "? rows"
    return f"{_count(n)} rows"


_count = count
human_size = size


def _bound_label(node: PartNode) -> str:
    if node.is_root:
        return node.key
    label = node.bound.short() if node.bound is not None else node.bound_text or "?"
    if node.is_partitioned:
        label = f"{label}  by {node.key}"
    return label


def _flags(node: PartNode, findings: list[Finding], below: FindingCounts | None = None) -> str:
    """Markers, then the findings: the node's own, or on a tree's top line everything found in
    the tree (the most severe mark, the count per severity and the codes), so the first line
    says what the rest holds."""
    parts: list[str] = []
    if node.detach_pending:
        parts.append("(detach pending)")
    if node.relkind == "f":
        parts.append("(foreign)")
    if node.persistence == "u":
        parts.append("(unlogged)")
    if below is not None and below.worst is not None and below.total > len(findings):
        parts.append(f"{_MARK[below.worst]} {below.describe()} in this tree")
    worst = worst_severity(findings)
    if worst is not None:
        codes = ", ".join(dict.fromkeys(f.code for f in findings))
        parts.append(f"{_MARK[worst]} {codes}")
    return "  ".join(parts)


def render_text(roots: list[PartNode], by_oid: dict[int, list[Finding]], exact: bool,
                counts: dict[int, FindingCounts] | None = None) -> str:
    """The trees under `roots`, siblings in tree order (by bound); each top line also sums up
    the findings below it (`counts`: findings.subtree_counts)."""
    fancy = _can_draw()
    tee, last, pipe, blank = ("├─ ", "└─ ", "│  ", "   ") if fancy else ("|- ", "`- ", "|  ", "   ")
    rows: list[tuple[str, str, str, str, str]] = []

    def visit(node: PartNode, prefix: str, connector: str) -> None:
        label = _bound_label(node)
        if not fancy:
            label = label.replace("→", "->").replace("-∞", "MINVALUE").replace("+∞", "MAXVALUE")
        rows_text = human_rows(node)
        if not fancy:
            rows_text = rows_text.replace("≥", ">=")
        below = counts.get(node.oid) if counts is not None and not prefix + connector else None
        rows.append((
            prefix + connector + one_line(node.qualified), one_line(label),
            human_size(node.total_bytes), rows_text,
            _flags(node, by_oid.get(node.oid, []), below),
        ))
        child_prefix = prefix + ((blank if connector == last else pipe) if connector else "")
        children = in_tree_order(node.children)
        for i, child in enumerate(children):
            visit(child, child_prefix, last if i == len(children) - 1 else tee)

    for root in roots:
        visit(root, "", "")
    if not rows:
        return "no partitioned tables\n"
    w_name = max(len(r[0]) for r in rows)
    w_bound = max(len(r[1]) for r in rows)
    w_size = max(len(r[2]) for r in rows)
    w_rows = max(len(r[3]) for r in rows)
    lines = [
        f"{n:<{w_name}}  {b:<{w_bound}}  {s:>{w_size}}  {r:>{w_rows}}  {f}".rstrip()
        for n, b, s, r, f in rows
    ]
    relations = sum(1 for root in roots for _ in root.walk())
    leaves = sum(root.leaf_count for root in roots)
    how = "exact sizes" if exact else "sizes estimated as of the last VACUUM/ANALYZE"
    lines.append(f"{plural(relations, 'relation')}, {plural(leaves, 'leaf partition')}; {how}")
    return "\n".join(lines) + "\n"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def node_dict(
    forest: Forest, node: PartNode, findings: list[Finding], partman: PartmanConfig | None = None
) -> dict[str, Any]:
    parent = forest.parent(node)
    return {
        "oid": node.oid,
        "schema": node.schema,
        "name": node.name,
        "qualified": node.qualified,
        "parent": parent.qualified if parent is not None else None,
        "level": node.level,
        "relkind": node.relkind,
        "strategy": node.strategy if node.is_partitioned else None,
        "key": node.key if node.is_partitioned else None,
        "bound": node.bound_text,
        "is_default": node.is_default,
        "detach_pending": node.detach_pending,
        "total_bytes": node.total_bytes,
        "table_bytes": node.total_table_bytes,
        "index_bytes": node.total_index_bytes,
        "toast_bytes": node.total_toast_bytes,
        "exact_sizes": node.exact_sizes,
        "rows_estimate": node.rows,
        "rows_known": node.rows_known,
        "leaf_count": node.leaf_count,
        "last_analyze": _iso(node.last_analyzed),
        "last_vacuum": _iso(node.last_vacuumed),
        "findings": sorted({f.code for f in findings}) if findings else [],
        # pg_partman's part_config row when it manages this table (read-only)
        "partman": partman.as_dict() if partman is not None else None,
    }


def _walk_in_order(node: PartNode) -> Iterator[PartNode]:
    """Depth first, siblings in tree order: the JSON lists relations as the text shows them."""
    yield node
    for child in in_tree_order(node.children):
        yield from _walk_in_order(child)


def json_lines(items: list[dict[str, Any]]) -> str:
    """A JSON array with one object per line: grep-able, and written by json's C encoder
    (indent= falls back to the pure-Python one, 5x slower on 10,000 partitions)."""
    if not items:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]\n"


def _growth(args: argparse.Namespace, ctx: Context, forest: Forest, node: PartNode) -> int:
    if not is_time_partitioned(node):
        raise CliError(
            f"{node.qualified} is not range partitioned by a timestamp or date; "
            f"--growth needs such a table"
        )
    policies = resolve_policies(forest, ctx.config.policies).by_oid
    limits = thresholds_by_oid(forest, ctx.config.findings, policies)
    limit = limits.get(node.oid, ctx.config.findings).oversized_bytes
    growth = growth_of(forest, node, limit_bytes=limit)
    assert growth is not None  # time partitioned, checked above
    if args.json:
        emit(json.dumps(growth_dict(growth), indent=2) + "\n")
    else:
        emit(one_line_each(render_growth(growth, fancy=_can_draw())))
    return 0


def one_line_each(text: str) -> str:
    return "".join(one_line(line) + "\n" for line in text.splitlines())


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.growth and args.table is None:
        raise CliError("--growth needs a TABLE: pgparts tree TABLE --growth")
    forest, partman = _load(ctx, args.exact_sizes, "tree", partman=not args.growth)
    roots = select(forest, args.table)
    if args.growth:
        warn_policy_problems(forest, ctx)
        return _growth(args, ctx, forest, roots[0])
    warn_policy_problems(forest, ctx)
    findings = check_forest(forest, ctx.config.findings, policies=ctx.config.policies)
    by_oid = findings_by_oid(findings)
    if args.json:
        out = [
            node_dict(forest, node, by_oid.get(node.oid, []), partman.configs.get(node.oid))
            for root in roots for node in _walk_in_order(root)
        ]
        emit(json_lines(out))
    else:
        emit(render_text(roots, by_oid, forest.exact_sizes, subtree_counts(forest, findings)))
        emit("".join(one_line(line) + "\n" for line in partman_lines(roots, partman)))
    return 0


def partman_lines(roots: list[PartNode], partman: PartmanState) -> list[str]:
    """What pg_partman says about the shown tables: one line per managed table."""
    if not partman.installed:
        return []
    shown = {node.oid: node for root in roots for node in root.walk()}
    lines = [
        f"pg_partman {partman.version} manages {shown[oid].qualified}: {config.describe()}"
        for oid, config in partman.configs.items() if oid in shown
    ]
    if partman.problem is not None:
        version = f" {partman.version}" if partman.version else ""
        lines.append(f"pg_partman{version} is installed, but {partman.problem}")
    return lines
