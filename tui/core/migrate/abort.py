"""Abort a migration until its drop: after Build, the new table dropped (checked to be the one
recorded, holding only copies of the original's rows) and the original's names put back;
before Build, the record forgotten. Once stage 7 began on the new table, stage 7's own abort
(restore.py, through later.abort_steps) is used; once Finish dropped the original there is
nothing to go back to, and abort says so."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import Lock, Plan, Statement, Step, VerificationFailed
from ..plans.hashing import extended_hash_supported
from ..plans.steps import markers
from ..plans.steps.moves import raise_unless
from ..plans.steps.verify import missing_sql, raise_unless_contained
from . import MigrateError, later, sequences
from .build import rename_sql
from .copy import _COLUMNS
from .spec import MigrationSpec, forget_sql, read_recorded
from .stages import _plan, original_dependents, stage_index


def _new_table_check(spec: MigrationSpec, new_oid: int) -> Callable[[object, psycopg.Connection],
                                                                     str]:
    def check(row: object, _conn: psycopg.Connection) -> str:
        if not row or row[0] is None or int(row[0]) != new_oid:  # type: ignore[index]
            raise VerificationFailed(f"{spec.display} is not the table pgparts built; "
                                     "nothing is dropped")
        return f"{spec.display} is the table pgparts built"
    return check


def restore_statements(conn: psycopg.Connection, spec: MigrationSpec,
                       new_oid: int) -> list[Statement]:
    """Undo Build: drop the new table (checked to be the one recorded), give the serial
    sequences back, put every name back, the sequences past the values the new table drew."""
    old = spec.old_table
    out = [
        Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
        Statement(sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(old, spec.table),
                  "lock", "both tables"),
        Statement(sql.SQL("SELECT pg_catalog.to_regclass({})::pg_catalog.oid").format(
            sql.Literal(spec.table.as_string(conn))), "verify", "the new table is ours",
            check=_new_table_check(spec, new_oid), script=raise_unless(conn, sql.SQL(
                "pg_catalog.to_regclass({})::pg_catalog.oid = {}::pg_catalog.oid").format(
                sql.Literal(spec.table.as_string(conn)), sql.Literal(new_oid)),
                f"{spec.display} is not the table pgparts built; nothing is dropped")),
        only_copies(conn, spec),
    ]
    # before the DROP: an owned sequence would go with the table
    for s_schema, s_name, col in spec.owned_sequences:
        out.append(Statement(sql.SQL("ALTER SEQUENCE {s} OWNED BY {t}.{c}").format(
            s=sql.Identifier(s_schema, s_name), t=old, c=sql.Identifier(col)),
            note=f"sequence {s_name} back to the original"))
    out.append(Statement(sql.SQL("DROP TABLE {}").format(spec.table), note="the new table"))
    for kind, name, aside in spec.renamed:
        out.append(Statement(rename_sql(spec, kind, old, aside, name), note=f"{kind} {name} back"))
    out.append(Statement(sql.SQL("ALTER TABLE {t} RENAME TO {n}").format(
        t=old, n=sql.Identifier(spec.name)), note="the original's name back"))
    out += sequences.catch_up_statements(
        conn, spec.oid, spec.table, set(spec.owned_sequences),
        {aside: name for kind, name, aside in spec.renamed if kind == "sequence"})
    return out


def only_copies(conn: psycopg.Connection, spec: MigrationSpec) -> Statement:
    """Every row of the new table is one of the original's: a row written to the table's name
    after Build (by a writer the maintenance window missed) lives only there, and the DROP
    would lose it."""
    rows = conn.execute(_COLUMNS, (spec.oid,)).fetchall()
    cols = [r[0] for r in rows]
    fast = extended_hash_supported(conn, [int(r[1]) for r in rows])
    extra = missing_sql(spec.table, spec.old_table, cols, fast)

    def check(row: object, _conn: psycopg.Connection) -> str:
        n = int(row[0]) if row else 0  # type: ignore[index]
        if n:
            raise VerificationFailed(
                f"{n:,} row(s) of {spec.display} are not in {spec.old_display} (written after "
                f"Build?): move them there first; nothing is dropped")
        return f"every row of {spec.display} is in {spec.old_display}"

    return Statement(extra, "verify", "the new table holds only copies of the original's rows",
                     check=check, script=raise_unless_contained(
                         conn, spec.table, spec.old_table, cols, fast, spec.display,
                         spec.old_display))


_STAGE_7_BEGUN = """
SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint c WHERE (c.conrelid = %(oid)s
               AND c.contype IN ('p', 'u', 'x', 'f')) OR c.confrelid = %(oid)s)
    OR EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = %(oid)s)
    OR EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = %(oid)s
               AND NOT t.tgisinternal)
    OR EXISTS (SELECT FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
               WHERE d.refobjid = %(oid)s
               AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
               AND r.ev_class <> %(oid)s)
"""


def stage_7_begun(conn: psycopg.Connection, new_oid: int) -> bool:
    """Whether the new table has anything Build does not make (a key, an index, a foreign key
    either way, a trigger, a view): stage 7 began, and only its own abort can undo it."""
    row = conn.execute(_STAGE_7_BEGUN, {"oid": new_oid}).fetchone()
    return bool(row and row[0])


def abort_plan(conn: psycopg.Connection, schema: str, name: str) -> Plan:
    rec = read_recorded(conn, schema, name)
    if rec is None:
        raise MigrateError(f"no migration of {display_name(schema, name)} is recorded")
    spec = rec.spec
    if stage_index(rec.state) >= stage_index("finish"):
        raise MigrateError(f"the migration of {spec.display} is finished: the original table "
                           "was dropped, there is nothing to go back to")
    forget = Statement(forget_sql(spec), note="forget the migration")

    def gone(c: psycopg.Connection) -> bool:
        return read_recorded(c, schema, name) is None

    built = stage_index(rec.state) >= stage_index("build")
    if stage_index(rec.state) >= stage_index("dependencies") or (
            built and stage_7_begun(conn, rec.new_oid)):
        steps = later.abort_steps(conn, spec, original_dependents(conn, spec), rec.state,
                                  new_table_oid=rec.new_oid)
    elif built:
        steps = [Step(
            f"restore {spec.display}",
            f"Drop the partitioned {spec.display} with its partitions (once it is shown to "
            f"hold only copies of the original's rows) and give the original "
            "its name, its constraints', indexes' and sequences' names back.",
            restore_statements(conn, spec, rec.new_oid) + [forget],
            locks=[Lock("ACCESS EXCLUSIVE", spec.display), Lock("ACCESS EXCLUSIVE",
                                                                spec.old_display)],
            done=gone, retry="step",
            verify_note="the table dropped is the one pgparts built and holds only copies")]
    else:
        steps = [Step(
            "forget the migration",
            "Nothing was built yet: the registry's record goes (rows deleted as duplicates "
            "and seconds rewritten stay as they are).",
            [Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
             forget], done=gone)]
    plan = _plan(spec, 0, "abort", steps, [f"Abort the migration of {spec.display} "
                                           f"(last stage done: {rec.state})."])
    plan.title = f"abort the migration of {spec.display}"
    return plan
