"""Abort: from any stage before the original is dropped, the original table put back as it was:
its name, its indexes', constraints' and identity sequences' names, the referencing tables'
foreign keys (pointing at it again, the key columns the migration added removed), the
ownership of its serial sequences, its grants, the views reading it; the new table dropped.

Everything is read from the catalog when the abort is planned (so it works from whatever a
killed stage left): the foreign keys pointing at the new table, the original keys stage 7 keeps
aside under `pgparts_fk_<hash>` until the new ones are valid, the columns the migration added
(marked by their comment, dependencies.added_comment), the views reading the new table. Steps,
each with a catalog-based `done` check, in an order that keeps every statement legal:

1. the new table moves aside (`pgparts_aborted_<oid>`) and the original takes its name back
   (ACCESS EXCLUSIVE on both, an instant);
2. views reading the new table re-pointed at the original (deparsed by the server while the
   original bears the new table's name for an instant, ddl.as_named_sql);
3. per referencing table: the foreign keys on the new table dropped, the added columns dropped,
   the original foreign key renamed back or, once it was dropped, re-created NOT VALID from the
   new one (same name, actions and deferral; on the surrogate id column the marking comment
   names); 4. then validated (a scan that blocks no writer);
5. serial sequences owned by the original again (dropping the new table would take them);
6. the new table (and the insert trigger's function) dropped; the original's identity and
   serial sequences set past its column's highest value (sequences.py: the new table drew
   values from sequences of its own while it was live);
7. the names Build moved out of the way (the spec's `renamed`) put back;
8. grants the original lacks, granted again.

Rows the Duplicates and Collisions stages deleted or renumbered are not restored: those stages
changed the data in place, before Build, and said so when confirmed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import Lock, Statement, Step, VerificationFailed
from . import MigrateError, sequences
from .ddl import (
    StageSpec,
    as_named_sql,
    fit,
    new_disp,
    new_oid,
    old_exists,
    rel_oid,
    swap_name,
    view_prefix,
)
from .insert_trigger import function_ident
from .preflight import ACTIONS, Dependents
from .recreate import grant_statements, missing_grants
from .repoint import ADDED_PREFIX, temp_fk_name

GROUP = "abort"
STAGE_NAMES = ("preflight", "duplicates", "collisions", "layout", "build", "copy",
               "dependencies", "trigger", "finish")
BUILD_STAGE = 5


def aside_name(spec: StageSpec) -> str:
    return fit(f"pgparts_aborted_{spec.oid}")


def _one(conn: psycopg.Connection, query: str, params: tuple) -> bool:
    row = conn.execute(query, params).fetchone()
    return bool(row and row[0])


def _orig(spec: StageSpec) -> sql.Identifier:
    """The original under its own name (after step 1)."""
    return sql.Identifier(spec.schema, spec.name)


def _new_or_aside(conn: psycopg.Connection, spec: StageSpec) -> int | None:
    return new_oid(conn, spec) or rel_oid(conn, spec.schema, aside_name(spec))


def _is_ours(name: str, expected: int) -> Callable:
    def check(row: tuple, _conn: psycopg.Connection) -> str:
        if not row or row[0] is None or int(row[0]) != expected:
            raise VerificationFailed(f"{name} is not the table the migration built; nothing "
                                     "is dropped")
        return f"{name} is the table the migration built"
    return check


def _check_ours(conn: psycopg.Connection, schema: str, name: str, expected: int | None
                ) -> list[Statement]:
    """When the caller knows the new table's oid (the registry's record), a check that the
    table about to be moved aside or dropped is that one."""
    if expected is None:
        return []
    return [Statement(sql.SQL("SELECT pg_catalog.to_regclass({})::pg_catalog.oid").format(
        sql.Literal(sql.Identifier(schema, name).as_string(conn))), "verify",
        note=f"{name} is the table the migration built", check=_is_ours(name, expected))]


def _rename_step(conn: psycopg.Connection, spec: StageSpec, expected: int | None,
                 guard: list[Statement]) -> Step:
    current = conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE oid = %s",
                           (spec.oid,)).fetchone()[0]
    stmts = []
    if new_oid(conn, spec) is not None:
        stmts += _check_ours(conn, spec.schema, spec.name, expected)
        # the table locked first, so nothing is written to it between the guard and the rename
        stmts.append(Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(spec.schema, spec.name)), "lock"))
        stmts += guard
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
        retry="step",
        done=lambda c: _one(c, "SELECT relname = %s FROM pg_catalog.pg_class WHERE oid = %s",
                            (spec.name, spec.oid)),
        group=GROUP)


_READERS = """
SELECT DISTINCT n.nspname, v.relname, v.oid FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.refobjid = %s
  AND v.oid <> %s AND v.relkind = 'v'
