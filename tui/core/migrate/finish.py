"""Stage 9, Finish: the original compared with the new table, partition by partition, then
dropped, only when every one of its rows is in the new table.

Each partition is compared with the original's rows that its bound accepts (the partition's
own constraint, pg_get_partition_constraintdef, run as a WHERE on the original): row count and
an order-independent checksum (plans/hashing.py). When the new table changed since the copy
(the application is back and wrote to it), equal counts cannot be expected: then every row of
the original must be in the partition (a multiset difference of row hashes), else the step
fails and nothing is dropped. The drop step checks the whole table the same way in its own
transaction, under the ACCESS EXCLUSIVE lock it then drops with, hands the serial sequences
the new table uses over to it (a DROP would take them along) and drops the original. A
dependent left on the original (a materialized view, a function body) makes the DROP fail:
the step rolls back and says what holds it.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import (
    Destroyed,
    Lock,
    PlanFacts,
    Statement,
    Step,
    VerificationFailed,
)
from ..plans.hashing import extended_hash_supported, row_hash
from ..plans.steps.verify import compare_sql, raise_unless_contained
from .ddl import (
    StageSpec,
    new_disp,
    new_ident,
    old_disp,
    old_exists,
    old_ident,
    partitions,
    require_new,
)

GROUP = "finish"


def _columns(conn: psycopg.Connection, oid: int) -> tuple[list[str], bool]:
    rows = conn.execute(
        "SELECT attname, atttypid FROM pg_catalog.pg_attribute WHERE attrelid = %s"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (oid,)).fetchall()
    cols = [r[0] for r in rows]
    return cols, extended_hash_supported(conn, [int(r[1]) for r in rows])


def contained(old: sql.Composable, new: sql.Composable, cols: list[str], fast: bool,
              old_what: str, new_what: str) -> Callable:
    """The comparison's check: equal counts and checksums, or else every row of `old` in `new`
    (a multiset difference of row hashes); VerificationFailed otherwise."""
    def check(row: tuple, conn: psycopg.Connection) -> str:
        n_old, h_old, n_new, h_new = row
        if (n_old, h_old) == (n_new, h_new):
            return f"{old_what} and {new_what} hold the same {n_new:,} rows (checksum {h_new})"
        missing = conn.execute(sql.SQL(
            "SELECT pg_catalog.count(*) FROM (SELECT {h} FROM {old} EXCEPT ALL"
            " SELECT {h} FROM {new}) d").format(h=row_hash(cols, fast), old=old, new=new)
        ).fetchone()[0]
        if missing:
            raise VerificationFailed(
                f"{missing:,} of the {n_old:,} rows of {old_what} are not in {new_what} (changed "
                "since the copy?); nothing is dropped")
        return (f"all {n_old:,} rows of {old_what} are in {new_what} (which holds "
                f"{n_new - n_old:,} written since)")
    return check


def _gone(spec: StageSpec) -> Callable[[psycopg.Connection], bool]:
    return lambda c: not old_exists(c, spec)


def _sequence_handover(conn: psycopg.Connection, spec: StageSpec, new_oid: int
                       ) -> list[Statement]:
    """Sequences owned by the original's columns that a default of the new table uses."""
    rows = conn.execute(
        "SELECT sn.nspname, s.relname, a.attname FROM pg_catalog.pg_depend d"
        " JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
        " JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace"
        " JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        " WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
        " AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
        " AND d.refobjid = %s AND d.deptype = 'a'"
        " AND EXISTS (SELECT FROM pg_catalog.pg_depend u"
        "   JOIN pg_catalog.pg_attrdef ad ON ad.oid = u.objid"
        "   WHERE u.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass"
        "   AND u.refobjid = s.oid AND ad.adrelid = %s)",
        (spec.oid, new_oid)).fetchall()
    return [Statement(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
        sql.Identifier(s, n), new_ident(spec), sql.Identifier(col)),
        note=f"the sequence {n} now belongs to {new_disp(spec)}") for s, n, col in rows]


def finish_steps(conn: psycopg.Connection, spec: StageSpec) -> list[Step]:
    """Stage 9: compare every partition with the original's rows of its bound, then drop the
    original (its rows verified to be in the new table, in the same transaction)."""
    if not old_exists(conn, spec):
        return []
    oid = require_new(conn, spec)
    cols, fast = _columns(conn, spec.oid)
    old, new = old_ident(spec), new_ident(spec)
    odisp, ndisp = old_disp(spec), new_disp(spec)
    steps = []
    for schema, part, part_oid in partitions(conn, oid):
        cond = conn.execute("SELECT pg_catalog.pg_get_partition_constraintdef(%s)",
                            (part_oid,)).fetchone()[0]
        # the server's deparse of the bound, over column names the original shares
        where = sql.SQL("WHERE {}").format(sql.SQL(cond)) if cond else sql.SQL("")
        rows_of = sql.SQL("(SELECT * FROM {} {}) AS o").format(old, where)
        disp = display_name(schema, part)
        what = f"{odisp}'s rows of {part}"
        steps.append(Step(
            title=f"Compare {disp} with the original",
            explanation=(f"Row count and an order-independent checksum of {disp} and of the "
                         f"rows of {odisp} its bound accepts; if they differ (the new table "
                         f"was written to since), every one of those rows must be in it."),
            statements=[Statement(compare_sql(rows_of, sql.Identifier(schema, part), cols, fast),
                                  "verify", note=f"compare {disp}",
                                  check=contained(rows_of, sql.Identifier(schema, part),
                                                  cols, fast, what, disp),
                                  script=raise_unless_contained(
                                      conn, rows_of, sql.Identifier(schema, part), cols, fast,
                                      what, disp))],
            verify_note=f"every row of {what} is in {disp}",
            locks=[Lock("ACCESS SHARE", disp), Lock("ACCESS SHARE", odisp)],
            isolation="repeatable read", done=_gone(spec), group=GROUP))
    handover = _sequence_handover(conn, spec, oid)
    steps.append(Step(
        title=f"Drop {odisp}",
        explanation=(f"Lock {odisp}, check once more that every one of its rows is in "
                     f"{ndisp}, " + ("hand its sequences over to the new table, "
                                     if handover else "")
                     + "and drop it. Nothing reads it any more; a dependent left on it makes "
                       "the DROP fail and nothing is dropped."),
        statements=[
            Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(old), "lock"),
            Statement(compare_sql(old, new, cols, fast), "verify",
                      note=f"every row of {odisp} is in {ndisp}",
                      check=contained(old, new, cols, fast, odisp, ndisp),
                      script=raise_unless_contained(conn, old, new, cols, fast, odisp, ndisp)),
            *handover,
            Statement(sql.SQL("DROP TABLE {}").format(old), note=f"drop {odisp}")],
        locks=[Lock("ACCESS EXCLUSIVE", odisp, "nothing uses it any more"),
               Lock("ACCESS SHARE", ndisp)],
        verify_note=f"every row of {odisp} is in {ndisp}",
        retry="step", done=_gone(spec), group=GROUP))
    return steps


def finish_facts(spec: StageSpec) -> PlanFacts:
    """What the Finish plan destroys: the original, verified first."""
    return PlanFacts(
        changes=[f"drop {old_disp(spec)} once every one of its rows is verified in "
                 f"{new_disp(spec)}"],
        destroys=[Destroyed("table", old_disp(spec), verified=True)])
