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
from . import MigrateError, tagged
from .preflight import ForeignKey
from .source import SourceTable, index_leads, repeated_rows, statement_timeout

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


def candidates(table: SourceTable, columns: tuple[str, ...],
               indexed: bool = False) -> sql.Composable:
    """A FROM item with the table's rows that can be duplicates on `columns` (alias `k`):
    those whose NOT NULL columns among them (the tie-break, last, left out when others are)
    hold values stored more than once. Counting rows on fewer, fixed-width columns is a far
    smaller aggregate than the whole group (an index on them answers it without reading the
    table), and only the candidates are then grouped. Equality on NOT NULL columns matches
    what GROUP BY groups; without such a column every row is a candidate. `indexed`: an index
    leads with those columns (`narrow_columns`, `index_leads`): their rows are read by it."""
    narrow = narrow_columns(table, columns)
    if not narrow:
        return sql.SQL("{} AS k").format(table.ident)
    cols = _cols(narrow)
    # MATERIALIZED: counted once; inlined, a parallel plan counted the whole table again in
    # every worker (the inner side of a parallel join is built by each)
    return sql.SQL("(WITH c AS MATERIALIZED (SELECT {cols} FROM {t} GROUP BY {cols}"
                   " HAVING pg_catalog.count(*) > 1) SELECT k.* FROM {rows}) AS k").format(
        t=table.ident, cols=cols,
        rows=repeated_rows(table, narrow, sql.Identifier("c"), indexed))


