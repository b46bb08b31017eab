"""The guided migration's stages, each a plan (plans/engine): previewed, confirmed, run, resumed.

`STAGES` is the sequence: number, name, title, the function that makes the stage's plan from
the migration's spec and the catalog, and whether it is done. Where a migration stands is read
from pgparts' registry (the spec and the last stage completed, recorded in the transaction
that completes it) cross-checked against the catalog (`standing`); never from a name or a
comment alone.

1 preflight (read-only: refuses while other sessions write to the table), 2 duplicates (records
the migration, then deletes duplicates by error, re-pointing referencing rows first),
3 collisions (rewrites colliding seconds; stops, nothing changed, when a group is over 60),
4 layout (records the partitions), 5 build (build.py), 6 copy (copy.py), 7 dependencies,
8 collisions at insert time (only when the migration chose it: `chosen`; left out of the
sequence and never recorded otherwise, so the record goes from 'dependencies' to 'finish'),
9 finish (later.py: their steps, from dependencies.py, insert_trigger.py and finish.py).
Abort is in abort.py (restore.py once stage 7 began).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import Lock, Plan, Statement, Step, VerificationFailed
from ..plans.steps import markers
from ..plans.steps.moves import raise_unless
from . import MigrateError, later
from .build import build_step, plan_renames
from .collisions import MAX_PER_MINUTE, _ranked, _shape, with_minute_index
from .copy import SESSIONS, copy_steps
from .dependencies import dependency_notes
from .duplicates import candidates_indexed, dedupe_steps, unindexed
from .finish import finish_facts
from .layout import bound_text
from .preflight import Dependents, dependents
from .source import Column, SourceTable, partition_column
from .spec import (
    MigrationSpec,
    Recorded,
    SpecPartition,
    old_name_for,
    read_recorded,
    record_sql,
    state_sql,
)

NAMES = ("preflight", "duplicates", "collisions", "layout", "build", "copy", "dependencies",
         "trigger", "finish")
KIND = "migrate"


def stage_index(name: str) -> int:
    return NAMES.index(name) if name in NAMES else -1


def chosen(name: str, spec: MigrationSpec) -> bool:
    """Whether the migration runs stage `name`: all but stage 8, which the operator chooses
    (`spec.insert_trigger`)."""
    return name != "trigger" or spec.insert_trigger


def next_stage_after(state: str, spec: MigrationSpec) -> str | None:
    """The stage that follows `state` in this migration (stage 8 left out when not chosen);
    None when every stage is done."""
    return next((n for n in NAMES[stage_index(state) + 1:] if chosen(n, spec)), None)


def recorded_for(conn: psycopg.Connection, spec: MigrationSpec) -> Recorded | None:
    return read_recorded(conn, spec.schema, spec.name)


def state_at_least(conn: psycopg.Connection, spec: MigrationSpec, stage: str) -> bool:
    """Whether the registry records `stage` (or a later one) done. An untrusted registry
    counts as nothing done: the step then runs, and its guard refuses the registry."""
    try:
        rec = recorded_for(conn, spec)
    except MigrateError:
        return False
    return rec is not None and rec.spec.oid == spec.oid and (
        stage_index(rec.state) >= stage_index(stage))


# -- the original, by oid (its name changes at Build) ------------------------------------------
def original(conn: psycopg.Connection, spec: MigrationSpec) -> SourceTable:
    row = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.relnamespace WHERE c.oid = %s AND c.relkind = 'r'", (spec.oid,)).fetchone()
    if row is None:
        raise MigrateError(f"the original table of {spec.display} is gone")
    cols = conn.execute(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
        " coalesce(bt.typname, t.typname), a.attnotnull, a.attnum FROM pg_catalog.pg_attribute a"
        " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid LEFT JOIN pg_catalog.pg_type bt"
        " ON bt.oid = t.typbasetype AND t.typtype = 'd'"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (spec.oid,)).fetchall()
    return SourceTable(row[0], row[1], spec.oid, tuple(Column(*r) for r in cols))


def original_dependents(conn: psycopg.Connection, spec: MigrationSpec) -> Dependents:
    return dependents(conn, original(conn, spec))


# -- where a migration stands ---------------------------------------------------------------
@dataclass
class Standing:
    recorded: Recorded | None
    next_stage: str | None  # None: every stage done
    problems: list[str]  # the catalog disagrees with the record: nothing may run


def standing(conn: psycopg.Connection, schema: str, name: str) -> Standing:
    rec = read_recorded(conn, schema, name)
    if rec is None:
        return Standing(None, "preflight", [])
    spec = rec.spec
    problems = []
    row = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
        (spec.oid,)).fetchone()
    built = stage_index(rec.state) >= stage_index("build")
    want = (spec.schema, spec.old_name if built else spec.name)
    if row is None:
        if stage_index(rec.state) < stage_index("finish"):
            problems.append(f"the original table (oid {spec.oid}) is gone")
    elif (row[0], row[1]) != want or row[2] != "r":
        problems.append(f"the original table (oid {spec.oid}) is now "
                        f"{display_name(row[0], row[1])}, not {display_name(*want)}")
    if built:
        new = conn.execute(
            "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (spec.schema, spec.name)).fetchone()
        if new is None or int(new[0]) != rec.new_oid or new[1] != "p":
            problems.append(f"{spec.display} is not the partitioned table pgparts built")
    return Standing(rec, next_stage_after(rec.state, spec), problems)


# -- stage plans --------------------------------------------------------------------------------
def _plan(spec: MigrationSpec, number: int, title: str, steps: list[Step],
          summary: list[str]) -> Plan:
    return Plan(kind=KIND, title=f"migrate {spec.display}, stage {number}: {title}",
                target=spec.display, target_oid=spec.oid, steps=steps, summary=summary)


# the original, and once built the new table and its partitions
_WRITERS = sql.SQL(
    "SELECT pg_catalog.count(DISTINCT l.pid) FROM pg_catalog.pg_locks l"
    " WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'RowExclusiveLock'"
    " AND (l.relation = {oid} OR l.relation = {new}"
    "      OR l.relation IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i"
    "                        WHERE i.inhparent = {new}))"
    " AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d"
    "                   WHERE d.datname = pg_catalog.current_database())"
    " AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()")


def _no_writers(display: str) -> Callable[[object, psycopg.Connection], str]:
    def check(row: object, _conn: psycopg.Connection) -> str:
        n = int(row[0]) if row else 0  # type: ignore[index]
        if n:
            raise VerificationFailed(
                f"{n} session(s) are writing to {display}: stop the writers (or wait for them)")
        return f"no session writes to {display}"
    return check


def preflight_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    rec = recorded_for(conn, spec)
    new_oid = rec.new_oid if rec else 0
    writers = _WRITERS.format(oid=sql.Literal(spec.oid), new=sql.Literal(new_oid))
    st = Statement(writers, "verify", "sessions writing to the table",
                   check=_no_writers(spec.display), script=raise_unless(
                       conn, sql.SQL("({}) = 0").format(writers),
                       f"sessions are writing to {spec.display}: stop the writers"))
    step = Step("check that nothing writes to the table",
                "Read-only: the migration must not start while other sessions write to the "
                "table (their rows would be missed by the copy).", [st],
                locks=[], done=None)
    return _plan(spec, 1, "preflight", [step],
                 [f"Preflight of {spec.display}: counts, dependents, disk and sessions."])


def _record_step(conn: psycopg.Connection, spec: MigrationSpec) -> Step:
    return Step(
        "record the migration in pgparts' registry",
        "The migration's choices go to pgparts.plan_objects, so status, resume and abort "
        "read where it stands from the registry and the catalog.",
        [Statement(markers.guard_sql(conn, create=True), note="registry trusted (created)"),
         Statement(record_sql(spec, "preflight", KIND), note="record the migration")],
        done=lambda c: recorded_for(c, spec) is not None)


def duplicates_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    table = original(conn, spec)
    deps = dependents(conn, table)
    statements = [Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
                  Statement(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(spec.table),
                            "lock", "no writes during the dedupe")]
    columns = spec.key + ((spec.tiebreak,) if spec.tiebreak else ())
    helpers: list = []
    if spec.surrogate and spec.surrogate not in columns:
        helpers = unindexed(conn, deps.referencing_fks)
        statements += dedupe_steps(table, columns, spec.surrogate, deps.referencing_fks,
                                   helpers, candidates_indexed(conn, table, columns))
    statements.append(Statement(state_sql(spec, "duplicates"), note="record the stage"))
    step = Step(
        "delete duplicates by error",
        "Rows equal on the new key and the tie-break: all but the oldest (lowest "
        f"{spec.surrogate}) are deleted; rows of other tables pointing at a deleted row are "
        "re-pointed to the kept one first." if spec.surrogate else
        "No surrogate key: nothing is deleted (duplicates must be resolved by hand).",
        statements, locks=[Lock("EXCLUSIVE", spec.display, "writes to the table")] + [
            Lock("SHARE", display_name(fk.schema, fk.table),
                 f"writes wait: an index on {fk.columns[0]} serves the delete's foreign key "
                 "checks, dropped before the commit") for fk in helpers],
        done=lambda c: state_at_least(c, spec, "duplicates"))
    return _plan(spec, 2, "duplicates by error", [_record_step(conn, spec), step],
                 ["Record the migration; delete duplicates by error."])


def checked_rewrite_sql(table: SourceTable, spec: MigrationSpec,
                        conn: psycopg.Connection | None = None) -> sql.Composed:
    """The seconds of every fixable group rewritten, and the rows of groups over the limit
    counted, in one pass over the table: (rows over the limit, rows rewritten). The stage
    fails on the first and its transaction rolls the rewrite back, so a group over the limit
    still leaves every row as it was. (A data-modifying WITH runs once and completely; a
    separate count before the rewrite ranked the whole table a second time.)"""
    pc = partition_column(table, spec.column)
    s = _shape(table, pc, spec.key, spec.tiebreak or "")
    if conn is not None:  # the rows of a minute read by an index on (prefix, timestamp)
        s = with_minute_index(conn, s)
    return sql.SQL(
        "WITH s AS MATERIALIZED ({r}), u AS (UPDATE {t} AS x SET {ts} = s.new_ts FROM s"
        " WHERE x.ctid = s.row_ctid AND s.fixable AND x.{ts} <> s.new_ts RETURNING 1)"
        " SELECT (SELECT pg_catalog.count(*) FROM s WHERE NOT s.fixable),"
        " (SELECT pg_catalog.count(*) FROM u)").format(
        r=_ranked(s), t=table.ident, ts=sql.Identifier(spec.column))


def unfixable_sql(table: SourceTable, spec: MigrationSpec,
                  conn: psycopg.Connection | None = None) -> sql.Composed:
    """The rows in groups over the limit (the exported script's check before the rewrite)."""
    pc = partition_column(table, spec.column)
    s = _shape(table, pc, spec.key, spec.tiebreak or "")
    if conn is not None:  # the rows of a minute read by an index on (prefix, timestamp)
        s = with_minute_index(conn, s)
    return sql.SQL("SELECT pg_catalog.count(*) FROM ({r}) AS s WHERE NOT s.fixable").format(
        r=_ranked(s))


def _no_unfixable(row: object, _conn: psycopg.Connection) -> str:
    n = int(row[0]) if row else 0  # type: ignore[index]
    if n:
        raise VerificationFailed(f"{n} row(s) are in groups of more than {MAX_PER_MINUTE} "
                                 "collisions in one minute (or share an infinite timestamp): "
                                 "resolve them first; nothing changed")
    return f"no group over the limit; {int(row[1]):,} row(s) rewritten"  # type: ignore[index]


def collisions_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    statements = [Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
                  Statement(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(spec.table),
                            "lock", "no writes during the rewrite")]
    if spec.tiebreak and spec.column_kind in ("timestamptz", "timestamp"):
        table = original(conn, spec)
        # the exported script cannot read the checked statement's result: it counts the groups
        # over the limit first and raises, so psql stops before the rewrite
        statements.append(Statement(
            checked_rewrite_sql(table, spec, conn), "verify",
            f"rewrite; groups over {MAX_PER_MINUTE} in one minute roll it back",
            check=_no_unfixable, script=sql.SQL(";\n").join([
                raise_unless(conn, sql.SQL("({}) = 0").format(unfixable_sql(table, spec, conn)),
                             f"rows are in groups of more than {MAX_PER_MINUTE} collisions in "
                             "one minute (or share an infinite timestamp): resolve them first;"
                             " nothing changed"),
                checked_rewrite_sql(table, spec, conn)])))
    statements.append(Statement(state_sql(spec, "collisions"), note="record the stage"))
    step = Step(
        "rewrite colliding seconds",
        "In each (key, minute) holding a collision the seconds become the rank by the "
        "tie-break. A group over 60 stops the stage with nothing changed.",
        statements, locks=[Lock("EXCLUSIVE", spec.display, "writes to the table")],
        done=lambda c: state_at_least(c, spec, "collisions"))
    return _plan(spec, 3, "collisions by design", [step],
                 ["Rewrite the seconds of rows colliding on the new key."])


def _layout_recorded(conn: psycopg.Connection, spec: MigrationSpec) -> bool:
    """Stage 4 is done when the registry holds these partitions (a --resume with another
    layout before Build records it again)."""
    rec = recorded_for(conn, spec)
    return (rec is not None and stage_index(rec.state) >= stage_index("layout")
            and rec.spec.partitions == spec.partitions)


def layout_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    step = Step(
        "record the layout",
        f"{len(spec.partitions)} partitions: "
        + ", ".join(p.name for p in spec.partitions) + ".",
        [Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
         Statement(record_sql(spec, "layout", KIND), note="record the layout")],
        done=lambda c: _layout_recorded(c, spec))
    return _plan(spec, 4, "layout", [step], [f"Record the layout of {spec.display}."])


def build_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    if state_at_least(conn, spec, "build"):
        rec = recorded_for(conn, spec)
        spec = rec.spec if rec else spec
    else:
        spec = plan_renames(conn, spec)
    deps = original_dependents(conn, spec)
    guard = Statement(markers.guard_sql(conn, create=False), note="registry trusted")
    step = build_step(conn, spec, deps, lambda c: state_at_least(c, spec, "build"))
    step.statements.insert(0, guard)
    return _plan(spec, 5, "build", [step], [step.explanation])


def copy_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    rec = recorded_for(conn, spec)
    spec = rec.spec if rec else spec
    plan = _plan(spec, 6, "copy", copy_steps(conn, spec),
                 [f"Copy {spec.old_display} into the {len(spec.partitions)} partitions of "
                  f"{spec.display}, each verified by count and checksum, {SESSIONS} at once."])
    plan.sessions = SESSIONS
    return plan


def _recorded_spec(conn: psycopg.Connection, spec: MigrationSpec) -> MigrationSpec:
    rec = recorded_for(conn, spec)
    return rec.spec if rec else spec


def _require_built(conn: psycopg.Connection, spec: MigrationSpec, number: int) -> None:
    """Stages 7-9 read what they do from the new table in the catalog (its partitions, the
    keys already built): before Build there is nothing to read them from."""
    if not state_at_least(conn, spec, "build"):
        raise MigrateError(f"stage {number}'s steps are read from the new table: they are "
                           "shown once Build (stage 5) has run")


def dependencies_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    _require_built(conn, spec, 7)
    spec = _recorded_spec(conn, spec)
    deps = original_dependents(conn, spec)
    steps = later.dependency_steps(conn, spec, deps,
                                   lambda c: state_at_least(c, spec, "dependencies"))
    plan = _plan(spec, 7, "dependencies", steps, ["Keys, indexes, foreign keys, views."])
    plan.sessions = SESSIONS  # the partitions' key and index builds, foreign key validations
    plan.facts.notes += dependency_notes(conn, spec, deps)
    return plan


def trigger_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    _require_built(conn, spec, 8)
    spec = _recorded_spec(conn, spec)
    if not spec.insert_trigger:
        raise MigrateError("stage 8 (collisions at insert time) was not chosen "
                           "for this migration")
    return _plan(spec, 8, "collisions at insert time",
                 later.trigger_steps(conn, spec, lambda c: state_at_least(c, spec, "trigger")),
                 ["A trigger that adjusts the seconds of colliding new rows."])


def finish_plan(conn: psycopg.Connection, spec: MigrationSpec) -> Plan:
    _require_built(conn, spec, 9)
    spec = _recorded_spec(conn, spec)
    plan = _plan(spec, 9, "finish", later.finish_steps(conn, spec),
                 ["Compare both tables; drop the original."])
    plan.facts = finish_facts(spec)
    return plan


@dataclass(frozen=True)
class Stage:
    number: int
    name: str
    title: str
    plan: Callable[[psycopg.Connection, MigrationSpec], Plan]
    applies: bool  # changes the database (stage 1 only reads)

    def chosen(self, spec: MigrationSpec) -> bool:
        """Whether the migration runs this stage: stage 8 only when it was chosen (it is
        left out of the sequence otherwise, and 'trigger' is never recorded)."""
        return chosen(self.name, spec)

    def done(self, conn: psycopg.Connection, spec: MigrationSpec) -> bool:
        if self.name == "layout" and not state_at_least(conn, spec, "build"):
            return _layout_recorded(conn, spec)
        return self.name != "preflight" and state_at_least(conn, spec, self.name)


STAGES = (
    Stage(1, "preflight", "preflight", preflight_plan, False),
    Stage(2, "duplicates", "duplicates by error", duplicates_plan, True),
    Stage(3, "collisions", "collisions by design", collisions_plan, True),
    Stage(4, "layout", "layout", layout_plan, True),
    Stage(5, "build", "build", build_plan, True),
    Stage(6, "copy", "copy", copy_plan, True),
    Stage(7, "dependencies", "dependencies", dependencies_plan, True),
    Stage(8, "trigger", "collisions at insert time", trigger_plan, True),
    Stage(9, "finish", "finish", finish_plan, True),
)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


# -- a new migration ------------------------------------------------------------------------------
def spec_partitions(partitions: list, kind: str) -> tuple[SpecPartition, ...]:
    """layout.Partition objects (proposed or read from a file) as the spec keeps them."""
    out = []
    for p in partitions:
        if p.default:
            out.append(SpecPartition(p.name, default=True, rows=p.rows))
        else:
            lo, hi = bound_text(p.lo, kind), bound_text(p.hi, kind)
            out.append(SpecPartition(p.name, None if lo is None else str(lo),
                                     None if hi is None else str(hi), rows=p.rows))
    return tuple(out)


def make_spec(table: SourceTable, column: str, key: tuple[str, ...], tiebreak: str | None,
              surrogate: str | None, partitions: tuple[SpecPartition, ...], *,
              insert_trigger: bool = False) -> MigrationSpec:
    pc = partition_column(table, column)
    if column not in key:
        raise MigrateError(f"the new key must hold the partition column {column!r}")
    if insert_trigger and (tiebreak is None or pc.kind not in ("timestamptz", "timestamp")):
        raise MigrateError("collisions at insert time (stage 8) need a timestamp partition "
                           "column and a tie-break column")
    for c in key + ((tiebreak,) if tiebreak else ()):
        table.column(c)
    if not any(p.default for p in partitions):
        raise MigrateError("the layout needs a DEFAULT partition")
    return MigrationSpec(table.schema, table.name, table.oid, old_name_for(table.name), column,
                         pc.kind, key, tiebreak, surrogate, partitions,
                         insert_trigger=insert_trigger)
