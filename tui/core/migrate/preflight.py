"""Preflight: what the migration of a plain table involves, before anything is changed.

- Rows and size per period of the partition column (date_trunc in UTC; integer ranges), estimated
  from the planner's statistics (histogram and most common values, no row read) or counted
  exactly when asked, under a statement timeout.
- Everything that depends on the table, from the catalog only: the Build and Dependencies stages
  recreate it, abort restores it. Deparsing a policy expression (pg_get_expr with the table's
  oid) may open the table, with an AccessShareLock released at once; nothing else locks.
- Disk space: what the copy needs (table + indexes, x1.1). Free space is not visible through SQL
  without superuser file functions, so it is reported unknown, never guessed.
- Sessions holding a lock on the table (pg_locks + pg_stat_activity, our backend excluded), and
  waiting for the writers among them to finish (`wait_for_writers`, for "offer to wait"). A
  session that will write later but holds no lock now (idle, outside a transaction) cannot be
  seen this way: the operator still has to stop the writers.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql

from ..infinity import INFINITY, NEG_INFINITY, is_infinite
from . import MigrateError
from .periods import PERIODS, advance, as_utc, floor_to, truncate
from .source import PartitionColumn, SourceTable, load_table, partition_column, statement_timeout

SPACE_FACTOR = 1.1
"""The copy needs the table and its indexes again, plus some slack for fill factor and WAL."""

FREE_SPACE_UNKNOWN = (
    "free disk space is unknown: PostgreSQL does not report it through SQL (pg_tablespace_size "
    "is the space used, not the space free); check the file system of the tablespace")

ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


# -- rows per period ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeriodRows:
    start: datetime | int  # a UTC datetime for time columns, an int for integer ranges
    end: datetime | int  # exclusive
    rows: int
    bytes: int


@dataclass(frozen=True)
class RowsPerPeriod:
    period: str  # one of PERIODS, or "range" for integer columns
    step: int | None  # integer columns: the width of a range
    exact: bool
    periods: list[PeriodRows]
    null_rows: int
    total_rows: int
    bytes_per_row: float
    note: str = ""
    # 'infinity' and '-infinity' (date and timestamp columns): in no period, like NULLs
    infinite_rows: int = 0
    neg_infinite_rows: int = 0


_STATS_SQL = """
SELECT c.reltuples::float8,
       (c.relpages::bigint + coalesce(tc.relpages, 0)) * current_setting('block_size')::bigint,
       s.null_frac, s.histogram_bounds::text::{t}[], s.most_common_vals::text::{t}[],
       s.most_common_freqs
FROM pg_class c
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
LEFT JOIN pg_stats s ON s.schemaname = {schema} AND s.tablename = {name} AND s.attname = {col}
     AND NOT s.inherited
