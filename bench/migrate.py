"""The guided migration of scenario 3's legacy payment table, against a floor and pg_partman.

    python bench/migrate.py [--rows N] [--bindir DIR] [--no-partman] [--all-steps]
        (default: 5,000,000 rows, PostgreSQL 15 from /usr/lib/postgresql/15/bin, where Debian's
        postgresql-15-partman installs pg_partman 4.7)

A private server gets the legacy table as the demo has it (tui/demo/seed.py, scenario 3):
`pay_id bigserial` primary key, `pay_ts timestamp(0) with time zone`, two own foreign keys,
indexes on `pay_ts` and `(pdm_id, pay_ts)`, duplicates by error, collisions by design (model-5
machines whose clock has minute precision), two referencing tables that have only `pay_id`
(`payment_bonus`, about 3% of the rows; `payment_ext`, about 0.5%, two keys), and a view. Rows
spread over 2019 to 2026. Printed, all measured in the same run on the same server:

- each stage's time (`pgparts migrate --interval year`, stages 1-7 and 9, run one after
  the other through the plan runner as `--apply --yes` runs them), the part of it outside its
  steps (planning, done checks, connections), the slowest steps (every step with
  `--all-steps`), and the issue's checks on their own: the comparisons' statements (timed by a
  runner hook) and the foreign key validations, in session seconds (a stage's parallel steps
  each count) and as ratios of the floor;
- the floor: psql, one transaction, a raw `INSERT ... SELECT` of the migrated rows into a
  partitioned copy with the same partitions, then the index builds the migration makes
  (read from the migrated table: primary key on (pdm_id, pay_ts), pay_ts, pay_id; the
  original's index on (pdm_id, pay_ts) is the key's, so neither builds it); target: the migration
  within 1.3x of it;
- pg_partman (4.7): `create_parent` + `partition_data_proc` (p_wait 0, one batch per yearly
  partition) from a copy of the original rows taken before the migration into a partitioned
  copy with the same three indexes, the key's as a plain one (it does nothing about duplicates,
  so a primary key on the new key would fail), timed together; pgparts must be faster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tui.core.config import PlansConfig  # noqa: E402
from tui.core.connection import Target  # noqa: E402
from tui.core.migrate.migration import Choices, next_stages, prepare, run_plan  # noqa: E402
from tui.demo.localserver import FAST_TEST_SETTINGS, temporary_server  # noqa: E402
from tui.demo.seed import create_legacy_payment  # noqa: E402

PG15 = Path("/usr/lib/postgresql/15/bin")
SETTINGS = {**FAST_TEST_SETTINGS, "shared_buffers": "1GB", "max_wal_size": "8GB",
            "autovacuum": "off", "maintenance_work_mem": "512MB", "work_mem": "64MB"}

SETUP = """
CREATE SCHEMA control;
CREATE SCHEMA legacy;
CREATE TABLE control.pdm (pdm_id int PRIMARY KEY, model int NOT NULL);
INSERT INTO control.pdm SELECT i, CASE WHEN i % 5 = 2 THEN 5 ELSE 3 END
FROM generate_series(1, 250) i;
CREATE TABLE control.tariff_info (tariff_id int PRIMARY KEY,
                                  rate_per_hour numeric(6,2) NOT NULL);
