"""Benchmark: `pgparts explain` on one query, the whole process, against psql doing the EXPLAIN.

Starts a private PostgreSQL 18 (or uses --dsn), creates a small partitioned table, then runs
`pgparts explain -d DSN QUERY` and `psql -d DSN -c "EXPLAIN ..."` alternately, --runs times each
(process start to exit, output discarded), and prints the medians and their ratio. Alternating
keeps both under the same machine load.

    python bench/explain_startup.py [--runs 10] [--dsn DSN] [--query SQL] [--source DIR ...]

--source DIR runs `python -S -m tui.cli` from the pgparts tree in DIR instead of the installed
`pgparts`; given several times, the versions alternate with each other and with psql (without
site, an editable install cannot redirect `tui`, so every version is run that way).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from tui.demo.localserver import FAST_TEST_SETTINGS, temporary_server

SETUP = """
DROP TABLE IF EXISTS bench_startup;
CREATE TABLE bench_startup (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
CREATE TABLE bench_startup_2024 PARTITION OF bench_startup
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE bench_startup_2025 PARTITION OF bench_startup
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE bench_startup_2026 PARTITION OF bench_startup
  FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
"""
QUERY = "SELECT * FROM bench_startup WHERE ts >= '2025-03-01' AND ts < '2025-04-01'"


def _time(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return elapsed


def _source_command(source: str, dsn: str, query: str, env: dict[str, str]
                    ) -> tuple[list[str], dict[str, str]]:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {**env, "PYTHONPATH": os.pathsep.join([os.path.abspath(source), site])}
    return [sys.executable, "-S", "-m", "tui.cli", "explain", "-d", dsn, query], env


def measure(dsn: str, runs: int, query: str, sources: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
    pgparts = shutil.which("pgparts", path=str(Path(sys.executable).parent)) or "pgparts"
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("psql is not installed")
    home = tempfile.mkdtemp(prefix="pgparts-bench-")
    # no user config, nothing cached: what a CI job's first run sees
    env = {k: v for k, v in os.environ.items() if k != "PGPARTS_CONFIG"}
    env.update(XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home, XDG_STATE_HOME=home)
    commands: list[tuple[str, list[str], dict[str, str]]] = []
    if sources:
        for source in sources:
            cmd, cmd_env = _source_command(source, dsn, query, env)
            commands.append((f"pgparts from {source}", cmd, cmd_env))
    else:
        commands.append(("pgparts explain", [pgparts, "explain", "-d", dsn, query], env))
    commands.append(("psql EXPLAIN", [psql, "-X", "-q", "-d", dsn, "-c", f"EXPLAIN {query}"],
                     env))
    for _label, cmd, cmd_env in commands:  # warm the file cache
        _time(cmd, cmd_env)
    times: dict[str, list[float]] = {label: [] for label, _, _ in commands}
    for _ in range(runs):
        for label, cmd, cmd_env in commands:
            times[label].append(_time(cmd, cmd_env))
    shutil.rmtree(home, ignore_errors=True)
    psql_median = statistics.median(times["psql EXPLAIN"])
    print(f"query: {query}")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label}: median {median * 1000:.0f} ms (min {min(values) * 1000:.0f},"
              f" max {max(values) * 1000:.0f}) over {runs} runs;"
              f" {median / psql_median:.2f}x psql")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--dsn", help="use this database instead of a private server")
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--source", action="append", default=[],
                        help="run pgparts from this source tree (python -S); repeatable, "
                        "to compare versions in the same alternation")
    args = parser.parse_args()
    if args.dsn:
        measure(args.dsn, args.runs, args.query, args.source)
        return
    with temporary_server(settings=dict(FAST_TEST_SETTINGS)) as server:
        measure(server.conninfo(), args.runs, args.query, args.source)


if __name__ == "__main__":
    main()