WHERE c.oid = {oid}
"""


def _position(value: Any) -> float:
    if isinstance(value, datetime | date):
        return as_utc(value).timestamp()
    return float(value)


def _start_of(value: Any, period: str, step: int | None) -> datetime | int:
    if step is not None:
        return floor_to(int(value), step)
    return truncate(as_utc(value), period)


def _next(start: datetime | int, period: str, step: int | None) -> datetime | int:
    if step is not None:
        assert isinstance(start, int)
        return start + step
    assert isinstance(start, datetime)
    return advance(start, period)


def _span(lo: Any, hi: Any, period: str, step: int | None) -> list[tuple[Any, Any]]:
    """Every period from the one holding `lo` to the one holding `hi`, empty ones included."""
    out = []
    start = _start_of(lo, period, step)
    last = _start_of(hi, period, step)
    while start <= last:  # type: ignore[operator]
        end = _next(start, period, step)
        out.append((start, end))
        start = end
    return out


def default_step(lo: int, hi: int, ranges: int = 20) -> int:
    """A round range width (1, 2 or 5 x 10^k) giving about `ranges` ranges from lo to hi."""
    raw = max(1.0, (hi - lo + 1) / ranges)
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return int(m * power)
    return int(10 * power)


def _estimate(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn, period: str,
              step: int | None) -> RowsPerPeriod:
    row = conn.execute(sql.SQL(_STATS_SQL).format(
        t=pc.cast_type, schema=sql.Literal(table.schema), name=sql.Literal(table.name),
        col=sql.Literal(pc.name), oid=sql.Literal(table.oid))).fetchone()
    assert row is not None
    reltuples, heap_bytes, null_frac, hist, mcv, mcf = row
    kind = "range" if step is not None or not pc.is_time else period
    if reltuples == 0:
        return RowsPerPeriod(kind, step, False, [], 0, 0, 0.0,
                             note="the table is empty, according to its statistics")
    if reltuples < 0 or null_frac is None or (not hist and not mcv):
        return RowsPerPeriod(kind, step, False, [], 0, 0, 0.0,
                             note="no statistics on this column: run ANALYZE on the table, or "
                                  "ask for exact counts")
    values = [v for v in (*(hist or []), *(mcv or [])) if not is_infinite(v)]
    inf = {s: round(reltuples * sum(f for v, f in zip(mcv or [], mcf or [], strict=True)
                                    if v == s))
           for s in (INFINITY, NEG_INFINITY)}
    if not values:
        return RowsPerPeriod(kind, step, False, [], round(null_frac * reltuples),
                             round(reltuples), 0.0, note="estimated from the planner's "
                             "statistics", infinite_rows=inf[INFINITY],
                             neg_infinite_rows=inf[NEG_INFINITY])
    if not pc.is_time and step is None:
        step = default_step(int(min(values)), int(max(values)))
    spans = _span(min(values), max(values), period, step)
    starts = [_position(s) for s, _ in spans]
    ends = [_position(e) for _, e in spans]
    rows = [0.0] * len(spans)
    mcv_freq = sum(mcf or [])
    for value, freq in zip(mcv or [], mcf or [], strict=True):
        if is_infinite(value):
            continue
        rows[bisect.bisect_right(starts, _position(value)) - 1] += freq * reltuples
    if hist and len(hist) > 1:
        # every histogram bucket holds the same share of the rows outside the MCV list
        share = (1.0 - null_frac - mcv_freq) * reltuples / (len(hist) - 1)
        for lo_v, hi_v in zip(hist, hist[1:], strict=False):
            if is_infinite(lo_v) or is_infinite(hi_v):
                # a bucket reaching an infinity: its rows are placed at its finite end
                finite = [v for v in (lo_v, hi_v) if not is_infinite(v)]
                if finite:
                    rows[bisect.bisect_right(starts, _position(finite[0])) - 1] += share
                continue
            lo, hi = _position(lo_v), _position(hi_v)
            first = bisect.bisect_right(starts, lo) - 1
            if hi <= lo:
                rows[first] += share
                continue
            i = first
            while i < len(spans) and starts[i] <= hi:
                overlap = min(hi, ends[i]) - max(lo, starts[i])
                rows[i] += share * max(0.0, overlap) / (hi - lo)
                i += 1
    per_row = heap_bytes / reltuples if reltuples > 0 else 0.0
    # rounded cumulatively: quiet periods hold fractions of a row that must add up, not vanish
    out, cum, done = [], 0.0, 0
    for (s, e), r in zip(spans, rows, strict=True):
        cum += r
        n = round(cum) - done
        done += n
        out.append(PeriodRows(s, e, n, round(n * per_row)))
    return RowsPerPeriod(kind, step, False, out, round(null_frac * reltuples),
                         round(reltuples), per_row,
                         note="estimated from the planner's statistics",
                         infinite_rows=inf[INFINITY],
                             neg_infinite_rows=inf[NEG_INFINITY])


def _bucket(pc: PartitionColumn, period: str, step: int | None) -> sql.Composable:
    col = sql.Identifier(pc.name)
    if step is not None:
        return sql.SQL("(pg_catalog.floor({c}::numeric / {s}) * {s})::bigint").format(
            c=col, s=sql.Literal(step))
    if pc.kind == "timestamptz":
        return sql.SQL("pg_catalog.date_trunc({p}, {c}, 'UTC')").format(
            p=sql.Literal(period), c=col)
    if pc.kind == "date":
        return sql.SQL("pg_catalog.date_trunc({p}, {c}::timestamp)").format(
            p=sql.Literal(period), c=col)
    return sql.SQL("pg_catalog.date_trunc({p}, {c})").format(p=sql.Literal(period), c=col)


def _by_bounds(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn,
               period: str) -> list[tuple[Any, int]] | None:
    """(period start, rows) as the date_trunc grouping counts them, found by comparing each
    value with the periods' bounds (width_bucket: a binary search over them) rather than by
    date_trunc in UTC, which converts every row's timestamp (most of the count's time). The
    bounds span min to max of the column's finite values (an index on it answers that); None
    when there is no such value, or when a finite row fell outside them (written between the
    two statements): the caller then counts with date_trunc. The infinities are returned as
    such (`Infinite` keys)."""
    col = sql.Identifier(pc.name)
    lo, hi = conn.execute(sql.SQL(
        "SELECT pg_catalog.min({c}), pg_catalog.max({c}) FROM {t}"
        " WHERE {c} > '-infinity' AND {c} < 'infinity'"
    ).format(c=col, t=table.ident)).fetchone() or (None, None)
    if lo is None or hi is None:
        return None
    spans = _span(lo, hi, period, None)
    starts = [st for st, _ in spans]
    bounds: list[Any] = [*starts, spans[-1][1]]
    if pc.kind == "date":
        bounds = [b.date() for b in bounds]
    elif pc.kind == "timestamp":
        bounds = [b.replace(tzinfo=None) for b in bounds]
    counted = conn.execute(sql.SQL(
        "SELECT pg_catalog.width_bucket({c}, %s), pg_catalog.isfinite({c}), pg_catalog.count(*)"
        " FROM {t} GROUP BY 1, 2"
    ).format(c=col, t=table.ident), (bounds,)).fetchall()
    if any(b is not None and finite and not 1 <= b <= len(starts) for b, finite, _ in counted):
        return None
    return [(None if b is None else starts[b - 1] if finite
             else INFINITY if b > len(starts) else NEG_INFINITY, n)
            for b, finite, n in counted]


def _count(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn, period: str,
           step: int | None, timeout: str) -> RowsPerPeriod:
    with statement_timeout(conn, timeout):
        if not pc.is_time and step is None:
            lo, hi = conn.execute(sql.SQL(
                "SELECT pg_catalog.min({c})::bigint, pg_catalog.max({c})::bigint FROM {t}").format(
                c=sql.Identifier(pc.name), t=table.ident)).fetchone() or (None, None)
            step = default_step(lo, hi) if lo is not None else 1
        counted = _by_bounds(conn, table, pc, period) if pc.is_time else None
        if counted is None:
            counted = conn.execute(sql.SQL(
                "SELECT {b} AS p, pg_catalog.count(*) FROM {t} GROUP BY 1 ORDER BY 1").format(
                b=_bucket(pc, period, step), t=table.ident)).fetchall()
        heap_bytes = conn.execute("SELECT pg_table_size(%s)", (table.oid,)).fetchone()[0]
    found = {(as_utc(k) if isinstance(k, datetime) else k): n
             for k, n in counted if k is not None and not is_infinite(k)}
    null_rows = sum(n for k, n in counted if k is None)
    inf = {s: sum(n for k, n in counted if k == s) for s in (INFINITY, NEG_INFINITY)}
    total = sum(n for _, n in counted)
    per_row = heap_bytes / total if total else 0.0
    kind = "range" if step is not None else period
    out: list[PeriodRows] = []
    if found:
        for s, e in _span(min(found), max(found), period, step):  # type: ignore[type-var]
            n = found.get(s, 0)
            out.append(PeriodRows(s, e, n, round(n * per_row)))
    return RowsPerPeriod(kind, step, True, out, null_rows, total, per_row, note="counted",
                         infinite_rows=inf[INFINITY], neg_infinite_rows=inf[NEG_INFINITY])


def rows_per_period(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn,
                    period: str = "year", *, step: int | None = None, exact: bool = False,
                    timeout: str = "10min") -> RowsPerPeriod:
    """Rows and bytes per `period` (time columns) or per range of `step` (integer columns; a
    round step is chosen when None). Estimated unless `exact` (which reads the whole table)."""
    if pc.is_time and period not in PERIODS:
        raise MigrateError(f"unknown period {period!r}; one of {', '.join(PERIODS)}")
    if step is not None and (pc.is_time or step < 1):
        raise MigrateError("a range step applies to integer columns and must be positive")
    if exact:
        return _count(conn, table, pc, period, step, timeout)
    return _estimate(conn, table, pc, period, step)


# -- what depends on the table --------------------------------------------------------------------
@dataclass(frozen=True)
class Index:
    name: str
    definition: str
    columns: tuple[str, ...]  # key columns; empty when an expression is among them
    primary: bool
    unique: bool
    valid: bool
    partial_or_expression: bool
    constraint: str | None


@dataclass(frozen=True)
class Constraint:
    name: str
    type: str  # p, u, c, x, n (PG 18's NOT NULL constraints), t
    definition: str
    validated: bool


@dataclass(frozen=True)
class ForeignKey:
    schema: str  # the referencing table
    table: str
    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    on_update: str
    definition: str
    validated: bool


@dataclass(frozen=True)
class DependentView:
    schema: str
    name: str
    materialized: bool
    depth: int  # 1: reads the table itself; 2: reads a view that reads it, ...


@dataclass(frozen=True)
class Grant:
    grantee: str  # a role name, or PUBLIC
    privilege: str
    grantable: bool
    grantor: str
    column: str | None = None


@dataclass(frozen=True)
class Policy:
    name: str
    command: str  # ALL, SELECT, INSERT, UPDATE, DELETE
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    with_check: str | None


@dataclass
class Dependents:
    owner: str
    tablespace: str | None
    unlogged: bool
    reloptions: tuple[str, ...]
    replica_identity: str
    indexes: list[Index] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    own_fks: list[ForeignKey] = field(default_factory=list)
    referencing_fks: list[ForeignKey] = field(default_factory=list)
    views: list[DependentView] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)  # SQL-standard bodies that use it
    triggers: list[tuple[str, str, str]] = field(default_factory=list)  # name, def, enabled
    rules: list[tuple[str, str]] = field(default_factory=list)
    sequences: list[tuple[str, str, str, str]] = field(default_factory=list)  # schema, name,
    #   column, "identity" or "serial"
    identity_columns: list[tuple[str, str]] = field(default_factory=list)  # column, ALWAYS|...
    grants: list[Grant] = field(default_factory=list)
    comments: list[tuple[str, str | None, str]] = field(default_factory=list)  # kind, name, text
    publications: list[tuple[str, str, bool]] = field(default_factory=list)  # name, how, viaroot
    row_security: bool = False
    force_row_security: bool = False
    policies: list[Policy] = field(default_factory=list)
    statistics: list[tuple[str, str]] = field(default_factory=list)  # extended statistics
    inheritance: list[tuple[str, str, str]] = field(default_factory=list)  # parent|child, s, n


_RELATION_SQL = """
SELECT pg_get_userbyid(c.relowner),
       coalesce(ts.spcname, (SELECT dts.spcname FROM pg_database d
                             JOIN pg_tablespace dts ON dts.oid = d.dattablespace
                             WHERE d.datname = current_database())),
       c.relpersistence = 'u', coalesce(c.reloptions, '{}')::text[],
       c.relreplident::text, c.relrowsecurity, c.relforcerowsecurity
