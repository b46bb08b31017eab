"""drain-default beyond test_moves.py: `pgparts check` afterwards on a DEFAULT holding rows of
several missing years (before the first partition, a hole between two, after the last), and
LIST-partitioned tables whose DEFAULT holds values including NULL (one new partition per
value; a NULL key is never lost, also one written while the move runs)."""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config
from tui.core.plans.registry import kind_named

from ..scenarios import SCHEMA, ident, leftovers, spec
from .test_moves import FAST, _payments, run
from .test_remedies import cli

PAY = f"{spec().split('.')[0]}.\"pay ment\""
EV = f"{spec().split('.')[0]}.\"év ents\""


def _digest(conn: psycopg.Connection, table: sql.Identifier) -> tuple[int, str]:
    n, h = conn.execute(sql.SQL(
        "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM {} t"
    ).format(table)).fetchone()
    return int(n), h


def test_check_reports_no_rows_in_default_after_draining_missing_years(db, capsys):
    with db.connect() as conn:
        _payments(conn)  # 2021-2024; the DEFAULT holds 2019, 2020, 2025, 2026
        # and a hole: 2022's partition goes, its rows land in the DEFAULT
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
            ident("pay ment"), ident("payment_2022")))
        conn.execute(sql.SQL("DROP TABLE {}").format(ident("payment_2022")))
        conn.execute(sql.SQL(
            "INSERT INTO {} SELECT timestamptz '2022-01-01 00:00+00' + g * interval '5 days',"
            " g % 7, g FROM generate_series(0, 72) g").format(ident("pay ment")))
        conn.execute(sql.SQL("ANALYZE {}").format(ident("pay ment")))
        before = _digest(conn, ident("pay ment"))
    status, out, err = cli(capsys, "check", PAY, "--json", "-d", db.dsn)
    assert {"default_has_rows", "range_gap"} <= {f["code"] for f in json.loads(out)}
    status, out, err = cli(capsys, "drain-default", PAY, "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        bounds = {c.name for c in load_forest(conn).find(PAY).children}
        assert {f"payment_{y}" for y in (2019, 2020, 2022, 2025, 2026)} <= bounds, bounds
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident("payment_default"))).fetchone()[0] == 0
        assert _digest(conn, ident("pay ment")) == before
        assert leftovers(conn) == []
    status, out, err = cli(capsys, "check", PAY, "--json", "-d", db.dsn)
    found = {f["code"] for f in json.loads(out)}
    assert "default_has_rows" not in found and "range_gap" not in found, out


def _events(conn: psycopg.Connection, null_in_default: bool) -> None:
    """A LIST-partitioned table (hostile names): 'eu' and 'us' partitions, a DEFAULT with a
    primary key of its own (the parent has none: a NULL key allows none on the parent) holding
    'asia', 'africa' (and NULL) rows."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.execute("DROP SCHEMA IF EXISTS pgparts CASCADE")
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    t = ident("év ents")
    conn.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, region text, v text)"
                         " PARTITION BY LIST (region)").format(t))
    for region in ("eu", "us"):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({})").format(
            ident(f"év ents_{region}"), t, sql.Literal(region)))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
        ident('év "dflt'), t))
    conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(ident('év "dflt')))
    regions = ["eu", "us", "asia", "africa"] + ([None] if null_in_default else [])
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(t), [
            (g, regions[g % len(regions)], f"v{g}") for g in range(150)])


def test_list_default_with_null_gets_a_partition_per_value(db, capsys):
    with db.connect() as conn:
        _events(conn, null_in_default=True)
        before = _digest(conn, ident("év ents"))
    status, out, err = cli(capsys, "drain-default", EV, "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "FOR VALUES IN (NULL)" in out and "distinct key values" in out, out
    status, out, err = cli(capsys, "drain-default", EV, "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        children = {c.name: c.bound_text for c in load_forest(conn).find(EV).children}
        assert children["év ents_asia"] == "FOR VALUES IN ('asia')"
        assert children["év ents_africa"] == "FOR VALUES IN ('africa')"
        assert children["év ents_null"] == "FOR VALUES IN (NULL)"
        assert children['év "dflt'] == "DEFAULT"
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident('év "dflt'))).fetchone()[0] == 0
        assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE region IS NULL").format(
            ident("év ents_null"))).fetchone()[0] == 30
        assert _digest(conn, ident("év ents")) == before
        assert leftovers(conn) == []
    status, out, err = cli(capsys, "check", EV, "--json", "-d", db.dsn)
    assert "default_has_rows" not in {f["code"] for f in json.loads(out)}, out


def test_list_null_written_during_the_move_stays_in_the_new_default(db):
    """The DEFAULT holds no NULL key when planned; a NULL key (and a new value) written while
    the move runs, before and after the copy, are neither lost nor misplaced."""
    with db.connect() as conn:
        _events(conn, null_in_default=False)
    kind = kind_named("drain-default")
    with db.connect() as conn:
        plan = kind.build(conn, load_forest(conn), None, kind.request({}, EV), Config(plans=FAST))
    assert not any("(NULL)" in line for line in plan.facts.changes)
    t = ident("év ents")
    with db.connect() as conn:  # after planning, before the copy
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1000, NULL, 'early'), (1001, 'oceania',"
                             " 'early')").format(t))
    catch_up = next(i for i, s in enumerate(plan.steps, 1) if s.title.startswith("Catch up"))

    def hook(event: str, step: int, stmt: int, runner) -> None:
        if (event, step, stmt) == ("step", catch_up, 0):  # after the copy: captured, replayed
            with psycopg.connect(db.dsn, autocommit=True) as c:
                c.execute(sql.SQL("INSERT INTO {} VALUES (1002, NULL, 'late'), (1003, 'asia',"
                                  " 'late'), (1004, 'oceania', 'late')").format(t))
                c.execute(sql.SQL("UPDATE {} SET region = NULL WHERE id = 2").format(t))

    result = run(db, plan, hook=hook)
    assert result.ok, result.error
    with db.connect() as conn:
        dflt = {r[0]: r[1] for r in conn.execute(sql.SQL("SELECT id, region FROM {}").format(
            ident('év "dflt'))).fetchall()}
        assert dflt == {1000: None, 1001: "oceania", 1002: None, 1004: "oceania", 2: None}, dflt
        assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE id = 1003").format(
            ident("év ents_asia"))).fetchone()[0] == 1
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(t)).fetchone()[0] == 155
        assert leftovers(conn) == []
