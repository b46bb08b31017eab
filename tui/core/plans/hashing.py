"""Row checksums for comparing a week with its copy, and which hash to use, from the catalog.

The choice of hash is made at plan time, so it must not read a row: a dry run only reads the
catalog (a row of a relation can run code through its types' functions, and a relation that is
not what it seems, such as a view, runs anything). hash_record_extended (PG 14+) hashes each
column with the extended hash support function of its type's default hash operator class;
lookup_type_cache() gives the rules followed here: domains hash as their base type, arrays and
ranges need their element type's function, composite types every field's. Operator classes can
only be created by superusers, so the functions found this way are trusted code.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

_TYPES = (
    "SELECT t.oid, t.typtype, t.typbasetype, t.typelem,"
    " t.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc AS is_array,"
    " (SELECT r.rngsubtype FROM pg_catalog.pg_range r"
    "  WHERE r.rngtypid = t.oid OR r.rngmultitypid = t.oid LIMIT 1) AS range_sub,"
    " ARRAY(SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid"
    "  AND a.attnum > 0 AND NOT a.attisdropped) AS fields,"
    " EXISTS (SELECT FROM pg_catalog.pg_opclass oc"
    "  JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'"
    "  JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily"
    "   AND ap.amproclefttype = oc.opcintype AND ap.amprocrighttype = oc.opcintype"
    "   AND ap.amprocnum = 2"
    "  WHERE oc.opcdefault AND (oc.opcintype = t.oid OR EXISTS ("
    "   SELECT FROM pg_catalog.pg_cast k WHERE k.castsource = t.oid"
    "   AND k.casttarget = oc.opcintype AND k.castmethod = 'b'))) AS direct"
    " FROM pg_catalog.pg_type t WHERE t.oid = ANY(%s)"
)


def extended_hash_supported(conn: psycopg.Connection, type_oids: list[int]) -> bool:
    """Whether hash_record_extended can hash a row of these column types (catalog only)."""
    if int(conn.info.server_version) < 140000:
        return False
    seen: set[int] = set()
    todo = set(type_oids)
    while todo:
        seen |= todo
        rows = conn.execute(_TYPES, (list(todo),)).fetchall()
        if len(rows) != len(todo):
            return False
        todo = set()
        for _oid, typtype, base, elem, is_array, range_sub, fields, direct in rows:
            if typtype == "d":
                nxt = [base]
            elif typtype == "e":
                nxt = []
            elif typtype == "c":
                nxt = list(fields)
            elif typtype in ("r", "m"):
                if range_sub is None:
                    return False
                nxt = [range_sub]
            elif is_array and elem:
                nxt = [elem]
            elif direct:
                nxt = []
            else:
                return False
            todo |= {int(t) for t in nxt if int(t) not in seen}
    return True


def row_hash(cols: list[str], fast: bool) -> sql.Composed:
    """A 64-bit hash of a whole row. hash_record_extended is three times faster than hashing the
    row's text but needs a hash function for every column type; the text works for any type."""
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in cols))
    if fast:
        return sql.SQL("pg_catalog.hash_record_extended({}, 0)").format(row)
    return sql.SQL("pg_catalog.hashtextextended({}::pg_catalog.text, 0)").format(row)


def checksum_sql(table: sql.Composable, cols: list[str], fast: bool) -> sql.Composed:
    """count(*) and an order-independent checksum: the sum of a 64-bit hash of every row.
    Catalog functions are qualified: the exported script may run under any search_path."""
    return sql.SQL(
        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum({h}), 0) FROM {t}").format(
        h=row_hash(cols, fast), t=table)