FROM pg_class c LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
WHERE c.oid = %(oid)s
"""
_INDEXES_SQL = """
SELECT ic.relname, pg_get_indexdef(x.indexrelid),
       ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= x.indnkeyatts ORDER BY k.ord),
       x.indisprimary, x.indisunique, x.indisvalid,
       x.indexprs IS NOT NULL OR x.indpred IS NOT NULL OR 0 = ANY(x.indkey::int2[]),
       con.conname
FROM pg_index x
JOIN pg_class ic ON ic.oid = x.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
     AND con.contype IN ('p', 'u', 'x')
WHERE x.indrelid = %(oid)s
ORDER BY ic.relname
"""
_CONSTRAINTS_SQL = """
SELECT conname, contype::text, pg_get_constraintdef(oid), convalidated
FROM pg_constraint WHERE conrelid = %(oid)s AND contype <> 'f' ORDER BY conname
"""
_FKS_SQL = """
SELECT n.nspname, c.relname, con.conname,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       rn.nspname, rc.relname,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       con.confdeltype::text, con.confupdtype::text, pg_get_constraintdef(con.oid),
       con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND {side} = %(oid)s
ORDER BY n.nspname, c.relname, con.conname
"""
_OWN_FKS = sql.SQL(_FKS_SQL).format(side=sql.SQL("con.conrelid"))
_REFERENCING_FKS = sql.SQL(_FKS_SQL).format(side=sql.SQL("con.confrelid"))
_VIEWS_SQL = """
WITH RECURSIVE deps AS (
    SELECT r.ev_class AS oid, 1 AS depth
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = %(oid)s AND r.ev_class <> %(oid)s
  UNION
    SELECT r.ev_class, deps.depth + 1
    FROM deps JOIN pg_depend d ON d.refobjid = deps.oid
         AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid
    WHERE r.ev_class <> deps.oid
)
SELECT n.nspname, c.relname, c.relkind = 'm', min(deps.depth)
FROM deps JOIN pg_class c ON c.oid = deps.oid JOIN pg_namespace n ON n.oid = c.relnamespace
GROUP BY 1, 2, 3 ORDER BY 4, 1, 2
"""
_FUNCTIONS_SQL = """
SELECT DISTINCT d.objid::regprocedure::text FROM pg_depend d
WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %(oid)s ORDER BY 1
"""
_TRIGGERS_SQL = """
SELECT tgname, pg_get_triggerdef(oid), tgenabled::text FROM pg_trigger
WHERE tgrelid = %(oid)s AND NOT tgisinternal ORDER BY tgname
"""
_RULES_SQL = """
SELECT rulename, pg_get_ruledef(oid) FROM pg_rewrite
WHERE ev_class = %(oid)s AND rulename <> '_RETURN' ORDER BY rulename
"""
_SEQUENCES_SQL = """
SELECT n.nspname, s.relname, a.attname, CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'serial' END
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %(oid)s AND d.deptype IN ('a', 'i')
ORDER BY a.attnum
"""
_IDENTITY_SQL = """
SELECT attname, CASE attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END
FROM pg_attribute WHERE attrelid = %(oid)s AND attidentity <> '' AND NOT attisdropped
ORDER BY attnum
"""
_GRANTS_SQL = """
SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END,
       g.privilege_type, g.is_grantable, pg_get_userbyid(g.grantor), NULL::text
