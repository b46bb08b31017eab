"""Stage 7, Dependencies: what depended on the original table, rebuilt on the new one.

Steps, each with a catalog-based `done` check (a kill anywhere, then the same stage built again,
resumes at the first step not done; steps done already are left out of the list, so a preview
and an exported script show what remains) and the locks it takes:

- Primary key on the natural key: per partition, CREATE UNIQUE INDEX (SHARE on that partition
  only: reads go on, writes to it wait, and writers are stopped in the window anyway) and ADD
  PRIMARY KEY USING INDEX (ACCESS EXCLUSIVE on the partition for an instant), one transaction
  per partition; then ADD PRIMARY KEY on the parent, which adopts the partitions' keys instead
  of building (ACCESS EXCLUSIVE on the parent for milliseconds). Building on the parent at once
  would hold SHARE on every partition for the whole build and lose all of it to a kill; per
  partition, a kill loses one partition's build and the parent is never locked for long, so
  this is done whatever the table's size.
- The other indexes: CREATE INDEX ON ONLY the parent (instant, invalid), then per partition
  CREATE INDEX + ALTER INDEX ... ATTACH PARTITION in one transaction; the parent's index turns
  valid with the last one. A unique index or constraint without the partition column cannot be
  enforced across partitions: it comes back as a plain index (said in its step). The surrogate
  key's unique index becomes a plain index on it (look-ups by id stay fast).
- CHECK constraints NOT VALID then VALIDATE (SHARE UPDATE EXCLUSIVE: a scan that blocks no
  reader) when Build did not create them.
- The table's own foreign keys: per partition ADD ... NOT VALID, then VALIDATE, then ADD on
  the parent, which adopts the partitions' validated keys without a scan. (PostgreSQL 15
  refuses NOT VALID foreign keys on a partitioned table; this works on every version.)
- Referencing tables' foreign keys re-pointed at the natural key (repoint.py): a table that
  had only the surrogate id gets the key's columns, back-filled through the original; the new
  key is added NOT VALID under the old one's name, validated, then the old one dropped (before
  PostgreSQL 18 added valid in one step instead: VALIDATE would leave its entries per partition
  of the new table marked not validated).
- Views, triggers, rules, policies, row security, grants and comments Build did not copy,
  publication membership (recreate.py), then ANALYZE.

The partitions' key builds, their index builds and their foreign keys' validations are each a
group of independent steps (Step.parallel): the plan runner runs a group on two sessions at
once (stages.py sets the plan's sessions), every step still its own transaction with its own
done check, so a kill or a resume is the same as one step at a time.

Left alone (reported by `limitations()`): materialized views and functions with SQL-standard
bodies reading the table (the Finish stage's DROP refuses while they depend on the original),
extended statistics (their names stay with the original until it is dropped), exclusion
constraints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import Lock, Statement, Step
from . import MigrateError
from .ddl import (
    StageSpec,
    fit,
    free_name,
    has_constraint,
    new_disp,
    new_ident,
    new_oid,
    one,
    original_name,
    partitions,
    rel_oid,
    require_new,
    taken_names,
)
from .preflight import Dependents
from .recreate import (
    comment_step,
    grant_step,
    policy_steps,
    publication_step,
    trigger_rule_steps,
    view_steps,
)
from .repoint import repoint_steps, repoints

GROUP = "dependencies"


# -- catalog checks (done) ---------------------------------------------------------------------
def _index_on(schema: str, name: str, table_schema: str, table: str) -> Callable:
    def done(conn: psycopg.Connection) -> bool:
        return one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_index x"
                          " WHERE x.indexrelid = %s AND x.indrelid = %s)",
                    (rel_oid(conn, schema, name) or 0, rel_oid(conn, table_schema, table) or 0))
    return done


def _attached(schema: str, parent_index: str, part_oid_of: Callable) -> Callable:
    """done: the partition has an index attached to the parent's index."""
    def done(conn: psycopg.Connection) -> bool:
        return one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_inherits i"
                          " JOIN pg_catalog.pg_index x ON x.indexrelid = i.inhrelid"
                          " WHERE i.inhparent = %s AND x.indrelid = %s)",
                    (rel_oid(conn, schema, parent_index) or 0, part_oid_of(conn) or 0))
    return done


