"""The table to migrate and its partition column, resolved from the catalog (no lock taken)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from . import MigrateError

# partition column types the migration supports, by pg_type name -> the kind of bounds they take
KINDS = {
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "date": "date",
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
}
TIME_KINDS = ("timestamptz", "timestamp", "date")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(), e.g. "timestamp(0) with time zone"
    type_name: str  # pg_type.typname, e.g. "timestamptz"
    not_null: bool
    attnum: int


@dataclass(frozen=True)
class SourceTable:
    schema: str
    name: str
    oid: int
    columns: tuple[Column, ...]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise MigrateError(f"{self.name!r} has no column {name!r}")


@dataclass(frozen=True)
class PartitionColumn:
    column: Column
    kind: str  # "timestamptz", "timestamp", "date" or "integer"

    @property
    def name(self) -> str:
        return self.column.name

    @property
    def is_time(self) -> bool:
        return self.kind in TIME_KINDS

    @property
    def cast_type(self) -> sql.SQL:
        """The SQL type bounds of this column are cast to (a constant, never catalog text)."""
        return sql.SQL({"timestamptz": "timestamptz", "timestamp": "timestamp",
                        "date": "date", "integer": "bigint"}[self.kind])


_TABLE_SQL = """
SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(bt.typname, t.typname), a.attnotnull, a.attnum
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def load_table(conn: psycopg.Connection, schema: str, name: str) -> SourceTable:
    """The plain table `schema`.`name`; MigrateError when it is missing or not a plain table."""
    row = conn.execute(_TABLE_SQL, (schema, name)).fetchone()
    if row is None:
        raise MigrateError(f"no table {schema}.{name}")
    oid, relkind = row
    if relkind == "p":
        raise MigrateError(f"{schema}.{name} is already partitioned")
    if relkind != "r":
        raise MigrateError(f"{schema}.{name} is not a plain table")
    cols = tuple(Column(*r) for r in conn.execute(_COLUMNS_SQL, (oid,)).fetchall())
    return SourceTable(schema, name, int(oid), cols)


def partition_column(table: SourceTable, name: str) -> PartitionColumn:
    """The column rows will be partitioned by; its type must be a timestamp, date or integer."""
    col = table.column(name)
    kind = KINDS.get(col.type_name)
    if kind is None:
        raise MigrateError(
            f"column {name!r} is {col.type}; partition by a timestamp, date or integer column")
    return PartitionColumn(col, kind)


@contextmanager
def statement_timeout(conn: psycopg.Connection, timeout: str) -> Iterator[None]:
    """A transaction whose statements stop after `timeout` (e.g. '30s'): for the analyses that
    read rows, which the operator asks for and which must not run for an hour unnoticed.

    Inside the caller's own transaction this is a savepoint, and SET LOCAL would outlive it:
    the previous value is put back (an error rolls the savepoint back, and the setting with it).
    """
    before = conn.execute("SHOW statement_timeout").fetchone()
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout)))
        yield
        if before is not None:
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (before[0],))


def index_leads(conn: psycopg.Connection, table: SourceTable, first: tuple[str, ...],
                then: str | None = None) -> bool:
    """Whether a valid, whole-table btree index of `table` leads with the columns `first` (in
    any order), followed by `then` when given: equality on them (and a range on `then`) is
    then answered by it. A performance choice only: nothing depends on it for correctness."""
    attnum = {c.name: c.attnum for c in table.columns}
    n = len(first)
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i"
        " ON i.oid = x.indexrelid JOIN pg_catalog.pg_am a ON a.oid = i.relam"
        " WHERE x.indrelid = %s AND x.indisvalid AND x.indpred IS NULL AND a.amname = 'btree'"
        " AND x.indnkeyatts >= %s"
        " AND (SELECT pg_catalog.array_agg(k ORDER BY k) FROM pg_catalog.unnest("
        "      (x.indkey::int2[])[0:%s - 1]) AS k) IS NOT DISTINCT FROM %s::int2[]"
        " AND (%s::int2 IS NULL OR (x.indkey::int2[])[%s] = %s))",
        (table.oid, n + (then is not None), n, sorted(attnum[c] for c in first) or None,
         None if then is None else attnum[then], n,
         None if then is None else attnum[then])).fetchone()
    return bool(row and row[0])


def repeated_rows(table: SourceTable, columns: tuple[str, ...], keys: sql.Identifier,
                  indexed: bool) -> sql.Composed:
    """FROM (and WHERE) for the rows of `table` (alias k, every column) whose `columns` are
    one of the few rows of CTE `keys` (the values stored more than once). `indexed`
    (`index_leads`): looked up by the index, key by key (LATERAL; OFFSET 0 keeps it from
    being flattened into a join). Otherwise with IN, which hashes the keys: as a plain join
    the planner took the estimate of the HAVING that found them (a third of the table) and
    hashed the whole table instead. NULL matches nothing either way."""
    if indexed:
        on = sql.SQL(" AND ").join(sql.SQL("k.{c} = c.{c}").format(c=sql.Identifier(c))
                                   for c in columns)
        return sql.SQL("{keys} AS c CROSS JOIN LATERAL (SELECT k.* FROM {t} AS k WHERE {on}"
                       " OFFSET 0) AS k").format(keys=keys, t=table.ident, on=on)
    return sql.SQL("{t} AS k WHERE ({k_cols}) IN (SELECT {cols} FROM {keys})").format(
        t=table.ident, keys=keys,
        k_cols=sql.SQL(", ").join(sql.Identifier("k", c) for c in columns),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns))
