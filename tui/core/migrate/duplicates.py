"""Duplicates by error: rows equal on (new key + tie-break), the same payment stored twice.

The dedupe stage keeps the oldest row of each group (lowest surrogate id) and deletes the
others; rows of other tables pointing at a row it deletes are first re-pointed to the kept row,
never cascaded away. This module reports what that stage would do (reading rows, under a
statement timeout) and composes its statements; it runs none of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..names import display_name
from ..plans.engine.model import Statement, VerificationFailed
from . import MigrateError
from .preflight import ForeignKey
from .source import SourceTable, statement_timeout

WORK_TABLE = sql.Identifier("pg_temp", "pgparts_dedupe")


@dataclass(frozen=True)
class DuplicateGroup:
    values: tuple[Any, ...]  # of the key + tie-break columns
    rows: list[dict[str, Any]]  # every row of the group, oldest (kept) first


@dataclass(frozen=True)
class Repoint:
    fk: ForeignKey
    rows: int  # referencing rows pointing at a row the dedupe deletes


@dataclass
class DuplicateReport:
    columns: tuple[str, ...]  # key + tie-break
    surrogate: str
    groups: int
    rows_to_delete: int
    sample: list[DuplicateGroup]
    repoint: list[Repoint]  # foreign keys on the surrogate id: their rows are re-pointed
    blocking: list[ForeignKey]  # other foreign keys pointing at the table: cannot re-point


def _cols(columns: tuple[str, ...], alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in columns)


def candidates(table: SourceTable, columns: tuple[str, ...]) -> sql.Composable:
    """A FROM item with the table's rows that can be duplicates on `columns` (alias `k`):
    those whose NOT NULL columns among them (the tie-break, last, left out when others are)
    hold values stored more than once. Counting rows on fewer, fixed-width columns is a far
    smaller aggregate than the whole group (an index on them answers it without reading the
    table), and only the candidates are then grouped. Equality on NOT NULL columns matches
    what GROUP BY groups; without such a column every row is a candidate."""
    not_null = [c for c in columns if table.column(c).not_null]
    narrow = [c for c in columns[:-1] if c in not_null] or not_null
    if not narrow:
        return sql.SQL("{} AS k").format(table.ident)
    cols = _cols(tuple(narrow))
    on = sql.SQL(" AND ").join(sql.SQL("k.{c} = c.{c}").format(c=sql.Identifier(c))
                               for c in narrow)
    return sql.SQL("(SELECT k.* FROM {t} AS k JOIN (SELECT {cols} FROM {t} GROUP BY {cols}"
                   " HAVING pg_catalog.count(*) > 1) AS c ON {on}) AS k").format(
        t=table.ident, cols=cols, on=on)


def drop_set(table: SourceTable, columns: tuple[str, ...], surrogate: str) -> sql.Composed:
    """SELECT drop_id, keep_id: each row to delete and the oldest row of its group.
    PARTITION BY groups NULLs together, as GROUP BY does."""
    return sql.SQL(
        "SELECT x.{s} AS drop_id, x.keep_id FROM (SELECT {s}, pg_catalog.min({s}) OVER"
        " (PARTITION BY {cols}) AS keep_id FROM {t}) AS x WHERE x.{s} <> x.keep_id").format(
        s=sql.Identifier(surrogate), cols=_cols(columns), t=candidates(table, columns))


def _split(fks: list[ForeignKey], surrogate: str) -> tuple[list[ForeignKey], list[ForeignKey]]:
    ok = [f for f in fks if f.ref_columns == (surrogate,)]
    return ok, [f for f in fks if f.ref_columns != (surrogate,)]


def find_duplicates(conn: psycopg.Connection, table: SourceTable, key: tuple[str, ...],
                    tiebreak: str | None, surrogate: str, referencing: list[ForeignKey], *,
                    sample_groups: int = 10, timeout: str = "10min") -> DuplicateReport:
    """Count the duplicate groups on key + tie-break, take a sample, and count the referencing
    rows the dedupe would re-point (per foreign key)."""
    columns = (*key, tiebreak) if tiebreak and tiebreak not in key else tuple(key)
    for c in (*columns, surrogate):
        table.column(c)
    if surrogate in columns:
        raise MigrateError("the surrogate id cannot be part of the duplicate test")
    grouped = sql.SQL("FROM {t} GROUP BY {cols} HAVING pg_catalog.count(*) > 1").format(
        t=candidates(table, columns), cols=_cols(columns))
    repointable, blocking = _split(referencing, surrogate)
    # one pass over the drop set for the totals and every foreign key's referencing rows
    per_fk = [sql.SQL(", (SELECT pg_catalog.count(*) FROM {r} AS r JOIN d ON r.{c} = d.drop_id)")
              .format(r=sql.Identifier(fk.schema, fk.table), c=sql.Identifier(fk.columns[0]))
              for fk in repointable]
    with statement_timeout(conn, timeout):
        found = conn.execute(sql.SQL(
            "WITH d AS MATERIALIZED ({d}) SELECT (SELECT pg_catalog.count(DISTINCT keep_id)"
            " FROM d), (SELECT pg_catalog.count(*) FROM d){per_fk}").format(
            d=drop_set(table, columns, surrogate), per_fk=sql.SQL("").join(per_fk))).fetchone()
        groups, extra = found[0], found[1]
        heads = conn.execute(sql.SQL(
            "SELECT {cols}, pg_catalog.array_agg({s} ORDER BY {s}) {g} ORDER BY {cols}"
            " LIMIT {n}").format(cols=_cols(columns), s=sql.Identifier(surrogate), g=grouped,
                                 n=sql.Literal(sample_groups))).fetchall()
        ids = [i for h in heads for i in h[-1]]
        with conn.cursor(row_factory=dict_row) as cur:
            rows = {r[surrogate]: r for r in cur.execute(sql.SQL(
                "SELECT * FROM {t} WHERE {s} = ANY({ids})").format(
                t=table.ident, s=sql.Identifier(surrogate), ids=sql.Literal(ids)))}
    counts = [Repoint(fk, n) for fk, n in zip(repointable, found[2:], strict=True)]
    sample = [DuplicateGroup(tuple(h[:-1]), [rows[i] for i in h[-1] if i in rows])
              for h in heads]
    return DuplicateReport(columns, surrogate, groups, extra, sample, counts,
                           blocking if groups else [])


def unindexed(conn: psycopg.Connection, fks: Sequence[ForeignKey]) -> list[ForeignKey]:
    """The foreign keys whose referencing column leads no index of its table."""
    out = []
    for fk in fks:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_index x"
            " JOIN pg_catalog.pg_class c ON c.oid = x.indrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND x.indisvalid"
            " AND x.indpred IS NULL)", (fk.schema, fk.table, fk.columns[0])).fetchone()
        if not (row and row[0]):
            out.append(fk)
    return out


def helper_index_name(fk: ForeignKey) -> str:
    """The dedupe's own index on a referencing column (dropped in the same transaction)."""
    digest = hashlib.sha256("\x00".join((fk.schema, fk.table, fk.name)).encode()).hexdigest()
    return f"pgparts_dedupe_{digest[:8]}"