INSERT INTO control.tariff_info SELECT i, 0.5 + i * 0.25 FROM generate_series(1, 12) i;
"""


def setup(conn: psycopg.Connection, rows: int) -> None:
    """The demo's legacy.payment (tui/demo/seed.py) at `rows`, without its replayed minute,
    over 2019 to 2026, and a view on it."""
    lo = datetime(2019, 1, 1, tzinfo=timezone.utc)
    hi = datetime(2026, 11, 1, tzinfo=timezone.utc)
    conn.execute(SETUP)
    with conn.transaction():  # the seed's scratch table lives until the commit
        create_legacy_payment(conn, rows, lo, max(int((hi - lo).total_seconds()) // rows, 1),
                              over60=0)
    conn.execute("CREATE VIEW legacy.payment_daily AS"
                 " SELECT pay_ts::date AS day, count(*) AS payments FROM legacy.payment"
                 " GROUP BY 1")
    # the seed's commit flushed first: under synchronous_commit = off a VACUUM right after
    # it cannot set the rows' hint bits, so it marked no page all-visible and the table was
    # left as no table under autovacuum is (every index-only scan visiting the heap)
    conn.execute("CHECKPOINT")
    conn.execute("VACUUM ANALYZE")
    conn.execute("CHECKPOINT")


def psql(bindir: Path, dsn: str, *commands: str) -> float:
    """Run the commands through psql, each -c its own transaction (stops at the first error);
    the wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGOPTIONS"] = "-c client_min_messages=warning"
    t0 = time.monotonic()
    subprocess.run([str(bindir / "psql"), "-X", "-q", "-o", "/dev/null", "-v",
                    "ON_ERROR_STOP=1", "-d", dsn, *(a for c in commands for a in ("-c", c))],
                   check=True, env=env)
    return time.monotonic() - t0


def floor_script(conn: psycopg.Connection) -> str:
    """A partitioned copy of the migrated table (same partitions), filled by one INSERT ...
    SELECT, then the indexes the migration builds; one transaction."""
    parts = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'legacy.payment'::regclass ORDER BY 1").fetchall()
    out = [sql.SQL("BEGIN"),
           sql.SQL("CREATE TABLE legacy.floor (LIKE legacy.payment INCLUDING DEFAULTS)"
                   " PARTITION BY RANGE (pay_ts)")]
    # the server's own deparse of each bound
    out += [sql.SQL("CREATE TABLE {} PARTITION OF legacy.floor {}").format(
        sql.Identifier("legacy", f"floor_{name}"), sql.SQL(bound)) for name, bound in parts]
    out += [sql.SQL("INSERT INTO legacy.floor SELECT * FROM legacy.payment")]
    # the indexes the migration built, read from the migrated table (the server's deparse)
    for definition, primary in conn.execute(
            "SELECT pg_get_indexdef(indexrelid), indisprimary FROM pg_index"
            " WHERE indrelid = 'legacy.payment'::regclass ORDER BY indisprimary DESC, 1"):
        tail = definition[definition.index(" USING "):]
        if primary:
            cols = tail[tail.index("(") + 1:tail.rindex(")")]
            out.append(sql.SQL("ALTER TABLE legacy.floor ADD PRIMARY KEY ({})").format(
                sql.SQL(cols)))
        else:
            out.append(sql.SQL("CREATE INDEX ON legacy.floor{}").format(sql.SQL(tail)))
    out.append(sql.SQL("COMMIT"))
    return ";\n".join(s.as_string(conn) for s in out) + ";"


class StatementClock:
    """A runner hook that times every statement of a plan: from its "statement" event to the
    next event of the same step (the next statement, "before_commit" or "step_done"). Steps of
    a parallel group call it from their own threads; each keys its own step."""

    def __init__(self) -> None:
        self.plan = None
        self.open: dict[int, tuple[int, float]] = {}
        self.by_kind: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, event: str, step: int, stmt: int, runner: object) -> None:
        now = time.monotonic()
        with self.lock:
            began = self.open.pop(step, None)
            if began is not None and self.plan is not None:
                st = self.plan.steps[step - 1].statements[began[0] - 1]
                self.by_kind[st.kind] = self.by_kind.get(st.kind, 0.0) + now - began[1]
            if event == "statement":
                self.open[step] = (stmt, now)