FROM pg_class c, aclexplode(c.relacl) g WHERE c.oid = %(oid)s
UNION ALL
SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END,
       g.privilege_type, g.is_grantable, pg_get_userbyid(g.grantor), a.attname::text
FROM pg_attribute a, aclexplode(a.attacl) g
WHERE a.attrelid = %(oid)s AND a.attacl IS NOT NULL AND NOT a.attisdropped
ORDER BY 5 NULLS FIRST, 1, 2
"""
_COMMENTS_SQL = """
SELECT 'table', NULL::text, d.description FROM pg_description d
WHERE d.classoid = 'pg_class'::regclass AND d.objoid = %(oid)s AND d.objsubid = 0
UNION ALL
SELECT 'column', a.attname::text, d.description FROM pg_description d
JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
WHERE d.classoid = 'pg_class'::regclass AND d.objoid = %(oid)s AND d.objsubid > 0
UNION ALL
SELECT 'index', ic.relname::text, d.description FROM pg_index x
JOIN pg_class ic ON ic.oid = x.indexrelid
JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = x.indexrelid
     AND d.objsubid = 0
WHERE x.indrelid = %(oid)s
UNION ALL
SELECT 'constraint', con.conname::text, d.description FROM pg_constraint con
JOIN pg_description d ON d.classoid = 'pg_constraint'::regclass AND d.objoid = con.oid
WHERE con.conrelid = %(oid)s
UNION ALL
SELECT 'trigger', t.tgname::text, d.description FROM pg_trigger t
JOIN pg_description d ON d.classoid = 'pg_trigger'::regclass AND d.objoid = t.oid
WHERE t.tgrelid = %(oid)s
ORDER BY 1, 2
"""
_PUBLICATIONS_SQL = """
SELECT p.pubname, 'table', p.pubviaroot FROM pg_publication_rel r
JOIN pg_publication p ON p.oid = r.prpubid WHERE r.prrelid = %(oid)s
UNION ALL
SELECT p.pubname, 'all tables', p.pubviaroot FROM pg_publication p WHERE p.puballtables
UNION ALL
SELECT p.pubname, 'schema', p.pubviaroot FROM pg_publication_namespace pn
JOIN pg_publication p ON p.oid = pn.pnpubid
WHERE pn.pnnspid = (SELECT relnamespace FROM pg_class WHERE oid = %(oid)s)
ORDER BY 1
"""
_POLICIES_SQL = """
SELECT polname,
       CASE polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                   WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
       polpermissive,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END
             FROM unnest(polroles) r ORDER BY 1),
       pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)
