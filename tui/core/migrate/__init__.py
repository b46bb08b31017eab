"""Read-only analysis for turning a plain table into a partitioned one (issue 11, scenario 3).

Nothing here changes data or takes more than the locks a SELECT takes. The later stages of the
guided migration (plans on the plan-kind abstraction, the wizard, `pgparts migrate`) build on it:

- `source`: the table (`SourceTable`: schema, name, oid, columns) and its partition column
  (`PartitionColumn`: timestamp, timestamptz, date or integer), resolved from the catalog.
- `preflight`: rows and size per period (estimated from statistics, exact on request),
  everything that depends on the table (catalog only), disk space needed, sessions using it.
  The Build and Dependencies stages recreate what `dependents()` lists; Preflight shows it.
- `keys`: proposals for the new primary key (it must hold the partition column), the surrogate
  key (the oldest row of a duplicate group has the lowest id), the tie-break column.
- `duplicates`: rows equal on (new key + tie-break): counts, a sample, what the dedupe stage
  deletes and which referencing rows it re-points; `dedupe_statements()` is that stage's SQL.
- `collisions`: (key prefix, minute) groups whose timestamps collide by design, the seconds
  rewrite and the groups it cannot fix; `rewrite_statements()` is that stage's SQL.
- `analysis`: both reports from one statement, the keys stored more than once counted once
  for both (`tagged`: rows of several kinds from one statement).
- `layout`: proposed partitions (by interval, or merged up to a target row count), a DEFAULT
  and future partitions; a TOML/JSON layout file, read back and validated by the server.

The stages after Copy return plan-engine Steps, each with a catalog-based `done` check and the
locks it takes (ddl.StageSpec: the spec fields they read; ddl.py: names and look-ups they
share):

- `dependencies`: stage 7, keys, indexes, own foreign keys, ANALYZE; with `repoint` (other
  tables' foreign keys re-pointed at the natural key) and `recreate` (views, triggers, rules,
  policies, grants, comments).
- `insert_trigger`: stage 8, the BEFORE INSERT trigger that moves a colliding new row to a free
  second of its minute.
- `finish`: stage 9, every partition compared with the original, then the original dropped.
- `restore`: abort, the original put back, from any stage before the drop.

Statements that a stage will run are returned as `psycopg.sql.Composed`, so the stage can show
them (`as_string`) before running them, and tests run them in a transaction rolled back.
"""

from __future__ import annotations


class MigrateError(Exception):
    """The analysis cannot be done as asked (one line, fit for stderr or the console)."""
