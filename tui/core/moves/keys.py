"""The partition key as the server sees it: typing what users type, ordering it, summarizing
where the DEFAULT partition's rows lie, and the predicates that route rows to targets.

Validation is the server's: a value is cast to the key's type (with its typmod, as PostgreSQL
coerces partition bounds: `timestamp(0)` rounds), and its canonical text is what plans emit.
Time and number keys come back as Python values (psycopg's loaders), which order like the
server's; other types get their rank in the server's order (with the key's collation), so the
pure functions of planning.py can compare them. The type is written with the server's own
format_type(), the only deparsed text composed into these statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ..errors import first_line
from ..infinity import is_infinite
from .changelog import MoveError
from .planning import MAXVALUE, MINVALUE, Interval, PlanningError, add_months

TIME_TYPES = ("timestamp without time zone", "timestamp with time zone", "date")
INTEGER_TYPES = ("smallint", "integer", "bigint")
NUMERIC_TYPES = ("numeric",)


@dataclass(frozen=True)
class Key:
    column: str
    type_sql: str  # format_type(atttypid, atttypmod)
    base_type: str  # format_type(atttypid, NULL): what category() looks at
    collation: sql.Identifier | None
    strategy: str  # 'r' range, 'l' list, 'h' hash

    @property
    def category(self) -> str:
        if self.base_type in TIME_TYPES:
            return "time"
        if self.base_type in INTEGER_TYPES:
            return "integer"
        if self.base_type in NUMERIC_TYPES:
            return "numeric"
        return "other"

    @property
    def type(self) -> sql.SQL:
        return sql.SQL(self.type_sql)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.column)


@dataclass(frozen=True)
class KeyValue:
    text: str | None  # canonical text; None for NULL
    value: Any  # a Python value, a rank, or None for NULL


def describe_key(conn: psycopg.Connection, parent_oid: int) -> Key:
    row = conn.execute(
        "SELECT p.partstrat, p.partnatts, p.partattrs::int2[], a.attname,"
        " pg_catalog.format_type(a.atttypid, a.atttypmod),"
        " pg_catalog.format_type(a.atttypid, NULL), cn.nspname, co.collname"
        " FROM pg_catalog.pg_partitioned_table p"
        " LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid"
        "  AND a.attnum = (p.partattrs::int2[])[0]"
        " LEFT JOIN pg_catalog.pg_collation co ON co.oid = p.partcollation[0]"
        " LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace"
        " WHERE p.partrelid = %s", (parent_oid,)).fetchone()
    if row is None:
        raise MoveError("not a partitioned table")
    strat, natts, attrs, col, type_sql, base, coll_ns, coll = row
    if natts != 1 or not attrs or attrs[0] == 0 or col is None:
        raise MoveError("moving rows supports a partition key of one column (not an "
                        "expression) only")
    collation = sql.Identifier(coll_ns, coll) if coll else None
    return Key(col, type_sql, base, collation, strat)


def type_values(conn: psycopg.Connection, key: Key, texts: Sequence[str | None]
                ) -> list[KeyValue]:
    """Cast every text to the key's type (a value that does not parse: PlanningError naming
    it); None stays NULL. Values of one call are comparable with each other."""
    canon: list[str | None] = []
    loaded: list[Any] = []
    for text in texts:
        if text is None:
            canon.append(None)
            loaded.append(None)
            continue
        try:
            with conn.transaction():
                row = conn.execute(sql.SQL("SELECT ({v}::{t})::pg_catalog.text, {v}::{t}").format(
                    v=sql.Literal(text), t=key.type)).fetchone()
        except psycopg.errors.DataError as exc:
            raise PlanningError(f"{text!r} is not a valid {key.type_sql}: "
                                f"{first_line(exc)}") from None
        canon.append(row[0])
        loaded.append(row[1])
    if key.category == "other":
        present = sorted({c for c in canon if c is not None})
        ranks: dict[str, int] = {}
        if present:
            coll = (sql.SQL(" COLLATE {}").format(key.collation) if key.collation
                    else sql.SQL(""))
            ranks = {t: int(r) for t, r in conn.execute(sql.SQL(
                "SELECT v, pg_catalog.dense_rank() OVER (ORDER BY v::{t}{coll})"
                " FROM pg_catalog.unnest({a}::pg_catalog.text[]) v").format(
                t=key.type, coll=coll, a=sql.Literal(present))).fetchall()}
        loaded = [None if c is None else ranks[c] for c in canon]
    elif key.base_type == "date":
        # date_trunc and bounds arithmetic work on timestamps: a date is its midnight
        loaded = [None if v is None else datetime(v.year, v.month, v.day) for v in loaded]
    return [KeyValue(c, v) for c, v in zip(canon, loaded, strict=True)]


def bound_value(v: Any) -> Any:
    """MINVALUE / MAXVALUE from a parsed bound's special, else the value unchanged."""
    return {"MINVALUE": MINVALUE, "MAXVALUE": MAXVALUE}.get(v, v) if isinstance(v, str) else v


