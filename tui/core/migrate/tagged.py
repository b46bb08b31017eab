"""Rows of several kinds from one statement (a tagged UNION ALL), so that an analysis reads the
table once and still returns each kind of row with its own columns and types.

An analysis is made of `Part`s (duplicates.py, collisions.py): each brings its CTEs, its
columns and its kinds of rows; `statement()` joins them into one statement, `Rows` reads the
result back by kind and column name. A kind fills the columns it has and leaves the others
NULL. PostgreSQL resolves the type of a UNION's columns pair by pair from the left, so a column
NULL in the first two branches would become text: the first branch returns no row and gives
every column its type, from an expression of the CTEs that define it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

COUNT = sql.SQL("CAST(NULL AS pg_catalog.int8)")
"""The type of a count, for a column that holds one."""


@dataclass(frozen=True)
class Branch:
    tag: str
    values: dict[str, sql.Composable]  # column name -> expression; the others are NULL
    rest: sql.Composable  # FROM ... WHERE ... ORDER BY ... LIMIT ... (or nothing)


@dataclass
class Part:
    ctes: list[sql.Composable] = field(default_factory=list)  # "name AS (...)", in order
    columns: list[tuple[str, sql.Composable]] = field(default_factory=list)  # name, typed expr
    typed_from: list[sql.Composable] = field(default_factory=list)  # what the exprs read
    branches: list[Branch] = field(default_factory=list)


def statement(parts: list[Part]) -> tuple[sql.Composed, list[str]]:
    """One statement for all the parts, and its column names (after the tag)."""
    columns = [c for p in parts for c in p.columns]
    names = [n for n, _ in columns]
    if len(set(names)) != len(names):
        raise ValueError(f"columns named twice: {names}")
    typed = sql.SQL("(SELECT NULL::text, {cells} FROM {f} WHERE false)").format(
        cells=sql.SQL(", ").join(e for _, e in columns),
        f=sql.SQL(", ").join(f for p in parts for f in p.typed_from))
    branches = [typed]
    for b in (b for p in parts for b in p.branches):
        unknown = set(b.values) - set(names)
        if unknown:
            raise ValueError(f"no such column(s): {sorted(unknown)}")
        branches.append(sql.SQL("(SELECT {tag}, {cells} {rest})").format(
            tag=sql.Literal(b.tag), rest=b.rest,
            cells=sql.SQL(", ").join(b.values.get(n, sql.SQL("NULL")) for n in names)))
    return sql.SQL("WITH {ctes} {body}").format(
        ctes=sql.SQL(", ").join(c for p in parts for c in p.ctes),
        body=sql.SQL(" UNION ALL ").join(branches)), names


class Rows:
    """The result of `statement()`, by kind (in the order the branch returned them)."""

    def __init__(self, conn: psycopg.Connection, parts: list[Part]) -> None:
        query, names = statement(parts)
        self._index = {n: i + 1 for i, n in enumerate(names)}
        self._rows = conn.execute(query).fetchall()

    def of(self, tag: str) -> list[tuple[Any, ...]]:
        return [r for r in self._rows if r[0] == tag]

    def get(self, row: tuple[Any, ...], name: str) -> Any:
        return row[self._index[name]]