ORDER BY 1, 2
"""


def _view_steps(conn: psycopg.Connection, spec: StageSpec) -> list[Step]:
    new = _new_or_aside(conn, spec)
    if new is None:
        return []
    steps = []
    for schema, name, oid in conn.execute(_READERS, (new, new)).fetchall():
        disp = display_name(schema, name)

        def done(c: psycopg.Connection, oid: int = oid) -> bool:
            return _one(c, "SELECT EXISTS (SELECT FROM pg_catalog.pg_rewrite r"
                           " JOIN pg_catalog.pg_depend d ON d.objid = r.oid"
                           " AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
                           " WHERE r.ev_class = %s AND d.refobjid = %s)", (oid, spec.oid))

        steps.append(Step(
            title=f"View {disp} on the original",
            explanation=("Re-created from its own definition, deparsed while the original "
                         f"bears the name {aside_name(spec)!r} for an instant: it then reads "
                         "the original again."),
            statements=[Statement(as_named_sql(
                conn, spec.schema, aside_name(spec), spec.name, swap_name(spec),
                sql.SQL("SELECT pg_catalog.pg_get_viewdef({}::pg_catalog.oid)").format(
                    sql.Literal(oid)), view_prefix(conn, schema, name)), note=f"view {disp}")],
            locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant"),
                   Lock("ACCESS EXCLUSIVE", f"{spec.name} and {aside_name(spec)}",
                        "an instant (renamed and back)")],
            retry="step", done=done, group=GROUP))
    return steps


@dataclass
class _Back:
    """One original foreign key of a referencing table, as abort puts it back."""

    name: str
    statement: sql.Composable  # rename back, or re-create NOT VALID
    validate: bool


_FKS_TO = """
SELECT con.conname, con.confdeltype::text, con.confupdtype::text, con.condeferrable,
       con.condeferred, con.confmatchtype::text, con.convalidated,
       ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
             ORDER BY k.o),
       ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
             ORDER BY k.o)