def default_occupancy(conn: psycopg.Connection, key: Key, default: sql.Identifier,
                      interval: Interval) -> list[tuple[Any, Any]]:
    """Where the DEFAULT's rows lie, in one aggregate query: closed intervals [first, last] of
    key values. Time keys: the distinct periods (date_trunc by the unit the interval allows),
    each from its first to its last instant; numbers: min and max. NULL keys cannot be in a
    range partition and are left out (the DEFAULT keeps them), and so are 'infinity' and
    '-infinity' (no period holds them: date_trunc returns them unchanged)."""
    col = key.ident
    if key.category == "time":
        unit = interval.trunc_unit()
        expr = sql.SQL("pg_catalog.date_trunc({u}, {c}::pg_catalog.timestamp)") if \
            key.base_type != "timestamp with time zone" else \
            sql.SQL("pg_catalog.date_trunc({u}, {c})")
        rows = conn.execute(sql.SQL("SELECT DISTINCT {e} FROM {d} WHERE {c} IS NOT NULL"
                                    " ORDER BY 1").format(
            e=expr.format(u=sql.Literal(unit), c=col), c=col, d=default)).fetchall()
        out = []
        for (start,) in rows:
            if is_infinite(start):
                continue
            end = _period_end(start, unit)
            out.append((start, end))
        return out
    if key.category in ("integer", "numeric"):
        row = conn.execute(sql.SQL("SELECT pg_catalog.min({c}), pg_catalog.max({c}) FROM {d}"
                                   ).format(c=col, d=default)).fetchone()
        return [] if row[0] is None else [(row[0], row[1])]
    raise PlanningError(f"drain-default proposes partitions for time and number keys only, "
                        f"not {key.type_sql}")


def _period_end(start: datetime, unit: str) -> datetime:
    nxt = {"year": lambda: add_months(start, 12), "month": lambda: add_months(start, 1),
           "day": lambda: start + timedelta(days=1),
           "hour": lambda: start + timedelta(hours=1)}[unit]()
    return nxt - timedelta(microseconds=1)


def _literal(v: Any) -> sql.Composable:
    # KeyValue: its canonical text; a datetime or number from a proposal: psycopg's literal
    if isinstance(v, KeyValue):
        return sql.Literal(v.text)
    if isinstance(v, datetime | date):
        return sql.Literal(v.isoformat(sep=" "))
    return sql.Literal(str(v))


def range_predicate(key: Key, lower: Any, upper: Any) -> sql.Composed:
    """The rows of a range bound, as an expression over the key column (for changelog.Target
    and the DEFAULT's helper CHECK): `key >= lower AND key < upper`, an end left out for
    MINVALUE / MAXVALUE; NULL keys make it NULL, never true."""
    parts: list[sql.Composable] = [sql.SQL("{} IS NOT NULL").format(key.ident)]
    if lower is not MINVALUE:
        parts.append(sql.SQL("{} >= {}::{}").format(key.ident, _literal(lower), key.type))
    if upper is not MAXVALUE:
        parts.append(sql.SQL("{} < {}::{}").format(key.ident, _literal(upper), key.type))
    return sql.SQL(" AND ").join(parts)


def exclusion_predicate(key: Key, lower: Any, upper: Any) -> sql.Composed:
    """What the DEFAULT's helper CHECK states: no row of [lower, upper). The negation in the form
    PostgreSQL derives when it checks the DEFAULT for a new partition (`key IS NULL OR key <
    lower OR key >= upper`), so the implication is proven and ATTACH skips the scan."""
    parts: list[sql.Composable] = [sql.SQL("{} IS NULL").format(key.ident)]
    if lower is not MINVALUE:
        parts.append(sql.SQL("{} < {}::{}").format(key.ident, _literal(lower), key.type))
    if upper is not MAXVALUE:
        parts.append(sql.SQL("{} >= {}::{}").format(key.ident, _literal(upper), key.type))
    return sql.SQL(" OR ").join(parts)


def list_predicate(key: Key, values: Sequence[KeyValue]) -> sql.Composed:
    """The rows of a list bound: `key IN (...)`, `OR key IS NULL` when NULL is one of them."""
    lits = [v for v in values if v.text is not None]
    parts: list[sql.Composable] = []
    if lits:
        parts.append(sql.SQL("{} IN ({})").format(key.ident, sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Literal(v.text), key.type) for v in lits)))
    if len(lits) < len(values):
        parts.append(sql.SQL("{} IS NULL").format(key.ident))
    if not parts:
        raise PlanningError("a list bound needs at least one value")
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def _in_list(key: Key, lits: Sequence[KeyValue], negate: bool) -> sql.Composed:
    return sql.SQL("{} {}IN ({})").format(key.ident, sql.SQL("NOT " if negate else ""),
                                          sql.SQL(", ").join(
        sql.SQL("{}::{}").format(sql.Literal(v.text), key.type) for v in lits))


def list_check(key: Key, values: Sequence[KeyValue]) -> sql.Composed:
    """A list bound as a CHECK in the form PostgreSQL gives the partition's constraint
    (`key IS NOT NULL AND key IN (...)`, or `key IS NULL OR key IN (...)` when NULL is one of
    the values), so ATTACH proves the bound from it and skips the scan."""
    return _list_form(key, values, False)


def list_exclusion(key: Key, values: Sequence[KeyValue]) -> sql.Composed:
    """The DEFAULT's helper CHECK for a list bound: no row of it, in the form PostgreSQL
    derives when it checks the DEFAULT for that bound (`key IS NULL OR key NOT IN (...)`, or
    `key IS NOT NULL AND key NOT IN (...)` when NULL is one of the values)."""
    return _list_form(key, values, True)


def _list_form(key: Key, values: Sequence[KeyValue], negate: bool) -> sql.Composed:
    """list_check's form, or its negation (list_exclusion's): NULL is allowed exactly when it
    is among the values xor the form is negated."""
    lits = [v for v in values if v.text is not None]
    null_ok = (len(lits) < len(values)) != negate
    if not lits:
        return sql.SQL("{} IS NOT NULL" if negate else "{} IS NULL").format(key.ident)
    return sql.SQL("{} IS {}NULL {} {}").format(
        key.ident, sql.SQL("" if null_ok else "NOT "), sql.SQL("OR" if null_ok else "AND"),
        _in_list(key, lits, negate))