FROM pg_policy WHERE polrelid = %(oid)s ORDER BY polname
"""
_STATISTICS_SQL = """
SELECT stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext
WHERE stxrelid = %(oid)s ORDER BY stxname
"""
_INHERITANCE_SQL = """
SELECT 'parent', n.nspname, c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhparent JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhrelid = %(oid)s
UNION ALL
SELECT 'child', n.nspname, c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = %(oid)s
ORDER BY 1, 2, 3
"""


def _fk(row: tuple) -> ForeignKey:
    s, t, name, cols, rs, rt, rcols, d, u, definition, valid = row
    return ForeignKey(s, t, name, tuple(cols), rs, rt, tuple(rcols), ACTIONS[d], ACTIONS[u],
                      definition, valid)


def dependents(conn: psycopg.Connection, table: SourceTable) -> Dependents:
    """Everything that depends on the table, read from the catalog."""
    p = {"oid": table.oid}

    def q(text: str | sql.Composable) -> list[tuple]:
        return conn.execute(text, p).fetchall()  # type: ignore[arg-type]

    rel = conn.execute(_RELATION_SQL, p).fetchone()
    if rel is None:
        raise MigrateError(f"table {table.schema}.{table.name} is gone")
    owner, tablespace, unlogged, reloptions, replident, rls, force_rls = rel
    deps = Dependents(owner, tablespace, unlogged, tuple(reloptions),
                      {"d": "DEFAULT", "n": "NOTHING", "f": "FULL", "i": "INDEX"}[replident],
                      row_security=rls, force_row_security=force_rls)
    deps.indexes = [Index(r[0], r[1], tuple(r[2]) if not r[6] else (), *r[3:]) for r in
                    q(_INDEXES_SQL)]
    deps.constraints = [Constraint(*r) for r in q(_CONSTRAINTS_SQL)]
    deps.own_fks = [_fk(r) for r in q(_OWN_FKS)]
    deps.referencing_fks = [_fk(r) for r in q(_REFERENCING_FKS)]
    deps.views = [DependentView(*r) for r in q(_VIEWS_SQL)]
    deps.functions = [r[0] for r in q(_FUNCTIONS_SQL)]
    deps.triggers = [tuple(r) for r in q(_TRIGGERS_SQL)]  # type: ignore[misc]
    deps.rules = [tuple(r) for r in q(_RULES_SQL)]  # type: ignore[misc]
    deps.sequences = [tuple(r) for r in q(_SEQUENCES_SQL)]  # type: ignore[misc]
    deps.identity_columns = [tuple(r) for r in q(_IDENTITY_SQL)]  # type: ignore[misc]
    deps.grants = [Grant(*r[:4], column=r[4]) for r in q(_GRANTS_SQL)]
    deps.comments = [tuple(r) for r in q(_COMMENTS_SQL)]  # type: ignore[misc]
    deps.publications = [tuple(r) for r in q(_PUBLICATIONS_SQL)]  # type: ignore[misc]
    deps.policies = [Policy(r[0], r[1], r[2], tuple(r[3]), r[4], r[5]) for r in q(_POLICIES_SQL)]
    deps.statistics = [tuple(r) for r in q(_STATISTICS_SQL)]  # type: ignore[misc]
    deps.inheritance = [tuple(r) for r in q(_INHERITANCE_SQL)]  # type: ignore[misc]
    return deps


# -- disk space -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiskSpace:
    table_bytes: int  # heap + TOAST
    index_bytes: int
    needed_bytes: int  # (table + indexes) x SPACE_FACTOR
    tablespace: str | None
    tablespace_used_bytes: int | None  # what the tablespace holds (None: not allowed to know)
    free_bytes: int | None  # always None: not knowable through SQL
    note: str = FREE_SPACE_UNKNOWN


def disk_space(conn: psycopg.Connection, table: SourceTable, tablespace: str | None) -> DiskSpace:
    """What the copy needs. Sizes come from pg_table_size / pg_indexes_size (an
    AccessShareLock for a moment, as any SELECT)."""
    heap, idx = conn.execute(
        "SELECT pg_table_size(%s), pg_indexes_size(%s)", (table.oid, table.oid)).fetchone()
    used: int | None = None
    if tablespace is not None:
        try:
            used = conn.execute("SELECT pg_tablespace_size(%s)", (tablespace,)).fetchone()[0]
        except psycopg.errors.InsufficientPrivilege:
            used = None  # needs CREATE on it, or pg_read_all_stats
    return DiskSpace(heap, idx, math.ceil((heap + idx) * SPACE_FACTOR), tablespace, used, None)


# -- sessions -------------------------------------------------------------------------------------
WRITE_LOCK = "RowExclusiveLock"


@dataclass(frozen=True)
class TableSession:
    pid: int | None  # None: a prepared transaction
    application_name: str | None  # None when the role may not see it
    user: str | None
    state: str | None
    xact_start: datetime | None
    modes: tuple[str, ...]
    writes: bool  # holds RowExclusiveLock: it has inserted, updated or deleted in its transaction
    waiting: bool  # some lock not granted yet


_SESSIONS_SQL = """
SELECT l.pid, a.application_name, a.usename, a.state, a.xact_start,
       array_agg(DISTINCT l.mode::text ORDER BY l.mode::text),
       coalesce(bool_or(l.mode = %(write)s AND l.granted), false),
       NOT bool_and(l.granted)
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = %(oid)s
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid IS DISTINCT FROM pg_backend_pid()
GROUP BY l.pid, l.virtualtransaction, a.application_name, a.usename, a.state, a.xact_start
ORDER BY l.pid NULLS LAST
"""


def sessions_using(conn: psycopg.Connection, table: SourceTable) -> list[TableSession]:
    """Other sessions (and prepared transactions) holding or awaiting a lock on the table."""
    rows = conn.execute(_SESSIONS_SQL, {"oid": table.oid, "write": WRITE_LOCK}).fetchall()
    return [TableSession(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), r[6], r[7]) for r in rows]


def wait_for_writers(conn: psycopg.Connection, table: SourceTable, timeout: float, *,
                     poll: float = 1.0) -> list[TableSession]:
    """Wait up to `timeout` seconds for the sessions writing to the table to finish their
    transactions; returns the writers still there (empty: none left). Reads pg_locks only."""
    deadline = time.monotonic() + timeout
    while True:
        writers = [s for s in sessions_using(conn, table) if s.writes]
        left = deadline - time.monotonic()
        if not writers or left <= 0:
            return writers
        time.sleep(min(poll, left))


# -- all of it ------------------------------------------------------------------------------------
@dataclass
class Preflight:
    table: SourceTable
    column: PartitionColumn
    rows: RowsPerPeriod
    dependents: Dependents
    disk: DiskSpace
    sessions: list[TableSession]
    warnings: list[str]


def preflight(conn: psycopg.Connection, schema: str, name: str, column: str,
              period: str = "year", *, step: int | None = None, exact: bool = False,
              timeout: str = "10min") -> Preflight:
    table = load_table(conn, schema, name)
    pc = partition_column(table, column)
    rows = rows_per_period(conn, table, pc, period, step=step, exact=exact, timeout=timeout)
    deps = dependents(conn, table)
    disk = disk_space(conn, table, deps.tablespace)
    sessions = sessions_using(conn, table)
    warnings = []
    writers = [s for s in sessions if s.writes]
    if writers:
        warnings.append(f"{len(writers)} session(s) are writing to the table: stop the writers "
                        "before the migration (pids "
                        + ", ".join(str(s.pid) for s in writers) + ")")
    if any(kind == "parent" for kind, _, _ in deps.inheritance):
        warnings.append("the table inherits from another table: PostgreSQL cannot partition it")
    if any(kind == "child" for kind, _, _ in deps.inheritance):
        warnings.append("other tables inherit from this one: PostgreSQL cannot partition it")
    if not pc.column.not_null:
        warnings.append(f"{pc.name!r} may be NULL: such rows can only go to the DEFAULT "
                        "partition, and the primary key needs it NOT NULL")
    if rows.null_rows:
        warnings.append(f"about {rows.null_rows} row(s) have no {pc.name!r}")
    infinite = {"'infinity'": rows.infinite_rows, "'-infinity'": rows.neg_infinite_rows}
    if any(infinite.values()):
        held = " and ".join(f"{n} {v}" for v, n in infinite.items() if n)
        warnings.append(f"about {held} in {pc.name!r}: no period holds them; they go to the "
                        "DEFAULT partition (or to a range without that end)")
    if rows.note and not rows.periods:
        warnings.append(rows.note)
    return Preflight(table, pc, rows, deps, disk, sessions, warnings)