def migrate(dsn: str) -> tuple[float, list[tuple[str, float]], list[tuple],
                               dict[str, dict[str, float]]]:
    """Every stage as `--apply --yes` runs it: the analysis before them (what `--apply` counts
    and shows first), (stage, seconds), every step's (seconds, stage, title, start), and per
    stage the seconds its statements took by kind ("verify": the comparisons)."""
    t0 = time.monotonic()
    with psycopg.connect(dsn) as conn:
        spec = prepare(conn, Choices("legacy", "payment", "pay_ts", ("pdm_id", "pay_ts"),
                                     "tracer", interval="year")).spec
        todo = next_stages(conn, spec)
    analysis = time.monotonic() - t0
    times, steps, kinds = [], [], {}
    for stage in todo:
        t0 = time.monotonic()
        clock = StatementClock()
        with psycopg.connect(dsn) as conn:
            plan = clock.plan = stage.plan(conn, spec)
        result = run_plan(Target(dsn), plan, config=PlansConfig(), write_journal=False,
                          hook=clock)
        times.append((f"{stage.number} {stage.title}", time.monotonic() - t0))
        if not result.ok:
            raise SystemExit(f"stage {stage.number} failed: {result.error}\n{result.state}")
        steps += [(o.seconds or 0.0, stage.title, o.title, o.started) for o in result.steps]
        kinds[stage.title] = clock.by_kind
    return analysis, times, steps, kinds


def wall(steps: list[tuple[float, str, str, float]]) -> float:
    """The wall time the steps took: the union of their intervals (a stage's parallel steps
    overlap, so their seconds add up to more than the time that passed)."""
    spans = sorted((start, start + s) for s, _, _, start in steps if s)
    total, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


PARTMAN = """
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman SCHEMA partman;
CREATE TABLE pmb.payment (LIKE pmb.payment_src INCLUDING DEFAULTS) PARTITION BY RANGE (pay_ts);
CREATE INDEX ON pmb.payment (pdm_id, pay_ts);
CREATE INDEX ON pmb.payment (pay_ts);
CREATE INDEX ON pmb.payment (pay_id);
"""


