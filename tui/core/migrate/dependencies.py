"""Stage 7, Dependencies: what depended on the original table, rebuilt on the new one.

Steps, each with a catalog-based `done` check (a kill anywhere, then the same stage built again,
resumes at the first step not done) and the locks it takes:

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
- Referencing tables' foreign keys re-pointed at the natural key. A table that had only the
  surrogate id gets the key's columns (named after its own column: `orig_pay_id` gives
  `orig_pay_ts`, `orig_pdm_id`; `pay_id` gives `pay_ts`, `pdm_id`), added with a comment that
  marks them as the migration's (abort drops only those), back-filled by joining through the
  original on the surrogate id, made NOT NULL when its column was (a CHECK validated first, so
  SET NOT NULL does not scan under its ACCESS EXCLUSIVE lock). The new key is added NOT VALID
  NOT VALID under the old one's name (the old one renamed aside), validated, then the old one
  is dropped (instant).
  ON DELETE SET NULL / SET DEFAULT now apply to the key's columns; the surrogate id column is
  kept as it is.
- Views (depth 1; those reading them follow), triggers, rules: their definitions as read
  before Build, run again (they name the table, which is now the new one). Policies, row
  security, grants, comments, publication membership, then ANALYZE.

Left alone (reported by `limitations()`): materialized views and functions with SQL-standard
bodies reading the table (the Finish stage's DROP refuses while they depend on the original),
extended statistics (their names stay with the original until it is dropped), exclusion
constraints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import Lock, Statement, Step, VerificationFailed
from . import MigrateError
from .ddl import (
    StageSpec,
    as_named_sql,
    constraint_state,
    fit,
    free_name,
    new_disp,
    new_ident,
    old_disp,
    old_ident,
    original_name,
    partitions,
    rel_oid,
    require_new,
    short_hash,
    swap_name,
    taken_names,
    view_prefix,
)
from .preflight import Dependents, ForeignKey

ADDED_PREFIX = "pgparts: added by the migration of {table}: "


def added_comment(table: str, fk: str, column: str) -> str:
    """The comment marking a key column the migration added to a referencing table: which
    foreign key it serves and the column that held the surrogate id (abort reads it back to
    re-create the original key, using both only as names)."""
    return ADDED_PREFIX.format(table=table) + json.dumps(
        {"foreign_key": fk, "column": column}, ensure_ascii=False, sort_keys=True)


def temp_fk_name(schema: str, table: str, name: str) -> str:
    """The name the original foreign key `name` of schema.table bears from the moment its
    replacement takes its name until it is dropped."""
    return f"pgparts_fk_{short_hash(schema, table, name)}"
GROUP = "dependencies"


# -- catalog checks (done) ------------------------------------------------------------------------
def _one(conn: psycopg.Connection, query: sql.Composable | str, params: tuple = ()) -> bool:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return bool(row and row[0])


def _new_oid(conn: psycopg.Connection, spec: StageSpec) -> int | None:
    oid = rel_oid(conn, spec.schema, spec.name)
    return None if oid == spec.oid else oid


def _has_constraint(spec: StageSpec, schema: str, table: str, name: str, *,
                    validated: bool = False, on_new: bool = False) -> Callable:
    def done(conn: psycopg.Connection) -> bool:
        st = constraint_state(conn, rel_oid(conn, schema, table), name)
        if st is None:
            return False
        if on_new and st[2] != _new_oid(conn, spec):
            return False
        return st[1] or not validated
    return done


def _index_on(schema: str, name: str, table_schema: str, table: str) -> Callable:
    def done(conn: psycopg.Connection) -> bool:
        return _one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_index x"
                          " WHERE x.indexrelid = %s AND x.indrelid = %s)",
                    (rel_oid(conn, schema, name) or 0, rel_oid(conn, table_schema, table) or 0))
    return done


def _attached(schema: str, parent_index: str, part_oid_of: Callable) -> Callable:
    """done: the partition has an index attached to the parent's index."""
    def done(conn: psycopg.Connection) -> bool:
        return _one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_inherits i"
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
            done=_pk_on(schema, part), group=GROUP))
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
        return _one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint"
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
    steps = []
    for ix in wanted:
        unique = sql.SQL("UNIQUE ") if ix.unique else sql.SQL("")
        tail = sql.SQL(ix.tail)  # the server's own deparse of the original's index
        steps.append(Step(
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
            steps.append(Step(
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
                group=GROUP))
    return steps


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
            retry="step", done=_has_constraint(spec, spec.schema, spec.name, con.name),
            group=GROUP))
        if con.validated:
            steps.append(Step(
                title=f"Validate check {con.name}",
                explanation="Scans every partition; reads and writes go on.",
                statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    new_ident(spec), sql.Identifier(con.name)))],
                locks=[Lock("SHARE UPDATE EXCLUSIVE", new_disp(spec), "blocks DDL only")],
                done=_has_constraint(spec, spec.schema, spec.name, con.name, validated=True),
                group=GROUP))
    return steps


