"""Benchmark: what the pruning report adds to EXPLAIN on a table with 10,000 partitions.

Builds a private PostgreSQL 18 server (max_locks_per_transaction raised: a query that touches
every partition locks them all), creates `bench_events` with 10,000 daily range partitions, then
times, per query, the server's own EXPLAIN round trip against what pgparts adds: the catalog load,
name resolution, and the report (plan parsing, pruning per reference, advice).

    python bench/explain.py [--partitions 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from tui.core.connection import Target, connect
from tui.core.explain.advice import analyse, parse_query
from tui.core.explain.report import build_report
from tui.core.explain.resolve import resolve_relations
from tui.core.explain.runner import ExplainRunner
from tui.core.explain.session import plan_relations
from tui.core.explain.statement import check_statement
from tui.core.explain.tree import load_trees
from tui.core.localserver import FAST_TEST_SETTINGS, temporary_server

CREATE = """
CREATE TABLE bench_events (ts timestamptz NOT NULL, kind text, v int) PARTITION BY RANGE (ts);
CREATE PROCEDURE make_parts(n int) LANGUAGE plpgsql AS $$
DECLARE d date := '2000-01-01';
BEGIN
  FOR i IN 0 .. n - 1 LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF bench_events FOR VALUES FROM (%L) TO (%L)',
                   'bench_events_' || to_char(d + i, 'YYYY_MM_DD'), d + i, d + i + 1);
    IF i % 500 = 499 THEN COMMIT; END IF;
  END LOOP;
END $$;
"""

QUERIES = {
    "pruned (one day)": "SELECT * FROM bench_events"
                        " WHERE ts >= '2010-06-01' AND ts < '2010-06-02'",
    "unpruned (no key condition)": "SELECT count(*) FROM bench_events WHERE v = 1",
    "wrapped key (ts::date)": "SELECT count(*) FROM bench_events WHERE ts::date = '2010-06-01'",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    settings = dict(FAST_TEST_SETTINGS)
    settings.update({"max_connections": "20", "max_locks_per_transaction": "4000"})
    with temporary_server(settings=settings) as server:
        with psycopg.connect(server.conninfo(), autocommit=True) as admin:
            admin.execute(CREATE)
            t0 = time.perf_counter()
            admin.execute("CALL make_parts(%s)", (args.partitions,))
            print(f"created {args.partitions} partitions in {time.perf_counter() - t0:.1f} s")
        conn = connect(Target(server.conninfo()), statement_timeout="300s")
        runner = ExplainRunner(conn)
        print(f"PostgreSQL {conn.info.server_version}, {args.partitions} partitions,"
              f" median of {args.runs} runs (after one warm-up)\n")
        header = (f"{'query':<30} {'EXPLAIN':>9} {'catalog':>9} {'resolve':>9} {'report':>9}"
                  f" {'overhead':>9}  verdict")
        print(header)
        print("-" * len(header))
        for label, query in QUERIES.items():
            samples: dict[str, list[float]] = {k: [] for k in
                                               ("server", "catalog", "resolve", "report")}
            verdict = ""
            for run in range(args.runs + 1):
                t1 = time.perf_counter()
                statement = check_statement(query)
                analysis = parse_query(statement.text)
                relations = resolve_relations(conn, analysis.table_names)
                t2 = time.perf_counter()
                raw = runner.explain(statement, timeout_seconds=300)
                t3 = time.perf_counter()
                forest = load_trees(conn, {r.oid for r in relations.values()}
                                    | set(raw.locked_oids or ()), plan_relations(raw.plan))
                t3b = time.perf_counter()
                analyse(analysis, relations, forest.nodes)
                report = build_report(raw, forest, analysis, runner.server_version)
                t4 = time.perf_counter()
                verdict = report.references[0].verdict
                if run == 0:
                    continue  # warm-up: cold catalog caches
                samples["server"].append(raw.server_seconds)
                samples["catalog"].append(t3b - t3)
                samples["resolve"].append(t2 - t1)
                # plan JSON parsing happens inside runner.explain, after the server's reply
                samples["report"].append(t4 - t3b + (t3 - t2 - raw.server_seconds))
            med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
            overhead = med["catalog"] + med["resolve"] + med["report"]
            print(f"{label:<30} {med['server']:>7.0f}ms {med['catalog']:>7.0f}ms"
                  f" {med['resolve']:>7.1f}ms {med['report']:>7.0f}ms {overhead:>7.0f}ms"
                  f"  {verdict}")
        conn.close()
    print("\nEXPLAIN: the server's round trip (FORMAT JSON, VERBOSE, SETTINGS, in a rolled-back"
          " transaction); overhead = catalog (the touched trees only) + name resolution +"
          " report (parse the JSON plan, map scans to partitions, advice).")


if __name__ == "__main__":
    main()
