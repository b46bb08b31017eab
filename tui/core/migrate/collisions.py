"""Collisions by design: rows that share the new key but differ in the tie-break column.

A machine with a one-minute clock sends several payments stamped with the same second. For
every (key prefix, minute) holding such a collision, the collisions stage rewrites the seconds
of that minute's rows to their rank by the tie-break column (:00, :01, ...): every row of the
group stays in its minute, and the key becomes unique within it. Rows equal on the tie-break
too (duplicates by error) share a rank, so the dedupe stage, before or after, still finds them.
A group of more than 60 distinct rows in one minute cannot be numbered this way, nor rows sharing
an infinite timestamp ('infinity' plus seconds is 'infinity'): they are listed, and nothing in
them is changed. The minute is taken in UTC.

This module reports (reading rows, under a statement timeout) and composes the stage's
statement; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from . import MigrateError, tagged
from .source import (
    PartitionColumn,
    SourceTable,
    index_leads,
    repeated_rows,
    statement_timeout,
)

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
    minute_index: bool = False  # a btree index leads with (prefix..., timestamp): see _ranked


def with_minute_index(conn: psycopg.Connection, s: _Shape) -> _Shape:
    """`s`, knowing whether an index leads with the prefix columns (in any order) and then
    the timestamp: the rows of a group's minute, and of a repeated key, are then read by it."""
    return replace(s, minute_index=index_leads(conn, s.table, s.prefix, s.ts))


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


def _ranked(s: _Shape, first_groups: int | None = None,
            candidates: sql.Identifier | None = None) -> sql.Composed:
    """Every row of a (prefix, minute) group holding a collision (of the first `first_groups`
    groups only, when given): k1..kn (the prefix), m (the minute), old_ts, tb, rk (rank by
    tie-break), size (ranks in the group), new_ts, row_ctid, fixable (the group can be
    renumbered: at most MAX_PER_MINUTE ranks, and a finite minute; 'infinity' plus seconds is
    'infinity', so rows sharing an infinite timestamp cannot be told apart this way).

    `candidates`: a CTE of the enclosing statement holding the rows whose (prefix, timestamp)
    is stored more than once, with at least those columns and the tie-break (analysis.py
    shares it with the duplicates); by default they are found here."""
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
    # c: the (prefix, timestamp) pairs stored more than once, the only places a collision can
    # be. Counting rows needs no tie-break, so an index on (prefix, timestamp) answers it
    # without reading the table, and only those pairs' rows are read to compare tie-breaks.
    # (A prefix that is NULL never matches: such rows were never renumbered anyway.)
    # MATERIALIZED: counted once; inlined, a parallel plan counted the whole table again in
    # every worker (the inner side of a parallel join is built by each).
    # The rows of a group's minute: where an index leads with (prefix, timestamp), read by it
    # for each group, in the range [m, m + 59.999999 s] (the same rows: timestamps are whole
    # microseconds, and an infinite m bounds only itself); otherwise by a hash join on the
    # minute, computed for every row of the table. (Offered both in one join, the planner
    # took the estimate of a HAVING for the number of groups and sorted the whole table;
    # OFFSET 0 keeps the LATERAL subquery from being flattened into such a join.)
    if s.minute_index:
        rows = sql.SQL(
            "g CROSS JOIN LATERAL (SELECT x.ctid, x.{ts}, x.{tb} FROM {t} AS x WHERE {on}"
            " AND x.{ts} >= g.m AND x.{ts} <= g.m + interval '59.999999 seconds'"
            " AND {minute_x} = g.m OFFSET 0) AS x").format(
            ts=sql.Identifier(s.ts), tb=sql.Identifier(s.tiebreak), t=s.table.ident,
            on=sql.SQL(" AND ").join([*(sql.SQL("x.{} = g.{}").format(p, k) for p, k in zip(
                prefix, ks, strict=True)), sql.SQL("true")]), minute_x=_minute(s, "x"))
        g_keys = sql.SQL("").join(sql.SQL("g.{}, ").format(k) for k in ks)
    else:
        rows = sql.SQL("{t} AS x JOIN g ON {join_on}{minute_x} = g.m").format(
            t=s.table.ident, join_on=join_on, minute_x=_minute(s, "x"))
        g_keys = x_keys
    if candidates is None:
        pairs = sql.SQL("""c AS MATERIALIZED (
            SELECT {by_key} FROM {t} WHERE {ts} IS NOT NULL
            GROUP BY {by_key} HAVING pg_catalog.count(*) > 1
        ), """).format(by_key=by_key, t=s.table.ident, ts=sql.Identifier(s.ts))
        rows_of_c = repeated_rows(s.table, (*s.prefix, s.ts), sql.Identifier("c"),
                                  s.minute_index)
    else:
        pairs, rows_of_c = sql.SQL(""), sql.SQL("{} AS k").format(candidates)
    return sql.SQL("""
        WITH {pairs}g AS MATERIALIZED (
            SELECT DISTINCT {k_select}{minute_k} AS m FROM {rows_of_c}
            GROUP BY {k_by_key} HAVING pg_catalog.count(DISTINCT k.{tb}) > 1{limit}
        ), r AS (
            SELECT x.ctid AS row_ctid, {g_keys}g.m, x.{ts} AS old_ts, x.{tb} AS tb,
                   pg_catalog.dense_rank() OVER (PARTITION BY {part}g.m ORDER BY x.{tb}) AS rk
            FROM {rows}
        )
        SELECT q.*, q.size <= {lim} AND pg_catalog.isfinite(q.m) AS fixable FROM (
            SELECT r.*, pg_catalog.max(r.rk) OVER (PARTITION BY {part}r.m) AS size,
                   r.m + pg_catalog.make_interval(secs => r.rk - 1) AS new_ts
            FROM r) AS q""").format(lim=sql.Literal(MAX_PER_MINUTE),
        pairs=pairs, rows_of_c=rows_of_c, k_select=k_select, minute_k=_minute(s, "k"),
        t=s.table.ident, k_by_key=k_by_key,
        tb=sql.Identifier(s.tiebreak), g_keys=g_keys, ts=sql.Identifier(s.ts), part=part,
        rows=rows,
        limit=sql.SQL("") if first_groups is None else sql.SQL(
            " ORDER BY {part}m LIMIT {n}").format(part=part, n=sql.Literal(first_groups)))