def _own_fk_steps(spec: StageSpec, deps: Dependents,
                  parts: list[tuple[str, str, int]]) -> list[Step]:
    steps = []
    for fk in deps.own_fks:
        definition = sql.SQL(fk.definition.removesuffix(" NOT VALID"))
        ref = display_name(fk.ref_schema, fk.ref_table)
        fk = replace(fk, name=original_name(spec, "constraint", fk.name))
        name = sql.Identifier(fk.name)
        for schema, part, _oid in parts:
            disp = display_name(schema, part)
            pid = sql.Identifier(schema, part)
            steps.append(Step(
                title=f"Foreign key {fk.name} on {disp}",
                explanation=f"Added NOT VALID (no scan) on partition {disp}.",
                statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID"
                                              ).format(pid, name, definition))],
                locks=[Lock("SHARE ROW EXCLUSIVE", disp, "an instant"),
                       Lock("SHARE ROW EXCLUSIVE", ref, "an instant: writes to it wait")],
                retry="step", done=_has_constraint(spec, schema, part, fk.name), group=GROUP))
            if fk.validated:
                steps.append(Step(
                    title=f"Validate foreign key {fk.name} on {disp}",
                    explanation=f"Checks every row of {disp} against {ref}; writes go on.",
                    statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                        pid, name))],
                    locks=[Lock("SHARE UPDATE EXCLUSIVE", disp, "blocks DDL only"),
                           Lock("ROW SHARE", ref)],
                    done=_has_constraint(spec, schema, part, fk.name, validated=True),
                    group=GROUP))
        if fk.validated:
            steps.append(Step(
                title=f"Foreign key {fk.name} on {new_disp(spec)}",
                explanation="On the parent: it adopts the partitions' validated keys, no scan.",
                statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    new_ident(spec), name, definition))],
                locks=[Lock("SHARE ROW EXCLUSIVE", f"{new_disp(spec)} and its partitions",
                            "milliseconds"),
                       Lock("ACCESS EXCLUSIVE", ref, "milliseconds: reads of it wait too")],
                retry="step", done=_has_constraint(spec, spec.schema, spec.name, fk.name),
                group=GROUP))
    return steps


# -- referencing foreign keys -------------------------------------------------------------------
@dataclass
class Repoint:
    """How one referencing foreign key is re-pointed at the new key."""

    fk: ForeignKey
    columns: tuple[str, ...]  # on the referencing table, in the order of spec.key
    added: tuple[str, ...]  # those the migration adds (and back-fills)
    reused: tuple[str, ...]  # existing ones filled already: checked, not written
    temp_name: str  # the old constraint's name from the new one's creation to its drop
    not_null: bool  # the referencing columns were NOT NULL

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(self.fk.schema, self.fk.table)

    @property
    def disp(self) -> str:
        return display_name(self.fk.schema, self.fk.table)


def derived_name(fk_column: str, surrogate: str, key_column: str) -> str:
    """The referencing table's column for `key_column`: `orig_pay_id` -> `orig_pay_ts`,
    `pay_id` -> `pay_ts`, `ref` -> `ref_pay_ts`."""
    if fk_column.endswith(surrogate):
        return fit(fk_column[:len(fk_column) - len(surrogate)] + key_column)
    return fit(f"{fk_column}_{key_column}")