# -- index definitions --------------------------------------------------------------------------
def index_tail(conn: psycopg.Connection, definition: str, index: str, schema: str,
               *tables: str) -> tuple[bool, str]:
    """(unique, 'USING ...') of a pg_get_indexdef text of an index on one of `tables`, without
    its name and table: the part that builds the same index on another table."""
    qi, qs = conn.execute("SELECT pg_catalog.quote_ident(%s), pg_catalog.quote_ident(%s)",
                          (index, schema)).fetchone()
    for table in tables:
        qt = conn.execute("SELECT pg_catalog.quote_ident(%s)", (table,)).fetchone()[0]
        for unique in (False, True):
            for only in ("", "ONLY "):
                head = f"CREATE {'UNIQUE ' if unique else ''}INDEX {qi} ON {only}{qs}.{qt} "
                if definition.startswith(head) and definition[len(head):].startswith("USING "):
                    return unique, definition[len(head):]
    raise MigrateError(f"cannot read the definition of index {index!r}: {definition}")


@dataclass
class _Index:
    name: str  # on the new table
    unique: bool
    tail: str  # USING ...
    why: str  # for the explanation


def _wanted_indexes(conn: psycopg.Connection, spec: StageSpec, deps: Dependents
                    ) -> tuple[list[_Index], list[str]]:
    """The indexes to build besides the primary key, and notes on what changes."""
    out: list[_Index] = []
    notes: list[str] = []
    constraint_types = {c.name: c.type for c in deps.constraints}
    covered = set(covered_by_key(conn, spec.schema, (spec.old_name, spec.name), spec.key, deps))
    have_surrogate = False
    for ix in deps.indexes:
        if ix.primary:
            continue
        if not ix.valid:
            notes.append(f"index {ix.name!r} is invalid (a build that failed): not re-created")
            continue
        if ix.constraint and constraint_types.get(ix.constraint) == "x":
            notes.append(f"exclusion constraint {ix.constraint!r} is not re-created")
            continue
        unique, tail = index_tail(conn, ix.definition, ix.name, spec.schema, spec.old_name,
                                  spec.name)
        name = (original_name(spec, "constraint", ix.constraint) if ix.constraint
                else original_name(spec, "index", ix.name))
        if ix.columns and ix.columns[0] == spec.surrogate:
            have_surrogate = True
        if ix.name in covered:
            notes.append(covered_note(ix.name))
            continue
        if unique and spec.column not in ix.columns:
            notes.append(f"{name!r} was unique without the partition column: PostgreSQL "
                         "cannot enforce that across partitions, it comes back as a plain index")
            unique = False
        out.append(_Index(name, unique, tail, "as it was"))
    pk = next((ix for ix in deps.indexes if ix.primary), None)
    if spec.surrogate and not have_surrogate and pk is not None and spec.surrogate in pk.columns:
        name = fit(spec.name, f"_{spec.surrogate}_idx")
        out.append(_Index(name, False, sql.SQL("USING btree ({})").format(
            sql.Identifier(spec.surrogate)).as_string(conn),
            f"the surrogate key {spec.surrogate!r} was the primary key: a plain index keeps "
            "look-ups by it fast"))
    return out, notes


def covered_by_key(conn: psycopg.Connection, schema: str, tables: tuple[str, ...],
                   key: tuple[str, ...] | list[str], deps: Dependents) -> list[str]:
    """The plain indexes of the original that the new primary key's index makes redundant:
    the same columns in the same order, with the default operator classes, collations and
    ordering, no predicate, INCLUDE or storage option (pg_get_indexdef writes every one of
    those). The key's index answers every query such an index answered; a second copy would
    only cost its build and every write. An index with a comment is kept: someone refers to
    it by name."""
    commented = {n for k, n, _text in deps.comments if k == "index"}
    key_tail = _plain_btree_tail(conn, key)
    out = []
    for ix in deps.indexes:
        if ix.primary or ix.constraint or not ix.valid or ix.name in commented:
            continue
        if index_tail(conn, ix.definition, ix.name, schema, *tables)[1] == key_tail:
            out.append(ix.name)
    return out


def covered_note(index: str) -> str:
    return (f"index {index!r} has the new primary key's columns: the key's index serves its "
            "queries, so it is not built again")


