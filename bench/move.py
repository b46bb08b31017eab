"""Moving rows online (split, drain-default) while writers run, against the manual procedure.

    python bench/move.py [--rows 2000000] [--drain-rows N] [--only split|drain] [--pause S]

A private PostgreSQL 18 server gets scenario 2's table, built with the demo seed's SQL
(tui/demo/seed.py): control.payment RANGE (pay_ts) by year, PK (pay_ts, pdm_id), indexes on
(pdm_id, pay_ts) and (tracer), foreign keys to pdm, tariff_info and payment_rtp, and five
foreign keys from bonus_disposable, payment_bonus, payment_ext (two) and payment_recent.

- split: payment_2023 holds ROWS rows; it is split at 2023-07-01 into payment_2023 and
  payment_2023_h2 by the split kind's plan and the plan runner (what `pgparts split --apply
  --yes` runs), while four writers run: one inserts into payment_2023 (both halves), one
  updates (amounts, and keys across the split point) and deletes rows of it, one inserts into
  the newest partition (payment_2026), one inserts and deletes payment_bonus rows referencing
  payment_2023.
- drain: a database without payment_2026, whose DEFAULT holds DRAIN_ROWS rows of 2026 (and the
  seed's stray rows of 2027); drain-default moves them into new partitions while the same four
  writers run (the first two on the DEFAULT's rows, the third on payment_2025).

Each database is copied (CREATE DATABASE ... TEMPLATE) before the move, and the manual
procedure runs on the copy with no writer: drop the foreign keys that reference the table,
detach, create, copy, delete, re-attach, re-create the keys, in one transaction during which
every writer of the table would be blocked.

Printed per move: the floor (one INSERT ... SELECT of the moved rows into a plain table plus
the PK and index builds, one transaction, no writers; measured before and after the move, the
ratio uses the mean); the plan's total time and steps; the longest ACCESS EXCLUSIVE hold on
the parent (the runner's timing of the swap, and the longest run of pg_locks samples, every
2 ms, showing it granted); each writer's operations and longest stall (one transaction);
whether every committed write is present (row count and order-independent checksum of
control.payment and control.payment_bonus against the state before plus what each writer
logged as committed); the manual procedure's phases and total, i.e. the time writers would be
blocked; and what the guarantees that cost work the floor does not do take on their own, as
a ratio of the floor (the verification, validating the parent's own keys on the new tables,
validating the referencing keys after the swap), with the lowest total they leave. Targets
(issue 10): total <= 1.3 x floor; parent ACCESS EXCLUSIVE < 50 ms; every writer's longest
stall < 250 ms; every write present.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locksampler import LockSampler  # noqa: E402  (bench/, sys.path[0] when run)

from tui.core.catalog import load_forest  # noqa: E402
from tui.core.config import Config, PlansConfig  # noqa: E402
from tui.core.connection import Target, connect  # noqa: E402
from tui.core.moves.changelog import row_hash  # noqa: E402
from tui.core.plans import PlanRunner  # noqa: E402
from tui.core.plans.registry import kind_named  # noqa: E402
from tui.core.plans.steps.moves import referencing_keys  # noqa: E402
from tui.demo import seed  # noqa: E402
from tui.demo.localserver import FAST_TEST_SETTINGS, embedded_bindir, temporary_server  # noqa: E402

SETTINGS = {**FAST_TEST_SETTINGS, "shared_buffers": "768MB", "max_wal_size": "4GB",
            "autovacuum": "off"}
PAYMENT = sql.Identifier("control", "payment")
BONUS = sql.Identifier("control", "payment_bonus")
PDMS = 250
CURRENT_YEAR = 2026
TARGETS = {"ratio": 1.3, "hold_ms": 50.0, "stall_ms": 250.0}


def utc(y: int, m: int = 1, d: int = 1) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def years(lo: int, hi: int) -> sql.Composed:
    return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(sql.Literal(utc(lo)),
                                                          sql.Literal(utc(hi)))


# -- the database ------------------------------------------------------------------------------
def build(conn: psycopg.Connection, now: datetime, big_year: int, big_rows: int,
          drained_year: int | None, small: int) -> None:
    """Scenario 2's payment table from the seed's SQL: yearly partitions up to CURRENT_YEAR
    (except `drained_year`, whose rows land in the DEFAULT), `big_rows` rows in `big_year`,
    `small` rows in every other range (the current year's up to `now`), the seed's stray rows
    of next year in the DEFAULT, then the seed's keys, indexes and referencing tables."""
    conn.execute("CREATE SCHEMA control")
    seed._x(conn, seed._PAYMENT_REFS_SQL, pdms=sql.Literal(PDMS))
    conn.execute(seed._PAYMENT_TABLE_SQL)

    def part(name: str, bound: sql.Composable) -> None:
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
            sql.Identifier("control", name), PAYMENT, bound))

    part("payment_2000_2019", sql.SQL("FOR VALUES FROM (MINVALUE) TO ({})").format(
        sql.Literal(utc(2020))))
    part("payment_2020_2021", years(2020, 2022))
    ranges = [(utc(2015), utc(2020), small, "2000_2019"), (utc(2020), utc(2022), small,
                                                            "2020_2021")]
    for year in range(2022, CURRENT_YEAR + 1):
        if year != drained_year:
            part(f"payment_{year}", years(year, year + 1))
        hi = min(utc(year + 1), now)
        ranges.append((utc(year), hi, big_rows if year in (big_year, drained_year) else small,
                       str(year)))
    part("payment_default", sql.SQL("DEFAULT"))
    ranges.append((utc(CURRENT_YEAR + 1, 2, 1), utc(CURRENT_YEAR + 1, 2, 3), 60, "stray"))
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE demo_pay_ranges (tag text, lo timestamptz, step bigint,"
                     " n int, salt int, id_base bigint) ON COMMIT DROP")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO demo_pay_ranges VALUES (%s, %s, %s, %s, %s, %s)", [
                (tag, lo, max(1, int((hi - lo).total_seconds()) // n), n, k * 17,
                 (k + 1) * 10_000_000) for k, (lo, hi, n, tag) in enumerate(ranges)])
        seed._x(conn, seed._PAYMENT_INSERT_SQL, pdms=sql.Literal(PDMS))
    seed._x(conn, seed._PAYMENT_AFTER_SQL, now=sql.Literal(now))
    conn.execute("VACUUM ANALYZE")
    conn.execute("CHECKPOINT")


