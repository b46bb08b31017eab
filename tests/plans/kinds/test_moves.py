"""The move kinds (split, drain-default) on real servers: content identical per bound before
and after, a split while a writer inserts, updates and deletes in both halves and rows
reference the table, a DEFAULT drained of rows before the first partition and after the last,
input refused before any SQL, hostile names throughout, and a lock held on the parent making
the swap time out, retry and give up with the database untouched."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config, PlansConfig
from tui.core.plans import Outcome, PlanRunner
from tui.core.plans.kind import PlanKindError
from tui.core.plans.registry import kind_named

from ..scenarios import (
    DEFAULT,
    LEAVES,
    MOVE_SCENARIOS,
    REF,
    SCHEMA,
    SPLIT_NEW,
    SPLIT_SOURCE,
    TABLE,
    codes,
    ident,
    leftovers,
    spec,
)
from .test_remedies import cli

FAST = PlansConfig(lock_timeout_seconds=0.3, lock_retries=2)


def plan_for(db, kind_name: str, values: dict):
    kind = kind_named(kind_name)
    with db.connect() as conn:
        forest = load_forest(conn)
        return kind.build(conn, forest, kind.status(conn, forest, spec()),
                          kind.request(values, spec()), Config(plans=FAST))


def run(db, plan, **kw):
    return PlanRunner(db.target, plan, config=FAST, backoff_base=0.02, **kw).run()


def per_bound(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Count and order-independent digest of the table's rows per range of 50 keys (NULL keys
    apart): equal before and after a move whatever partitions hold them."""
    rows = conn.execute(sql.SQL(
        "SELECT floor(k / 50.0)::int, count(*), md5(string_agg(md5(t::text), '' ORDER BY"
        " md5(t::text))) FROM {} t GROUP BY 1").format(ident(TABLE))).fetchall()
    return {str(b): (int(n), h) for b, n, h in rows}


def test_split_keeps_every_row_per_bound_and_the_references(db, capsys):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        before = per_bound(conn)
        refs = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(REF))).fetchone()[0]
    status, out, err = cli(capsys, "split", spec(), SPLIT_SOURCE, "--at", "150", "--name",
                           SPLIT_NEW, "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "ACCESS EXCLUSIVE" in out and "NOT VALID" in out and "VALIDATE" in out, out
    status, out, err = cli(capsys, "split", spec(), SPLIT_SOURCE, "--at", "150", "--name",
                           SPLIT_NEW, "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    assert "held" in out + err and "(the swap)" in out + err, (out, err)
    with db.connect() as conn:
        assert scenario.fixed(conn)
        assert per_bound(conn) == before
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(REF))
                            ).fetchone()[0] == refs
        assert leftovers(conn) == []