def repoints(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Repoint]:
    """Every referencing foreign key and how it will point at the new key."""
    out = []
    for fk in deps.referencing_fks:
        cols = dict(conn.execute(
            "SELECT a.attname, a.attnotnull FROM pg_catalog.pg_attribute a"
            " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (fk.schema, fk.table)).fetchall())
        if fk.name.startswith("pgparts_fk_"):
            # a resumed stage: the original key, renamed when its replacement took its name
            names = [r[0] for r in conn.execute(
                "SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = %s",
                (rel_oid(conn, fk.schema, fk.table),)).fetchall()]
            orig = next((n for n in names if temp_fk_name(fk.schema, fk.table, n) == fk.name),
                        None)
            if orig is not None:
                fk = replace(fk, name=orig)
        temp = temp_fk_name(fk.schema, fk.table, fk.name)
        not_null = all(cols.get(c, False) for c in fk.columns)
        if set(fk.ref_columns) == set(spec.key):
            by_ref = dict(zip(fk.ref_columns, fk.columns, strict=True))
            out.append(Repoint(fk, tuple(by_ref[k] for k in spec.key), (), (), temp, not_null))
        elif spec.surrogate and fk.ref_columns == (spec.surrogate,):
            mine = tuple(derived_name(fk.columns[0], spec.surrogate, k) for k in spec.key)
            comment = added_comment(new_disp(spec), fk.name, fk.columns[0])
            marked = {r[0] for r in conn.execute(
                "SELECT a.attname FROM pg_catalog.pg_attribute a"
                " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s"
                " AND pg_catalog.col_description(a.attrelid, a.attnum) = %s",
                (fk.schema, fk.table, comment)).fetchall()}
            # a column of that name that the migration did not add holds the user's data:
            # it is used (and checked), never written
            reused = tuple(c for c in mine if c in cols and c not in marked)
            added = tuple(c for c in mine if c not in reused)
            out.append(Repoint(fk, mine, added, reused, temp, not_null))
        else:
            raise MigrateError(
                f"foreign key {fk.name!r} of {display_name(fk.schema, fk.table)} references "
                f"({', '.join(fk.ref_columns)}): neither the surrogate id nor the new key, so it "
                "cannot be re-pointed")
    return out


def _fk_options(fk: ForeignKey) -> str:
    definition = fk.definition.removesuffix(" NOT VALID")
    parts = []
    if " MATCH FULL" in definition:
        parts.append("MATCH FULL")
    if fk.on_update != "NO ACTION":
        parts.append(f"ON UPDATE {fk.on_update}")
    if fk.on_delete != "NO ACTION":
        parts.append(f"ON DELETE {fk.on_delete}")
    if definition.endswith(" DEFERRABLE INITIALLY DEFERRED"):
        parts.append("DEFERRABLE INITIALLY DEFERRED")
    elif definition.endswith(" DEFERRABLE"):
        parts.append("DEFERRABLE")
    # constants from a fixed set (ACTIONS' values and the keywords above), never catalog text
    return "".join(f" {p}" for p in parts)


def _repoint_steps(conn: psycopg.Connection, spec: StageSpec, rp: Repoint) -> list[Step]:
    fk = rp.fk
    steps = []
    t = rp.table
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in rp.columns)
    key = sql.SQL(", ").join(sql.Identifier(c) for c in spec.key)
    fkcol = sql.Identifier(fk.columns[0]) if fk.columns else None
    old = old_ident(spec)

    def columns_exist(c: psycopg.Connection) -> bool:
        have = {r[0] for r in c.execute(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0"
            " AND NOT attisdropped", (rel_oid(c, fk.schema, fk.table) or 0,)).fetchall()}
        return set(rp.columns) <= have

    def new_fk(c: psycopg.Connection) -> tuple[str, bool, int] | None:
        relid = rel_oid(c, fk.schema, fk.table)
        target = _new_oid(c, spec)
        st = constraint_state(c, relid, fk.name)
        if st is not None and st[0] == "f" and target is not None and st[2] == target:
            return st
        return None

    if rp.added:
        types = dict(conn.execute(
            "SELECT attname, pg_catalog.format_type(atttypid, atttypmod)"
            " FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0",
            (spec.oid,)).fetchall())
        comment = sql.Literal(added_comment(new_disp(spec), fk.name, fk.columns[0]))
        stmts = []
        for col, k in zip(rp.columns, spec.key, strict=True):
            if col not in rp.added:
                continue
            stmts.append(Statement(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                t, sql.Identifier(col), sql.SQL(types[k])),  # format_type(): the server's text
                note=f"{rp.disp}.{col}"))
            stmts.append(Statement(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                t, sql.Identifier(col), comment)))
        steps.append(Step(
            title=f"Key columns on {rp.disp}",
            explanation=(f"{rp.disp} points at {old_disp(spec)} by {fk.columns[0]!r} only: it "
                         f"gets the key's columns ({', '.join(rp.added)}), empty (no rewrite), "
                         "marked by a comment as the migration's."),
            statements=stmts,
            locks=[Lock("ACCESS EXCLUSIVE", rp.disp, "an instant: no rewrite")],
            retry="step", done=columns_exist, group=GROUP))
    if rp.added or rp.reused:
        assign = sql.SQL(", ").join(
            sql.SQL("{} = o.{}").format(sql.Identifier(c), sql.Identifier(k))
            for c, k in zip(rp.columns, spec.key, strict=True) if c in rp.added)
        differs = sql.SQL(
            "(" + ", ".join(["{}"] * len(rp.columns)) + ") IS DISTINCT FROM ("
            + ", ".join(["{}"] * len(spec.key)) + ")").format(
            *[sql.Identifier("r", c) for c in rp.columns],
            *[sql.Identifier("o", k) for k in spec.key])
        mismatch = sql.SQL(
            "SELECT pg_catalog.count(*) FROM {t} r JOIN {old} o ON o.{sur} = r.{fkcol}"
            " WHERE {differs}").format(t=t, old=old, sur=sql.Identifier(spec.surrogate or ""),
                                       fkcol=fkcol, differs=differs)
        stmts = []
        if rp.added:
            stmts.append(Statement(sql.SQL(
                "UPDATE {t} r SET {assign} FROM {old} o WHERE o.{sur} = r.{fkcol}"
                " AND {differs}").format(t=t, assign=assign, old=old,
                                          sur=sql.Identifier(spec.surrogate or ""),
                                          fkcol=fkcol, differs=differs),
                note=f"back-fill {rp.disp}"))
        stmts.append(Statement(mismatch, "verify", note=f"{rp.disp} agrees with the key",
                               check=_none_left(rp.disp),
                               script=_raise_if_any(conn, mismatch, rp.disp)))

        def filled(c: psycopg.Connection) -> bool:
            if new_fk(c) is not None:
                return True
            if not columns_exist(c):
                return False
            return c.execute(mismatch).fetchone()[0] == 0

        steps.append(Step(
            title=f"Back-fill the key on {rp.disp}",
            explanation=(f"Copy the key of the payment each row points at, joining through "
                         f"{old_disp(spec)} on {spec.surrogate!r}"
                         + (f"; the existing columns {', '.join(rp.reused)} are checked, not "
                            "written" if rp.reused else "")
                         + ". Every row is rewritten once; reads go on."),
            statements=stmts,
            verify_note=f"every row of {rp.disp} carries the key of the row it points at",
            locks=[Lock("ROW EXCLUSIVE", rp.disp, "writers of the same rows wait"),
                   Lock("ACCESS SHARE", old_disp(spec))],
            done=filled, group=GROUP))
    needs_nn = rp.not_null and bool(rp.added)
    nn_name = fit(f"pgparts_nn_{short_hash(fk.name)}")
    if needs_nn:
        all_set = sql.SQL(" AND ").join(
            sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in rp.added)

        def nn_done(c: psycopg.Connection) -> bool:
            return _one(c, "SELECT pg_catalog.bool_and(attnotnull) FROM pg_catalog.pg_attribute"
                           " WHERE attrelid = %s AND attname = ANY(%s)",
                        (rel_oid(c, fk.schema, fk.table) or 0, list(rp.added)))

        steps.append(Step(
            title=f"NOT NULL check on {rp.disp}",
            explanation=("Its column was NOT NULL, so the key's columns will be: first a CHECK "
                         "added NOT VALID (no scan)."),
            statements=[Statement(sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
                t, sql.Identifier(nn_name), all_set))],
            locks=[Lock("ACCESS EXCLUSIVE", rp.disp, "an instant")],
            retry="step",
            done=lambda c: nn_done(c) or _has_constraint(spec, fk.schema, fk.table, nn_name)(c),
            group=GROUP))
        steps.append(Step(
            title=f"NOT NULL on {rp.disp}",
            explanation=("Validate the CHECK (a scan that blocks no reader or writer), then SET "
                         "NOT NULL, which the valid CHECK spares a scan, and drop the CHECK."),
            statements=[
                Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    t, sql.Identifier(nn_name))),
                *[Statement(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(
                    t, sql.Identifier(c))) for c in rp.added],
                Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    t, sql.Identifier(nn_name)))],
            locks=[Lock("SHARE UPDATE EXCLUSIVE", rp.disp, "during the scan"),
                   Lock("ACCESS EXCLUSIVE", rp.disp, "an instant, at the end")],
            done=nn_done, group=GROUP))
    options = _fk_options(fk)
    current = constraint_state(conn, rel_oid(conn, fk.schema, fk.table), fk.name)
    park = ([Statement(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
        t, sql.Identifier(fk.name), sql.Identifier(rp.temp_name)),
        note=f"the old key {fk.name!r} steps aside")]
        if current is not None and current[2] == spec.oid else [])
    steps.append(Step(
        title=f"Foreign key of {rp.disp} on the new key",
        explanation=(f"The old key {fk.name!r} is renamed {rp.temp_name!r} (it stays until the "
                     f"new one is validated) and ({', '.join(rp.columns)}) REFERENCES "
                     f"{new_disp(spec)} ({', '.join(spec.key)}) is added under its name, NOT "
                     f"VALID (no scan)."),
        statements=[*park, Statement(sql.SQL(
            "ALTER TABLE {t} ADD CONSTRAINT {n} FOREIGN KEY ({cols}) REFERENCES {new} ({key})"
            "{opts} NOT VALID").format(
            t=t, n=sql.Identifier(fk.name), cols=cols, new=new_ident(spec), key=key,
            opts=sql.SQL(options)))],
        locks=[Lock("ACCESS EXCLUSIVE", rp.disp, "an instant (the rename)"),
               Lock("SHARE ROW EXCLUSIVE", new_disp(spec) + " and its partitions",
                    "an instant")],
        retry="step", done=lambda c: new_fk(c) is not None, group=GROUP))
    if fk.validated:
        steps.append(Step(
            title=f"Validate the foreign key of {rp.disp}",
            explanation=f"Checks every row of {rp.disp}; reads and writes go on.",
            statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                t, sql.Identifier(fk.name)))],
            locks=[Lock("SHARE UPDATE EXCLUSIVE", rp.disp, "blocks DDL only"),
                   Lock("ROW SHARE", new_disp(spec) + "'s partitions")],
            done=lambda c: bool((st := new_fk(c)) and st[1]), group=GROUP))

    def retired(c: psycopg.Connection) -> bool:
        return (new_fk(c) is not None
                and constraint_state(c, rel_oid(c, fk.schema, fk.table), rp.temp_name) is None)

    steps.append(Step(
        title=f"Retire the old foreign key of {rp.disp}",
        explanation=(f"Drop the old key (now {rp.temp_name!r}), which points at "
                     f"{old_disp(spec)}. Abort puts it back."),
        statements=[Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
            t, sql.Identifier(rp.temp_name)))],
        locks=[Lock("ACCESS EXCLUSIVE", rp.disp, "an instant"),
               Lock("ACCESS EXCLUSIVE", old_disp(spec), "an instant (its trigger goes)")],
        retry="step", done=retired, group=GROUP))
    return steps


