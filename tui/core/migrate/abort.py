"""Abort: from any stage before the original is dropped, the original table put back exactly
as preflight read it: its name, its indexes' and constraints' names, the referencing tables'
foreign keys (pointing at it again, the key columns the migration added removed), the
ownership of its sequences, its grants, the views reading it; the new table dropped.

Steps, each with a catalog-based `done` check, in an order that keeps every statement legal:

1. the new table moves aside (`pgparts_aborted_<oid>`) and the original takes its name back
   (ACCESS EXCLUSIVE on both, an instant);
2. views re-created from their definitions as preflight read them (they name the table, which
   is the original again);
3. per referencing table: the foreign key on the new table dropped, the columns the migration
   added dropped (only those its comment marks, see dependencies.ADDED_COMMENT), the original
   foreign key renamed back (stage 7 keeps it aside until the new one is valid) or, when it
   was dropped already, added again NOT VALID; 4. then validated (a scan that blocks no writer);
5. serial sequences owned by the original again (dropping the new table would take them);
6. the new table (and the insert trigger's function) dropped;
7. the original's indexes and constraints, renamed out of the way by Build, renamed back
   (matched by definition);
8. grants the original lacks, granted again.

Rows the Duplicates and Collisions stages deleted or renumbered are not restored: those stages
changed the data in place, before Build, and said so when confirmed.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import Lock, Statement, Step
from . import MigrateError
from .ddl import StageSpec, constraint_state, fit, new_oid, old_exists, rel_oid
from .dependencies import (
    ADDED_COMMENT,
    grant_statements,
    index_tail,
    missing_grants,
    repoints,
    view_statement,
)
from .insert_trigger import function_ident
from .preflight import Dependents

GROUP = "abort"
BUILD_STAGE = 5
FINISH_STAGE = 9


def aside_name(spec: StageSpec) -> str:
    return fit(f"pgparts_aborted_{spec.oid}")


def _one(conn: psycopg.Connection, query: str, params: tuple) -> bool:
    row = conn.execute(query, params).fetchone()
    return bool(row and row[0])


def _orig(spec: StageSpec) -> sql.Identifier:
    """The original under its own name (after step 1)."""
    return sql.Identifier(spec.schema, spec.name)


def _named_back(spec: StageSpec) -> Callable[[psycopg.Connection], bool]:
    return lambda c: _one(c, "SELECT relname = %s FROM pg_catalog.pg_class WHERE oid = %s",
                          (spec.name, spec.oid))


def _rename_step(conn: psycopg.Connection, spec: StageSpec) -> Step:
    current = conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE oid = %s",
                           (spec.oid,)).fetchone()[0]
    stmts = []
    if new_oid(conn, spec) is not None:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.Identifier(spec.schema, spec.name), sql.Identifier(aside_name(spec)))))
    if current != spec.name:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.Identifier(spec.schema, current), sql.Identifier(spec.name))))
    disp = display_name(spec.schema, spec.name)
    return Step(
        title=f"Give {disp} back to the original",
        explanation=(f"The new table moves aside as {aside_name(spec)!r} and the original takes "
                     "its name back."),
        statements=stmts,
        locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant"),
               Lock("ACCESS EXCLUSIVE", display_name(spec.schema, current), "an instant")],
        retry="step", done=_named_back(spec), group=GROUP)


def _view_steps(spec: StageSpec, deps: Dependents) -> list[Step]:
    steps = []
    for v in deps.views:
        if v.depth != 1 or v.materialized or not v.definition:
            continue
        disp = display_name(v.schema, v.name)

        def done(c: psycopg.Connection, s: str = v.schema, n: str = v.name) -> bool:
            return _one(c, "SELECT EXISTS (SELECT FROM pg_catalog.pg_rewrite r"
                           " JOIN pg_catalog.pg_depend d ON d.objid = r.oid"
                           " AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
                           " WHERE r.ev_class = %s AND d.refobjid = %s)",
                        (rel_oid(c, s, n) or 0, spec.oid))

        steps.append(Step(
            title=f"View {disp} on the original",
            explanation="Re-created from its definition as preflight read it.",
            statements=[Statement(view_statement(v.schema, v.name, v.definition, v.options))],
            locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant")],
            retry="step", done=done, group=GROUP))
    return steps


def _fk_steps(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    steps = []
    try:
        by_fk = {(rp.fk.schema, rp.fk.table, rp.fk.name): rp
                 for rp in repoints(conn, spec, deps)}
    except MigrateError:
        by_fk = {}  # a key that could not be re-pointed was never touched
    for fk in deps.referencing_fks:
        t = sql.Identifier(fk.schema, fk.table)
        disp = display_name(fk.schema, fk.table)
        relid = rel_oid(conn, fk.schema, fk.table)
        rp = by_fk.get((fk.schema, fk.table, fk.name))
        comment = ADDED_COMMENT.format(
            table=display_name(spec.schema, spec.old_name), fk=fk.name)
        marked = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0"
            " AND NOT attisdropped AND pg_catalog.col_description(attrelid, attnum) = %s",
            (relid, comment)).fetchall()]
        stmts = []
        st = constraint_state(conn, relid, fk.name)
        if st is not None and st[0] == "f" and st[2] != spec.oid:
            stmts.append(Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                t, sql.Identifier(fk.name)), note=f"the new key of {disp}"))
        stmts += [Statement(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
            t, sql.Identifier(c)), note=f"{disp}.{c}, added by the migration") for c in marked]
        parked = constraint_state(conn, relid, rp.temp_name) if rp else None
        if rp and parked is not None and parked[2] == spec.oid:
            stmts.append(Statement(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                t, sql.Identifier(rp.temp_name), sql.Identifier(fk.name)),
                note="the original key, kept aside until now"))
        elif st is None or st[2] != spec.oid:
            stmts.append(Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
                t, sql.Identifier(fk.name), sql.SQL(fk.definition.removesuffix(" NOT VALID")))))
        temp = rp.temp_name if rp else None

        def back(c: psycopg.Connection, s: str = fk.schema, n: str = fk.table,
                 name: str = fk.name, temp: str | None = temp, comment: str = comment) -> bool:
            rid = rel_oid(c, s, n)
            st = constraint_state(c, rid, name)
            return (st is not None and st[2] == spec.oid
                    and (temp is None or constraint_state(c, rid, temp) is None)
                    and not _one(c, "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute"
                                    " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
                                    " AND pg_catalog.col_description(attrelid, attnum) = %s)",
                                 (rid, comment)))

        steps.append(Step(
            title=f"Foreign key {fk.name} of {disp} on the original",
            explanation=("The key on the new table goes, with the columns the migration added; "
                         "the original foreign key takes its name back (or comes back NOT "
                         "VALID, no scan, when it was dropped already)."),
            statements=stmts,
            locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant (a dropped column is not "
                                                 "rewritten)"),
                   Lock("SHARE ROW EXCLUSIVE", display_name(spec.schema, spec.name))],
            retry="step", done=back, group=GROUP))
        if fk.validated:
            def valid(c: psycopg.Connection, s: str = fk.schema, n: str = fk.table,
                      name: str = fk.name) -> bool:
                st = constraint_state(c, rel_oid(c, s, n), name)
                return st is not None and st[2] == spec.oid and st[1]

            steps.append(Step(
                title=f"Validate foreign key {fk.name} of {disp}",
                explanation="Checks every row again; reads and writes go on.",
                statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    t, sql.Identifier(fk.name)))],
                locks=[Lock("SHARE UPDATE EXCLUSIVE", disp, "blocks DDL only"),
                       Lock("ROW SHARE", display_name(spec.schema, spec.name))],
                done=valid, group=GROUP))
    return steps


def _sequence_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    serial = [(s, n, col) for s, n, col, kind in deps.sequences if kind == "serial"]
    if not serial:
        return []
    owned_q = ("SELECT EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a"
               " ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
               " WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
               " AND d.objid = %s AND d.refobjid = %s AND a.attname = %s AND d.deptype = 'a')")
    todo = [(s, n, col) for s, n, col in serial
            if not _one(conn, owned_q, (rel_oid(conn, s, n) or 0, spec.oid, col))]
    if not todo:
        return []

    def done(c: psycopg.Connection) -> bool:
        return all(_one(c, owned_q, (rel_oid(c, s, n) or 0, spec.oid, col))
                   for s, n, col in serial)

    return [Step(
        title="Sequences owned by the original again",
        explanation="Dropping the new table would take the sequences it owns along.",
        statements=[Statement(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
            sql.Identifier(s, n), _orig(spec), sql.Identifier(col))) for s, n, col in todo],
        locks=[], retry="step", done=done, group=GROUP)]


def _drop_step(conn: psycopg.Connection, spec: StageSpec) -> list[Step]:
    aside = sql.Identifier(spec.schema, aside_name(spec))
    fn = function_ident(spec)
    there = (new_oid(conn, spec) is not None
             or rel_oid(conn, spec.schema, aside_name(spec)) is not None)

    def done(c: psycopg.Connection) -> bool:
        return (new_oid(c, spec) is None and rel_oid(c, spec.schema, aside_name(spec)) is None
                and not _one(c, "SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL",
                             (sql.SQL("{}()").format(fn).as_string(c),)))

    stmts = [Statement(sql.SQL("DROP TABLE {}").format(aside), note="the new table")] \
        if there else []
    stmts.append(Statement(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(fn)))
    return [Step(
        title="Drop the new table",
        explanation=("The new partitioned table and its partitions, with the rows copied into "
                     "them (the original holds them all), and the insert trigger's function."),
        statements=stmts,
        locks=[Lock("ACCESS EXCLUSIVE", f"{aside_name(spec)} and its partitions",
                    "nothing uses them any more")],
        retry="step", done=done, group=GROUP)]


def _renames(conn: psycopg.Connection, spec: StageSpec, deps: Dependents
             ) -> list[tuple[str, str, str]]:
    """(kind, current name, original name) for the original's constraints and indexes whose
    names Build changed, matched by definition."""
    cons = conn.execute(
        "SELECT conname, contype::text, pg_catalog.pg_get_constraintdef(oid)"
        " FROM pg_catalog.pg_constraint WHERE conrelid = %s ORDER BY conname",
        (spec.oid,)).fetchall()
    out: list[tuple[str, str, str]] = []
    names = {r[0] for r in cons}
    wanted = [(c.name, c.type, c.definition) for c in deps.constraints] + \
             [(f.name, "f", f.definition) for f in deps.own_fks]
    free = [r for r in cons if r[0] not in {w[0] for w in wanted}]
    for name, typ, definition in wanted:
        if name in names:
            continue
        match = next((r for r in free if r[1] == typ and r[2] == definition), None)
        if match is not None:
            free.remove(match)
            out.append(("constraint", match[0], name))
    index_backed = {c.name for c in deps.constraints if c.type in ("p", "u", "x")}
    ixs = conn.execute(
        "SELECT i.relname, pg_catalog.pg_get_indexdef(x.indexrelid) FROM pg_catalog.pg_index x"
        " JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s"
        " ORDER BY i.relname", (spec.oid,)).fetchall()
    current = conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE oid = %s",
                           (spec.oid,)).fetchone()[0]
    renamed_by_constraint = {orig for _k, _c, orig in out}
    have = {r[0] for r in ixs}
    tails = [(r[0], index_tail(conn, r[1], r[0], spec.schema, current)) for r in ixs]
    for ix in deps.indexes:
        if ix.constraint in index_backed and (ix.constraint in names
                                              or ix.constraint in renamed_by_constraint):
            continue
        if ix.name in have:
            continue
        want = index_tail(conn, ix.definition, ix.name, spec.schema, spec.name)
        match = next((t for t in tails if t[1] == want and t[0] not in
                      {i.name for i in deps.indexes}), None)
        if match is not None:
            tails.remove(match)
            out.append(("index", match[0], ix.name))
    return out


def _names_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    todo = _renames(conn, spec, deps)
    if not todo:
        return []
    stmts = []
    for kind, cur, orig in todo:
        if kind == "constraint":
            stmts.append(Statement(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                _orig(spec), sql.Identifier(cur), sql.Identifier(orig))))
        else:
            stmts.append(Statement(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(spec.schema, cur), sql.Identifier(orig))))
    return [Step(
        title="Names of the original's indexes and constraints",
        explanation="Build renamed them out of the way; they take their names back.",
        statements=stmts,
        locks=[Lock("ACCESS EXCLUSIVE", display_name(spec.schema, spec.name), "an instant")],
        retry="step", done=lambda c: not _renames(c, spec, deps), group=GROUP)]


def _grant_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    todo = missing_grants(conn, deps, spec.oid)
    if not todo:
        return []
    return [Step(
        title="Grants on the original",
        explanation="Privileges the original had when preflight read it and lacks now.",
        statements=grant_statements(_orig(spec), todo), locks=[], retry="step",
        done=lambda c: not missing_grants(c, deps, spec.oid), group=GROUP)]


def abort_steps(conn: psycopg.Connection, spec: StageSpec, deps: Dependents,
                stage: int) -> list[Step]:
    """The steps that put the original back, from `stage` (the last stage started, 1-9).
    `deps` is what preflight.dependents() read before Build."""
    if not old_exists(conn, spec):
        raise MigrateError("the original table was dropped: there is nothing to go back to")
    if stage < BUILD_STAGE:
        return []  # nothing was built; the data stages before it are not undone
    steps = [_rename_step(conn, spec)]
    steps += _view_steps(spec, deps)
    steps += _fk_steps(conn, spec, deps)
    steps += _sequence_step(conn, spec, deps)
    steps += _drop_step(conn, spec)
    steps += _names_step(conn, spec, deps)
    steps += _grant_step(conn, spec, deps)
    return [s for s in steps if s.statements]