def test_drain_default_before_first_and_after_last(db, capsys):
    scenario = MOVE_SCENARIOS["drain_default"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        assert "default_has_rows" in codes(conn)
        before = per_bound(conn)
    status, out, err = cli(capsys, "fix", spec(), "--only", "default_has_rows", "--dry-run",
                           "-d", db.dsn)
    assert status == 0 and "drain" in out, (out, err)
    status, out, err = cli(capsys, "drain-default", spec(), "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "one aggregate query" in out, out
    status, out, err = cli(capsys, "drain-default", spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        assert scenario.fixed(conn)
        assert per_bound(conn) == before
        forest = load_forest(conn)
        root = forest.find(spec())
        bounds = sorted(c.bound_text for c in root.children)
        assert "FOR VALUES FROM ('-300') TO ('-200')" in bounds or \
            "FOR VALUES FROM (-300) TO (-200)" in bounds, bounds
        assert "FOR VALUES FROM (500) TO (600)" in bounds, bounds
        assert any(c.name == DEFAULT and c.bound_text == "DEFAULT" for c in root.children)
        assert leftovers(conn) == []
        conn.execute(sql.SQL("ANALYZE {}").format(ident(TABLE)))
        assert "default_has_rows" not in codes(conn)
    status, out, err = cli(capsys, "check", spec(), "-d", db.dsn)
    assert "default_has_rows" not in out


def test_input_refused_before_any_sql(db):
    with db.connect() as conn:
        MOVE_SCENARIOS["split"].build(conn, db.dsn)
        conn.execute(sql.SQL("CREATE TABLE {} (k int) PARTITION BY RANGE (k)").format(
            ident("other")))
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (0) TO (9)")
                     .format(ident("other_p"), ident("other")))
    cases = [
        ({"partition": SPLIT_SOURCE, "at": ["250"]}, "not inside"),
        ({"partition": SPLIT_SOURCE, "at": ["170", "150"]}, "increase"),
        ({"partition": SPLIT_SOURCE, "at": ["abc"]}, "not a valid integer"),
        ({"partition": SPLIT_SOURCE, "at": ["150"], "name": [SPLIT_SOURCE]}, "given twice"),
        ({"partition": SPLIT_SOURCE, "at": ["150"], "name": [LEAVES[0]]}, "exists already"),
        ({"partition": SPLIT_SOURCE, "at": ["150"], "name": [REF]}, "exists already"),
        ({"partition": "other_p", "at": ["5"]}, "is a partition of"),
        ({"partition": DEFAULT, "at": ["5"]}, "drain-default"),
        ({"partition": SPLIT_SOURCE, "at": ["150"], "name": ["a", "b", "c"]}, "--name"),
    ]
    for values, words in cases:
        try:
            plan_for(db, "split", values)
        except PlanKindError as exc:
            assert words in str(exc) and "\n" not in str(exc), (values, str(exc))
        else:
            raise AssertionError(f"{values} was accepted")
    with db.connect() as conn:  # nothing was created
        assert conn.execute("SELECT to_regnamespace('pgparts')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgparts%'"
                            ).fetchone()[0] == 0
        conn.execute(sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS"
                             " 'BEGIN RETURN NEW; END'").format(ident("tf")))
        conn.execute(sql.SQL("CREATE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW EXECUTE"
                             " FUNCTION {}()").format(sql.Identifier('own "t'),
                                                      ident(SPLIT_SOURCE), ident("tf")))
    try:
        plan_for(db, "split", {"partition": SPLIT_SOURCE, "at": ["150"]})
    except PlanKindError as exc:
        assert "trigger of its own" in str(exc), str(exc)
    else:
        raise AssertionError("a partition with its own trigger was accepted")


class Writer(threading.Thread):
    """Until stopped, through the parent: `rows` mode inserts, updates (also across the split
    point, both ways) and deletes rows of the partition being split, and inserts rows into
    another partition; `refs` mode inserts and deletes rows referencing the seed's rows. Lock
    timeouts and conflicts are retried. `model` is what it committed (RETURNING, applied only
    after a commit), to prove afterwards that no write was lost."""

    def __init__(self, dsn: str, seed: int, mode: str, model: dict) -> None:
        super().__init__(daemon=True)
        self.dsn, self.rng, self.mode, self.model = dsn, random.Random(seed), mode, model
        self.stop = threading.Event()
        self.ops = 0
        self.error: BaseException | None = None
        self.longest = 0.0

    def _statement(self, n: int) -> tuple[sql.Composed, bool]:
        t, r = ident(TABLE), ident(REF)
        k = self.rng.randrange(100, 200)
        op = self.rng.randrange(5)
        if self.mode == "refs":
            if op < 3:
                return sql.SQL(
                    "INSERT INTO {} SELECT {}, id, k FROM {} WHERE id < 300 AND k = {}"
                    " RETURNING rid, id, k").format(
                    r, sql.Literal(100000 + n), t, sql.Literal(self.rng.randrange(0, 200))), False
            return sql.SQL("DELETE FROM {} WHERE rid = (SELECT min(rid) FROM {} WHERE rid >="
                           " 100000) RETURNING rid").format(r, r), True
        if op == 0:
            return sql.SQL("INSERT INTO {} VALUES ({}, {}, 'w') ON CONFLICT DO NOTHING"
                           " RETURNING id, k, v").format(t, sql.Literal(5000 + n),
                                                         sql.Literal(k)), False
        if op == 1:  # across the split point, both ways (refused while a reference holds it)
            return sql.SQL("UPDATE {} SET k = 299 - k, v = 'moved' WHERE k = {}"
                           " RETURNING id, k, v").format(t, sql.Literal(k)), False
        if op == 2:
            return sql.SQL("DELETE FROM {} WHERE k = {} AND id >= 5000 RETURNING id").format(
                t, sql.Literal(k)), True
        if op == 3:  # the current partition, elsewhere in the table
            return sql.SQL("INSERT INTO {} VALUES ({}, {}, 'now') RETURNING id, k, v").format(
                t, sql.Literal(5000 + n), sql.Literal(n % 100)), False
        return sql.SQL("UPDATE {} SET v = v || '+' WHERE k = {} RETURNING id, k, v").format(
            t, sql.Literal(k)), False

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as c:
                c.execute("SET lock_timeout = '5s'")
                n = 0
                while not self.stop.is_set():
                    n += 1
                    stmt, deletes = self._statement(n)
                    started = time.monotonic()
                    try:
                        with c.transaction():
                            got = c.execute(stmt).fetchall()
                        for row in got:  # committed
                            if deletes:
                                self.model.pop(row[0], None)
                            else:
                                self.model[row[0]] = tuple(row[1:])
                        self.ops += 1
                    except (psycopg.errors.LockNotAvailable, psycopg.errors.UniqueViolation,
                            psycopg.errors.DeadlockDetected,
                            psycopg.errors.ForeignKeyViolation):
                        pass
                    self.longest = max(self.longest, time.monotonic() - started)
                    time.sleep(0.002)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def test_split_under_concurrent_writers_with_references(db):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        rows = {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT id, k, v FROM {}").format(ident(TABLE))).fetchall()}
        refs = {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT rid, id, k FROM {}").format(ident(REF))).fetchall()}
    plan = plan_for(db, "split", scenario.values)
    writers = [Writer(db.dsn, 11, "rows", rows), Writer(db.dsn, 12, "refs", refs)]
    for w in writers:
        w.start()
    time.sleep(0.2)
    result = run(db, plan)
    time.sleep(0.2)
    for w in writers:
        w.stop.set()
        w.join(10)
        assert w.error is None, w.error
        assert w.ops > 20, w.ops
        assert w.longest < 2.0, w.longest  # the plan's lock_timeout is 0.3 s
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert scenario.fixed(conn)
        assert leftovers(conn) == []  # no trigger, log, helper CHECK, NOT VALID key left
        # no write lost, none applied twice: the tables hold exactly what was committed
        assert {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT id, k, v FROM {}").format(ident(TABLE))).fetchall()} == rows
        assert {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT rid, id, k FROM {}").format(ident(REF))).fetchall()} == refs
        assert any(v == "moved" for _k, v in rows.values())
        assert all(k < 150 for (k,) in conn.execute(sql.SQL("SELECT k FROM {}").format(
            ident(SPLIT_SOURCE))).fetchall())
        assert all(150 <= k < 200 for (k,) in conn.execute(sql.SQL("SELECT k FROM {}").format(
            ident(SPLIT_NEW))).fetchall())


def test_lock_on_the_parent_times_out_the_swap_then_gives_up_cleanly(db):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        before = per_bound(conn)
    plan = plan_for(db, "split", scenario.values)
    swap = next(i for i, s in enumerate(plan.steps, 1) if s.title.startswith("Swap"))
    holder = psycopg.connect(db.dsn)

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if (event, step, stmt) == ("step", swap, 0) and not holder.info.transaction_status:
            holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(ident(TABLE)))

    try:
        result = run(db, plan, hook=hook)
    finally:
        holder.rollback()
        holder.close()
    assert result.outcome == Outcome.FAILED
    assert "lock" in result.error, result.error
    assert result.steps[swap - 1].lock_timeouts >= 2
    with db.connect() as conn:
        forest = load_forest(conn)
        names = {c.name: c.bound_text for c in forest.find(spec()).children}
        assert names[SPLIT_SOURCE] == "FOR VALUES FROM (100) TO (200)"  # untouched
        assert SPLIT_NEW not in names
        assert per_bound(conn) == before
    result = run(db, plan_for(db, "split", scenario.values))
    assert result.ok, result.error
    with db.connect() as conn:
        assert scenario.fixed(conn) and per_bound(conn) == before and leftovers(conn) == []


def test_hostile_names_everywhere(db):
    """The scenario's schema, table, partitions, DEFAULT and referencing table all carry
    quotes, semicolons, spaces and non-ASCII letters; the new partition too."""
    assert all(any(ch in n for ch in '";') for n in (SCHEMA, TABLE, SPLIT_NEW, DEFAULT, REF))
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
    values = {"partition": SPLIT_SOURCE, "at": ["130", "160"],
              "name": ["a \"b\"; c", "ü ' x"]}
    result = run(db, plan_for(db, "split", values))
    assert result.ok, result.error
    with db.connect() as conn:
        children = {c.name: c.bound_text for c in load_forest(conn).find(spec()).children}
        assert children["a \"b\"; c"] == "FOR VALUES FROM (130) TO (160)"
        assert children["ü ' x"] == "FOR VALUES FROM (160) TO (200)"
        assert leftovers(conn) == []


def test_request_shape_is_generated(capsys):
    with pytest.raises(SystemExit):
        cli(capsys, "split", "--help")
    out = capsys.readouterr().out
    assert "PARTITION" in out and "--at VALUE" in out and "--name NEW" in out


def test_exported_script_runs_under_psql(db, tmp_path):
    """`--sql` is what the runner runs: psql -v ON_ERROR_STOP=1 splits the partition with the
    same result, every verification a DO block that would raise."""
    from ...test_consolidate_script import PSQL, _psql

    if PSQL is None:
        pytest.skip("psql is not installed")
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        before = per_bound(conn)
        script = plan_for(db, "split", scenario.values).to_sql(conn)
    assert "by pgparts --apply only" not in script
    done = _psql(db, tmp_path, script)
    assert done.returncode == 0, done.stderr
    with db.connect() as conn:
        assert scenario.fixed(conn) and per_bound(conn) == before and leftovers(conn) == []


def _payments(conn: psycopg.Connection) -> None:
    """Scenario 2's shape with hostile names: payments by year on a timestamptz key, a
    DEFAULT holding rows of 2019, 2020 (before the first partition) and 2025, 2026 (after the
    last)."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    p = ident("pay ment")
    conn.execute(sql.SQL("CREATE TABLE {} (pay_ts timestamptz NOT NULL, pdm_id int NOT NULL,"
                         " amount numeric(10,2), PRIMARY KEY (pay_ts, pdm_id))"
                         " PARTITION BY RANGE (pay_ts)").format(p))
    for y in (2021, 2022, 2023, 2024):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
                     .format(ident(f"payment_{y}"), p, sql.Literal(f"{y}-01-01 00:00+00"),
                             sql.Literal(f"{y + 1}-01-01 00:00+00")))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
        ident("payment_default"), p))
    conn.execute(sql.SQL(
        "INSERT INTO {} SELECT timestamptz '2019-01-01 00:00+00' + g * interval '61 hours',"
        " g % 7, g FROM generate_series(0, 1200) g WHERE g * 61 < 24 * 365 * 2"
        " OR g * 61 >= 24 * (365 * 6 + 2)").format(p))
    conn.execute(sql.SQL("ANALYZE {}").format(p))


def _payment_bounds(conn: psycopg.Connection) -> dict[str, str]:
    return {c.name: c.bound_text for c in load_forest(conn).find(
        f"{spec().split('.')[0]}.\"pay ment\"").children}


def test_drain_years_and_split_a_year_on_a_time_key(db):
    with db.connect() as conn:
        _payments(conn)
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(sql.SQL("SELECT count(*), sum(hashtext(t::text)) FROM {} t").format(
            ident("pay ment"))).fetchone()
        in_default = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident("payment_default"))).fetchone()[0]
        assert in_default > 100
    table = f"{spec().split('.')[0]}.\"pay ment\""
    kind = kind_named("drain-default")
    with db.connect() as conn:
        forest = load_forest(conn)
        plan = kind.build(conn, forest, None, kind.request({}, table), Config(plans=FAST))
    assert run(db, plan).ok
    with db.connect() as conn:
        bounds = _payment_bounds(conn)
        for y in (2019, 2020, 2025, 2026):
            assert f"payment_{y}" in bounds, bounds
        assert "payment_2018" not in bounds
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident("payment_default"))).fetchone()[0] == 0
        assert conn.execute(sql.SQL("SELECT count(*), sum(hashtext(t::text)) FROM {} t").format(
            ident("pay ment"))).fetchone() == rows
        assert leftovers(conn) == []
    kind = kind_named("split")
    with db.connect() as conn:
        forest = load_forest(conn)
        plan = kind.build(conn, forest, None, kind.request(
            {"partition": "payment_2020", "at": ["2020-07-01 00:00+00"],
             "name": ["payment_2020_h2"]}, table), Config(plans=FAST))
    assert run(db, plan).ok
    with db.connect() as conn:
        bounds = _payment_bounds(conn)
        assert "2020-07-01" in bounds["payment_2020"] and "2020-07-01" in bounds[
            "payment_2020_h2"], bounds
        assert conn.execute(sql.SQL("SELECT count(*), sum(hashtext(t::text)) FROM {} t").format(
            ident("pay ment"))).fetchone() == rows
        assert leftovers(conn) == []