def _raise_if_any(conn: psycopg.Connection, count: sql.Composable, disp: str) -> sql.Composed:
    """The exported script's form of _none_left: a DO block that raises."""
    body = sql.SQL(
        "DECLARE\n  n pg_catalog.int8;\nBEGIN\n  n := ({q});\n  IF n > 0 THEN\n"
        "    RAISE EXCEPTION 'pgparts: % row(s) of % disagree with the key of the row they"
        " point at', n, {d};\n  END IF;\nEND").format(q=count, d=sql.Literal(disp))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def _none_left(disp: str) -> Callable:
    def check(row: tuple, _conn: psycopg.Connection) -> str:
        if row[0]:
            raise VerificationFailed(f"{row[0]:,} row(s) of {disp} disagree with the key of the "
                                     "row they point at")
        return f"every row of {disp} carries the key of the row it points at"
    return check


# -- views, triggers, rules, policies, grants, comments ----------------------------------------
def _depends_on_new(spec: StageSpec, schema: str, view: str) -> Callable:
    def done(conn: psycopg.Connection) -> bool:
        return _one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_rewrite r"
                          " JOIN pg_catalog.pg_depend d ON d.objid = r.oid"
                          " AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
                          " WHERE r.ev_class = %s AND d.refobjid = %s)",
                    (rel_oid(conn, schema, view) or 0, _new_oid(conn, spec) or 0))
    return done


