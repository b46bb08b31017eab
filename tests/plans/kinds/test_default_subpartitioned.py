"""Moves out of the DEFAULT into sub-partitioned new partitions, on scenario 1's shape
(account_balances: Sunday-to-Sunday weeks in UTC, each HASH x4 by account_address, a DEFAULT):
create-ahead when the DEFAULT holds rows of next week, drain-default of rows of several missing
weeks (and of the LIST-groups variant; on a LIST-partitioned table, the list partitions' shape),
fill-gaps of a hole between sub-partitioned weeks, and a writer during the move. Every
new week gets 4 hash sub-partitions named like the newest week's, the parent's indexes on each,
the bound CHECK inherited by each leaf (ATTACH scans none); no failed ATTACH, no row lost."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.plans.steps.moves import BOUND_CHECK

from ...test_plan_support import Balances, build_balances, current_week_start, insert_rows, run_plan
from ..scenarios import leftovers
from .test_lifecycle import cli, plan_for, weeks

T = "public.account_balances"
DEFAULT = "account_balances_default"


def _build(conn: psycopg.Connection, old: list[date]) -> Balances:
    """Weeks `old` and the current one, HASH x4 each, 4 rows per week, and a DEFAULT."""
    return build_balances(conn, weeks=old, rows_per_week=4, default_partition=True)


def _digest(conn: psycopg.Connection) -> tuple[int, str]:
    n, h = conn.execute(
        "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text"
        " FROM public.account_balances t").fetchone()
    return int(n), h


def _in_default(conn: psycopg.Connection) -> int:
    return conn.execute(f"SELECT count(*) FROM public.{DEFAULT}").fetchone()[0]


def _assert_week_shape(conn: psycopg.Connection, name: str) -> None:
    """4 hash leaves named like the other weeks', each with the parent's indexes."""
    leaves = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid),"
        " (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY 1", (f"public.{name}",)).fetchall()
    assert [r[0] for r in leaves] == [f"{name}_hash_{r}" for r in range(4)], leaves
    assert [r[1] for r in leaves] == [f"FOR VALUES WITH (modulus 4, remainder {r})"
                                      for r in range(4)]
    parent_idx = conn.execute("SELECT count(*) FROM pg_index WHERE indrelid ="
                              " 'public.account_balances'::regclass").fetchone()[0]
    assert all(r[2] == parent_idx for r in leaves), leaves
    assert conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass",
                        (f"public.{name}",)).fetchone()[0] == parent_idx
    # every table and index of the move is named after its table by now
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgparts%'"
                        " AND relnamespace <> 'pgparts'::regnamespace").fetchone()[0] == 0


def _leaf_checks_hook(db, box: dict):
    """A runner hook: before the capture step, every leaf built for a new week holds the bound
    CHECK, inherited and validated (what lets the swap's ATTACH skip scanning it)."""
    def hook(event: str, step: int, stmt: int, runner) -> None:
        if event != "step" or not runner.plan.steps[step - 1].title.startswith("Capture"):
            return
        with psycopg.connect(db.dsn, autocommit=True) as c:
            box["leaves"] = c.execute(
                "SELECT c.relname, bool_and(k.convalidated AND k.coninhcount > 0)"
                " FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
                " JOIN pg_class p ON p.oid = i.inhparent"
                " LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.conname = %s"
                " WHERE p.relname LIKE 'pgparts\\_new\\_%%' GROUP BY 1",
                (BOUND_CHECK,)).fetchall()
    return hook


def test_create_ahead_moves_next_weeks_default_rows_into_hash_weeks(db, capsys, monkeypatch):
    """Issue 12 on the scenario table: the DEFAULT holds rows of next week; create-ahead
    moves them into next week built with 4 hash sub-partitions, whatever the time zones."""
    current = current_week_start()
    with db.connect() as conn:
        _build(conn, [current - timedelta(weeks=1)])
        nxt = current + timedelta(weeks=1)
        b = Balances("public", "account_balances", [], "")
        insert_rows(conn, b, nxt, 30)  # through the parent: into the DEFAULT
        before = _digest(conn)
        assert _in_default(conn) == 30
    monkeypatch.setenv("PGTZ", "Pacific/Chatham")  # the client's session default, +13:45
    dbname = db.query("SELECT current_database()")[0][0]
    db.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'America/New_York'").format(
        sql.Identifier(dbname)))
    status, out, err = cli(capsys, "create-ahead", "account_balances", "--count", "2",
                           "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "they are moved into it online" in out and "sub-partitioned like" in out, out
    assert "not supported" not in out
    box: dict = {}
    result = run_plan(db, plan_for(db, "create_ahead", count=2), hook=_leaf_checks_hook(db, box))
    assert result.ok, (result.error, result.state)
    assert len(box["leaves"]) == 4 and all(ok for _, ok in box["leaves"]), box
    future = [w for w in weeks(db) if w[1].date() > current]
    assert [w[1].date() for w in future] == [current + timedelta(weeks=k) for k in (1, 2)]
    for name, lo, hi, subs in future:
        assert lo.utcoffset() == timedelta(0) and lo.weekday() == 6
        assert (lo.hour, lo.minute) == (0, 0) and hi - lo == timedelta(days=7)
        assert name == f"account_balances_{lo:%Y_%m_%d}" and subs == 4
    with db.connect() as conn:
        for name, *_ in future:
            _assert_week_shape(conn, name)
        assert _digest(conn) == before and _in_default(conn) == 0
        assert conn.execute(f"SELECT count(*) FROM public.account_balances_{nxt:%Y_%m_%d}"
                            ).fetchone()[0] == 30
        assert leftovers(conn) == []
    status, out, err = cli(capsys, "create-ahead", "account_balances", "--count", "2",
                           "--apply", "--yes", "-d", db.dsn)
    assert status == 0 and "nothing to do" in err, (out, err)


def test_drain_default_builds_missing_weeks_with_their_hash_partitions(db, capsys):
    """Rows of several missing weeks: before the first week, a hole, after the current one."""
    current = current_week_start()
    first, hole = current - timedelta(weeks=3), current - timedelta(weeks=2)
    with db.connect() as conn:
        _build(conn, [first, current - timedelta(weeks=1)])
        b = Balances("public", "account_balances", [], "")
        missing = [first - timedelta(weeks=2), hole, current + timedelta(weeks=1)]
        for k, start in enumerate(missing):
            insert_rows(conn, b, start, 10, offset=1000 * (k + 1))
        before = _digest(conn)
    status, out, err = cli(capsys, "drain-default", T, "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        names = {c.name for c in load_forest(conn).find(T).children}
        for start in missing:
            name = f"account_balances_{start:%Y_%m_%d}"
            assert name in names, names
            _assert_week_shape(conn, name)
            assert conn.execute(f"SELECT count(*) FROM public.{name}").fetchone()[0] == 10
        assert _digest(conn) == before and _in_default(conn) == 0
        assert leftovers(conn) == []
    status, out, err = cli(capsys, "check", T, "-d", db.dsn)
    assert "default_has_rows" not in out, out


def test_drain_default_builds_a_week_with_the_list_groups_of_the_newest(db):
    """The earlier variant of scenario 1: weeks LIST-partitioned by activity into a group and
    a DEFAULT sub-partition; the drained week gets both, named like the newest week's."""
    nxt = current_week_start() + timedelta(weeks=1)
    with db.connect() as conn:
        build_balances(conn, weeks=[nxt - timedelta(weeks=2)], rows_per_week=4, sub="list",
                       default_partition=True)
        insert_rows(conn, Balances("public", "account_balances", [], ""), nxt, 8)
        before = _digest(conn)
    result = run_plan(db, plan_for(db, "drain_default"))
    assert result.ok, (result.error, result.state)
    name = f"account_balances_{nxt:%Y_%m_%d}"
    with db.connect() as conn:
        leaves = dict(conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (f"public.{name}",)).fetchall())
        assert leaves == {f"{name}_holding": "FOR VALUES IN ('xrd_holding', 'lsu_holding')",
                          f"{name}_trading": "DEFAULT"}, leaves
        assert conn.execute(f"SELECT count(*) FROM public.{name}_trading").fetchone()[0] == 4
        assert _digest(conn) == before and _in_default(conn) == 0
        assert leftovers(conn) == []


def test_fill_gaps_moves_the_default_rows_of_a_hole_between_hash_weeks(db, capsys):
    current = current_week_start()
    hole = current - timedelta(weeks=2)
    with db.connect() as conn:
        _build(conn, [current - timedelta(weeks=3), current - timedelta(weeks=1)])
        insert_rows(conn, Balances("public", "account_balances", [], ""), hole, 12)
        before = _digest(conn)
    status, out, err = cli(capsys, "fill-gaps", T, "--dry-run", "-d", db.dsn)
    assert status == 0, err
    below = f"account_balances_{current - timedelta(weeks=3):%Y_%m_%d}"
    assert f"sub-partitioned like public.{below}" in out or f"sub-partitioned like {below}" \
        in out, out
    status, out, err = cli(capsys, "fill-gaps", T, "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        name = f"account_balances_{hole:%Y_%m_%d}"
        _assert_week_shape(conn, name)
        assert conn.execute(f"SELECT count(*) FROM public.{name}").fetchone()[0] == 12
        assert _digest(conn) == before and _in_default(conn) == 0
        assert leftovers(conn) == []


class _Writer(threading.Thread):
    """Through the parent, until stopped: inserts rows of next week (into the DEFAULT, then the
    new week), updates and deletes them. `model` is what it committed (RETURNING)."""

    def __init__(self, dsn: str, start: date, model: dict) -> None:
        super().__init__(daemon=True)
        self.dsn, self.model, self.rng = dsn, model, random.Random(12)
        self.base = datetime(start.year, start.month, start.day, tzinfo=UTC)
        self.stop = threading.Event()
        self.ops, self.longest = 0, 0.0
        self.error: BaseException | None = None

    def _statement(self, n: int) -> tuple[str, tuple, bool]:
        mine = [k for k in self.model if k[0].startswith("w")]
        op = self.rng.randrange(4)
        if op < 2 or not mine:
            return ("INSERT INTO public.account_balances VALUES (%s, %s, %s, 'xrd_holding',"
                    " '{}') RETURNING account_address, \"timestamp\", activity_id, usd_value",
                    (self.base + timedelta(minutes=n), f"w{n}", n), False)
        addr, ts, act = self.rng.choice(sorted(mine))
        if op == 2:
            return ("UPDATE public.account_balances SET usd_value = usd_value + 1"
                    " WHERE account_address = %s AND \"timestamp\" = %s AND activity_id = %s"
                    " RETURNING account_address, \"timestamp\", activity_id, usd_value",
                    (addr, ts, act), False)
        return ("DELETE FROM public.account_balances WHERE account_address = %s"
                " AND \"timestamp\" = %s AND activity_id = %s"
                " RETURNING account_address, \"timestamp\", activity_id", (addr, ts, act), True)

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as c:
                c.execute("SET lock_timeout = '5s'")
                n = 0
                while not self.stop.is_set():
                    n += 1
                    stmt, args, deletes = self._statement(n)
                    started = time.monotonic()
                    with c.transaction():
                        got = c.execute(stmt, args).fetchall()
                    for row in got:
                        if deletes:
                            self.model.pop(tuple(row), None)
                        else:
                            self.model[tuple(row[:3])] = row[3]
                    self.ops += 1
                    self.longest = max(self.longest, time.monotonic() - started)
                    time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_a_writer_of_next_week_during_create_ahead_loses_nothing(db):
    current = current_week_start()
    nxt = current + timedelta(weeks=1)
    with db.connect() as conn:
        _build(conn, [])
        insert_rows(conn, Balances("public", "account_balances", [], ""), nxt, 20)
    model: dict = {}

    def rows() -> dict:
        with db.connect() as conn:
            return {tuple(r[:3]): r[3] for r in conn.execute(
                "SELECT account_address, \"timestamp\", activity_id, usd_value"
                " FROM public.account_balances").fetchall()}

    model.update(rows())
    plan = plan_for(db, "create_ahead", count=1)
    writer = _Writer(db.dsn, nxt, model)
    writer.start()
    time.sleep(0.1)
    result = run_plan(db, plan)
    time.sleep(0.1)
    writer.stop.set()
    writer.join(10)
    assert writer.error is None, writer.error
    assert result.ok, (result.error, result.state)
    assert writer.ops > 10 and writer.longest < 2.0, (writer.ops, writer.longest)
    assert rows() == model
    with db.connect() as conn:
        name = f"account_balances_{nxt:%Y_%m_%d}"
        _assert_week_shape(conn, name)
        assert conn.execute(f"SELECT count(*) FROM public.{name} WHERE account_address"
                            " LIKE 'w%'").fetchone()[0] > 0
        assert _in_default(conn) == 0 and leftovers(conn) == []


def test_drain_default_on_list_follows_list_partitions_sub_partitioned_alike(db):
    """LIST by region, each list partition HASH x2: the drained value's partition gets two hash
    sub-partitions; once one list partition is plain, the new ones are plain and the preview
    says why. (Plans only: the move itself is the one run above.)"""
    with db.connect() as conn:
        conn.execute("CREATE TABLE public.ev (id int NOT NULL, region text NOT NULL,"
                     " PRIMARY KEY (id, region)) PARTITION BY LIST (region)")
        for region in ("eu", "us"):
            conn.execute(f"CREATE TABLE public.ev_{region} PARTITION OF public.ev"
                         f" FOR VALUES IN ('{region}') PARTITION BY HASH (id)")
            for r in range(2):
                conn.execute(f"CREATE TABLE public.ev_{region}_h{r} PARTITION OF"
                             f" public.ev_{region} FOR VALUES WITH (MODULUS 2, REMAINDER {r})")
        conn.execute("CREATE TABLE public.ev_default PARTITION OF public.ev DEFAULT")
        conn.execute("INSERT INTO public.ev SELECT g, 'asia' FROM generate_series(1, 5) g")
    plan = plan_for(db, "drain_default", table="public.ev")
    assert "  each sub-partitioned like ev_eu: ev_asia_h0, ev_asia_h1" \
        in plan.facts.changes, plan.facts.changes
    with db.connect() as conn:
        conn.execute("CREATE TABLE public.ev_fr PARTITION OF public.ev FOR VALUES IN ('fr')")
    plan = plan_for(db, "drain_default", table="public.ev")
    assert not any("sub-partitioned like" in line for line in plan.facts.changes)
    assert any("not sub-partitioned alike: the new ones are plain" in n
               for n in plan.facts.notes), plan.facts.notes
