"""Foreign keys of unusual shapes through a move's swap, which drops the keys referencing the
table and re-creates them NOT VALID: two keys of one table on the same columns to the same
table (named by PostgreSQL, or by hand; NO ACTION and CASCADE), names that equal the names
PostgreSQL gives a key's per-partition entries (`<table>_<cols>_fkeyN` on 15, `<key>_N` on
18, cut at 63 bytes), the table's own keys in twins, and DEFERRABLE INITIALLY DEFERRED keys
with rows written just before the swap (its last replay would leave trigger events pending,
and ALTER TABLE refuses a table that has them)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from ..scenarios import MOVE_SCENARIOS, REF, TABLE, ident, leftovers
from .test_moves import per_bound, plan_for, run

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
