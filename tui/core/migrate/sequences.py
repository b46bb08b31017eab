"""After an abort, the original's sequences stand past every value its columns hold.

While the partitioned table was live it had identity sequences of its own (Build creates them
under the original's names, set to where the original's stood) and drew values from them; a
row it took that the original must keep is moved there before the abort (abort.only_copies
insists). The original's own identity sequence never saw those values, so the next insert into
the restored table would take one of them again and fail on its key. A serial sequence is
shared by both tables and cannot fall behind that way, but a `setval` run meanwhile could. So
the abort sets each of them, ascending or descending, to the column's highest (lowest) value
when its next value would not be past it: `setval(seq, max, true)`, never backwards.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..plans.engine.model import Statement
from .build import IDENTITY_SQL

_INCREMENT = """
SELECT q.seqincrement FROM pg_catalog.pg_sequence q JOIN pg_catalog.pg_class s
ON s.oid = q.seqrelid JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
WHERE n.nspname = %s AND s.relname = %s
"""


def catch_up_statements(conn: psycopg.Connection, original_oid: int, table: sql.Identifier,
                        serial: set[tuple[str, str, str]], renamed: dict[str, str]
                        ) -> list[Statement]:
    """One statement per sequence of the original (`original_oid`, named `table` when they
    run): its identity columns' sequences, under the names `renamed` maps their current
    names to (the names they have back by then), and the `serial` sequences (schema, name,
    column) it owns or takes back."""
    seqs: list[tuple[str, str, str, int]] = [
        (r[2], renamed.get(r[3], r[3]), r[0], int(r[5]))  # (attname, ..., seqincrement)
        for r in conn.execute(IDENTITY_SQL, (original_oid,)).fetchall()]
    for schema, name, col in sorted(serial):
        row = conn.execute(_INCREMENT, (schema, name)).fetchone()
        if row is not None and (schema, name) not in {(s, n) for s, n, _c, _i in seqs}:
            seqs.append((schema, name, col, int(row[0])))
    return [_catch_up(conn, table, *s) for s in seqs]


def _catch_up(conn: psycopg.Connection, table: sql.Identifier, schema: str, name: str,
              column: str, increment: int) -> Statement:
    seq = sql.Identifier(schema, name)
    up = increment > 0
    # the next value nextval() would give: last_value once called, else last_value itself
    behind = sql.SQL("m.v {op} s.last_value {sign} CASE WHEN s.is_called THEN 1 ELSE 0 END"
                     ).format(op=sql.SQL(">=" if up else "<="), sign=sql.SQL("+" if up else "-"))
    return Statement(sql.SQL(
        "SELECT pg_catalog.setval({q}::pg_catalog.regclass, m.v, true)"
        " FROM (SELECT pg_catalog.{agg}({c})::pg_catalog.int8 AS v FROM {t}) m, {s} s"
        " WHERE {behind}").format(
        q=sql.Literal(seq.as_string(conn)), agg=sql.SQL("max" if up else "min"),
        c=sql.Identifier(column), t=table, s=seq, behind=behind),
        note=f"sequence {name} past every {column} the table holds (values the new table "
             f"drew while it was live)")
