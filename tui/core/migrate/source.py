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