def report_part(s: _Shape, ranked: sql.Composable, sample_groups: int) -> tagged.Part:
    """The collision report's CTEs and rows (tagged.py), from `ranked` (`_ranked()`), in one
    pass: the totals ('c.total'), the groups over the limit ('c.over'), and the rewrites of the
    fixable ones among the first `sample_groups` groups ('c.sample')."""
    ks = [sql.Identifier(f"k{i}") for i in range(1, len(s.prefix) + 1)]
    by = sql.SQL(", ").join([*ks, sql.Identifier("m")])
    on = sql.SQL(" AND ").join(sql.SQL("cs.{c} = cf.{c}").format(c=c)
                               for c in (*ks, sql.Identifier("m")))

    def group(alias: str) -> dict[str, sql.Composable]:
        out: dict[str, sql.Composable] = {
            f"c.k{i}": sql.Identifier(alias, f"k{i}") for i in range(1, len(ks) + 1)}
        return {**out, "c.m": sql.Identifier(alias, "m"),
                "c.size": sql.Identifier(alias, "size")}

    part = tagged.Part(
        ctes=[sql.SQL("cs AS MATERIALIZED ({})").format(ranked),
              sql.SQL("cg AS MATERIALIZED (SELECT {by}, size, pg_catalog.count(*) FILTER"
                      " (WHERE old_ts <> new_ts) AS changed, fixable FROM cs"
                      " GROUP BY {by}, size, fixable)"
                      ).format(by=by),
              # the first groups, fixable or not, as the sample shows them
              sql.SQL("cf AS (SELECT {by} FROM cg ORDER BY {by} LIMIT {n})").format(
                  by=by, n=sql.Literal(sample_groups))],
        columns=[("c.groups", tagged.COUNT), ("c.rows", tagged.COUNT), *group("cs").items(),
                 ("c.old_ts", sql.SQL("cs.old_ts")), ("c.new_ts", sql.SQL("cs.new_ts")),
                 ("c.tb", sql.SQL("cs.tb"))],
        typed_from=[sql.SQL("cs")])
    part.branches = [
        tagged.Branch("c.total", {
            "c.groups": sql.SQL("(SELECT pg_catalog.count(*) FROM cg WHERE fixable)"),
            "c.rows": sql.SQL("(SELECT coalesce(pg_catalog.sum(changed), 0)::pg_catalog.int8"
                              " FROM cg WHERE fixable)")}, sql.SQL("")),
        tagged.Branch("c.over", group("cg"),
                      sql.SQL("FROM cg WHERE NOT fixable ORDER BY {by}").format(by=by)),
        tagged.Branch("c.sample", {**group("cs"), "c.old_ts": sql.SQL("cs.old_ts"),
                                   "c.new_ts": sql.SQL("cs.new_ts"), "c.tb": sql.SQL("cs.tb")},
                      sql.SQL("FROM cs JOIN cf ON {on} WHERE cs.fixable"
                              " ORDER BY {cby}, cs.rk, cs.old_ts").format(
                          on=on, cby=sql.SQL(", ").join(
                              sql.SQL("cs.{}").format(c) for c in (*ks, sql.Identifier("m")))))]
    return part