def narrow_columns(table: SourceTable, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns whose repeated values find the candidates (see `candidates`)."""
    not_null = [c for c in columns if table.column(c).not_null]
    return tuple([c for c in columns[:-1] if c in not_null] or not_null)


def candidates_indexed(conn: psycopg.Connection, table: SourceTable,
                       columns: tuple[str, ...]) -> bool:
    narrow = narrow_columns(table, columns)
    return bool(narrow) and index_leads(conn, table, narrow)


def drop_set(table: SourceTable, columns: tuple[str, ...], surrogate: str,
             indexed: bool = False) -> sql.Composed:
    """SELECT drop_id, keep_id: each row to delete and the oldest row of its group.
    PARTITION BY groups NULLs together, as GROUP BY does."""
    return sql.SQL(
        "SELECT x.{s} AS drop_id, x.keep_id FROM (SELECT {s}, pg_catalog.min({s}) OVER"
        " (PARTITION BY {cols}) AS keep_id FROM {t}) AS x WHERE x.{s} <> x.keep_id").format(
        s=sql.Identifier(surrogate), cols=_cols(columns), t=candidates(table, columns, indexed))


def _split(fks: list[ForeignKey], surrogate: str) -> tuple[list[ForeignKey], list[ForeignKey]]:
    ok = [f for f in fks if f.ref_columns == (surrogate,)]
    return ok, [f for f in fks if f.ref_columns != (surrogate,)]


def report_part(columns: tuple[str, ...], surrogate: str, candidates: sql.Composable,
                repointable: list[ForeignKey], sample_groups: int) -> tagged.Part:
    """The duplicate report's CTEs and rows (tagged.py): the groups ('d.total': their number,
    the rows to delete, per foreign key the referencing rows to re-point) and the first
    `sample_groups` groups with their surrogate ids, oldest first ('d.sample'). `candidates`:
    a FROM item (alias k) with every row that can be a duplicate (`candidates()`)."""
    cols = _cols(columns)
    s = sql.Identifier(surrogate)
    named = {f"d.{i}": sql.Identifier("dg", c) for i, c in enumerate(columns)}
    per_fk = {f"d.fk{i}": sql.SQL(
        "(SELECT pg_catalog.count(*) FROM {r} AS r JOIN dd ON r.{c} = dd.drop_id)").format(
        r=sql.Identifier(fk.schema, fk.table), c=sql.Identifier(fk.columns[0]))
        for i, fk in enumerate(repointable)}
    return tagged.Part(
        ctes=[
            # every group with its ids, oldest first: the oldest is kept, the others deleted
            # (NULLs group together, as in drop_set)
            sql.SQL("dg AS MATERIALIZED (SELECT {cols}, pg_catalog.array_agg({s} ORDER BY {s})"
                    " AS pgparts_ids FROM {k} GROUP BY {cols} HAVING pg_catalog.count(*) > 1)"
                    ).format(cols=cols, s=s, k=candidates),
            sql.SQL("dd AS MATERIALIZED (SELECT pg_catalog.unnest(pgparts_ids[2:]) AS drop_id"
                    " FROM dg)")],
        columns=[("d.groups", tagged.COUNT), ("d.rows", tagged.COUNT),
                 *((k, tagged.COUNT) for k in per_fk), *named.items(),
                 ("d.ids", sql.SQL("dg.pgparts_ids"))],
        typed_from=[sql.SQL("dg")],
        branches=[
            tagged.Branch("d.total", {
                "d.groups": sql.SQL("(SELECT pg_catalog.count(*) FROM dg)"),
                "d.rows": sql.SQL("(SELECT pg_catalog.count(*) FROM dd)"), **per_fk},
                sql.SQL("")),
            tagged.Branch("d.sample", {**named, "d.ids": sql.SQL("dg.pgparts_ids")},
                          sql.SQL("FROM dg ORDER BY {cols} LIMIT {n}").format(
                              cols=_cols(columns, "dg"), n=sql.Literal(sample_groups)))])


def report_from(conn: psycopg.Connection, rows: tagged.Rows, table: SourceTable,
                columns: tuple[str, ...], surrogate: str,
                referencing: list[ForeignKey]) -> DuplicateReport:
    """The report from `report_part`'s rows, with the sample's rows read by surrogate id."""
    repointable, blocking = _split(referencing, surrogate)
    total = rows.of("d.total")[0]
    heads = [(tuple(rows.get(r, f"d.{i}") for i in range(len(columns))), rows.get(r, "d.ids"))
             for r in rows.of("d.sample")]
    ids = [i for _, group in heads for i in group]
    with conn.cursor(row_factory=dict_row) as cur:
        found = {r[surrogate]: r for r in cur.execute(sql.SQL(
            "SELECT * FROM {t} WHERE {s} = ANY({ids})").format(
            t=table.ident, s=sql.Identifier(surrogate), ids=sql.Literal(ids)))} if ids else {}
    groups = int(rows.get(total, "d.groups"))
    return DuplicateReport(
        columns, surrogate, groups, int(rows.get(total, "d.rows")),
        [DuplicateGroup(values, [found[i] for i in group if i in found])
         for values, group in heads],
        [Repoint(fk, int(rows.get(total, f"d.fk{i}"))) for i, fk in enumerate(repointable)],
        blocking if groups else [])


def report_columns(table: SourceTable, key: tuple[str, ...], tiebreak: str | None,
                   surrogate: str) -> tuple[str, ...]:
    """Key + tie-break, checked: the columns a duplicate is equal on."""
    columns = (*key, tiebreak) if tiebreak and tiebreak not in key else tuple(key)
    for c in (*columns, surrogate):
        table.column(c)
    if surrogate in columns:
        raise MigrateError("the surrogate id cannot be part of the duplicate test")
    if "pgparts_ids" in columns:
        raise MigrateError("a column named pgparts_ids cannot be part of the duplicate test")
    return columns


def find_duplicates(conn: psycopg.Connection, table: SourceTable, key: tuple[str, ...],
                    tiebreak: str | None, surrogate: str, referencing: list[ForeignKey], *,
                    sample_groups: int = 10, timeout: str = "10min") -> DuplicateReport:
    """Count the duplicate groups on key + tie-break, take a sample, and count the referencing
    rows the dedupe would re-point (per foreign key): one statement over the candidates."""
    columns = report_columns(table, key, tiebreak, surrogate)
    repointable, _ = _split(referencing, surrogate)
    indexed = candidates_indexed(conn, table, columns)
    part = report_part(columns, surrogate, candidates(table, columns, indexed), repointable,
                       sample_groups)
    with statement_timeout(conn, timeout):
        rows = tagged.Rows(conn, [part])
        return report_from(conn, rows, table, columns, surrogate, referencing)


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
                      unindexed_fks: Sequence[ForeignKey] = (),
                      indexed: bool = False) -> list[sql.Composed]:
    """The dedupe stage's SQL (`dedupe_steps()`'s statements without their checks), for
    running by hand in one transaction."""
    return [s.sql for s in dedupe_steps(table, columns, surrogate, referencing,
                                        unindexed_fks, indexed)]  # type: ignore[misc]


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
                 unindexed_fks: Sequence[ForeignKey] = (),
                 indexed: bool = False) -> list[Statement]:
    """The dedupe stage's statements, to run in this order in one transaction: the rows to
    delete with the row each one's references move to; every referencing foreign key
    re-pointed to the kept row; the delete; a check that the deleted rows are gone and the
    kept ones there. The re-points and the delete are checked on their row counts,
    their checks making the lines the stage's result shows. MigrateError when a foreign key
    points at other columns than the surrogate id (its rows cannot be re-pointed by id).

    `unindexed_fks` (`unindexed()`): referencing columns no index leads. PostgreSQL checks
    every deleted row's foreign keys with a query on the referencing table, a full scan of it
    when its column has no index (deleted rows x referencing rows: minutes for tens of
    thousands of each); an index on each such column is built before the delete and dropped
    after it, in the same transaction (SHARE on that table meanwhile).

    `indexed` (`candidates_indexed`): the candidates' rows are read by an index."""
    repointable, blocking = _split(referencing, surrogate)
    if blocking:
        raise MigrateError("foreign key(s) " + ", ".join(f.name for f in blocking)
                           + " do not reference the surrogate id: re-point them by hand first")
    s_ident = sql.Identifier(surrogate)
    out = [Statement(q, note="dedupe") for q in (
        sql.SQL("DROP TABLE IF EXISTS {w}").format(w=WORK_TABLE),
        sql.SQL("CREATE TEMP TABLE {w} AS {d}").format(
            w=WORK_TABLE, d=drop_set(table, columns, surrogate, indexed)),
        sql.SQL("CREATE INDEX ON {w} (drop_id)").format(w=WORK_TABLE),
        sql.SQL("ANALYZE {w}").format(w=WORK_TABLE))]
    for fk in repointable:
        out.append(Statement(sql.SQL(
            "UPDATE {r} AS r SET {c} = d.keep_id FROM {w} AS d WHERE r.{c} = d.drop_id").format(
            r=sql.Identifier(fk.schema, fk.table), c=sql.Identifier(fk.columns[0]),
            w=WORK_TABLE), note="dedupe", check=_counted(
            f"reference(s) in {display_name(fk.schema, fk.table)} ({fk.columns[0]}) re-pointed "
            "to the kept row")))
    helpers = [fk for fk in unindexed_fks if fk in repointable]
    out += [Statement(sql.SQL("CREATE INDEX {i} ON {r} ({c})").format(
        i=sql.Identifier(helper_index_name(fk)), r=sql.Identifier(fk.schema, fk.table),
        c=sql.Identifier(fk.columns[0])), note="dedupe") for fk in helpers]
    # by the surrogate's index, one look-up per row: as a join with the work table the planner
    # chose to read and hash the whole table for a few thousandths of its rows
    out.append(Statement(sql.SQL(
        "DELETE FROM {t} AS x WHERE x.{s} = ANY (ARRAY(SELECT d.drop_id FROM {w} AS d))"
        ).format(
        t=table.ident, w=WORK_TABLE, s=s_ident),
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