def _plain_btree_tail(conn: psycopg.Connection, columns: tuple[str, ...] | list[str]) -> str:
    """How pg_get_indexdef writes a plain btree index on `columns` after the table's name."""
    quoted = [conn.execute("SELECT pg_catalog.quote_ident(%s)", (c,)).fetchone()[0]
              for c in columns]
    return f"USING btree ({', '.join(quoted)})"


# -- steps --------------------------------------------------------------------------------------
def _primary_key_steps(conn: psycopg.Connection, spec: StageSpec, deps: Dependents,
                       parts: list[tuple[str, str, int]], taken: set[str]) -> list[Step]:
    pk = next((c for c in deps.constraints if c.type == "p"), None)
    pk_name = original_name(spec, "constraint", pk.name) if pk else fit(spec.name, "_pkey")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in spec.key)
    key_text = ", ".join(spec.key)
    steps = []
    for schema, part, _oid in parts:
        existing = conn.execute(
            "SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = %s AND contype = 'p'",
            (_oid,)).fetchone()
        ix = existing[0] if existing else free_name(part, "pkey", taken)
        pid = sql.Identifier(schema, part)
        disp = display_name(schema, part)
        steps.append(Step(
            title=f"Primary key of {disp}",
            explanation=(f"Build the unique index on ({key_text}) of partition {disp} and make "
                         f"it its primary key; the parent's key adopts it later without a build. "
                         f"Reads of the partition go on during the build; writes to it wait."),
            statements=[
                Statement(sql.SQL("CREATE UNIQUE INDEX {} ON {} USING btree ({})").format(
                    sql.Identifier(ix), pid, cols), note=f"unique index of {disp}"),
                Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}"
                                  ).format(pid, sql.Identifier(ix), sql.Identifier(ix)))],
            locks=[Lock("SHARE", disp, "writes to this partition wait during the build"),
                   Lock("ACCESS EXCLUSIVE", disp, "an instant, at the end")],
            done=_pk_on(schema, part), group=GROUP, parallel="key"))
    steps.append(Step(
        title=f"Primary key of {new_disp(spec)}",
        explanation=(f"Primary key {pk_name!r} on ({key_text}) of the parent: it adopts the "
                     "partitions' keys (no build), milliseconds."),
        statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            new_ident(spec), sql.Identifier(pk_name), cols))],
        locks=[Lock("ACCESS EXCLUSIVE", new_disp(spec), "reads and writes wait, milliseconds"),
               Lock("ACCESS EXCLUSIVE", "its partitions",
                    "milliseconds (SHARE on PostgreSQL 15)")],
        retry="step", done=_pk_on(spec.schema, spec.name), group=GROUP))
    return steps


def _pk_on(schema: str, table: str) -> Callable:
    def done(conn: psycopg.Connection) -> bool:
        return one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint"
                          " WHERE conrelid = %s AND contype = 'p')",
                    (rel_oid(conn, schema, table) or 0,))
    return done


def child_index_name(table: str, index: str, part: str, taken: set[str]) -> str:
    """The partition's index named like the parent's, the table's name replaced by the
    partition's (`payment_pay_ts_idx` -> `payment_2019_pay_ts_idx`), cut to 63 bytes; a
    number is added when the name is taken. Added to `taken`."""
    base = part + index[len(table):] if index.startswith(f"{table}_") else f"{part}_{index}"
    n = 0
    while True:
        name = fit(base, str(n) if n else "")
        if name not in taken:
            taken.add(name)
            return name
        n += 1


