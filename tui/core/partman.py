"""pg_partman's configuration of the tables it manages, read-only.

When the pg_partman extension is installed, its `part_config` table says which partitioned tables
it maintains (premake, retention, ...): an operator must know before changing such a table by
hand. pgparts reads the catalog and that one table, and nothing else of the extension: its
functions are user-defined code and are never called. The table is read only when it is what the
extension created (a plain table that belongs to the extension, without row-level security, in
the extension's schema) and only its columns of built-in types, so reading it runs no code of
anybody's.

pg_partman names a table as 'schema.table' with the parts unquoted and split at the dot
(split_part in its create_parent), so the match to pg_class uses the same split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

# The columns shown, in pg_partman 4.x and 5.x; any of them may be missing in some version.
COLUMNS = (
    "control", "partition_type", "partition_interval", "premake", "retention",
    "retention_schema", "retention_keep_table", "infinite_time_partitions",
    "automatic_maintenance", "datetime_string", "epoch", "template_table",
)

# Catalog only: the extension, its schema, and whether part_config is the extension's own plain
# table that can be read without running anybody's code (built-in column types only).
_FIND_SQL = """
SELECT e.extversion, n.nspname, c.oid,
       c.relkind = 'r' AND NOT c.relrowsecurity
         AND EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                        AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                        AND d.deptype = 'e') AS plain,
       CASE WHEN c.oid IS NOT NULL THEN has_table_privilege(c.oid, 'SELECT') END AS readable,
       (SELECT array_agg(a.attname::text) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           AND a.atttypid < 16384) AS columns
FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'part_config'
WHERE e.extname = 'pg_partman'
"""

_READ_SQL = """
SELECT c.oid, pc.parent_table{columns}
FROM {part_config} pc
LEFT JOIN pg_namespace n ON n.nspname = split_part(pc.parent_table, '.', 1)
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = split_part(pc.parent_table, '.', 2)
ORDER BY pc.parent_table
"""


@dataclass(frozen=True)
class PartmanConfig:
    """One row of part_config (None: the column is absent in this pg_partman version)."""

    parent_table: str  # as pg_partman stores it: 'schema.table'
    control: str | None = None
    partition_type: str | None = None
    partition_interval: str | None = None
    premake: int | None = None
    retention: str | None = None
    retention_schema: str | None = None
    retention_keep_table: bool | None = None
    infinite_time_partitions: bool | None = None
    automatic_maintenance: str | None = None
    datetime_string: str | None = None
    epoch: str | None = None
    template_table: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """'native, interval 1 day on ts, premake 4, retention none, automatic maintenance on'"""
        parts = [p for p in (
            self.partition_type,
            f"interval {self.partition_interval}" + (f" on {self.control}" if self.control
                                                      else "")
            if self.partition_interval else None,
            f"premake {self.premake}" if self.premake is not None else None,
        ) if p]
        if self.retention:
            keep = ("" if self.retention_keep_table is None
                    else ", detached and kept" if self.retention_keep_table else ", dropped")
            where = f" to schema {self.retention_schema}" if self.retention_schema else ""
            parts.append(f"retention {self.retention}{keep}{where}")
        else:
            parts.append("no retention")
        if self.automatic_maintenance is not None:
            parts.append(f"automatic maintenance {self.automatic_maintenance}")
        return ", ".join(parts)


@dataclass
class PartmanState:
    installed: bool = False
    version: str | None = None
    schema: str | None = None
    configs: dict[int, PartmanConfig] = field(default_factory=dict)  # by the table's oid
    unmatched: list[str] = field(default_factory=list)  # part_config rows naming no table
    problem: str | None = None  # why part_config could not be read, for display


def read_partman(conn: psycopg.Connection) -> PartmanState:
    """pg_partman's configuration, if the extension is installed: two queries, no function of
    the extension called. Database errors are reported in `problem`, never raised: the rest of
    what pgparts shows does not depend on it."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            found = cur.execute(_FIND_SQL).fetchone()
            if found is None:
                return PartmanState()
            version, schema, table_oid, plain, readable, columns = found
            state = PartmanState(True, version, schema)
            if table_oid is None or not plain:
                state.problem = (f"{schema}.part_config is missing or not the extension's own "
                                 f"plain table; not read")
                return state
            if not readable:
                state.problem = f"no SELECT privilege on {schema}.part_config"
                return state
            present = [c for c in COLUMNS if c in set(columns or ())]
            if "parent_table" not in set(columns or ()):
                state.problem = f"{schema}.part_config has no parent_table column; not read"
                return state
            query = sql.SQL(_READ_SQL).format(
                columns=sql.SQL("").join(
                    sql.SQL(", pc.{}").format(sql.Identifier(c)) for c in present),
                part_config=sql.Identifier(schema, "part_config"),
            )
            for row in cur.execute(query).fetchall():
                oid, parent_table, *values = row
                config = PartmanConfig(parent_table, **dict(zip(present, values, strict=True)))
                if oid is None:
                    state.unmatched.append(parent_table)
                else:
                    state.configs[oid] = config
            return state
    except psycopg.Error as exc:
        text = (str(exc).strip() or exc.__class__.__name__).splitlines()[0]
        return PartmanState(True, problem=f"reading pg_partman's part_config failed: {text}")


def load_partman_config(conn: psycopg.Connection) -> dict[int, PartmanConfig]:
    """part_config by the oid of each managed table; empty without pg_partman."""
    return read_partman(conn).configs
