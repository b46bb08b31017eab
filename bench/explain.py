"""Benchmark: what the pruning report adds to EXPLAIN on a table with 10,000 partitions.

Builds a private PostgreSQL 18 server (max_locks_per_transaction raised: a query that touches
every partition locks them all), creates `bench_events` with 10,000 daily range partitions, then
times, per query, the server's own EXPLAIN round trip against what pgparts adds: the catalog load,
name resolution, and the report (plan parsing, pruning per reference, advice).

    python bench/explain.py [--partitions 10000] [--runs 5] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import psycopg

from tui.core.connection import Target, connect
from tui.core.explain import ExplainSession
from tui.demo.localserver import FAST_TEST_SETTINGS, temporary_server

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
    ap.add_argument("--dsn", help="use this server instead of a private one (bench_events is"
                    " created there unless it exists; it needs max_locks_per_transaction"
                    " >= partitions / max_connections x 100)")
    args = ap.parse_args()
    if args.dsn:
        prepare(args.dsn, args.partitions)
        run(args.dsn, args)
        return
    settings = dict(FAST_TEST_SETTINGS)
    settings.update({"max_connections": "20", "max_locks_per_transaction": "4000"})
    with temporary_server(settings=settings) as server:
        prepare(server.conninfo(), args.partitions)
        run(server.conninfo(), args)


def prepare(dsn: str, partitions: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        if admin.execute("SELECT to_regclass('bench_events')").fetchone() != (None,):
            count = admin.execute("SELECT count(*) FROM pg_inherits"
                                  " WHERE inhparent = 'bench_events'::regclass").fetchone()
            print(f"bench_events exists with {count[0] if count else 0} partitions")
            return
        admin.execute(CREATE)
        t0 = time.perf_counter()
        admin.execute("CALL make_parts(%s)", (partitions,))
        print(f"created {partitions} partitions in {time.perf_counter() - t0:.1f} s")


def run(dsn: str, args: argparse.Namespace) -> None:
    conn = connect(Target(dsn), statement_timeout="300s", user_search_path=True)
    session = ExplainSession(conn, timeout_seconds=300)
    print(f"PostgreSQL {conn.info.server_version}, {args.partitions} partitions,"
          f" median of {args.runs} runs (after one warm-up), load average"
          f" {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    header = (f"{'query':<30} {'bounds':>6} {'EXPLAIN':>9} {'catalog':>9} {'report':>9}"
              f" {'overhead':>9}  verdict")
    print(header)
    print("-" * len(header))
    for label, query in QUERIES.items():
        for limit in (20, None):  # the console/text shows 20 per table; --json lists all
            samples: dict[str, list[float]] = {k: [] for k in
                                               ("server", "catalog", "report", "overhead")}
            verdict = ""
            for run in range(args.runs + 1):
                t0 = time.perf_counter()
                report = session.explain(query, bounds_limit=limit)
                for ref in report.references:  # format the bounds shown, as the output does
                    for p in ref.partitions if limit is None else ref.partitions[:limit]:
                        _ = p.bounds
                total = time.perf_counter() - t0
                verdict = report.references[0].verdict
                if run == 0:
                    continue  # warm-up: cold catalog caches
                samples["server"].append(report.raw.server_seconds)
                samples["catalog"].append(report.catalog_seconds)
                samples["report"].append(report.report_seconds)
                samples["overhead"].append(total - report.raw.server_seconds)
            med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
            shown = "all" if limit is None else str(limit)
            print(f"{label:<30} {shown:>6} {med['server']:>7.0f}ms {med['catalog']:>7.0f}ms"
                  f" {med['report']:>7.0f}ms {med['overhead']:>7.0f}ms  {verdict}")
    conn.close()
    print(f"\nload average afterwards {os.getloadavg()[0]:.2f}")
    print("\nEXPLAIN: the server's round trip (FORMAT JSON, VERBOSE, SETTINGS, in a rolled-back"
          " transaction, including receiving the JSON). catalog: the touched partition trees and"
          " the bounds of the partitions shown. report: pruning per reference and advice."
          " overhead: everything pgparts adds to the EXPLAIN round trip (statement check,"
          " sqlglot parse, name resolution, plan parsing, catalog, report, formatting the bounds"
          " shown).")


if __name__ == "__main__":
    main()