def _reads_new_sql(spec: StageSpec, conn: psycopg.Connection, fetch: sql.Composable,
                   prefix: sql.Composable) -> sql.Composed:
    return as_named_sql(conn, spec.schema, spec.old_name, spec.name, swap_name(spec), fetch,
                        prefix)


_SWAP_LOCKS = "ACCESS EXCLUSIVE on {new} and {old} for an instant (renamed back and forth)"


def _view_steps(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    steps = []
    for v in deps.views:
        if v.depth != 1 or v.materialized:
            continue
        disp = display_name(v.schema, v.name)
        view_oid = rel_oid(conn, v.schema, v.name)
        steps.append(Step(
            title=f"View {disp}",
            explanation=(f"Re-created from its own definition (pg_get_viewdef) deparsed while "
                         f"the original bears the name {spec.name!r} for an instant: it then "
                         f"names {new_disp(spec)}, the new table. Views reading it follow."),
            statements=[Statement(_reads_new_sql(
                spec, conn, sql.SQL("SELECT pg_catalog.pg_get_viewdef({}::pg_catalog.oid)").format(
                    sql.Literal(view_oid)),
                view_prefix(conn, v.schema, v.name)), note=f"view {disp}")],
            locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant"),
                   Lock("ACCESS EXCLUSIVE", new_disp(spec), "an instant (renamed and back)"),
                   Lock("ACCESS EXCLUSIVE", old_disp(spec), "an instant (renamed and back)")],
            retry="step", done=_depends_on_new(spec, v.schema, v.name), group=GROUP))
    return steps


