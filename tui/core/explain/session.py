"""One EXPLAIN from text to report: check, parse, resolve, explain, reconcile.

ExplainSession keeps the connection between runs (the console's session) and can be cancelled from
another thread while a statement runs. The partition trees are read after EXPLAIN, only those of
the relations the query names and the plan scans (tree.py).
"""

from __future__ import annotations

import time

import psycopg

from ..catalog import PartNode
from ..gcpause import paused_gc
from .advice import QueryAnalysis, RelationInfo, analyse, parse_query
from .plan_tree import PlanTree
from .pruning import names_index
from .report import ExplainReport, build_report
from .resolve import resolve_relations
from .runner import ExplainRunner, RawExplain
from .statement import check_statement
from .tree import fill_bounds, load_trees


class ExplainSession:
    def __init__(self, conn: psycopg.Connection, *, timeout_seconds: float = 30.0,
                 read_only: bool = False) -> None:
        self.conn = conn
        self.runner = ExplainRunner(conn, read_only=read_only)
        self.timeout_seconds = timeout_seconds

    def cancel(self) -> bool:
        return self.runner.cancel()

    def explain(self, text: str, *, analyze: bool = False,
                bounds_limit: int | None = None) -> ExplainReport:
        """Raise StatementRefused (not explainable) or ExplainError (the server said no).

        `bounds_limit`: read the bounds of at most this many scanned partitions per table
        (a console shows a few; None reads them all, as --json needs).
        """
        statement = check_statement(text)
        analysis = parse_query(statement.text)
        relations = resolve_relations(self.conn, analysis.table_names) \
            if analysis.parsed is not None else {}
        raw = self.runner.explain(statement, analyze=analyze,
                                  timeout_seconds=self.timeout_seconds)
        with paused_gc():  # some 50,000 objects for a plan over 10,000 partitions
            return self._report(raw, analysis, relations, bounds_limit)

    def _report(self, raw: RawExplain, analysis: QueryAnalysis,
                relations: dict[tuple[str | None, str], RelationInfo],
                bounds_limit: int | None) -> ExplainReport:
        started = time.perf_counter()
        oids = {r.oid for r in relations.values()} | set(raw.locked_oids or ())
        sample = plan_relations(raw.plan)
        forest = load_trees(self.conn, oids, sample)
        # a plan relation outside the loaded trees: a plain table, or (rarely) a partition of
        # another tree flattened into the same Append; one more read settles it
        by_name = names_index(forest)
        missing = {key for n in raw.plan.walk() if n.relation is not None
                   and (key := (n.relation.schema or "public", n.relation.name)) not in by_name
                   and key not in sample}
        if missing:
            forest = load_trees(self.conn, oids, sample | missing)
            by_name = names_index(forest)
        catalog_seconds = time.perf_counter() - started
        t0 = time.perf_counter()
        analyse(analysis, relations, forest.nodes)
        report = build_report(raw, forest, analysis, self.runner.server_version, by_name)
        report.report_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        self.fill_bounds(report, bounds_limit)
        report.catalog_seconds = catalog_seconds + time.perf_counter() - t1
        return report

    def fill_bounds(self, report: ExplainReport, limit: int | None = None) -> None:
        """Read the bounds of the first `limit` scanned partitions per table (None: all). The
        partitioned levels above them came with the tree; their bounds are already there."""
        assert report.forest is not None
        nodes = report.forest.nodes
        wanted: dict[int, PartNode] = {}
        for ref in report.references:
            for p in ref.partitions if limit is None else ref.partitions[:limit]:
                wanted[p.node.oid] = p.node
                if p.node.level > 1 and p.node.parent_oid not in wanted:
                    for oid in p.node.path[1:-1]:  # middle levels (normally read already)
                        if oid in nodes:
                            wanted[oid] = nodes[oid]
        fill_bounds(self.conn, wanted.values())


def plan_relations(plan: PlanTree) -> set[tuple[str, str]]:
    """Enough relations of the plan to find its partition trees: the first scan under each
    Append and every scan outside one (not 10,000 names for a plan over 10,000 partitions)."""
    out: set[tuple[str, str]] = set()
    seen_appends: set[int] = set()
    for n in plan.walk():
        if n.relation is None:
            continue
        parent = n.parent
        if parent is not None and parent.is_append:
            if id(parent) in seen_appends:
                continue
            seen_appends.add(id(parent))
        out.add((n.relation.schema or "public", n.relation.name))
    return out
