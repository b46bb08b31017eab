"""The duplicates and collisions a migration will meet, counted in one read of the table.

Both analyses start from the same rows: those whose new key is stored more than once. A
duplicate by error shares the key and the tie-break; a collision by design shares the key
(prefix and timestamp) with another tie-break. Counting the keys stored more than once is the
one aggregate over the whole table (every row's key, an index on it answers it without the
table); it is done once here, for both, and everything else reads its few rows. Where the two
would count different rows (a nullable key column: the duplicates compare only the NOT NULL
ones), each analysis runs on its own (duplicates.py, collisions.py).

Reads only, under a statement timeout, like the two analyses it stands for.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from . import collisions, duplicates, tagged
from .collisions import CollisionReport
from .duplicates import DuplicateReport
from .preflight import ForeignKey
from .source import PartitionColumn, SourceTable, repeated_rows, statement_timeout

CANDIDATES = sql.Identifier("pgparts_candidates")


def analyse(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn,
            key: tuple[str, ...], tiebreak: str | None, surrogate: str | None,
            referencing: Sequence[ForeignKey], *, sample_groups: int = 10,
            timeout: str = "10min") -> tuple[DuplicateReport | None, CollisionReport | None]:
    """The duplicate report (None without a surrogate id to keep the oldest by, or when the
    key holds it) and the collision report (None without a tie-break or a timestamp
    partition column)."""
    fks = list(referencing)
    dedupe = bool(surrogate) and surrogate not in (*key, tiebreak)
    collide = bool(tiebreak) and pc.kind in ("timestamptz", "timestamp")
    shape = collisions.with_minute_index(conn, collisions._shape(table, pc, key, tiebreak or "")) \
        if collide else None
    if not (dedupe and collide and all(table.column(c).not_null for c in key)):
        dup = duplicates.find_duplicates(conn, table, key, tiebreak, surrogate or "", fks,
                                         sample_groups=sample_groups, timeout=timeout) \
            if dedupe else None
        col = collisions.find_collisions(conn, table, pc, key, tiebreak or "",
                                         sample_groups=sample_groups, timeout=timeout) \
            if collide else None
        return dup, col
    assert surrogate and tiebreak and shape
    columns = duplicates.report_columns(table, key, tiebreak, surrogate)
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in key)
    wanted = sql.SQL(", ").join(sql.Identifier("k", c)
                                for c in dict.fromkeys((*key, tiebreak, surrogate)))
    # the keys stored more than once (NOT NULL columns: equality matches GROUP BY), then
    # their rows (by the index on (prefix, timestamp) when there is one, which also serves
    # the collisions' minutes); MATERIALIZED, so each is computed once for both reports
    shared = tagged.Part(ctes=[
        sql.SQL("c AS MATERIALIZED (SELECT {keys} FROM {t} GROUP BY {keys}"
                " HAVING pg_catalog.count(*) > 1)").format(keys=keys, t=table.ident),
        sql.SQL("{cand} AS MATERIALIZED (SELECT {wanted} FROM {rows})").format(
            cand=CANDIDATES, wanted=wanted,
            rows=repeated_rows(table, key, sql.Identifier("c"), shape.minute_index))])
    repointable = [f for f in fks if f.ref_columns == (surrogate,)]
    dup_part = duplicates.report_part(columns, surrogate,
                                      sql.SQL("{} AS k").format(CANDIDATES), repointable,
                                      sample_groups)
    col_part = collisions.report_part(shape, collisions._ranked(shape, candidates=CANDIDATES),
                                      sample_groups)
    with statement_timeout(conn, timeout):
        rows = tagged.Rows(conn, [shared, dup_part, col_part])
        dup = duplicates.report_from(conn, rows, table, columns, surrogate, fks)
    return dup, collisions.report_from(rows, shape, key)
