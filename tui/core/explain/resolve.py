"""Resolving the table names a query mentions the way the server would (the user's search_path
applied), in one round trip and without locks (to_regclass opens nothing).

Only `pg_catalog.to_regclass` runs under the user's search_path, with its argument quoted here:
no operator or unqualified function is resolved there (CVE-2018-1058). The catalog is then read
under the session's safe search_path.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..connection import SAFE_SEARCH_PATH, user_search_path


@dataclass(frozen=True)
class RelationInfo:
    """A relation the query names, resolved by the server (search_path applied). The same
    fields as advice.RelationInfo, defined here so that resolving names does not import the
    advice's parser (sqlglot)."""

    oid: int
    relkind: str
    schema: str
    name: str
    columns: tuple[str, ...]

_REGCLASS_SQL = sql.SQL(
    "SELECT pg_catalog.to_regclass(x)::pg_catalog.oid"
    " FROM pg_catalog.unnest({}::pg_catalog.text[]) WITH ORDINALITY AS u(x, i) ORDER BY i")
_SET_PATH = sql.SQL("SELECT pg_catalog.set_config('search_path', {}, true)")
_DESCRIBE_SQL = """
SELECT c.oid, c.relkind::text, ns.nspname, c.relname,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
WHERE c.oid = ANY(%s::oid[])
"""


def resolve_relations(
    conn: psycopg.Connection, names: list[tuple[str | None, str]]
) -> dict[tuple[str | None, str], RelationInfo]:
    if not names:
        return {}
    texts = [sql.Identifier(*(p for p in (s, n) if p is not None)).as_string(conn)
             for s, n in names]
    regclass = _REGCLASS_SQL.format(sql.Literal(texts))
    path = user_search_path(conn)
    if path is None:
        oids = [r[0] for r in conn.execute(regclass).fetchall()]
    else:
        # One simple query, one round trip: the server runs its statements in order as one
        # transaction, so the user's path (set_config(..., true)) applies to to_regclass alone
        # and ends with it, even if it fails
        cur = conn.execute(sql.SQL("; ").join(
            [_SET_PATH.format(sql.Literal(path)), regclass,
             _SET_PATH.format(sql.Literal(SAFE_SEARCH_PATH))]))
        cur.nextset()  # set_config's result, then to_regclass's
        oids = [r[0] for r in cur.fetchall()]
    rows = {r[0]: r for r in conn.execute(
        _DESCRIBE_SQL, ([o for o in oids if o is not None],)).fetchall()}
    out: dict[tuple[str | None, str], RelationInfo] = {}
    for key, oid in zip(names, oids, strict=True):
        if oid in rows:
            _oid, kind, schema, name, cols = rows[oid]
            out[key] = RelationInfo(int(oid), kind, schema, name, tuple(cols or ()))
    return out
