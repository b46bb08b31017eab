"""Collisions by design: rows that share the new key but differ in the tie-break column.

A machine with a one-minute clock sends several payments stamped with the same second. For
every (key prefix, minute) holding such a collision, the collisions stage rewrites the seconds
of that minute's rows to their rank by the tie-break column (:00, :01, ...): every row of the
group stays in its minute, and the key becomes unique within it. Rows equal on the tie-break
too (duplicates by error) share a rank, so the dedupe stage, before or after, still finds them.
A group of more than 60 distinct rows in one minute cannot be numbered this way: it is listed,
and nothing in it is changed. The minute is taken in UTC.

This module reports (reading rows, under a statement timeout) and composes the stage's
statement; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from . import MigrateError
from .source import PartitionColumn, SourceTable, statement_timeout

MAX_PER_MINUTE = 60


@dataclass(frozen=True)
class CollisionGroup:
    prefix: tuple[Any, ...]  # values of the key columns other than the partition column
    minute: datetime
    size: int  # distinct tie-break values in the minute: the ranks needed


@dataclass(frozen=True)
class Rewrite:
    old: datetime
    new: datetime
    tiebreak: Any


@dataclass
class CollisionReport:
    key: tuple[str, ...]
    tiebreak: str
    groups: int  # fixable (prefix, minute) groups
    rows_rewritten: int  # rows whose timestamp changes
    unfixable: list[CollisionGroup]  # more than MAX_PER_MINUTE: left alone, stop the wizard
    sample: list[tuple[CollisionGroup, list[Rewrite]]]


@dataclass(frozen=True)
class _Shape:
    table: SourceTable
    prefix: tuple[str, ...]
    ts: str
    tiebreak: str
    utc: bool  # timestamptz: date_trunc in UTC


def _shape(table: SourceTable, pc: PartitionColumn, key: tuple[str, ...],
           tiebreak: str) -> _Shape:
    if pc.kind not in ("timestamptz", "timestamp"):
        raise MigrateError("collisions by minute apply to a timestamp partition column, "
                           f"not {pc.column.type}")
    if pc.name not in key:
        raise MigrateError(f"the key must contain the partition column {pc.name!r}")
    if tiebreak in key:
        raise MigrateError("the tie-break column cannot be part of the key")
    for c in (*key, tiebreak):
        table.column(c)
    return _Shape(table, tuple(c for c in key if c != pc.name), pc.name, tiebreak,
                  pc.kind == "timestamptz")


def _minute(s: _Shape, alias: str) -> sql.Composable:
    if s.utc:
        return sql.SQL("pg_catalog.date_trunc('minute', {c}, 'UTC')").format(
            c=sql.Identifier(alias, s.ts))
    return sql.SQL("pg_catalog.date_trunc('minute', {c})").format(c=sql.Identifier(alias, s.ts))


def _ranked(s: _Shape, first_groups: int | None = None) -> sql.Composed:
    """Every row of a (prefix, minute) group holding a collision (of the first `first_groups`
    groups only, when given): k1..kn (the prefix), m (the minute), old_ts, tb, rk (rank by
    tie-break), size (ranks in the group), new_ts, row_ctid."""
    ks = [sql.Identifier(f"k{i}") for i in range(1, len(s.prefix) + 1)]
    prefix = [sql.Identifier(c) for c in s.prefix]
    by_key = sql.SQL(", ").join([*prefix, sql.Identifier(s.ts)])
    join_on = sql.SQL("").join(sql.SQL("x.{} = g.{} AND ").format(p, k) for p, k in zip(
        prefix, ks, strict=True))
    x_keys = sql.SQL("").join(sql.SQL("x.{} AS {}, ").format(p, k) for p, k in zip(
        prefix, ks, strict=True))
    part = sql.SQL("").join(sql.SQL("{}, ").format(k) for k in ks)
    k_by_key = sql.SQL(", ").join(sql.Identifier("k", c) for c in (*s.prefix, s.ts))
    k_select = sql.SQL("").join(sql.SQL("k.{} AS {}, ").format(p, k) for p, k in zip(
        prefix, ks, strict=True))
    on_c = sql.SQL(" AND ").join(sql.SQL("k.{c} = c.{c}").format(c=sql.Identifier(c))
                                 for c in (*s.prefix, s.ts))
    # c: the (prefix, timestamp) pairs stored more than once, the only places a collision can
    # be. Counting rows needs no tie-break, so an index on (prefix, timestamp) answers it
    # without reading the table, and only those pairs' rows are read to compare tie-breaks.
    # (A prefix that is NULL never matches: such rows were never renumbered anyway.)
    return sql.SQL("""
        WITH c AS (
            SELECT {by_key} FROM {t} WHERE {ts} IS NOT NULL
            GROUP BY {by_key} HAVING pg_catalog.count(*) > 1
        ), g AS (
            SELECT DISTINCT {k_select}{minute_k} AS m FROM {t} AS k JOIN c ON {on_c}
            GROUP BY {k_by_key} HAVING pg_catalog.count(DISTINCT k.{tb}) > 1{limit}
        ), r AS (
            SELECT x.ctid AS row_ctid, {x_keys}g.m, x.{ts} AS old_ts, x.{tb} AS tb,
                   pg_catalog.dense_rank() OVER (PARTITION BY {part}g.m ORDER BY x.{tb}) AS rk
            FROM {t} AS x JOIN g ON {join_on}{minute_x} = g.m
        )
        SELECT r.*, pg_catalog.max(r.rk) OVER (PARTITION BY {part}r.m) AS size,
               r.m + pg_catalog.make_interval(secs => r.rk - 1) AS new_ts
        FROM r""").format(
        k_select=k_select, minute_k=_minute(s, "k"), t=s.table.ident, by_key=by_key,
        k_by_key=k_by_key, on_c=on_c,
        tb=sql.Identifier(s.tiebreak), x_keys=x_keys, ts=sql.Identifier(s.ts), part=part,
        join_on=join_on, minute_x=_minute(s, "x"),
        limit=sql.SQL("") if first_groups is None else sql.SQL(
            " ORDER BY {part}m LIMIT {n}").format(part=part, n=sql.Literal(first_groups)))


def find_collisions(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn,
                    key: tuple[str, ...], tiebreak: str, *, sample_groups: int = 10,
                    timeout: str = "10min") -> CollisionReport:
    """The (prefix, minute) groups to renumber, the rows that change, the groups that cannot
    be fixed, and the rewrites of the fixable ones among the first `sample_groups` groups."""
    s = _shape(table, pc, key, tiebreak)
    ks = sql.SQL("").join(sql.SQL("{}, ").format(sql.Identifier(f"k{i}"))
                          for i in range(1, len(s.prefix) + 1))
    n = len(s.prefix)
    limit = sql.Literal(MAX_PER_MINUTE)
    with statement_timeout(conn, timeout):
        # one pass for the totals and the groups that cannot be fixed (the first row)
        summary = conn.execute(sql.SQL(
            "WITH s AS ({ranked}), g AS (SELECT {ks}m, size, pg_catalog.count(*) FILTER"
            " (WHERE old_ts <> new_ts) AS changed FROM s GROUP BY {ks}m, size)"
            " SELECT true, {nulls}NULL, pg_catalog.count(*), coalesce(pg_catalog.sum(changed),"
            " 0) FROM g WHERE size <= {lim}"
            " UNION ALL (SELECT false, {ks}m, size, changed FROM g WHERE size > {lim}"
            " ORDER BY {ks}m)").format(
            ranked=_ranked(s), ks=ks, lim=limit,
            nulls=sql.SQL("").join([sql.SQL("NULL, ")] * n))).fetchall()
        # the sample ranks the rows of the first groups only
        rows = conn.execute(sql.SQL(
            "SELECT {ks}m, size, old_ts, new_ts, tb FROM ({ranked}) AS s WHERE size <= {lim}"
            " ORDER BY {ks}m, rk, old_ts").format(
            ranked=_ranked(s, sample_groups), ks=ks, lim=limit)).fetchall()
    totals = next(r for r in summary if r[0])
    groups, rewritten = int(totals[n + 2]), int(totals[n + 3])
    unfixable = [CollisionGroup(tuple(r[1:n + 1]), r[n + 1], r[n + 2])
                 for r in summary if not r[0]]
    sample: list[tuple[CollisionGroup, list[Rewrite]]] = []
    for r in rows:
        group = CollisionGroup(tuple(r[:n]), r[n], r[n + 1])
        if not sample or sample[-1][0] != group:
            sample.append((group, []))
        sample[-1][1].append(Rewrite(r[n + 2], r[n + 3], r[n + 4]))
    return CollisionReport(tuple(key), tiebreak, groups, rewritten, unfixable, sample)


def rewrite_statement(table: SourceTable, pc: PartitionColumn, key: tuple[str, ...],
                      tiebreak: str) -> sql.Composed:
    """The collisions stage's statement: renumber the seconds of every fixable group; rows of
    groups over MAX_PER_MINUTE are not touched."""
    s = _shape(table, pc, key, tiebreak)
    return sql.SQL(
        "UPDATE {t} AS x SET {ts} = s.new_ts FROM ({ranked}) AS s"
        " WHERE x.ctid = s.row_ctid AND s.size <= {lim} AND x.{ts} <> s.new_ts").format(
        t=table.ident, ts=sql.Identifier(s.ts), ranked=_ranked(s),
        lim=sql.Literal(MAX_PER_MINUTE))
