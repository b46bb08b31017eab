"""Consolidating one week of account_balances while a writer inserts into the current week.

    python bench/consolidate.py [ROWS]      (default 1,000,000)

A private PostgreSQL 18 server gets scenario 1's table: weekly RANGE partitions, each HASH x4,
PK (account_address, timestamp, activity_id) and five more indexes. One old week holds ROWS rows.
Printed:
- the floor: a raw INSERT ... SELECT of the week's rows into a plain table plus the same index
  builds, run by psql in one transaction, under the same concurrent load (writer + sampler),
  measured before the consolidation and again after it (from the consolidated partition); the
  ratio uses their mean, so a load that changes during the run weighs on both sides;
- the consolidation's total time, per step, and how each verification was done;
- the longest ACCESS EXCLUSIVE hold on the parent: the runner's DETACH-to-COMMIT time, and the
  longest run of pg_locks samples (every 2 ms) that showed the lock granted; and the time of the
  short transaction that removes the change counter's trigger from the new partition (its
  ACCESS EXCLUSIVE on that partition lasts at most that long);
- the writer's longest stall (one autocommit INSERT per iteration into the current week).
Targets: total <= 1.3 x floor; parent ACCESS EXCLUSIVE < 100 ms; writer stall < 250 ms.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locksampler import LockSampler  # noqa: E402  (bench/, sys.path[0] when run)

from tui.core.config import PlansConfig  # noqa: E402
from tui.core.connection import Target  # noqa: E402
from tui.core.plans import PlanRunner  # noqa: E402
from tui.core.plans.consolidate import build_consolidation_plan  # noqa: E402
from tui.demo.localserver import FAST_TEST_SETTINGS, embedded_bindir, temporary_server  # noqa: E402

SETTINGS = {**FAST_TEST_SETTINGS, "shared_buffers": "768MB", "max_wal_size": "4GB",
            "autovacuum": "off"}
INDEXES = [["timestamp"], ["activity_id"], ["account_address"],
           ["account_address", "timestamp"], ["activity_id", "account_address"]]
OLD = "2024-01-07"


def setup(conn: psycopg.Connection, rows: int, current: str) -> None:
    conn.execute(
        'CREATE TABLE account_balances ("timestamp" timestamptz NOT NULL,'
        " account_address varchar(255) NOT NULL, usd_value decimal(18,2) NOT NULL,"
        " activity_id text NOT NULL, data jsonb NOT NULL,"
        ' PRIMARY KEY (account_address, "timestamp", activity_id))'
        ' PARTITION BY RANGE ("timestamp")')
    for cols in INDEXES:
        conn.execute(sql.SQL("CREATE INDEX ON account_balances ({})").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in cols)))
    for start in (OLD, current):
        week = f"account_balances_{start.replace('-', '_')}"
        end = (datetime.fromisoformat(start) + timedelta(days=7)).date().isoformat()
        conn.execute(sql.SQL(
            "CREATE TABLE {} PARTITION OF account_balances FOR VALUES FROM ({}) TO ({})"
            " PARTITION BY HASH (account_address)").format(
            sql.Identifier(week), sql.Literal(start), sql.Literal(end)))
        for r in range(4):
            conn.execute(sql.SQL(
                "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (modulus 4, remainder {})"
            ).format(sql.Identifier(f"{week}_hash_{r}"), sql.Identifier(week), sql.Literal(r)))
    # 250 activities' worth of accounts x 168 hours, like the scenario (scaled down)
    accounts = max(rows // (168 * 4), 1)
    conn.execute(sql.SQL(
        "INSERT INTO account_balances"
        " SELECT {old}::timestamptz + (h * interval '1 hour'), 'rdx1q' || md5(a::text),"
        " (random() * 10000)::numeric(18,2),"
        " (ARRAY['xrd_holding','lsu_holding','dex_swap','lending'])[1 + k],"
        " jsonb_build_object('a', a, 'h', h, 'k', k, 'src', 'bench')"
        " FROM generate_series(1, {acc}) a, generate_series(0, 167) h, generate_series(0, 3) k"
    ).format(old=sql.Literal(OLD), acc=sql.Literal(accounts)))
    conn.execute("VACUUM ANALYZE account_balances")
    conn.execute("CHECKPOINT")


def floor_seconds(server, dsn_db: str, week: str) -> float:
    """psql: INSERT ... SELECT into a plain table and the same index builds, one transaction."""
    ddl = [
        "BEGIN;",
        "CREATE TABLE floor_copy (LIKE account_balances INCLUDING DEFAULTS);",
        f"INSERT INTO floor_copy SELECT * FROM {week};",
        'ALTER TABLE floor_copy ADD PRIMARY KEY (account_address, "timestamp", activity_id);',
    ]
    for cols in INDEXES:
        ddl.append("CREATE INDEX ON floor_copy (" + ", ".join(f'"{c}"' for c in cols) + ");")
    ddl += ["COMMIT;", "DROP TABLE floor_copy;"]
    psql = Path(server.bindir) / "psql"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    t0 = time.monotonic()
    subprocess.run([str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn_db,
                    "-c", "\n".join(ddl[:-1])], check=True, env=env)
    took = time.monotonic() - t0
    subprocess.run([str(psql), "-X", "-q", "-d", dsn_db, "-c", ddl[-1]], check=True, env=env)
    return took


class Writer(threading.Thread):
    def __init__(self, dsn: str, week_start: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.week_start, self.prefix = dsn, week_start, prefix
        self.stop = threading.Event()
        self.count = 0
        self.max_stall = 0.0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                self.count += 1
                t0 = time.monotonic()
                conn.execute(
                    "INSERT INTO account_balances VALUES (%s::timestamptz + make_interval("
                    "secs => %s), %s, 1, 'dex_swap', '{}')",
                    (self.week_start, self.count % 600000, f"{self.prefix}-{self.count}"))
                self.max_stall = max(self.max_stall, time.monotonic() - t0)
                time.sleep(0.001)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    today = datetime.now(UTC).date()
    current = (today - timedelta(days=(today.weekday() + 1) % 7)).isoformat()
    with temporary_server(embedded_bindir(), SETTINGS) as server:
        admin = psycopg.connect(server.conninfo(), autocommit=True)
        admin.execute("CREATE DATABASE bench")
        dsn = server.conninfo("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0 = time.monotonic()
            setup(conn, rows, current)
            n = conn.execute("SELECT count(*) FROM account_balances").fetchone()[0]
            size = conn.execute(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid)))"
                " FROM pg_class c WHERE c.relname LIKE 'account_balances_2024_01_07_hash_%'"
                " AND c.relkind = 'r'").fetchone()[0]
        print(f"PostgreSQL 18, {n:,} rows in week {OLD} (4 hash partitions, PK + 5 indexes), "
              f"{size}; set up in {time.monotonic() - t0:.1f} s")
        # the floor runs under the same concurrent load as the plan: the writer and the sampler
        load = Writer(dsn, current, "floor"), LockSampler(dsn, "account_balances")
        for t in load:
            t.start()
        week = f"account_balances_{OLD.replace('-', '_')}"
        floors = [floor_seconds(server, dsn, week)]
        for t in load:
            t.stop.set()
            t.join()
        admin.execute("CHECKPOINT")
        with psycopg.connect(dsn, autocommit=True) as conn:
            plan = build_consolidation_plan(conn, "account_balances", weeks=[
                f"account_balances_{OLD.replace('-', '_')}"])
        writer, sampler = Writer(dsn, current, "writer"), LockSampler(dsn, "account_balances")
        writer.start()
        sampler.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        result = PlanRunner(Target(dsn), plan, config=PlansConfig()).run()
        total = time.monotonic() - t0
        time.sleep(0.3)
        writer.stop.set()
        sampler.stop.set()
        writer.join()
        sampler.join()
        if not result.ok:
            print(f"FAILED: {result.error}\n{result.state}")
            sys.exit(1)
        load = Writer(dsn, current, "floor2"), LockSampler(dsn, "account_balances")
        for t in load:
            t.start()
        floors.append(floor_seconds(server, dsn, f"{week}_consolidated"))
        for t in load:
            t.stop.set()
            t.join()
        floor = sum(floors) / len(floors)
        print(f"floor (psql: INSERT ... SELECT + PK + 5 index builds, same concurrent load): "
              f"{floors[0]:.2f} s before, {floors[1]:.2f} s after; mean {floor:.2f} s")
        for o in result.steps:
            print(f"  step {o.index}: {o.title}: {o.seconds:.2f} s")
            if o.verification:
                print(f"    {o.verification}")
        hold = max(o.hold_seconds or 0 for o in result.steps if o.title.startswith("Swap"))
        # one short transaction: its whole time bounds the lock wait plus the hold
        part_hold = max((o.seconds for o in result.steps
                         if o.title.startswith("Remove the change counter")), default=0.0)
        ratio = total / floor
        print(f"consolidation total: {total:.2f} s = {ratio:.2f} x floor "
              f"(target <= 1.3){'' if ratio <= 1.3 else '  MISSED'}")
        print(f"longest ACCESS EXCLUSIVE on the parent: runner DETACH..COMMIT "
              f"{hold * 1000:.1f} ms; pg_locks samples {sampler.longest * 1000:.1f} ms "
              f"({sampler.samples:,} samples) (target < 100 ms)")
        print(f"ACCESS EXCLUSIVE on the new partition to remove the change counter's trigger "
              f"(the whole step, wait included): {part_hold * 1000:.1f} ms")
        print(f"writer: {writer.count:,} inserts into the current week, longest stall "
              f"{writer.max_stall * 1000:.1f} ms (target < 250 ms)")
        print(f"bytes before {result.details['bytes_before']:,}, after "
              f"{result.details['bytes_after']:,}; estimated saving "
              f"{result.details['est_bytes_saved']:,}")
        admin.close()


if __name__ == "__main__":
    main()