_ENABLE = {"D": "DISABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}


def _object_on_new(spec: StageSpec, catalog: str, relcol: str, namecol: str, name: str
                   ) -> Callable:
    query = sql.SQL("SELECT EXISTS (SELECT FROM {cat} WHERE {rel} = %s AND {col} = %s)").format(
        cat=sql.SQL(catalog), rel=sql.SQL(relcol), col=sql.SQL(namecol))  # constants

    def done(conn: psycopg.Connection) -> bool:
        return _one(conn, query, (_new_oid(conn, spec) or 0, name))
    return done


def _trigger_rule_steps(conn: psycopg.Connection, spec: StageSpec,
                        deps: Dependents) -> list[Step]:
    steps = []
    new = new_disp(spec)
    renames = [Lock("ACCESS EXCLUSIVE", new, "an instant (renamed and back)"),
               Lock("ACCESS EXCLUSIVE", old_disp(spec), "an instant (renamed and back)")]
    for name, _definition, enabled in deps.triggers:
        fetch = sql.SQL("SELECT pg_catalog.pg_get_triggerdef(oid) FROM pg_catalog.pg_trigger"
                        " WHERE tgrelid = {} AND tgname = {}").format(
            sql.Literal(spec.oid), sql.Literal(name))
        stmts = [Statement(_reads_new_sql(spec, conn, fetch, sql.SQL("")),
                           note=f"trigger {name}")]
        if enabled in _ENABLE:
            stmts.append(Statement(sql.SQL("ALTER TABLE {} {} {}").format(
                new_ident(spec), sql.SQL(_ENABLE[enabled]), sql.Identifier(name))))
        steps.append(Step(
            title=f"Trigger {name} on {new}",
            explanation=("Re-created from the original's own definition (pg_get_triggerdef), "
                         f"deparsed while the original bears the name {spec.name!r} for an "
                         "instant; enabled or disabled as it was."),
            statements=stmts,
            locks=[Lock("SHARE ROW EXCLUSIVE", f"{new}'s partitions", "an instant"),
                   *renames],
            retry="step",
            done=_object_on_new(spec, "pg_catalog.pg_trigger", "tgrelid", "tgname", name),
            group=GROUP))
    for name, _definition in deps.rules:
        fetch = sql.SQL("SELECT pg_catalog.pg_get_ruledef(oid) FROM pg_catalog.pg_rewrite"
                        " WHERE ev_class = {} AND rulename = {}").format(
            sql.Literal(spec.oid), sql.Literal(name))
        steps.append(Step(
            title=f"Rule {name} on {new}",
            explanation=("Re-created from the original's own definition (pg_get_ruledef), "
                         f"deparsed while the original bears the name {spec.name!r}."),
            statements=[Statement(_reads_new_sql(spec, conn, fetch, sql.SQL("")),
                                  note=f"rule {name}")],
            locks=renames, retry="step",
            done=_object_on_new(spec, "pg_catalog.pg_rewrite", "ev_class", "rulename", name),
            group=GROUP))
    return steps


def _role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def _policy_steps(spec: StageSpec, deps: Dependents) -> list[Step]:
    if not deps.policies and not deps.row_security:
        return []
    new = new_ident(spec)
    stmts = []
    for p in deps.policies:
        parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
            sql.Identifier(p.name), new,
            sql.SQL("PERMISSIVE" if p.permissive else "RESTRICTIVE"),
            sql.SQL(p.command),  # one of five keywords (preflight's CASE)
            sql.SQL(", ").join(_role(r) for r in p.roles) if p.roles else sql.SQL("PUBLIC"))]
        if p.using:
            parts.append(sql.SQL(" USING ({})").format(sql.SQL(p.using)))  # pg_get_expr text
        if p.with_check:
            parts.append(sql.SQL(" WITH CHECK ({})").format(sql.SQL(p.with_check)))
        stmts.append(Statement(sql.Composed(parts), note=f"policy {p.name}"))
    if deps.row_security:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new)))
    if deps.force_row_security:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new)))
    names = [p.name for p in deps.policies]

    def done(conn: psycopg.Connection) -> bool:
        oid = _new_oid(conn, spec) or 0
        row = conn.execute(
            "SELECT c.relrowsecurity, (SELECT pg_catalog.count(*) FROM pg_catalog.pg_policy"
            " WHERE polrelid = c.oid AND polname = ANY(%s)) FROM pg_catalog.pg_class c"
            " WHERE c.oid = %s", (names, oid)).fetchone()
        return bool(row) and row[0] == deps.row_security and row[1] == len(names)

    return [Step(
        title=f"Row security on {new_disp(spec)}",
        explanation="The original's policies and row-security switches.",
        statements=stmts, locks=[Lock("ACCESS EXCLUSIVE", new_disp(spec), "an instant")],
        retry="step", done=done, group=GROUP)]


