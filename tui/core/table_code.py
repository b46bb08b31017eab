"""The table's own code that reading its rows would run, found in the catalog beforehand.

Some previews read rows: the migration's count them (per period, duplicates, collisions), and
drain-default, fill-gaps and create-ahead read where the DEFAULT partition's rows lie. PostgreSQL
runs code of the table's to plan and answer such a read, not only to write: planning any query
on it folds the constant parts of its indexes' expressions and predicates and of its extended
statistics' expressions (an IMMUTABLE function there runs, measured on 15 and 18), and those of
its CHECK constraints when `constraint_exclusion` is `on` (a role's or database's setting may
say so; measured); grouping, sorting and comparing columns call their types' default btree and
hash support functions and operators. Functions outside pg_catalog there are somebody's code,
and a preview must not run it with the operator's rights: previews refuse such a table in one
line, or skip the read and say so (an apply runs it, as any apply runs the table's code).

A partitioned table is read through its partitions: theirs count too (the whole partition
tree below the table).
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

_CODE = """
WITH rels AS (
  SELECT %(oid)s::pg_catalog.oid AS oid
  UNION
  SELECT relid::pg_catalog.oid
  FROM pg_catalog.pg_partition_tree(%(oid)s::pg_catalog.oid::pg_catalog.regclass)
), deps AS (
  SELECT d.refclassid, d.refobjid, 'index ' || pg_catalog.quote_ident(c.relname) AS what
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.objid = i.indexrelid
  WHERE i.indrelid IN (SELECT oid FROM rels)
  UNION ALL
  SELECT d.refclassid, d.refobjid, 'statistics ' || pg_catalog.quote_ident(s.stxname)
  FROM pg_catalog.pg_statistic_ext s
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass
       AND d.objid = s.oid
  WHERE s.stxrelid IN (SELECT oid FROM rels)
  UNION ALL
  SELECT d.refclassid, d.refobjid, 'constraint ' || pg_catalog.quote_ident(c.conname)
  FROM pg_catalog.pg_constraint c
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
       AND d.objid = c.oid
  WHERE c.conrelid IN (SELECT oid FROM rels) AND c.contype = 'c'
    AND pg_catalog.current_setting('constraint_exclusion') = 'on'
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
  WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attname = ANY(%(cols)s)
  UNION ALL
  SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, m.amopopr,
         'column ' || pg_catalog.quote_ident(a.attname)
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_opclass o ON o.opcdefault
       AND o.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
       AND o.opcmethod IN (SELECT oid FROM pg_catalog.pg_am WHERE amname IN ('btree', 'hash'))
  JOIN pg_catalog.pg_amop m ON m.amopfamily = o.opcfamily AND m.amoplefttype = o.opcintype
  WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attname = ANY(%(cols)s)
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
    pg_catalog that reading the table (its partitions too), grouped or sorted on `columns`,
    would run."""
    return [(str(f), str(w)) for f, w in conn.execute(
        _CODE, {"oid": table_oid, "cols": [c for c in columns if c]}).fetchall()]


def named(found: list[tuple[str, str]]) -> str:
    """The first function found and where it is, and how many more: `public.f(integer) (index
    t_ix) (and 2 more)`."""
    fn, where = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"{fn} ({where}){more}"


def refusal(display: str, found: list[tuple[str, str]], apply: str) -> str:
    """The one line refusing a preview's read of `display`, naming the first function found
    (`apply`: what reads it anyway, e.g. "`pgparts migrate ... --apply` runs it")."""
    return (f"reading {display} would run {named(found)}, code that is not built in: a "
            f"preview never runs the table's code; {apply} (as the applying role)")