FROM pg_catalog.pg_constraint con
WHERE con.conrelid = %s AND con.confrelid = %s AND con.contype = 'f' AND con.conparentid = 0
ORDER BY 1
"""


def _marked(conn: psycopg.Connection, relid: int, prefix: str) -> dict[str, dict]:
    """Columns of `relid` the migration added: name -> what their comment says."""
    out = {}
    for name, text in conn.execute(
            "SELECT attname, pg_catalog.col_description(attrelid, attnum)"
            " FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0"
            " AND NOT attisdropped AND pg_catalog.starts_with("
            " pg_catalog.col_description(attrelid, attnum), %s)", (relid, prefix)).fetchall():
        try:
            doc = json.loads(text[len(prefix):])
        except ValueError:
            continue
        if isinstance(doc, dict):
            out[name] = doc
    return out


def _options(deltype: str, updtype: str, deferrable: bool, deferred: bool,
             match: str) -> sql.Composable:
    parts = []
    if match == "f":
        parts.append("MATCH FULL")
    if ACTIONS[updtype] != "NO ACTION":
        parts.append(f"ON UPDATE {ACTIONS[updtype]}")
    if ACTIONS[deltype] != "NO ACTION":
        parts.append(f"ON DELETE {ACTIONS[deltype]}")
    if deferrable:
        parts.append("DEFERRABLE INITIALLY DEFERRED" if deferred else "DEFERRABLE")
    return sql.SQL("".join(f" {p}" for p in parts))  # keywords from fixed sets only


def _referencing_tables(conn: psycopg.Connection, spec: StageSpec, new: int | None,
                        prefix: str) -> list[tuple[str, str, int]]:
    rows = conn.execute(
        "SELECT DISTINCT n.nspname, c.relname, c.oid FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid IN (SELECT conrelid FROM pg_catalog.pg_constraint WHERE contype = 'f'"
        "   AND (confrelid = %s OR (confrelid = %s AND conname LIKE 'pgparts\\_fk\\_%%')))"
        " OR c.oid IN (SELECT attrelid FROM pg_catalog.pg_attribute WHERE attnum > 0"
        "   AND pg_catalog.starts_with(pg_catalog.col_description(attrelid, attnum), %s))"
        " ORDER BY 1, 2", (new or 0, spec.oid, prefix)).fetchall()
    return [(r[0], r[1], int(r[2])) for r in rows]


def _fk_steps(conn: psycopg.Connection, spec: StageSpec) -> list[Step]:
    new = _new_or_aside(conn, spec)
    prefix = ADDED_PREFIX.format(table=new_disp(spec))
    steps = []
    for schema, table, relid in _referencing_tables(conn, spec, new, prefix):
        t = sql.Identifier(schema, table)
        disp = display_name(schema, table)
        marked = _marked(conn, relid, prefix)
        names = {r[0]: int(r[1]) for r in conn.execute(
            "SELECT conname, confrelid FROM pg_catalog.pg_constraint WHERE conrelid = %s"
            " AND contype = 'f'", (relid,)).fetchall()}
        drops: list[Statement] = []
        backs: list[_Back] = []
        for row in (conn.execute(_FKS_TO, (relid, new)).fetchall() if new else []):
            name, deltype, updtype, deferrable, deferred, match, valid, cols, refcols = row
            drops.append(Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                t, sql.Identifier(name)), note=f"{name} on the new table"))
            parked = temp_fk_name(schema, table, name)
            if names.get(parked) == spec.oid:
                rename = sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                    t, sql.Identifier(parked), sql.Identifier(name))
                backs.append(_Back(name, rename, False))
                continue
            serves = [m["column"] for c, m in marked.items()
                      if c in cols and m.get("foreign_key") == name and m.get("column")]
            if serves and spec.surrogate:
                cols, refcols = [serves[0]], [spec.surrogate]
            backs.append(_Back(name, sql.SQL(
                "ALTER TABLE {t} ADD CONSTRAINT {n} FOREIGN KEY ({c}) REFERENCES {o} ({r}){x}"
                " NOT VALID").format(
                t=t, n=sql.Identifier(name), c=sql.SQL(", ").join(map(sql.Identifier, cols)),
                o=_orig(spec), r=sql.SQL(", ").join(map(sql.Identifier, refcols)),
                x=_options(deltype, updtype, deferrable, deferred, match)), valid))
        stmts = drops + [Statement(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
            t, sql.Identifier(c)), note=f"{disp}.{c}, added by the migration") for c in marked]
        stmts += [Statement(b.statement, note=f"{b.name} on the original") for b in backs]

        def back(c: psycopg.Connection, relid: int = relid) -> bool:
            other = _new_or_aside(c, spec) or 0
            return not _one(c, "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint"
                               " WHERE conrelid = %s AND contype = 'f' AND (confrelid = %s"
                               " OR conname LIKE 'pgparts\\_fk\\_%%'))", (relid, other)) \
                and not _marked(c, relid, prefix)

        steps.append(Step(
            title=f"Foreign keys of {disp} on the original",
            explanation=("The keys on the new table go, with the columns the migration added; "
                         "the original keys take their names back (or come back NOT VALID, no "
                         "scan, when they were dropped already)."),
            statements=stmts,
            locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant (a dropped column is not "
                                                 "rewritten)"),
                   Lock("SHARE ROW EXCLUSIVE", display_name(spec.schema, spec.name))],
            retry="step", done=back, group=GROUP))
        for b in backs:
            if not b.validate:
                continue

            def valid(c: psycopg.Connection, relid: int = relid, name: str = b.name) -> bool:
                return _one(c, "SELECT convalidated FROM pg_catalog.pg_constraint"
                               " WHERE conrelid = %s AND conname = %s AND confrelid = %s",
                            (relid, name, spec.oid))

            steps.append(Step(
                title=f"Validate foreign key {b.name} of {disp}",
                explanation="Checks every row again; reads and writes go on.",
                statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    t, sql.Identifier(b.name)))],
                locks=[Lock("SHARE UPDATE EXCLUSIVE", disp, "blocks DDL only"),
                       Lock("ROW SHARE", display_name(spec.schema, spec.name))],
                done=valid, group=GROUP))
    return steps


_OWNED = ("SELECT EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a"
          " ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
          " WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
          " AND d.objid = %s AND d.refobjid = %s AND a.attname = %s AND d.deptype = 'a')")


def _sequence_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    serial = {(s, n, col) for s, n, col, kind in deps.sequences if kind == "serial"}
    serial |= set(getattr(spec, "owned_sequences", ()))
    todo = sorted((s, n, col) for s, n, col in serial
                  if not _one(conn, _OWNED, (rel_oid(conn, s, n) or 0, spec.oid, col)))
    if not todo:
        return []

    def done(c: psycopg.Connection) -> bool:
        return all(_one(c, _OWNED, (rel_oid(c, s, n) or 0, spec.oid, col)) for s, n, col in todo)

    return [Step(
        title="Sequences owned by the original again",
        explanation="Dropping the new table would take the sequences it owns along.",
        statements=[Statement(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
            sql.Identifier(s, n), _orig(spec), sql.Identifier(col))) for s, n, col in todo],
        locks=[], retry="step", done=done, group=GROUP)]


def _drop_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents,
               expected: int | None) -> list[Step]:
    aside = sql.Identifier(spec.schema, aside_name(spec))
    fn = function_ident(spec)

    def done(c: psycopg.Connection) -> bool:
        return (_new_or_aside(c, spec) is None
                and not _one(c, "SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL",
                             (sql.SQL("{}()").format(fn).as_string(c),)))

    if done(conn):
        return []
    stmts = [*_check_ours(conn, spec.schema, aside_name(spec), expected),
             Statement(sql.SQL("DROP TABLE {}").format(aside), note="the new table")] \
        if _new_or_aside(conn, spec) is not None else []
    stmts.append(Statement(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(fn)))
    # with the drop (one transaction): the original's identity sequences still bear the names
    # Build gave them (the next step puts the names back)
    serial = {(s, n, col) for s, n, col, kind in deps.sequences if kind == "serial"}
    stmts += sequences.catch_up_statements(
        conn, spec.oid, _orig(spec), serial | set(getattr(spec, "owned_sequences", ())), {})
    return [Step(
        title="Drop the new table",
        explanation=("The new partitioned table and its partitions, with the rows copied into "
                     "them (the original holds them all), and the insert trigger's function; "
                     "the original's sequences set past the values the new table drew."),
        statements=stmts,
        locks=[Lock("ACCESS EXCLUSIVE", f"{aside_name(spec)} and its partitions",
                    "nothing uses them any more")],
        retry="step", done=done, group=GROUP)]


def _pending_renames(conn: psycopg.Connection, spec: StageSpec) -> list[tuple[str, str, str]]:
    """(kind, original, aside) of the spec's `renamed` whose aside name is still in use."""
    out = []
    for kind, orig, aside in getattr(spec, "renamed", ()):
        if kind == "constraint":
            there = _one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint"
                               " WHERE conrelid = %s AND conname = %s)", (spec.oid, aside))
        else:
            there = rel_oid(conn, spec.schema, aside) is not None
        if there:
            out.append((kind, orig, aside))
    return out