def missing_grants(conn: psycopg.Connection, deps: Dependents, oid: int) -> list:
    """The grants of `deps` that the relation `oid` lacks."""
    have = {(r[0], r[1], r[2], r[3]) for r in conn.execute(
        "SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(g.grantee)"
        " END, g.privilege_type, g.is_grantable, NULL::text"
        " FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) g WHERE c.oid = %s"
        " UNION ALL SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC'"
        " ELSE pg_catalog.pg_get_userbyid(g.grantee) END, g.privilege_type, g.is_grantable,"
        " a.attname::text FROM pg_catalog.pg_attribute a, pg_catalog.aclexplode(a.attacl) g"
        " WHERE a.attrelid = %s AND a.attacl IS NOT NULL", (oid, oid)).fetchall()}
    return [g for g in deps.grants
            if (g.grantee, g.privilege, g.grantable, g.column) not in have
            and not (g.grantee == deps.owner and g.column is None)]


def grant_statements(table: sql.Identifier, grants: list) -> list[Statement]:
    out = []
    for g in grants:
        what = sql.SQL(g.privilege)  # a privilege keyword from aclexplode
        if g.column is not None:
            what = sql.SQL("{} ({})").format(what, sql.Identifier(g.column))
        out.append(Statement(sql.SQL("GRANT {} ON TABLE {} TO {}{}").format(
            what, table, _role(g.grantee),
            sql.SQL(" WITH GRANT OPTION") if g.grantable else sql.SQL(""))))
    return out


def _grant_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents,
                oid: int) -> list[Step]:
    todo = missing_grants(conn, deps, oid)
    if not todo:
        return []
    return [Step(
        title=f"Grants on {new_disp(spec)}",
        explanation="The original's privileges (table and columns) that the new table lacks.",
        statements=grant_statements(new_ident(spec), todo),
        locks=[Lock("ACCESS SHARE", new_disp(spec), "PostgreSQL 18; none on 15")],
        retry="step",
        done=lambda c: not missing_grants(c, deps, _new_oid(c, spec) or 0), group=GROUP)]


def _comment_target(spec: StageSpec, kind: str, name: str | None) -> sql.Composable | None:
    new = new_ident(spec)
    if kind == "table":
        return sql.SQL("TABLE {}").format(new)
    if kind == "column" and name:
        return sql.SQL("COLUMN {}.{}").format(new, sql.Identifier(name))
    if kind == "index" and name:
        return sql.SQL("INDEX {}").format(sql.Identifier(spec.schema, name))
    if kind == "constraint" and name:
        return sql.SQL("CONSTRAINT {} ON {}").format(sql.Identifier(name), new)
    if kind == "trigger" and name:
        return sql.SQL("TRIGGER {} ON {}").format(sql.Identifier(name), new)
    return None


