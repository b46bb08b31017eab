"""Stage 7's foreign keys of other tables, re-pointed from the original's surrogate id (or its
key) at the new table's natural key.

A referencing table that had only the surrogate id gets the key's columns, named after its own
column (`orig_pay_id` gives `orig_pay_ts`, `orig_pdm_id`; `pay_id` gives `pay_ts`, `pdm_id`),
added empty (no rewrite) with a comment that marks them as the migration's and names the
foreign key and the column they serve (abort drops only those, and re-creates the original key
from it), back-filled by joining through the original on the surrogate id, made NOT NULL when
its column was (a CHECK validated first, so SET NOT NULL does not scan under its ACCESS
EXCLUSIVE lock). A column of that name that the migration did not add is used and checked,
never written. The new key is added NOT VALID under the old one's name (the old one renamed
aside, `pgparts_fk_<hash>`, so abort can rename it back until it is dropped), validated, then
the old one is dropped. Before PostgreSQL 18 it is added valid (the same one scan, under SHARE
ROW EXCLUSIVE on the referencing table): VALIDATE there marks only the key, and its entries
per partition of the new table would stay convalidated = false for good. ON DELETE SET NULL /
SET DEFAULT now apply to the key's columns; the surrogate id column is kept as it is.

The back-fill's done check is the only one that reads rows: until the new key exists, a row
that points at a payment and whose added key columns are still empty means not done (the first
such row ends the look, so a fresh back-fill is not preceded by a full join); otherwise it
counts the rows whose key columns disagree with the original's row (a join on the surrogate id).

A referencing table much smaller than the payments (PROBE_RATIO) is joined by index look-ups:
the back-fill, its check and the key's validation run with hash and merge joins off in their
own transaction. The planner's default there, measured on the bench (2M payments, 66k and 10k
referencing rows), was a hash join that reads every payment for each of them: 0.5-0.65 s per
statement, against 0.03-0.2 s for one index probe per referencing row (both tables have a
unique index on the joined columns: a foreign key needs one).
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
    constraint_state,
    fit,
    has_constraint,
    new_disp,
    new_ident,
    new_oid,
    old_disp,
    old_ident,
    one,
    rel_oid,
    short_hash,
)
from .preflight import Dependents, ForeignKey

GROUP = "dependencies"

ADDED_PREFIX = "pgparts: added by the migration of {table}: "

# A referencing table at most this fraction of the payments' size is joined by index probes.
PROBE_RATIO = 0.1


def probes_pay(conn: psycopg.Connection, spec: StageSpec, schema: str, table: str) -> bool:
    """Whether one index probe per row of the referencing table beats reading every payment:
    the table's file is at most PROBE_RATIO of the original's (the new table holds as much)."""
    return one(conn, "SELECT pg_catalog.pg_relation_size(%s) <="
                     " pg_catalog.pg_relation_size(%s) * %s",
               (rel_oid(conn, schema, table) or 0, spec.oid, PROBE_RATIO))


def probe_statements() -> list[Statement]:
    """Hash and merge joins off for the rest of the step's transaction (SET LOCAL): the join
    becomes a nested loop over the referencing rows with an index probe each."""
    return [Statement(sql.SQL("SET LOCAL enable_hashjoin = off"),
                      note="index probes: the referencing table is small"),
            Statement(sql.SQL("SET LOCAL enable_mergejoin = off"))]


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


@dataclass
class RepointSteps:
    """One referencing key's steps in three parts: `columns` (instant DDL), `backfill` (reads
    the original and writes the referencing table only, so it may run beside the new table's
    key builds) and `rest` (needs the new table's primary key)."""
    columns: list[Step]
    backfill: list[Step]
    rest: list[Step]


def repoint_steps(conn: psycopg.Connection, spec: StageSpec, rp: Repoint) -> RepointSteps:
    fk = rp.fk
    steps: list[Step] = []
    columns_steps: list[Step] = []
    backfill_steps: list[Step] = []
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
        target = new_oid(c, spec)
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
        columns_steps.append(Step(
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
        probes = probe_statements() if probes_pay(conn, spec, fk.schema, fk.table) else []
        stmts = list(probes)
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

        unfilled = sql.SQL("SELECT EXISTS (SELECT FROM {t} WHERE {fkcol} IS NOT NULL"
                           " AND ({empty}))").format(
            t=t, fkcol=fkcol, empty=sql.SQL(" OR ").join(
                sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in rp.added)
            if rp.added else sql.SQL("false"))

        def filled(c: psycopg.Connection) -> bool:
            if new_fk(c) is not None:
                return True
            if not columns_exist(c):
                return False
            if one(c, unfilled):  # a row still waiting for its key: found at once when fresh
                return False
            return c.execute(mismatch).fetchone()[0] == 0

        backfill_steps.append(Step(
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
            return one(c, "SELECT pg_catalog.bool_and(attnotnull) FROM pg_catalog.pg_attribute"
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
            done=lambda c: nn_done(c) or has_constraint(spec, fk.schema, fk.table, nn_name)(c),
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
    probes = probe_statements() if probes_pay(conn, spec, fk.schema, fk.table) else []
    # Before PostgreSQL 18, VALIDATE marks only the key itself: its entries for each partition
    # of the new table (conparentid set) keep convalidated = false although every row was
    # checked. Added valid, every entry is created validated, after the same one scan of the
    # referencing table; the price is SHARE ROW EXCLUSIVE on it during that scan instead of
    # SHARE UPDATE EXCLUSIVE: its writers wait, and in the window they are stopped anyway.
    at_once = fk.validated and conn.info.server_version < 180000
    add = Statement(sql.SQL(
        "ALTER TABLE {t} ADD CONSTRAINT {n} FOREIGN KEY ({cols}) REFERENCES {new} ({key})"
        "{opts}{nv}").format(
        t=t, n=sql.Identifier(fk.name), cols=cols, new=new_ident(spec), key=key,
        opts=sql.SQL(options), nv=sql.SQL("" if at_once else " NOT VALID")))
    if at_once:
        steps.append(Step(
            title=f"Foreign key of {rp.disp} on the new key",
            explanation=(f"The old key {fk.name!r} is renamed {rp.temp_name!r} (it stays until "
                         f"the new one is in place) and ({', '.join(rp.columns)}) REFERENCES "
                         f"{new_disp(spec)} ({', '.join(spec.key)}) is added under its name "
                         f"and checks every row of {rp.disp} (one scan): on this PostgreSQL "
                         "version a key added NOT VALID and validated later stays marked not "
                         "validated on the new table's partitions."),
            statements=[*probes, *park, add],
            locks=[Lock("ACCESS EXCLUSIVE", rp.disp, "an instant (the rename)"),
                   Lock("SHARE ROW EXCLUSIVE", rp.disp, "during the scan: writes wait"),
                   Lock("SHARE ROW EXCLUSIVE", new_disp(spec) + " and its partitions",
                        "during the scan: writes wait")],
            retry="step", done=lambda c: new_fk(c) is not None, group=GROUP))
    else:
        steps.append(Step(
            title=f"Foreign key of {rp.disp} on the new key",
            explanation=(f"The old key {fk.name!r} is renamed {rp.temp_name!r} (it stays until "
                         f"the new one is validated) and ({', '.join(rp.columns)}) REFERENCES "
                         f"{new_disp(spec)} ({', '.join(spec.key)}) is added under its name, "
                         f"NOT VALID (no scan)."),
            statements=[*park, add],
            locks=[Lock("ACCESS EXCLUSIVE", rp.disp, "an instant (the rename)"),
                   Lock("SHARE ROW EXCLUSIVE", new_disp(spec) + " and its partitions",
                        "an instant")],
            retry="step", done=lambda c: new_fk(c) is not None, group=GROUP))
    if fk.validated and (not at_once or (current is not None and not current[1]
                                         and current[2] == new_oid(conn, spec))):
        # before 18, only a new key left NOT VALID by an earlier pgparts' run needs this
        steps.append(Step(
            title=f"Validate the foreign key of {rp.disp}",
            explanation=f"Checks every row of {rp.disp}; reads and writes go on.",
            statements=[*probes,
                        Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
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
    return RepointSteps(columns_steps, backfill_steps, steps)


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