def report_from(rows: tagged.Rows, s: _Shape, key: tuple[str, ...]) -> CollisionReport:
    n = len(s.prefix)

    def group(r: tuple[Any, ...]) -> CollisionGroup:
        return CollisionGroup(tuple(rows.get(r, f"c.k{i}") for i in range(1, n + 1)),
                              rows.get(r, "c.m"), rows.get(r, "c.size"))

    totals = rows.of("c.total")[0]
    sample: list[tuple[CollisionGroup, list[Rewrite]]] = []
    for r in rows.of("c.sample"):
        g = group(r)
        if not sample or sample[-1][0] != g:
            sample.append((g, []))
        sample[-1][1].append(Rewrite(rows.get(r, "c.old_ts"), rows.get(r, "c.new_ts"),
                                     rows.get(r, "c.tb")))
    return CollisionReport(tuple(key), s.tiebreak, int(rows.get(totals, "c.groups")),
                           int(rows.get(totals, "c.rows")),
                           [group(r) for r in rows.of("c.over")], sample)


def find_collisions(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn,
                    key: tuple[str, ...], tiebreak: str, *, sample_groups: int = 10,
                    timeout: str = "10min") -> CollisionReport:
    """The (prefix, minute) groups to renumber, the rows that change, the groups that cannot
    be fixed, and the rewrites of the fixable ones among the first `sample_groups` groups:
    one statement, the table ranked once."""
    s = with_minute_index(conn, _shape(table, pc, key, tiebreak))
    with statement_timeout(conn, timeout):
        rows = tagged.Rows(conn, [report_part(s, _ranked(s), sample_groups)])
    return report_from(rows, s, key)


def rewrite_statement(table: SourceTable, pc: PartitionColumn, key: tuple[str, ...],
                      tiebreak: str) -> sql.Composed:
    """The collisions stage's statement: renumber the seconds of every fixable group; rows of
    groups over MAX_PER_MINUTE are not touched."""
    s = _shape(table, pc, key, tiebreak)
    return sql.SQL(
        "UPDATE {t} AS x SET {ts} = s.new_ts FROM ({ranked}) AS s"
        " WHERE x.ctid = s.row_ctid AND s.fixable AND x.{ts} <> s.new_ts").format(
        t=table.ident, ts=sql.Identifier(s.ts), ranked=_ranked(s))