_DESCRIPTION = {
    "table": "SELECT pg_catalog.obj_description(%(t)s, 'pg_class')",
    "column": "SELECT pg_catalog.col_description(%(t)s, (SELECT attnum FROM"
              " pg_catalog.pg_attribute WHERE attrelid = %(t)s AND attname = %(n)s))",
    "index": "SELECT pg_catalog.obj_description(x.indexrelid, 'pg_class') FROM"
             " pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid"
             " WHERE x.indrelid = %(t)s AND i.relname = %(n)s",
    "constraint": "SELECT pg_catalog.obj_description(oid, 'pg_constraint') FROM"
                  " pg_catalog.pg_constraint WHERE conrelid = %(t)s AND conname = %(n)s",
    "trigger": "SELECT pg_catalog.obj_description(oid, 'pg_trigger') FROM"
               " pg_catalog.pg_trigger WHERE tgrelid = %(t)s AND tgname = %(n)s",
}


def _comment_name(spec: StageSpec, kind: str, name: str | None) -> str | None:
    if name is None or kind not in ("index", "constraint"):
        return name
    back = original_name(spec, "constraint", name)
    return original_name(spec, "index", name) if back == name else back


def _comment_step(spec: StageSpec, deps: Dependents) -> list[Step]:
    todo = [(k, _comment_name(spec, k, n), text) for k, n, text in deps.comments]
    todo = [(k, n, text) for k, n, text in todo if _comment_target(spec, k, n)]
    if not todo:
        return []

    def done(conn: psycopg.Connection) -> bool:
        oid = _new_oid(conn, spec) or 0
        for kind, name, text in todo:
            row = conn.execute(_DESCRIPTION[kind], {"t": oid, "n": name}).fetchone()
            if row is None or row[0] != text:
                return False
        return True

    return [Step(
        title=f"Comments on {new_disp(spec)}",
        explanation="The original's comments on the table, its columns, indexes, constraints "
                    "and triggers.",
        statements=[Statement(sql.SQL("COMMENT ON {} IS {}").format(
            _comment_target(spec, k, n), sql.Literal(text))) for k, n, text in todo],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", new_disp(spec), "an instant")],
        retry="step", done=done, group=GROUP)]


def _publication_step(spec: StageSpec, deps: Dependents) -> list[Step]:
    pubs = [name for name, how, _via in deps.publications if how == "table"]
    if not pubs:
        return []

    def done(conn: psycopg.Connection) -> bool:
        return _one(conn, "SELECT pg_catalog.count(*) = %s FROM pg_catalog.pg_publication_rel r"
                          " JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid"
                          " WHERE r.prrelid = %s AND p.pubname = ANY(%s)",
                    (len(pubs), _new_oid(conn, spec) or 0, pubs))

    return [Step(
        title=f"Publications of {new_disp(spec)}",
        explanation="The new table joins the publications the original was in.",
        statements=[Statement(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
            sql.Identifier(p), new_ident(spec))) for p in pubs],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", new_disp(spec), "blocks DDL only")],
        retry="step", done=done, group=GROUP)]


def _analyze_step(spec: StageSpec) -> Step:
    def done(conn: psycopg.Connection) -> bool:
        return _one(conn, "SELECT reltuples >= 0 FROM pg_catalog.pg_class WHERE oid = %s",
                    (_new_oid(conn, spec) or 0,))
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
    steps = _primary_key_steps(conn, spec, deps, parts, taken)
    steps += _index_steps(conn, spec, wanted, parts, taken)
    steps += _check_steps(spec, deps)
    steps += _own_fk_steps(spec, deps, parts)
    for rp in repoints(conn, spec, deps):
        steps += _repoint_steps(conn, spec, rp)
    steps += _view_steps(conn, spec, deps)
    steps += _trigger_rule_steps(conn, spec, deps)
    steps += _policy_steps(spec, deps)
    steps += _grant_step(conn, spec, deps, oid)
    steps += _comment_step(spec, deps)
    steps += _publication_step(spec, deps)
    steps.append(_analyze_step(spec))
    # what is done already (Build's CHECK constraints and grants, or a run before a kill) is
    # left out: the preview and the exported script show what remains
    return [s for s in steps if not s.is_done(conn)]
