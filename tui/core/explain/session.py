"""One EXPLAIN from text to report: check, parse, resolve, explain, reconcile.

ExplainSession keeps the connection between runs (the console's session) and can be cancelled from
another thread while a statement runs. The partition trees are read after EXPLAIN, only those of
the relations the query names and the plan scans (tree.py).
"""

from __future__ import annotations

import time

import psycopg

from .advice import analyse, parse_query
from .plan import Plan
from .report import ExplainReport, build_report
from .resolve import resolve_relations
from .runner import ExplainRunner
from .statement import check_statement
from .tree import load_trees


class ExplainSession:
    def __init__(self, conn: psycopg.Connection, *, timeout_seconds: float = 30.0) -> None:
        self.conn = conn
        self.runner = ExplainRunner(conn)
        self.timeout_seconds = timeout_seconds

    def cancel(self) -> bool:
        return self.runner.cancel()

    def explain(self, text: str, *, analyze: bool = False) -> ExplainReport:
        """Raise StatementRefused (not explainable) or ExplainError (the server said no)."""
        statement = check_statement(text)
        analysis = parse_query(statement.text)
        relations = resolve_relations(self.conn, analysis.table_names) \
            if analysis.parsed is not None else {}
        raw = self.runner.explain(statement, analyze=analyze,
                                  timeout_seconds=self.timeout_seconds)
        started = time.perf_counter()
        forest = load_trees(self.conn, {r.oid for r in relations.values()} | set(
            raw.locked_oids or ()), plan_relations(raw.plan))
        catalog_seconds = time.perf_counter() - started
        t0 = time.perf_counter()
        analyse(analysis, relations, forest.nodes)
        report = build_report(raw, forest, analysis, self.runner.server_version)
        report.catalog_seconds = catalog_seconds
        report.report_seconds = time.perf_counter() - t0
        return report


def plan_relations(plan: Plan) -> set[tuple[str, str]]:
    return {(n.relation.schema or "public", n.relation.name)
            for n in plan.walk() if n.relation is not None}
