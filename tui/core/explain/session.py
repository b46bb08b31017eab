"""One EXPLAIN from text to report: check, parse, resolve, explain, reconcile.

ExplainSession keeps the connection and the catalog between runs (the console's session) and can
be cancelled from another thread while a statement runs.
"""

from __future__ import annotations

import time

import psycopg

from ..catalog import Forest, load_forest
from .advice import analyse, parse_query
from .report import ExplainReport, build_report
from .resolve import resolve_relations
from .runner import ExplainRunner
from .statement import check_statement


class ExplainSession:
    def __init__(self, conn: psycopg.Connection, *, timeout_seconds: float = 30.0) -> None:
        self.conn = conn
        self.runner = ExplainRunner(conn)
        self.timeout_seconds = timeout_seconds
        self.forest: Forest | None = None

    def cancel(self) -> bool:
        return self.runner.cancel()

    def refresh_catalog(self) -> Forest:
        self.forest = load_forest(self.conn)
        return self.forest

    def explain(self, text: str, *, analyze: bool = False,
                reload_catalog: bool = True) -> ExplainReport:
        """Raise StatementRefused (not explainable) or ExplainError (the server said no)."""
        statement = check_statement(text)
        started = time.perf_counter()
        if reload_catalog or self.forest is None:
            self.refresh_catalog()
        assert self.forest is not None
        catalog_seconds = time.perf_counter() - started
        analysis = parse_query(statement.text)
        relations = resolve_relations(self.conn, analysis.table_names) \
            if analysis.parsed is not None else {}
        raw = self.runner.explain(statement, analyze=analyze,
                                  timeout_seconds=self.timeout_seconds)
        t0 = time.perf_counter()
        analyse(analysis, relations, self.forest.nodes)
        report = build_report(raw, self.forest, analysis, self.runner.server_version)
        report.catalog_seconds = catalog_seconds
        report.report_seconds = time.perf_counter() - t0
        return report