def _index_steps(conn: psycopg.Connection, spec: StageSpec, wanted: list[_Index],
                 parts: list[tuple[str, str, int]], taken: set[str]) -> list[Step]:
    """Every parent's index ON ONLY first, then the partitions' builds, index by index: one
    group of independent steps (CREATE INDEX takes SHARE, which builds of other indexes on the
    same partition share; two attaches to one parent's index wait an instant for each other)."""
    parents, builds = [], []
    for ix in wanted:
        unique = sql.SQL("UNIQUE ") if ix.unique else sql.SQL("")
        tail = sql.SQL(ix.tail)  # the server's own deparse of the original's index
        parents.append(Step(
            title=f"Index {ix.name} on {new_disp(spec)} (parent only)",
            explanation=(f"The parent's index ({ix.why}), created ON ONLY: no build, invalid "
                         "until every partition's index is attached."),
            statements=[Statement(sql.SQL("CREATE {}INDEX {} ON ONLY {} {}").format(
                unique, sql.Identifier(ix.name), new_ident(spec), tail))],
            locks=[Lock("SHARE", new_disp(spec), "an instant: the parent holds no rows")],
            retry="step", done=_index_on(spec.schema, ix.name, spec.schema, spec.name),
            group=GROUP))
        for schema, part, _oid in parts:
            child = child_index_name(spec.name, ix.name, part, taken)
            disp = display_name(schema, part)
            builds.append(Step(
                title=f"Index {ix.name} on {disp}",
                explanation=(f"Build the index on partition {disp} and attach it to {ix.name}; "
                             "reads go on, writes to the partition wait during the build."),
                statements=[
                    Statement(sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                        unique, sql.Identifier(child), sql.Identifier(schema, part), tail),
                        note=f"index of {disp}"),
                    Statement(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
                        sql.Identifier(spec.schema, ix.name), sql.Identifier(schema, child)))],
                locks=[Lock("SHARE", disp, "writes to this partition wait during the build"),
                       Lock("SHARE UPDATE EXCLUSIVE", ix.name, "an instant"),
                       Lock("ACCESS EXCLUSIVE", child, "an instant: the new index")],
                done=_attached(spec.schema, ix.name,
                               lambda c, s=schema, p=part: rel_oid(c, s, p)),
                group=GROUP, parallel="index"))
    return parents + builds


def _check_steps(spec: StageSpec, deps: Dependents) -> list[Step]:
    steps = []
    for con in deps.constraints:
        if con.type != "c":
            continue
        definition = con.definition.removesuffix(" NOT VALID")
        steps.append(Step(
            title=f"Check {con.name} on {new_disp(spec)}",
            explanation="The original's CHECK constraint, added NOT VALID (no scan).",
            statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
                new_ident(spec), sql.Identifier(con.name), sql.SQL(definition)))],
            locks=[Lock("ACCESS EXCLUSIVE", new_disp(spec), "an instant, no scan")],
            retry="step", done=has_constraint(spec, spec.schema, spec.name, con.name),
            group=GROUP))
        if con.validated:
            steps.append(Step(
                title=f"Validate check {con.name}",
                explanation="Scans every partition; reads and writes go on.",
                statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    new_ident(spec), sql.Identifier(con.name)))],
                locks=[Lock("SHARE UPDATE EXCLUSIVE", new_disp(spec), "blocks DDL only")],
                done=has_constraint(spec, spec.schema, spec.name, con.name, validated=True),
                group=GROUP))
    return steps


def _own_fk_steps(spec: StageSpec, deps: Dependents,
                  parts: list[tuple[str, str, int]]) -> list[Step]:
    """Every key added NOT VALID on every partition, then the validations (one group of
    independent steps: each reads one partition and takes ROW SHARE on the referenced table),
    then the parents' keys."""
    adds, validations, parents = [], [], []
    for fk in deps.own_fks:
        definition = sql.SQL(fk.definition.removesuffix(" NOT VALID"))
        ref = display_name(fk.ref_schema, fk.ref_table)
        fk = replace(fk, name=original_name(spec, "constraint", fk.name))
        name = sql.Identifier(fk.name)
        for schema, part, _oid in parts:
            disp = display_name(schema, part)
            pid = sql.Identifier(schema, part)
            adds.append(Step(
                title=f"Foreign key {fk.name} on {disp}",
                explanation=f"Added NOT VALID (no scan) on partition {disp}.",
                statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID"
                                              ).format(pid, name, definition))],
                locks=[Lock("SHARE ROW EXCLUSIVE", disp, "an instant"),
                       Lock("SHARE ROW EXCLUSIVE", ref, "an instant: writes to it wait")],
                retry="step", done=has_constraint(spec, schema, part, fk.name), group=GROUP))
            if fk.validated:
                validations.append(Step(
                    title=f"Validate foreign key {fk.name} on {disp}",
                    explanation=f"Checks every row of {disp} against {ref}; writes go on.",
                    statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                        pid, name))],
                    locks=[Lock("SHARE UPDATE EXCLUSIVE", disp, "blocks DDL only"),
                           Lock("ROW SHARE", ref)],
                    done=has_constraint(spec, schema, part, fk.name, validated=True),
                    group=GROUP, parallel="foreign key"))
        if fk.validated:
            parents.append(Step(
                title=f"Foreign key {fk.name} on {new_disp(spec)}",
                explanation="On the parent: it adopts the partitions' validated keys, no scan.",
                statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    new_ident(spec), name, definition))],
                locks=[Lock("SHARE ROW EXCLUSIVE", f"{new_disp(spec)} and its partitions",
                            "milliseconds"),
                       Lock("ACCESS EXCLUSIVE", ref, "milliseconds: reads of it wait too")],
                retry="step", done=has_constraint(spec, spec.schema, spec.name, fk.name),
                group=GROUP))
    return adds + validations + parents


