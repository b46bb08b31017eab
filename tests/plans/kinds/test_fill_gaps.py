"""fill-gaps on real servers: the range_gap finding's fix (`pgparts fix`), the DEFAULT's rows of
a hole moved online with every row kept per bound, holes without rows created like the
partition below them (its HASH sub-partitions too) and attached without a scan of the DEFAULT,
the DEFAULT's rows of a hole moved into the shape of the sub-partitioned partition below it (a
sub-partitioned DEFAULT refused), holes of a time key cut on the newest partition's grid, and
kills in the create path then a re-run."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config
from tui.core.plans import Outcome
from tui.core.plans.kind import PlanKindError
from tui.core.plans.registry import kind_named

from ..contract.test_contract import _kill_points, _killer
from ..scenarios import (
    DEFAULT,
    GAP_NEW,
    MID,
    MOVE_SCENARIOS,
    SCHEMA,
    TABLE,
    base,
    codes,
    default_rows,
    ident,
    leftovers,
    spec,
)
from .test_moves import FAST, per_bound, plan_for, run
from .test_remedies import cli


def test_fix_offers_fill_gaps_and_moves_the_default_rows_of_the_hole(db, capsys):
    scenario = MOVE_SCENARIOS["fill_gaps"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        assert "range_gap" in codes(conn)
        before = per_bound(conn)
    status, out, err = cli(capsys, "fix", spec(), "--only", "range_gap", "--dry-run",
                           "-d", db.dsn)
    assert status == 0, err
    assert "fill the holes" in out and "moving the DEFAULT's rows online" in out, out
    assert "one EXISTS each" in out, out
    status, out, err = cli(capsys, "fill-gaps", spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    assert "(the swap)" in out + err
    with db.connect() as conn:
        assert scenario.fixed(conn)  # the hole is a partition; 20 rows of no hole stay
        assert per_bound(conn) == before
        assert conn.execute(sql.SQL("SELECT min(k), max(k), count(*) FROM {}").format(
            ident(GAP_NEW))).fetchone() == (100, 199, 100)
        assert leftovers(conn) == []
    status, out, err = cli(capsys, "fill-gaps", spec(), "--dry-run", "-d", db.dsn)
    assert status == 0 and "no hole" in out, out


def _gap_above_the_hash_partition(conn: psycopg.Connection, rows_in_hole: bool,
                                  hash_default: bool = False) -> None:
    """base() plus [400, 500): a hole [300, 400) above the HASH-partitioned [200, 300), and a
    DEFAULT holding rows beyond 500 (and of the hole when asked); with `hash_default`, the
    DEFAULT is itself HASH-partitioned (two leaves)."""
    base(conn)
    t = ident(TABLE)
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (400) TO (500)")
                 .format(ident('part ";4é'), t))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT{}").format(
        ident(DEFAULT), t, sql.SQL(" PARTITION BY HASH (id)" if hash_default else "")))
    for r in range(2 if hash_default else 0):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS 2,"
                             " REMAINDER {})").format(ident(f"{DEFAULT} h{r}"), ident(DEFAULT),
                                                     sql.Literal(r)))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g + 1000, g, 'd' || g FROM"
                         " generate_series(500, 529) g").format(t))
    if rows_in_hole:
        conn.execute(sql.SQL("INSERT INTO {} SELECT g + 9000, g, 'hole' FROM"
                             " generate_series(350, 359) g").format(t))


def test_hole_without_rows_is_created_like_its_hash_partitioned_neighbour(db, capsys):
    with db.connect() as conn:
        _gap_above_the_hash_partition(conn, rows_in_hole=False)
        before = per_bound(conn)
    status, out, err = cli(capsys, "fill-gaps", spec(), "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "sub-partitioned like" in out and "without a scan" in out, out
    status, out, err = cli(capsys, "fill-gaps", spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        root = load_forest(conn).find(spec())
        new = next(c for c in root.children if c.bound_text == "FOR VALUES FROM (300) TO (400)")
        assert new.name == f"{TABLE}_p300" and new.strategy == "hash"
        assert sorted(c.bound_text for c in new.children) == [
            "FOR VALUES WITH (modulus 2, remainder 0)", "FOR VALUES WITH (modulus 2, remainder 1)"]
        assert "range_gap" not in codes(conn)
        assert per_bound(conn) == before and default_rows(conn) == 30
        # the DEFAULT's helper CHECK is gone, nothing of pgparts' stays behind
        assert leftovers(conn) == []
        # rows of the hole now land in the new partition
        conn.execute(sql.SQL("INSERT INTO {} VALUES (9001, 333, 'x')").format(ident(TABLE)))
        assert default_rows(conn) == 30


def load_forest_name(db, name: str) -> str:
    with db.connect() as conn:
        return next(n.qualified for n in load_forest(conn).nodes.values() if n.name == name)


def test_rows_of_a_hole_next_to_a_sub_partitioned_one_move_into_its_shape(db):
    """The partition below the hole is HASH-partitioned: the DEFAULT's rows of the hole move
    into a new partition with the same two hash sub-partitions (hostile names)."""
    with db.connect() as conn:
        _gap_above_the_hash_partition(conn, rows_in_hole=True)
        before = per_bound(conn)
    plan = plan_for(db, "fill_gaps", {})
    assert any("sub-partitioned like" in line and load_forest_name(db, MID) in line
               for line in plan.facts.changes), plan.facts.changes
    result = run(db, plan)
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        root = load_forest(conn).find(spec())
        new = next(c for c in root.children if c.bound_text == "FOR VALUES FROM (300) TO (400)")
        assert new.name == f"{TABLE}_p300" and new.strategy == "hash"
        assert sorted((c.name, c.bound_text) for c in new.children) == [
            (f"{TABLE}_p300_{r}", f"FOR VALUES WITH (modulus 2, remainder {r})")
            for r in range(2)]
        assert per_bound(conn) == before and default_rows(conn) == 30
        assert "range_gap" not in codes(conn) and leftovers(conn) == []


def test_a_sub_partitioned_default_holding_rows_of_a_hole_is_refused_clearly(db):
    with db.connect() as conn:
        _gap_above_the_hash_partition(conn, rows_in_hole=True, hash_default=True)
    for kind, words in (("fill_gaps", "sub-partitioned DEFAULT is not supported"),
                        ("drain_default", "is itself partitioned")):
        with pytest.raises(PlanKindError) as exc:
            plan_for(db, kind, {})
        msg = str(exc.value)
        assert words in msg and load_forest_name(db, DEFAULT) in msg, msg
        assert "\n" not in msg
    with db.connect() as conn:  # nothing was created
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgparts%'"
                            ).fetchone()[0] == 0


def test_holes_of_a_time_key_follow_the_grid_and_the_names(db):
    """Years 2020 and 2023-2024: the hole is two partitions, payment_2021 and payment_2022
    (no DEFAULT: nothing to check, nothing scanned)."""
    with db.connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        p = ident("pay ment")
        conn.execute(sql.SQL("CREATE TABLE {} (pay_ts timestamptz NOT NULL, id int NOT NULL,"
                             " PRIMARY KEY (pay_ts, id)) PARTITION BY RANGE (pay_ts)").format(p))
        for y in (2020, 2023, 2024):
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
                         .format(ident(f"payment_{y}"), p, sql.Literal(f"{y}-01-01 00:00+00"),
                                 sql.Literal(f"{y + 1}-01-01 00:00+00")))
    table = f"{spec().split('.')[0]}.\"pay ment\""
    kind = kind_named("fill-gaps")
    with db.connect() as conn:
        plan = kind.build(conn, load_forest(conn), None, kind.request({}, table),
                          Config(plans=FAST))
    assert run(db, plan).ok
    with db.connect() as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        bounds = {c.name: c.bound_text for c in load_forest(conn).find(table).children}
        assert bounds["payment_2021"] == \
            "FOR VALUES FROM ('2021-01-01 00:00:00+00') TO ('2022-01-01 00:00:00+00')", bounds
        assert bounds["payment_2022"] == \
            "FOR VALUES FROM ('2022-01-01 00:00:00+00') TO ('2023-01-01 00:00:00+00')", bounds
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('2021-06-01 00:00+00', 1),"
                             " ('2022-12-31 23:59+00', 2)").format(ident("pay ment")))


def test_create_path_killed_then_run_again(make_db):
    """The create path's own resumption (its steps are create-ahead's, which the contract tests
    kill at every step): killed once the standalone table is committed, and once the ATTACH
    is, fill-gaps again (a new plan from the catalog) ends with the hole filled under the same
    name, every row kept, no stray table and no helper CHECK left on the DEFAULT."""
    first = make_db()
    with first.connect() as conn:
        _gap_above_the_hash_partition(conn, rows_in_hole=False)
    plan = plan_for(first, "fill_gaps", {})
    wanted = [i for i, s in enumerate(plan.steps, 1)
              if s.title.startswith(("Exclude", "Remove the helper CHECK"))]
    points = [p for p in _kill_points(plan) if p[0] == "statement" and p[1] in wanted]
    assert len(points) == 2
    for n, point in enumerate(points):
        db = first if n == 0 else make_db()
        if n:
            with db.connect() as conn:
                _gap_above_the_hash_partition(conn, rows_in_hole=False)
        with db.connect() as conn:
            before = per_bound(conn)
        hook, fired = _killer(db, point)
        result = run(db, plan_for(db, "fill_gaps", {}), hook=hook)
        assert fired and result.outcome == Outcome.FAILED, (point, result.error)
        again = plan_for(db, "fill_gaps", {})
        assert all(s.statements for s in again.steps)
        assert run(db, again).ok, point
        with db.connect() as conn:
            names = [c.name for c in load_forest(conn).find(spec()).children]
            assert f"{TABLE}_p300" in names and f"{TABLE}_p300_2" not in names, (point, names)
            assert "range_gap" not in codes(conn), point
            assert per_bound(conn) == before and leftovers(conn) == [], point
            stray = conn.execute(sql.SQL(
                "SELECT count(*) FROM pg_class c WHERE c.relnamespace = {}::regnamespace"
                " AND c.relkind IN ('r', 'p') AND NOT c.relispartition").format(
                sql.Literal(sql.Identifier(SCHEMA).as_string(conn)))).fetchone()[0]
            assert stray == 1, point  # the parent only


def test_no_hole_no_steps(db):
    with db.connect() as conn:
        base(conn)
    plan = plan_for(db, "fill_gaps", {})
    assert not plan.steps and "no hole" in plan.summary[0]


def test_fix_builds_each_plan_just_before_it_runs(db, capsys):
    """default_has_rows and range_gap on one table: drain-default runs first and replaces the
    DEFAULT; fill-gaps is then planned from the catalog as it is (nothing left here), never
    run from a plan made for the DEFAULT that is gone."""
    with db.connect() as conn:
        MOVE_SCENARIOS["fill_gaps"].build(conn, db.dsn)
        conn.execute(sql.SQL("ANALYZE {}").format(ident(TABLE)))
        assert {"default_has_rows", "range_gap"} <= codes(conn)
        before = per_bound(conn)
    status, out, err = cli(capsys, "fix", spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(ident(TABLE)))
        assert not {"default_has_rows", "range_gap"} & codes(conn)
        assert per_bound(conn) == before and default_rows(conn) == 0
        assert leftovers(conn) == []
