"""Resolving the table names a query mentions the way the server would (search_path applied),
in one round trip and without locks (to_regclass opens nothing)."""

from __future__ import annotations

import psycopg

from .advice import RelationInfo

_RESOLVE_SQL = """
SELECT x.s, x.n, c.oid, c.relkind::text, ns.nspname, c.relname,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum)
FROM unnest(%s::text[], %s::text[]) AS x(s, n)
JOIN pg_class c ON c.oid = to_regclass(
       CASE WHEN x.s IS NULL THEN quote_ident(x.n)
            ELSE quote_ident(x.s) || '.' || quote_ident(x.n) END)
JOIN pg_namespace ns ON ns.oid = c.relnamespace
"""


def resolve_relations(
    conn: psycopg.Connection, names: list[tuple[str | None, str]]
) -> dict[tuple[str | None, str], RelationInfo]:
    if not names:
        return {}
    schemas = [s for s, _ in names]
    rels = [n for _, n in names]
    rows = conn.execute(_RESOLVE_SQL, (schemas, rels)).fetchall()
    return {
        (s, n): RelationInfo(int(oid), kind, schema, name, tuple(cols or ()))
        for s, n, oid, kind, schema, name, cols in rows
    }