def _names_step(conn: psycopg.Connection, spec: StageSpec) -> list[Step]:
    stmts = []
    for kind, orig, aside in _pending_renames(conn, spec):
        if kind == "constraint":
            text = sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                _orig(spec), sql.Identifier(aside), sql.Identifier(orig))
        else:
            text = sql.SQL("ALTER {} {} RENAME TO {}").format(
                sql.SQL("INDEX" if kind == "index" else "SEQUENCE"),
                sql.Identifier(spec.schema, aside), sql.Identifier(orig))
        stmts.append(Statement(text, note=f"{kind} {orig} back"))
    return [Step(
        title="Names of the original's indexes, constraints and sequences",
        explanation="Build renamed them out of the way; they take their names back.",
        statements=stmts,
        locks=[Lock("ACCESS EXCLUSIVE", display_name(spec.schema, spec.name), "an instant")],
        retry="step", done=lambda c: not _pending_renames(c, spec), group=GROUP)]


def _grant_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    todo = missing_grants(conn, deps, spec.oid)
    return [Step(
        title="Grants on the original",
        explanation="Privileges the original had and lacks now.",
        statements=grant_statements(_orig(spec), todo), locks=[], retry="step",
        done=lambda c: not missing_grants(c, deps, spec.oid), group=GROUP)]


def stage_number(stage: str | int) -> int:
    """1-9 from a stage's number or name (the registry records names)."""
    if isinstance(stage, int):
        return stage
    if stage not in STAGE_NAMES:
        raise MigrateError(f"unknown migration stage {stage!r}")
    return STAGE_NAMES.index(stage) + 1


def abort_steps(conn: psycopg.Connection, spec: StageSpec, deps: Dependents,
                stage: str | int, *, new_table_oid: int | None = None,
                guard: list[Statement] | None = None) -> list[Step]:
    """The steps that put the original back, from `stage` (the last stage done or begun, by
    number or name). `deps`: preflight.dependents() of the original, read before Build or
    now (its grants and serial sequences are the ones put back). `new_table_oid`: the new
    table as the registry recorded it; given, the table moved aside and dropped is checked to
    be that one (else the step fails and nothing is dropped). `guard`: checks run under the
    new table's lock before it moves aside (the caller's: it holds only copies)."""
    if not old_exists(conn, spec):
        raise MigrateError("the original table was dropped: there is nothing to go back to")
    if stage_number(stage) < BUILD_STAGE:
        return []  # nothing was built; the data stages before it are not undone
    steps = [_rename_step(conn, spec, new_table_oid, guard or [])]
    steps += _view_steps(conn, spec)
    steps += _fk_steps(conn, spec)
    steps += _sequence_step(conn, spec, deps)
    steps += _drop_step(conn, spec, deps, new_table_oid)
    steps += _names_step(conn, spec)
    steps += _grant_step(conn, spec, deps)
    return [s for s in steps if s.statements and not s.is_done(conn)]