def columns(conn: psycopg.Connection, table: sql.Identifier) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum", (table.as_string(conn),)).fetchall()]


def checksum(conn: psycopg.Connection, table: sql.Identifier) -> tuple[int, int]:
    row = conn.execute(sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {}").format(
        row_hash(columns(conn, table)), table)).fetchone()
    return int(row[0]), int(row[1])


# -- writers -----------------------------------------------------------------------------------
class Writer(threading.Thread):
    """One autocommit connection; each operation is one transaction, never retried: what
    committed is logged as (table, +-1 row, +-row hash), what failed (a key taken, a
    referenced row, a lock timeout) changed nothing and is counted."""

    def __init__(self, dsn: str, label: str,
                 op: Callable[[psycopg.Connection, random.Random, Writer],
                              list[tuple[str, int, int]]], pause: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.label, self.op, self.pause, self.seed = dsn, label, op, pause, seed
        self.stop = threading.Event()
        self.ops = 0
        self.failed: dict[str, int] = {}
        self.longest = 0.0
        self.delta: dict[str, list[int]] = {}
        self.own: list[int] = []  # referencing rows this writer inserted
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.seed)
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '10s'")
                while not self.stop.is_set():
                    t0 = time.monotonic()
                    try:
                        with conn.transaction():
                            changes = self.op(conn, rng, self)
                    except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation,
                            psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected,
                            psycopg.errors.SerializationFailure) as exc:
                        key = type(exc).__name__
                        self.failed[key] = self.failed.get(key, 0) + 1
                        changes = []
                    else:
                        self.ops += 1
                    self.longest = max(self.longest, time.monotonic() - t0)
                    for table, n, h in changes:  # committed
                        d = self.delta.setdefault(table, [0, 0])
                        d[0] += n
                        d[1] += h
                    time.sleep(self.pause)
        except BaseException as exc:  # reported by main
            self.error = exc


