"""The table's own code that reading its rows would run, found in the catalog beforehand.

The migration's previews count rows (per period, duplicates, collisions), and PostgreSQL runs
code of the table's to plan and answer such a read, not only to write: planning any query on
it folds the constant parts of its indexes' expressions and predicates and of its extended
statistics' expressions (an IMMUTABLE function there runs, measured on 15 and 18), and
grouping, sorting and comparing the key, tie-break and partition columns call their types'
default btree and hash support functions and operators. Functions outside pg_catalog there are
somebody's code, and a preview must not run it with the operator's rights: previews refuse
such a table in one line (`--apply` runs it, as any apply runs the table's code).
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from . import MigrateError

_CODE = """
WITH deps AS (
  SELECT d.refclassid, d.refobjid, 'index ' || pg_catalog.quote_ident(c.relname) AS what
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.objid = i.indexrelid
  WHERE i.indrelid = %(oid)s
  UNION ALL
  SELECT d.refclassid, d.refobjid, 'statistics ' || pg_catalog.quote_ident(s.stxname)
  FROM pg_catalog.pg_statistic_ext s
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass
       AND d.objid = s.oid
  WHERE s.stxrelid = %(oid)s
  UNION ALL
  SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.amproc,
         'column ' || pg_catalog.quote_ident(a.attname)
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_opclass o ON o.opcdefault
       AND o.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
       AND o.opcmethod IN (SELECT oid FROM pg_catalog.pg_am WHERE amname IN ('btree', 'hash'))
  JOIN pg_catalog.pg_amproc p ON p.amprocfamily = o.opcfamily
       AND p.amproclefttype = o.opcintype
  WHERE a.attrelid = %(oid)s AND a.attname = ANY(%(cols)s)
  UNION ALL
  SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, m.amopopr,
         'column ' || pg_catalog.quote_ident(a.attname)
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_opclass o ON o.opcdefault
       AND o.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
       AND o.opcmethod IN (SELECT oid FROM pg_catalog.pg_am WHERE amname IN ('btree', 'hash'))
  JOIN pg_catalog.pg_amop m ON m.amopfamily = o.opcfamily AND m.amoplefttype = o.opcintype
  WHERE a.attrelid = %(oid)s AND a.attname = ANY(%(cols)s)
)
SELECT DISTINCT f.oid::pg_catalog.regprocedure::pg_catalog.text, deps.what
FROM deps
JOIN pg_catalog.pg_proc f ON f.oid = CASE
     WHEN deps.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN deps.refobjid
     WHEN deps.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass THEN
          (SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator o
           WHERE o.oid = deps.refobjid)
     END
WHERE f.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace
ORDER BY 2, 1
"""


def table_code(conn: psycopg.Connection, table_oid: int, columns: Iterable[str]
               ) -> list[tuple[str, str]]:
    """(function, where it is: 'index x', 'statistics s', 'column c') of the functions outside
    pg_catalog that reading the table, grouped or sorted on `columns`, would run."""
    return [(str(f), str(w)) for f, w in conn.execute(
        _CODE, {"oid": table_oid, "cols": [c for c in columns if c]}).fetchall()]


def refuse_table_code(conn: psycopg.Connection, table_oid: int, display: str,
                      columns: Iterable[str]) -> None:
    """MigrateError, in one line, when a preview's read of the table would run its code."""
    found = table_code(conn, table_oid, columns)
    if not found:
        return
    fn, where = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    raise MigrateError(
        f"reading {display} would run {fn} ({where}){more}, code that is not built in: a "
        f"preview never runs the table's code; `pgparts migrate ... --apply` runs it (as the "
        f"applying role)")
