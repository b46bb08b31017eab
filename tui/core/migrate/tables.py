"""The tables a migration can start from (plain tables) and the migrations recorded, for the
console's table picker: catalog estimates only (relpages, reltuples), no lock, one round trip
plus the registry's read."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..plans.steps import markers
from .spec import ROLE

_PLAIN_SQL = """
SELECT n.nspname, c.relname, c.oid, c.reltuples::float8,
       (c.relpages::bigint + coalesce(t.relpages, 0)
        + coalesce((SELECT pg_catalog.sum(i.relpages) FROM pg_catalog.pg_index x
                    JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
                    WHERE x.indrelid = c.oid), 0))::bigint
       * pg_catalog.current_setting('block_size')::bigint
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgparts')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class PlainTable:
    schema: str
    name: str  # the table's name, or for a recorded migration the name it is migrated under
    oid: int  # the original's oid
    bytes: int  # table + TOAST + indexes, from relpages (an estimate)
    rows: int | None  # reltuples; None when never analyzed
    migration: str = ""  # a recorded migration: the last stage it completed


@dataclass
class Migratable:
    tables: list[PlainTable]
    problem: str = ""  # the registry is not trusted: migrations in progress cannot be shown


def migratable_tables(conn: psycopg.Connection) -> Migratable:
    """Plain tables (not partitions, not temporary), by schema and name; a table whose
    migration is recorded is listed once, under the name it is migrated under (its original
    may bear `<name>_premigration` by now) with the last stage done."""
    rows = conn.execute(_PLAIN_SQL).fetchall()
    reg = markers.read_registry(conn)
    recorded = {e.objid: e for e in reg.of(ROLE)} if reg.trusted else {}
    out = []
    for schema, name, oid, reltuples, nbytes in rows:
        rows_est = None if reltuples < 0 else int(reltuples)
        entry = recorded.get(int(oid))
        if entry is not None:
            out.append(PlainTable(entry.schema, entry.name, int(oid), int(nbytes), rows_est,
                                  entry.state or "recorded"))
        else:
            out.append(PlainTable(schema, name, int(oid), int(nbytes), rows_est))
    out.sort(key=lambda t: (t.schema, t.name))
    return Migratable(out, reg.problem)