# -- referencing foreign keys -------------------------------------------------------------------
def _analyze_step(spec: StageSpec) -> Step:
    def done(conn: psycopg.Connection) -> bool:
        return one(conn, "SELECT reltuples >= 0 FROM pg_catalog.pg_class WHERE oid = %s",
                    (new_oid(conn, spec) or 0,))
    return Step(
        title=f"ANALYZE {new_disp(spec)}",
        explanation="Statistics for the planner, on the parent and every partition.",
        statements=[Statement(sql.SQL("ANALYZE {}").format(new_ident(spec)), "maintenance")],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", f"{new_disp(spec)} and its partitions",
                    "blocks DDL and VACUUM only")],
        done=done, group=GROUP)


def limitations(deps: Dependents) -> list[str]:
    """What this stage does not re-create, in plain words."""
    out = [f"materialized view {display_name(v.schema, v.name)} reads the table: re-create it "
           "by hand" for v in deps.views if v.materialized and v.depth == 1]
    out += [f"function {f} reads the table: re-create it by hand" for f in deps.functions]
    out += [f"extended statistics {name!r} stay on the original" for name, _ in deps.statistics]
    out += [f"exclusion constraint {c.name!r} is not re-created" for c in deps.constraints
            if c.type == "x"]
    return out


def dependency_notes(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[str]:
    """What stage 7 changes or leaves out, in plain words, for its preview."""
    return _wanted_indexes(conn, spec, deps)[1] + limitations(deps)


def dependency_steps(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    """Stage 7: every step that rebuilds the original's dependents on the new table. `deps`
    is what preflight.dependents() read before Build."""
    oid = require_new(conn, spec)
    parts = partitions(conn, oid)
    taken = taken_names(conn, spec.schema)
    wanted, _notes = _wanted_indexes(conn, spec, deps)
    taken |= {ix.name for ix in wanted} | {c.name for c in deps.constraints if c.type == "p"}
    # A referencing table's back-fill reads the original and writes that table only: it runs
    # in the group of the partitions' key builds, on the session a build leaves free (the
    # bench: 1.3 s of 8 s otherwise spent alone). One back-fill per referencing table there:
    # two would update the same rows from two sessions and wait for each other.
    columns, beside, chains = [], [], []
    seen: set[tuple[str, str]] = set()
    for rp in repoints(conn, spec, deps):
        parts_of = repoint_steps(conn, spec, rp)
        columns += parts_of.columns
        table = (rp.fk.schema, rp.fk.table)
        if table in seen:
            chains += parts_of.backfill + parts_of.rest
        else:
            seen.add(table)
            beside += [replace(s, parallel="key") for s in parts_of.backfill]
            chains += parts_of.rest
    keys = _primary_key_steps(conn, spec, deps, parts, taken)
    steps = columns + keys[:-1] + beside + keys[-1:]
    steps += _index_steps(conn, spec, wanted, parts, taken)
    steps += _check_steps(spec, deps)
    steps += _own_fk_steps(spec, deps, parts)
    steps += chains
    steps += view_steps(conn, spec, deps)
    steps += trigger_rule_steps(conn, spec, deps)
    steps += policy_steps(spec, deps)
    steps += grant_step(conn, spec, deps, oid)
    steps += comment_step(spec, deps)
    steps += publication_step(spec, deps)
    steps.append(_analyze_step(spec))
    # what is done already (Build's CHECK constraints and grants, or a run before a kill) is
    # left out: the preview and the exported script show what remains
    return [s for s in steps if not s.is_done(conn)]