def partman(bindir: Path, dsn: str) -> float | str:
    """create_parent + partition_data_proc, timed together; or why it could not run."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(PARTMAN)
        except psycopg.Error as exc:
            return f"pg_partman not available: {str(exc).strip().splitlines()[0]}"
    return psql(
        bindir, dsn,
        "SELECT partman.create_parent(p_parent_table => 'pmb.payment', p_control => 'pay_ts',"
        " p_type => 'native', p_interval => 'yearly', p_premake => 1,"
        " p_start_partition => '2019-01-01')",
        # a procedure that commits after each batch: not inside a transaction block
        "CALL partman.partition_data_proc('pmb.payment', p_wait => 0,"
        " p_source_table => 'pmb.payment_src', p_quiet => true)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000, help="rows before duplicates")
    ap.add_argument("--bindir", type=Path, default=PG15, help="the PostgreSQL binaries")
    ap.add_argument("--no-partman", action="store_true", help="skip pg_partman")
    ap.add_argument("--all-steps", action="store_true", help="print every step's time")
    args = ap.parse_args()
    load = os.getloadavg()
    with temporary_server(args.bindir, SETTINGS) as server:
        admin = psycopg.connect(server.conninfo(), autocommit=True)
        admin.execute("CREATE DATABASE bench")
        dsn = server.conninfo("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            t0 = time.monotonic()
            setup(conn, args.rows)
            n, size = conn.execute(
                "SELECT count(*), pg_size_pretty(pg_total_relation_size('legacy.payment'))"
                " FROM legacy.payment").fetchone()
            setup_s = time.monotonic() - t0
            if not args.no_partman:  # the same rows, before the migration changes them
                conn.execute("CREATE SCHEMA pmb; CREATE TABLE pmb.payment_src AS"
                             " SELECT * FROM legacy.payment")
                conn.execute("VACUUM ANALYZE pmb.payment_src")
            conn.execute("CHECKPOINT")
        print(f"PostgreSQL {version}, legacy.payment: {n:,} rows, {size} with its indexes; "
              f"set up in {setup_s:.0f} s; load average {load[0]:.1f} {load[1]:.1f} "
              f"{load[2]:.1f} (2 cores)", flush=True)

        t0 = time.monotonic()
        analysis, times, steps, kinds = migrate(dsn)
        total = time.monotonic() - t0
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT count(*) FROM legacy.payment").fetchone()[0]
            parts = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent ="
                                 " 'legacy.payment'::regclass").fetchone()[0]
            conn.execute("CHECKPOINT")
            floor = psql(args.bindir, dsn, floor_script(conn))
        print(f"pgparts migrate, stage by stage ({rows:,} rows kept, {parts} partitions):")
        print(f"  {'analysis (counts shown first)':<32} {analysis:8.2f} s")
        for name, s in times:
            in_steps = wall([x for x in steps if name.endswith(f" {x[1]}")])
            print(f"  {name:<32} {s:8.2f} s  (steps {in_steps:.2f} s; planning, done checks "
                  f"and connections {s - in_steps:.2f} s)")
        print(f"  {'total':<32} {total:8.2f} s")
        print("  slowest steps:")
        for s, stage, title, _ in sorted(steps, reverse=True)[:8]:
            print(f"    {s:7.2f} s  {stage}: {title}")
        if args.all_steps:
            print("  every step, in order:")
            for s, stage, title, _ in steps:
                print(f"    {s:7.2f} s  {stage}: {title}")
        ratio = total / floor
        print("floor (psql: INSERT ... SELECT into a partitioned copy + the migration's index "
              f"builds): {floor:.2f} s")
        print(f"pgparts total = {ratio:.2f} x floor (target <= 1.3)"
              f"{'' if ratio <= 1.3 else '  MISSED'}")
        # what the floor does too: the copy (with its per-partition verification) and the
        # key and index builds; the rest is what the floor leaves out
        same = wall([x for x in steps if x[1] == "copy" or (
            x[1] == "dependencies" and x[2].startswith(("Primary key", "Index ")))])
        print(f"  of which the floor's own work (stage 6 + stage 7's key and index builds): "
              f"{same:.2f} s = {same / floor:.2f} x floor; the rest: analysis before stage 2 "
              f"{analysis:.2f} s, stages 2-3 "
              f"{sum(t for n, t in times if n[0] in '23'):.2f} s, stage 7's foreign keys, "
              f"views, grants and ANALYZE, Finish's comparison", flush=True)
        # what the issue asks for beyond the floor's work: the comparisons and the foreign
        # keys validated (session seconds: parallel steps count each)
        verify = {k: v.get("verify", 0.0) for k, v in kinds.items()
                  if k in ("copy", "dependencies", "finish")}
        fks = sum(x[0] for x in steps if x[1] == "dependencies" and x[2].startswith(
            ("Validate foreign key", "Validate the foreign key", "Back-fill")))
        print("  the issue's checks on their own (session seconds): comparisons "
              + ", ".join(f"{k} {v:.2f} s" for k, v in verify.items())
              + f" = {sum(verify.values()) / floor:.2f} x floor; foreign keys validated"
              f" (own, per partition; referencing, with their back-fill and its check) "
              f"{fks:.2f} s = {fks / floor:.2f} x floor", flush=True)
        if not args.no_partman:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
            pm = partman(args.bindir, dsn)
            if isinstance(pm, str):
                print(pm)
            else:
                print(f"pg_partman create_parent + partition_data_proc: {pm:.2f} s; pgparts is "
                      f"{pm / total:.2f}x as fast ({pm - total:+.2f} s)"
                      f"{'' if total < pm else '  MISSED'}")
        end = os.getloadavg()
        print(f"load average at the end {end[0]:.1f} {end[1]:.1f} {end[2]:.1f}")
        admin.close()


if __name__ == "__main__":
    main()