def dedupe_statements(table: SourceTable, columns: tuple[str, ...], surrogate: str,
                      referencing: list[ForeignKey],
                      unindexed_fks: Sequence[ForeignKey] = ()) -> list[sql.Composed]:
    """The dedupe stage's SQL (`dedupe_steps()`'s statements without their checks), for
    running by hand in one transaction."""
    return [s.sql for s in dedupe_steps(table, columns, surrogate, referencing,
                                        unindexed_fks)]  # type: ignore[misc]


def _counted(what: str) -> Callable[[Any, psycopg.Connection], str]:
    """A check turning a statement's count into the stage's result line."""
    def check(row: Any, _conn: psycopg.Connection) -> str:
        return f"{int(row[0]) if row else 0:,} {what}"
    return check


def _verified(row: Any, _conn: psycopg.Connection) -> str:
    left, lost, groups = (int(v) for v in row)
    if left or lost:
        raise VerificationFailed(f"{left} row(s) to delete still there, {lost} kept row(s) "
                                 "missing")
    return (f"verified: no deleted id left, the kept (oldest) row of each of {groups:,} "
            "group(s) present")


def dedupe_steps(table: SourceTable, columns: tuple[str, ...], surrogate: str,
                 referencing: list[ForeignKey],
                 unindexed_fks: Sequence[ForeignKey] = ()) -> list[Statement]:
    """The dedupe stage's statements, to run in this order in one transaction: the rows to
    delete with the row each one's references move to; every referencing foreign key
    re-pointed to the kept row; the delete; a check that the deleted rows are gone and the
    kept ones there. The re-points and the delete count their rows (a data-modifying WITH),
    their checks making the lines the stage's result shows. MigrateError when a foreign key
    points at other columns than the surrogate id (its rows cannot be re-pointed by id).

    `unindexed_fks` (`unindexed()`): referencing columns no index leads. PostgreSQL checks
    every deleted row's foreign keys with a query on the referencing table, a full scan of it
    when its column has no index (deleted rows x referencing rows: minutes for tens of
    thousands of each); an index on each such column is built before the delete and dropped
    after it, in the same transaction (SHARE on that table meanwhile)."""
    repointable, blocking = _split(referencing, surrogate)
    if blocking:
        raise MigrateError("foreign key(s) " + ", ".join(f.name for f in blocking)
                           + " do not reference the surrogate id: re-point them by hand first")
    s_ident = sql.Identifier(surrogate)
    out = [Statement(q, note="dedupe") for q in (
        sql.SQL("DROP TABLE IF EXISTS {w}").format(w=WORK_TABLE),
        sql.SQL("CREATE TEMP TABLE {w} AS {d}").format(
            w=WORK_TABLE, d=drop_set(table, columns, surrogate)),
        sql.SQL("CREATE INDEX ON {w} (drop_id)").format(w=WORK_TABLE),
        sql.SQL("ANALYZE {w}").format(w=WORK_TABLE))]
    for fk in repointable:
        out.append(Statement(sql.SQL(
            "WITH u AS (UPDATE {r} AS r SET {c} = d.keep_id FROM {w} AS d"
            " WHERE r.{c} = d.drop_id RETURNING 1) SELECT pg_catalog.count(*) FROM u").format(
            r=sql.Identifier(fk.schema, fk.table), c=sql.Identifier(fk.columns[0]),
            w=WORK_TABLE), note="dedupe", check=_counted(
            f"reference(s) in {display_name(fk.schema, fk.table)} ({fk.columns[0]}) re-pointed "
            "to the kept row")))
    helpers = [fk for fk in unindexed_fks if fk in repointable]
    out += [Statement(sql.SQL("CREATE INDEX {i} ON {r} ({c})").format(
        i=sql.Identifier(helper_index_name(fk)), r=sql.Identifier(fk.schema, fk.table),
        c=sql.Identifier(fk.columns[0])), note="dedupe") for fk in helpers]
    out.append(Statement(sql.SQL(
        "WITH x AS (DELETE FROM {t} AS x USING {w} AS d WHERE x.{s} = d.drop_id RETURNING 1)"
        " SELECT pg_catalog.count(*) FROM x").format(t=table.ident, w=WORK_TABLE, s=s_ident),
        note="dedupe", check=_counted("duplicate row(s) deleted")))
    out += [Statement(sql.SQL("DROP INDEX {}").format(
        sql.Identifier(fk.schema, helper_index_name(fk))), note="dedupe") for fk in helpers]
    out.append(Statement(sql.SQL(
        "SELECT (SELECT pg_catalog.count(*) FROM {w} AS d JOIN {t} AS x ON x.{s} = d.drop_id),"
        " (SELECT pg_catalog.count(*) FROM (SELECT DISTINCT keep_id FROM {w}) AS d"
        " WHERE NOT EXISTS (SELECT FROM {t} AS x WHERE x.{s} = d.keep_id)),"
        " (SELECT pg_catalog.count(DISTINCT keep_id) FROM {w})").format(
        w=WORK_TABLE, t=table.ident, s=s_ident), "verify",
        "the deleted rows gone, the kept ones there", check=_verified))
    out.append(Statement(sql.SQL("DROP TABLE {w}").format(w=WORK_TABLE), note="dedupe"))
    return out
