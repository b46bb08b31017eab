"""How fast the partition tree loads at 10,000 partitions: raw query, loader, CLI, console.

    python bench/tree_load.py [--weeks 2500] [--hash 4] [--dsn DSN]

Creates account_balances-like weeks (RANGE by week, each HASH-partitioned into 4 leaves, one
index) on a private throwaway server, then prints:

- the catalog query alone through psql (\\timing, output discarded) and load_forest() (query +
  Python objects, connection already open) reading the same (indexes=False, as the console does
  to show the tree) and with the indexes too (as `tree` and `check` do), five of each run in
  alternation so that all see the same load on the machine: their medians and median ratios;
- `pgparts tree --json` end to end as a subprocess (start-up, connect, load, print), median of 3;
- the console: from starting the app until the root rows are shown (and how much of that the
  worker spent connecting and in load_forest), and until the 2,500 weeks of the expanded root
  are all in the tree, median of 3;
- the machine's load average, before and after (other work on the machine skews every figure).

Targets: loader within 1.5x of the raw query; tree visible within 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tui.app.app import PgpartsApp  # noqa: E402
from tui.app.tree_view import PartitionTree  # noqa: E402
from tui.core.catalog import load_forest, tree_query  # noqa: E402
from tui.core.config import Config  # noqa: E402
from tui.core.connection import Target, connect  # noqa: E402
from tui.demo.localserver import FAST_TEST_SETTINGS, embedded_bindir, temporary_server  # noqa: E402


def create_layout(dsn: str, weeks: int, modulus: int, batch: int = 100) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE account_balances (timestamp timestamptz NOT NULL,"
            " account_address varchar(255) NOT NULL, usd_value numeric(18,2) NOT NULL,"
            " activity_id text NOT NULL) PARTITION BY RANGE (timestamp)"
        )
        conn.execute("CREATE INDEX ON account_balances (account_address, timestamp)")
        start = date(2000, 1, 2)  # a Sunday
        for first in range(0, weeks, batch):
            with conn.transaction():
                for w in range(first, min(first + batch, weeks)):
                    lo = start + timedelta(weeks=w)
                    hi = lo + timedelta(weeks=1)
                    week = f"account_balances_{lo:%Y_%m_%d}"
                    conn.execute(sql.SQL(
                        "CREATE TABLE {} PARTITION OF account_balances"
                        " FOR VALUES FROM ({}) TO ({}) PARTITION BY HASH (account_address)"
                    ).format(sql.Identifier(week), sql.Literal(str(lo)), sql.Literal(str(hi))))
                    for r in range(modulus):
                        conn.execute(sql.SQL(
                            "CREATE TABLE {} PARTITION OF {}"
                            " FOR VALUES WITH (modulus {}, remainder {})"
                        ).format(sql.Identifier(f"{week}_hash_{r}"), sql.Identifier(week),
                                 sql.Literal(modulus), sql.Literal(r)))
        conn.execute("ANALYZE")


def _psql_ms(psql: Path, dsn: str, query: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [str(psql), "-X", "-q", "-d", dsn, "-o", "/dev/null", "-c", "\\timing on", "-c", query],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    return float(re.findall(r"Time: ([\d.]+) ms", out)[-1])


@dataclass
class LoaderFigures:
    raw_ms: float  # the tree query through psql
    tree_ms: float  # load_forest(indexes=False): what the console needs to show the tree
    full_ms: float  # load_forest(): the tree and its indexes, as `tree` and `check` read them
    tree_ratio: float
    full_ratio: float
    relations: int


def raw_and_loader_ms(dsn: str, runs: int = 5) -> LoaderFigures:
    """Medians of the raw query through psql and of load_forest without and with indexes, run
    in alternation so that all see the same load on the machine; also the medians of the
    per-round ratios."""
    psql = embedded_bindir() / "psql"
    env = dict(os.environ, PGOPTIONS="-c jit=off -c TimeZone=UTC -c DateStyle=ISO")
    raw, tree, full = [], [], []
    count = 0
    with connect(Target(dsn), purpose="bench") as conn:
        query = tree_query(int(conn.info.server_version)).as_string(conn)
        load_forest(conn)  # warm the catalog caches of this backend
        for _ in range(runs):
            raw.append(_psql_ms(psql, dsn, query, env))
            t0 = time.perf_counter()
            forest = load_forest(conn, indexes=False)
            tree.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            load_forest(conn)
            full.append((time.perf_counter() - t0) * 1000)
            count = len(forest.nodes)
    return LoaderFigures(
        statistics.median(raw), statistics.median(tree), statistics.median(full),
        statistics.median(b / a for a, b in zip(raw, tree, strict=True)),
        statistics.median(b / a for a, b in zip(raw, full, strict=True)),
        count,
    )


def cli_ms(dsn: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tui.cli", "tree", "--json", "-d", dsn],
                       stdout=subprocess.DEVNULL, check=True,
                       cwd=Path(__file__).resolve().parent.parent)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def _console_once(dsn: str) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    app = PgpartsApp(Target(dsn, label="bench"), Config(), read_only=False)
    async with app.run_test(size=(140, 40)) as pilot:
        tree = app.screen.query_one(PartitionTree)
        while not tree.root.children:
            await pilot.pause(0.005)
        visible = time.perf_counter() - t0
        root = tree.root.children[0]
        expected = len(app.forest.roots[0].children)
        t1 = time.perf_counter()
        root.expand()
        while len(root.children) < expected:
            await pilot.pause(0.005)
        await pilot.pause()
        expanded = time.perf_counter() - t1
        # keys still answer after the big expand
        await pilot.press("end")
    return visible * 1000, expanded * 1000, app.last_load_seconds * 1000


def console_ms(dsn: str, runs: int = 3) -> tuple[float, float, float]:
    """Medians of: roots visible, weeks expanded, and the worker's connect + load_forest."""
    results = [asyncio.run(_console_once(dsn)) for _ in range(runs)]
    visible, expanded, worker = (statistics.median(r[i] for r in results) for i in range(3))
    return visible, expanded, worker


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(dsn: str, weeks: int) -> None:
    print(f"load average before measuring (1, 5, 15 min): {load_average()}")
    f = raw_and_loader_ms(dsn)
    print(f"relations in the tree:             {f.relations}")
    print(f"raw catalog query (psql, median 5): {f.raw_ms:8.0f} ms")
    print(f"load_forest, tree (median 5):       {f.tree_ms:8.0f} ms  ({f.tree_ratio:.2f}x raw, "
          "median of rounds run in alternation)")
    print(f"load_forest + indexes (median 5):   {f.full_ms:8.0f} ms  ({f.full_ratio:.2f}x raw)")
    print(f"pgparts tree --json (median 3):     {cli_ms(dsn):8.0f} ms")
    visible, expanded, worker = console_ms(dsn)
    print(f"console: roots visible (median 3):  {visible:8.0f} ms")
    print(f"  of which connect + load_forest:   {worker:8.0f} ms  (in the worker thread)")
    print(f"console: {weeks} weeks expanded:     {expanded:8.0f} ms")
    print(f"load average after (1, 5, 15 min): {load_average()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=2500)
    parser.add_argument("--hash", type=int, default=4)
    parser.add_argument("--dsn", help="measure this database, which already holds the layout "
                        "(created by this script's create_layout), instead of a new server")
    args = parser.parse_args()
    if args.dsn:
        measure(args.dsn, args.weeks)
        return 0
    settings = dict(FAST_TEST_SETTINGS, max_locks_per_transaction="2048",
                    autovacuum="off")
    with temporary_server(settings=settings) as server:
        dsn = server.conninfo()
        t0 = time.perf_counter()
        create_layout(dsn, args.weeks, args.hash)
        print(f"created {args.weeks} weeks x {args.hash} hash = {args.weeks * args.hash} leaf "
              f"partitions in {time.perf_counter() - t0:.1f} s")
        measure(dsn, args.weeks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
