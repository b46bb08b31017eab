"""Foreign keys of unusual shapes through a move's swap, which drops the keys referencing the
table and re-creates them NOT VALID: two keys of one table on the same columns to the same
table (named by PostgreSQL, or by hand; NO ACTION and CASCADE), names that equal the names
PostgreSQL gives a key's per-partition entries (`<table>_<cols>_fkeyN` on 15, `<key>_N` on
18, cut at 63 bytes), the table's own keys in twins, and DEFERRABLE INITIALLY DEFERRED keys
with rows written just before the swap (its last replay would leave trigger events pending,
and ALTER TABLE refuses a table that has them)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from tui.core.plans import PlanRunner

from ..scenarios import (
    MOVE_SCENARIOS,
    REF,
    SPLIT_NEW,
    SPLIT_SOURCE,
    TABLE,
    ident,
    leftovers,
)
from .test_moves import Writer, per_bound, plan_for, run

TWINS = 'ré f2 "z;'  # two keys named by PostgreSQL
SUFFIXED = 'ré f3 "w;'  # a key named X and one named X_1
LONG = 'ré f4 "v;'  # a 63-byte name and the name of its first per-partition entry on 18
DIM = 'dïm ";x'
X = 'fk "é; x'


def _clip(name: str, limit: int) -> str:
    return name.encode()[:limit].decode(errors="ignore")


LONG_NAME = _clip('fk "é;' + "0" * 63, 63)  # '0' sorts before '_': re-created first
LONG_SIBLING = _clip(LONG_NAME, 61) + "_1"


def _table(conn: psycopg.Connection, name: str, keys: list[tuple[str | None, str]]) -> None:
    """A table referencing the parent by (id, k), a key per (name or None, ON DELETE action),
    created in that order, with a row referencing each third row of the parent."""
    t = ident(TABLE)
    conn.execute(sql.SQL("CREATE TABLE {} (rid int PRIMARY KEY, id int, k int)").format(
        ident(name)))
    for key, action in keys:
        named = sql.SQL("CONSTRAINT {} ").format(sql.Identifier(key)) if key else sql.SQL("")
        conn.execute(sql.SQL("ALTER TABLE {} ADD {}FOREIGN KEY (id, k) REFERENCES {}"
                             " ON DELETE {}").format(ident(name), named, t, sql.SQL(action)))
    conn.execute(sql.SQL("INSERT INTO {} SELECT row_number() OVER (ORDER BY k), id, k FROM {}"
                         " WHERE k % 3 = 0").format(ident(name), t))


def _twins(conn: psycopg.Connection) -> None:
    _table(conn, TWINS, [(None, "NO ACTION"), (None, "CASCADE")])


def _suffixed(conn: psycopg.Connection) -> None:
    _table(conn, SUFFIXED, [(X + "_1", "NO ACTION"), (X, "CASCADE")])


def _long(conn: psycopg.Connection) -> None:
    _table(conn, LONG, [(LONG_SIBLING, "CASCADE"), (LONG_NAME, "NO ACTION")])


def _dim(conn: psycopg.Connection, deferred: bool = False) -> None:
    conn.execute(sql.SQL("CREATE TABLE {} (k int PRIMARY KEY)").format(ident(DIM)))
    conn.execute(sql.SQL("INSERT INTO {} SELECT generate_series(-300, 600)").format(ident(DIM)))
    later = sql.SQL(" DEFERRABLE INITIALLY DEFERRED" if deferred else "")
    for name, action in (('own "a', "NO ACTION"), ('own "b', "CASCADE")):
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY (k) REFERENCES {}"
                             " ON DELETE {}{}").format(ident(TABLE), sql.Identifier(name),
                                                       ident(DIM), sql.SQL(action), later))


def _own_twins(conn: psycopg.Connection) -> None:
    _dim(conn)


SHAPES: dict[str, Callable[[psycopg.Connection], None]] = {
    "twins named by PostgreSQL": _twins,
    "X and X_1": _suffixed,
    "63 bytes": _long,
    "the table's own twins": _own_twins,
}


def _keys(conn: psycopg.Connection) -> set[tuple]:
    """Every top-level foreign key to or from the table: where, name, action, deferrability,
    validated."""
    return set(conn.execute(
        "SELECT conrelid::regclass::text, conname, confrelid::regclass::text, confdeltype,"
        " condeferrable, condeferred, convalidated FROM pg_constraint WHERE contype = 'f'"
        " AND conparentid = 0 AND (confrelid = %s::regclass OR conrelid = %s::regclass)",
        (ident(TABLE).as_string(conn),) * 2).fetchall())


def _state(conn: psycopg.Connection) -> tuple:
    refs = tuple(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(r))).fetchone()[0]
                 for r in (REF, TWINS, SUFFIXED, LONG)
                 if conn.execute("SELECT to_regclass(%s)", (ident(r).as_string(conn),)
                                 ).fetchone()[0])
    return per_bound(conn), refs, _keys(conn)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_split_with_keys_of_every_shape(db, shape):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        SHAPES[shape](conn)
        before = _state(conn)
    result = run(db, plan_for(db, "split", scenario.values))
    assert result.ok, (shape, result.error, result.state)
    with db.connect() as conn:
        assert scenario.fixed(conn)
        assert _state(conn) == before
        assert leftovers(conn) == []


def test_split_with_deferred_keys_while_writers_write(db):
    """DEFERRABLE INITIALLY DEFERRED keys: the table's own (checked on the new partitions) and
    the referencing table's (re-created in the swap). Writers write throughout, and rows are
    written right before the swap, so that its last replay inserts rows under a deferred key:
    the swap checks them at once (SET CONSTRAINTS ALL IMMEDIATE), else ALTER TABLE would
    refuse the new partition for its pending trigger events."""
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        _dim(conn, deferred=True)
        conn.execute(sql.SQL("ALTER TABLE {} ALTER CONSTRAINT {} DEFERRABLE INITIALLY DEFERRED")
                     .format(ident(REF), sql.Identifier('fk ";é')))
        rows = {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT id, k, v FROM {}").format(ident(TABLE))).fetchall()}
        refs = {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT rid, id, k FROM {}").format(ident(REF))).fetchall()}
        keys = _keys(conn)
    assert all(k[4] and k[5] for k in keys), keys  # every key deferrable, initially deferred
    plan = plan_for(db, "split", scenario.values)
    swap = next(i for i, s in enumerate(plan.steps, 1) if s.title.startswith("Swap"))
    t = ident(TABLE)

    def write(event: str, i: int, j: int, _runner: PlanRunner) -> None:
        # after the last catch-up, before the swap's query: only the swap replays these
        if (event, i, j) == ("statement", swap, 1) and 90001 not in rows:
            with db.connect() as c:
                for row in c.execute(sql.SQL(
                        "INSERT INTO {} VALUES (90001, 120, 'new a'), (90002, 170, 'new b')"
                        " RETURNING id, k, v").format(t)).fetchall():
                    rows[row[0]] = tuple(row[1:])
                for row in c.execute(sql.SQL("UPDATE {} SET v = 'changed' WHERE k IN (131, 181)"
                                             " RETURNING id, k, v").format(t)).fetchall():
                    rows[row[0]] = tuple(row[1:])

    writers = [Writer(db.dsn, 21, "rows", rows), Writer(db.dsn, 22, "refs", refs)]
    for w in writers:
        w.start()
    time.sleep(0.1)
    try:
        result = run(db, plan, hook=write)
    finally:
        for w in writers:
            w.stop.set()
            w.join(10)
    for w in writers:
        assert w.error is None, w.error
        assert w.ops > 5, w.ops
    assert result.ok, (result.error, result.state)
    assert result.steps[swap - 1].rows >= 4, result.steps[swap - 1].rows  # replayed in the swap
    with db.connect() as conn:
        assert scenario.fixed(conn)
        assert leftovers(conn) == []
        assert _keys(conn) == keys  # deferred still, validated
        assert {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT id, k, v FROM {}").format(t)).fetchall()} == rows
        assert {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT rid, id, k FROM {}").format(ident(REF))).fetchall()} == refs
        assert all(150 <= k < 200 for (k,) in conn.execute(sql.SQL("SELECT k FROM {}").format(
            ident(SPLIT_NEW))).fetchall())
        assert all(100 <= k < 150 for (k,) in conn.execute(sql.SQL("SELECT k FROM {}").format(
            ident(SPLIT_SOURCE))).fetchall())


def test_drain_default_with_every_shape_at_once(db):
    """Every shape of the split's test in one table set, through another kind's swap (several
    referencing tables of one schema, each key re-created in the same transaction)."""
    scenario = MOVE_SCENARIOS["drain_default"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        for build in SHAPES.values():
            build(conn)
        before = _state(conn)
    result = run(db, plan_for(db, "drain-default", scenario.values))
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert scenario.fixed(conn)
        assert _state(conn) == before
        assert leftovers(conn) == []