@dataclass
class Ranges:
    source: tuple[datetime, datetime]  # the rows being moved (writers 1, 2, 4)
    newest: tuple[datetime, datetime]  # another partition (writer 3)


def random_ts(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    return lo + timedelta(seconds=rng.randrange(int((hi - lo).total_seconds())))


def make_writers(dsn: str, ranges: Ranges, pay_cols: list[str], bonus_cols: list[str],
                 pause: float) -> list[Writer]:
    h_pay, h_bonus = row_hash(pay_cols), row_hash(bonus_cols)
    lo, hi = ranges.source
    insert = sql.SQL(
        "INSERT INTO {t} (pay_ts, pdm_id, tracer, amount, tariff_id, method, duration_min, plate)"
        " VALUES (%s, %s, %s, %s, %s, 'app', 30, 'BE-NCH') ON CONFLICT DO NOTHING"
        " RETURNING {h}").format(t=PAYMENT, h=h_pay)

    def ins(conn: psycopg.Connection, rng: random.Random, w: Writer, span: tuple[datetime,
            datetime]) -> list[tuple[str, int, int]]:
        pdm = rng.randrange(1, PDMS + 1)
        row = conn.execute(insert, (random_ts(rng, *span), pdm, f"BENCH-{w.seed}-{w.ops}",
                                    rng.randrange(100, 900) / 100, 1 + pdm % 12)).fetchone()
        return [("payment", 1, int(row[0]))] if row else []

    pick = sql.SQL("SELECT pay_ts, pdm_id, {h} FROM {t} WHERE pay_ts >= %s AND pay_ts < %s"
                   " ORDER BY pay_ts LIMIT 1 FOR UPDATE").format(h=h_pay, t=PAYMENT)

    def upd(conn: psycopg.Connection, rng: random.Random, w: Writer
            ) -> list[tuple[str, int, int]]:
        row = conn.execute(pick, (random_ts(rng, lo, hi), hi)).fetchone()
        if row is None:
            return []
        ts, pdm, old = row[0], row[1], int(row[2])
        what = rng.randrange(10)
        where = sql.SQL("WHERE pay_ts = %s AND pdm_id = %s")
        if what < 3:
            gone = conn.execute(sql.SQL("DELETE FROM {} {} RETURNING 1").format(PAYMENT, where),
                                (ts, pdm)).fetchone()
            return [("payment", -1, -old)] if gone else []
        if what < 6:  # the key moves by half the range: across the split point, both ways
            half = (hi - lo) / 2
            new_ts = ts + half if ts < lo + half else ts - half
            got = conn.execute(sql.SQL("UPDATE {} SET pay_ts = %s {} RETURNING {}").format(
                PAYMENT, where, h_pay), (new_ts.replace(microsecond=0), ts, pdm)).fetchone()
        else:
            got = conn.execute(sql.SQL("UPDATE {} SET amount = amount + 1 {} RETURNING {}").format(
                PAYMENT, where, h_pay), (ts, pdm)).fetchone()
        return [("payment", 0, int(got[0]) - old)] if got else []

    ref_pick = sql.SQL(
        "INSERT INTO {b} (pay_ts, pdm_id, points) SELECT pay_ts, pdm_id, 7 FROM {t}"
        " WHERE pay_ts >= %s AND pay_ts < %s ORDER BY pay_ts LIMIT 1"
        " RETURNING payment_bonus_id, {h}").format(b=BONUS, t=PAYMENT, h=h_bonus)
    ref_del = sql.SQL("DELETE FROM {} WHERE payment_bonus_id = %s RETURNING {}").format(
        BONUS, h_bonus)

    def ref(conn: psycopg.Connection, rng: random.Random, w: Writer
            ) -> list[tuple[str, int, int]]:
        if w.own and rng.randrange(10) < 4:
            i = w.own.pop(rng.randrange(len(w.own)))
            row = conn.execute(ref_del, (i,)).fetchone()
            return [("payment_bonus", -1, -int(row[0]))] if row else []
        row = conn.execute(ref_pick, (random_ts(rng, lo, hi), hi)).fetchone()
        if row is None:
            return []
        w.own.append(int(row[0]))  # a rollback leaves a dangling id: its delete finds nothing
        return [("payment_bonus", 1, int(row[1]))]

    return [
        Writer(dsn, "insert into the moved rows", lambda c, r, w: ins(c, r, w, ranges.source),
               pause, 1),
        Writer(dsn, "update/delete the moved rows", upd, pause, 2),
        Writer(dsn, "insert into the newest partition",
               lambda c, r, w: ins(c, r, w, ranges.newest), pause, 3),
        Writer(dsn, "insert/delete referencing rows", ref, pause, 4),
    ]


# -- floor and manual procedure ----------------------------------------------------------------
def floor_seconds(dsn: str, rows_sql: sql.Composable) -> float:
    """The moved rows into a plain table, then the PK and the two indexes: one transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        f = sql.Identifier("public", "floor_copy")
        t0 = time.monotonic()
        with conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                f, PAYMENT))
            conn.execute(sql.SQL("INSERT INTO {} {}").format(f, rows_sql))
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (pay_ts, pdm_id)").format(f))
            conn.execute(sql.SQL("CREATE INDEX ON {} (pdm_id, pay_ts)").format(f))
            conn.execute(sql.SQL("CREATE INDEX ON {} (tracer)").format(f))
        took = time.monotonic() - t0
        conn.execute(sql.SQL("DROP TABLE {}").format(f))
        conn.execute("CHECKPOINT")
    return took


def manual(dsn: str, source: str, pieces: list[tuple[str, str, datetime, datetime]],
           reattach: sql.Composable) -> list[tuple[str, float]]:
    """The operators' procedure with writers stopped, in one transaction: drop the keys that
    reference the table (DETACH fails while referencing rows point into the source), detach the
    source, create each new table with the parent's columns, copy its rows, delete them from the
    source, re-attach the source (`reattach`) and attach the new tables (each ATTACH scans its
    table and builds the parent's indexes on it), re-create the keys (validated).
    `pieces`: (phase label, new table, lower, upper)."""
    src = sql.Identifier("control", source)
    phases: list[tuple[str, float]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        parent_oid = conn.execute("SELECT 'control.payment'::regclass::oid").fetchone()[0]
        fkeys = referencing_keys(conn, parent_oid)
        t0 = time.monotonic()

        def phase(label: str, stmt: sql.Composable, *args: object) -> None:
            t = time.monotonic()
            conn.execute(stmt, args or None)
            phases.append((label, time.monotonic() - t))

        with conn.transaction():
            for fk in fkeys:
                phase(f"drop {fk.name}", fk.drop_sql())
            phase(f"detach {source}", sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                PAYMENT, src))
            for _label, name, lo, hi in pieces:
                new = sql.Identifier("control", name)
                phase(f"create {name}", sql.SQL(
                    "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
                    new, PAYMENT))
                phase(f"copy into {name}", sql.SQL(
                    "INSERT INTO {} SELECT * FROM {} WHERE pay_ts >= %s AND pay_ts < %s").format(
                    new, src), lo, hi)
            for _label, _name, lo, hi in pieces:
                phase(f"delete from {source}", sql.SQL(
                    "DELETE FROM {} WHERE pay_ts >= %s AND pay_ts < %s").format(src), lo, hi)
            for _label, name, lo, hi in pieces:
                phase(f"attach {name} (scan, index builds)", sql.SQL(
                    "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                    PAYMENT, sql.Identifier("control", name), sql.Literal(lo), sql.Literal(hi)))
            phase(f"re-attach {source}", sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
                PAYMENT, src, reattach))
            for fk in fkeys:
                t = time.monotonic()
                conn.execute(fk.add_sql(PAYMENT))
                conn.execute(fk.validate_sql())
                phases.append((f"re-create {fk.name} (validated)", time.monotonic() - t))
        phases.append(("total (writers blocked)", time.monotonic() - t0))
    return phases


# -- one move ----------------------------------------------------------------------------------
def run_plan(dsn: str, kind_name: str, values: dict, send: Connection) -> None:
    """In a child process: plan as the command does, run, send back what main prints."""
    with connect(Target(dsn), purpose="bench") as conn:
        kind = kind_named(kind_name)
        forest = load_forest(conn)
        plan = kind.build(conn, forest, kind.status(conn, forest, "control.payment"),
                          kind.request(values, "control.payment"), Config())
    t0 = time.monotonic()
    result = PlanRunner(Target(dsn), plan, config=PlansConfig()).run()
    total = time.monotonic() - t0
    send.send({"ok": result.ok, "error": result.error, "total": total, "title": plan.title,
               "changes": list(plan.facts.changes),
               "steps": [(o.index, o.title, o.seconds, o.hold_seconds, o.lock_wait_seconds,
                          o.lock_timeouts, s.parallel, o.started)
                         for o, s in zip(result.steps, plan.steps, strict=True)]})
    send.close()


@dataclass
class Case:
    label: str
    db: str
    kind: str
    values: dict
    ranges: Ranges
    floor_before: sql.Composable  # the rows to move, before
    floor_after: sql.Composable  # the same rows, after the move
    manual_source: str
    manual_pieces: list[tuple[str, str, datetime, datetime]]
    manual_reattach: sql.Composable


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# the guarantees that cost work the floor does not do, by the titles of their steps
GUARANTEES = (
    ("verification (count and checksum per new bound)", lambda t: t.startswith("Verify new")),
    ("the parent's own keys validated on the new tables",
     lambda t: t.startswith("Validate the parent's foreign keys")),
    ("the referencing keys validated after the swap",
     lambda t: t.startswith("Validate ") and " on " in t and not t.startswith(
         ("Validate the parent's", "Validate the exclusion"))),
)


def wall(steps: list) -> float:
    """The time steps took: one after the other, except the steps of a parallel group (run at
    once: from the first one's start to the last one's end)."""
    spans: dict[str, tuple[float, float]] = {}
    alone = 0.0
    for s in steps:
        if s[6] and s[7]:
            start, end = spans.get(s[6], (s[7], s[7] + s[2]))
            spans[s[6]] = (min(start, s[7]), max(end, s[7] + s[2]))
        else:
            alone += s[2]
    return alone + sum(end - start for start, end in spans.values())


def guarantees(steps: list, total: float, floor: float) -> None:
    """What each guarantee costs on its own as a ratio of the floor, and the best total they
    leave: the floor plus their cost, if everything else took exactly the floor's time."""
    costs = [(label, wall([s for s in steps if match(s[1])])) for label, match in GUARANTEES]
    for label, took in costs:
        print(f"  guarantee: {label}: {took:.2f} s = {took / floor:.2f} x floor")
    spent = sum(took for _, took in costs)
    print(f"  guarantees together: {spent:.2f} s = {spent / floor:.2f} x floor; the rest of the "
          f"plan (copy, indexes, ANALYZE, catch-ups, swap, drop): {total - spent:.2f} s = "
          f"{(total - spent) / floor:.2f} x floor; with these guarantees done one after the "
          f"other the total cannot go below {1 + spent / floor:.2f} x floor")


def run_case(server, case: Case, pause: float, log_plan: bool = False) -> bool:
    admin = psycopg.connect(server.conninfo(), autocommit=True)
    copy_db = case.db + "_manual"
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
        sql.Identifier(copy_db), sql.Identifier(case.db)))
    admin.close()
    dsn = server.conninfo(case.db)
    floors = [floor_seconds(dsn, case.floor_before)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        pay_cols, bonus_cols = columns(conn, PAYMENT), columns(conn, BONUS)
        before = {"payment": checksum(conn, PAYMENT), "payment_bonus": checksum(conn, BONUS)}
    writers = make_writers(dsn, case.ranges, pay_cols, bonus_cols, pause)
    sampler = LockSampler(dsn, "control.payment")
    for t in (*writers, sampler):
        t.start()
    time.sleep(1.0)
    # --log-ms: every statement of the plan's session goes to the server's log, with its time
    plan_dsn = f"{dsn} options='-c log_min_duration_statement=0'" if log_plan else dsn
    # the plan runs in a process of its own, as `pgparts split --apply --yes` would: in this
    # one, the writers' and the sampler's threads would make each of the swap's statements
    # wait for the GIL
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=run_plan, args=(plan_dsn, case.kind, case.values, send))
    child.start()
    result = receive.recv()
    child.join()
    time.sleep(0.5)
    for t in (*writers, sampler):
        t.stop.set()
    for t in (*writers, sampler):
        t.join()
    if not result["ok"]:
        print(f"FAILED: {result['error']}")
        return False
    with psycopg.connect(dsn, autocommit=True) as conn:
        after = {"payment": checksum(conn, PAYMENT), "payment_bonus": checksum(conn, BONUS)}
    expected = {t: [n, h] for t, (n, h) in before.items()}
    for w in writers:
        for t, (n, h) in w.delta.items():
            expected[t][0] += n
            expected[t][1] += h
    floors.append(floor_seconds(dsn, case.floor_after))
    floor = sum(floors) / len(floors)
    print(f"\n== {case.label}: plan '{result['title']}', {len(result['steps'])} steps")
    for line in result["changes"]:
        print(f"   {line}")
    print(f"floor (INSERT ... SELECT + PK + 2 index builds, one transaction, no writers): "
          f"{floors[0]:.2f} s before, {floors[1]:.2f} s after; mean {floor:.2f} s")
    for index, title, seconds, held, waited, timeouts, parallel, _started in result["steps"]:
        extra = f", hold {held * 1000:.1f} ms" if held is not None else ""
        waits = f", lock waits {waited:.2f} s ({timeouts} timeouts)" if timeouts else ""
        side = f" [at once with the other '{parallel}' steps]" if parallel else ""
        print(f"  step {index}: {title}: {seconds:.2f} s{extra}{waits}{side}")
    hold = max((s[3] or 0.0) for s in result["steps"])
    total = result["total"]
    ratio = total / floor
    ok_ratio = ratio <= TARGETS["ratio"]
    ok_hold = max(hold, sampler.longest) * 1000 < TARGETS["hold_ms"]
    print(f"total {total:.2f} s = {ratio:.2f} x floor (target <= {TARGETS['ratio']}): "
          f"{verdict(ok_ratio)}")
    guarantees(result["steps"], total, floor)
    print(f"longest ACCESS EXCLUSIVE on control.payment: runner {hold * 1000:.1f} ms, pg_locks "
          f"samples {sampler.longest * 1000:.1f} ms ({sampler.samples:,} samples) "
          f"(target < {TARGETS['hold_ms']:.0f} ms): {verdict(ok_hold)}")
    ok_stall = True
    for w in writers:
        if w.error is not None:
            print(f"writer '{w.label}' died: {w.error!r}")
            ok_stall = False
            continue
        fails = ", ".join(f"{n} {k}" for k, n in sorted(w.failed.items())) or "none"
        ok = w.longest * 1000 < TARGETS["stall_ms"]
        ok_stall &= ok
        print(f"writer '{w.label}': {w.ops:,} transactions committed (refused: {fails}), "
              f"longest {w.longest * 1000:.1f} ms (target < {TARGETS['stall_ms']:.0f} ms): "
              f"{verdict(ok)}")
    ok_rows = True
    for t in ("payment", "payment_bonus"):
        exp, got = tuple(expected[t]), after[t]
        ok_rows &= exp == got
        print(f"control.{t}: {got[0]:,} rows, checksum {got[1]}; expected {exp[0]:,} rows, "
              f"checksum {exp[1]} (before {before[t][0]:,} rows + the writers' committed "
              f"changes): {'equal' if exp == got else 'DIFFERENT'}")
    print(f"every committed write present: {verdict(ok_rows)}")
    phases = manual(server.conninfo(copy_db), case.manual_source, case.manual_pieces,
                    case.manual_reattach)
    blocked = phases[-1][1]
    print("manual procedure on an identical copy, writers stopped (one transaction):")
    for label, took in phases:
        print(f"  {label}: {took:.2f} s")
    worst = max(w.longest for w in writers)
    print(f"writers blocked: manual {blocked:.2f} s vs online at most {worst * 1000:.1f} ms "
          f"({blocked / worst:,.0f}x shorter)")
    return ok_ratio and ok_hold and ok_stall and ok_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the partition split")
    ap.add_argument("--drain-rows", type=int, help="rows drained from the DEFAULT "
                                                   "(default: half of --rows)")
    ap.add_argument("--only", choices=("split", "drain"))
    ap.add_argument("--pause", type=float, default=0.005,
                    help="each writer's pause between transactions, seconds")
    ap.add_argument("--log-ms", type=int,
                    help="print the server's log of statements slower than this (ms): where "
                         "the time goes")
    args = ap.parse_args()
    drain_rows = args.drain_rows or args.rows // 2
    small = max(args.rows // 100, 1000)
    now = datetime(CURRENT_YEAR, 11, 30, 12, tzinfo=UTC)
    print(f"load average before: {os.getloadavg()}")
    all_ok = True
    settings = dict(SETTINGS)
    if args.log_ms is not None:
        settings |= {"log_min_duration_statement": str(args.log_ms),
                     "log_min_messages": "warning", "log_lock_waits": "on",
                     "deadlock_timeout": "100ms"}
    with temporary_server(embedded_bindir(), settings) as server:
        admin = psycopg.connect(server.conninfo(), autocommit=True)
        version = admin.execute("SHOW server_version").fetchone()[0]
        cases = []
        if args.only in (None, "split"):
            cases.append(Case(
                "split", "split_db", "split",
                {"partition": "payment_2023", "at": ["2023-07-01"], "name": ["payment_2023_h2"]},
                Ranges((utc(2023), utc(2024)), (utc(CURRENT_YEAR), now)),
                sql.SQL("SELECT * FROM control.payment_2023"),
                sql.SQL("SELECT * FROM control.payment WHERE pay_ts >= {} AND pay_ts < {}").format(
                    sql.Literal(utc(2023)), sql.Literal(utc(2024))),
                "payment_2023", [("", "payment_2023_h2", utc(2023, 7), utc(2024))],
                sql.SQL("FOR VALUES FROM ({}) TO ({})").format(
                    sql.Literal(utc(2023)), sql.Literal(utc(2023, 7)))))
        if args.only in (None, "drain"):
            cases.append(Case(
                "drain-default", "drain_db", "drain_default", {},
                Ranges((utc(CURRENT_YEAR), now), (utc(CURRENT_YEAR - 1), utc(CURRENT_YEAR))),
                sql.SQL("SELECT * FROM control.payment_default"),
                sql.SQL("SELECT * FROM control.payment WHERE pay_ts >= {}").format(
                    sql.Literal(utc(CURRENT_YEAR))),
                "payment_default",
                [("", f"payment_{y}", utc(y), utc(y + 1)) for y in (CURRENT_YEAR,
                                                                    CURRENT_YEAR + 1)],
                sql.SQL("DEFAULT")))
        for case in cases:
            t0 = time.monotonic()
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(case.db)))
            with psycopg.connect(server.conninfo(case.db), autocommit=True) as conn:
                if case.kind == "split":
                    build(conn, now, 2023, args.rows, None, small)
                else:
                    build(conn, now, 0, drain_rows, CURRENT_YEAR, small)
                n = conn.execute("SELECT count(*) FROM control.payment").fetchone()[0]
                moved = conn.execute(sql.SQL("SELECT count(*) FROM ({}) s").format(
                    case.floor_before)).fetchone()[0]
                size = conn.execute(sql.SQL("SELECT pg_size_pretty(pg_total_relation_size({}))"
                                            ).format(sql.Literal(f"control.{case.manual_source}"))
                                    ).fetchone()[0]
            print(f"\nPostgreSQL {version}: control.payment {n:,} rows; {case.manual_source} "
                  f"{moved:,} rows, {size} with its indexes; built in "
                  f"{time.monotonic() - t0:.1f} s; load average {os.getloadavg()}")
            all_ok &= run_case(server, case, args.pause, args.log_ms is not None)
            print(f"load average after: {os.getloadavg()}")
        admin.close()
        if args.log_ms is not None:
            print(f"\n-- server log (statements over {args.log_ms} ms, lock waits, deadlocks):")
            keep = re.compile(r"duration:|deadlock|Process \d+ waits|still waiting|acquired")
            for line in (server.datadir / "server.log").read_text(errors="replace").splitlines():
                if keep.search(line):
                    print(line[:400])
    print(f"\nall targets met: {'yes' if all_ok else 'NO'}")


if __name__ == "__main__":
    main()
