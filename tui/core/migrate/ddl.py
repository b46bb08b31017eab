"""What the Dependencies, insert-trigger, Finish and abort stages share: the fields of the
migration's spec they read, names that fit PostgreSQL's 63 bytes, and catalog look-ups by name
that their `done` checks run (an oid read at plan time may be stale after a kill and resume,
names are what the stages keep).

After the Build stage the new partitioned table carries the table's name and the original is
renamed out of the way (`old_name`, same oid as before): definitions read before Build (views,
triggers, rules, foreign keys) name the table, so when run again they reach the new table, and
after abort renames the original back, the original again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

import psycopg
from psycopg import sql

from ..names import display_name
from . import MigrateError

NAME_BYTES = 63


class StageSpec(Protocol):
    """The fields of the migration's spec these stages read."""

    schema: str
    name: str  # the table's name: the new partitioned table's after Build
    oid: int  # the original table's oid (it keeps it through the rename)
    old_name: str  # the original's name after Build renamed it out of the way
    column: str  # the partition column
    key: tuple[str, ...]  # the new primary key (holds the partition column)
    tiebreak: str | None
    surrogate: str | None  # the id the referencing tables used (e.g. pay_id)


def fit(name: str, suffix: str = "") -> str:
    """`name` + `suffix` cut to 63 bytes on a character boundary (the suffix is kept)."""
    room = NAME_BYTES - len(suffix.encode())
    while len(name.encode()) > room:
        name = name[:-1]
    return name + suffix


def short_hash(*parts: str) -> str:
    """8 hex digits naming a helper object after what it stands for (stable across runs)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]


def new_ident(spec: StageSpec) -> sql.Identifier:
    return sql.Identifier(spec.schema, spec.name)


def old_ident(spec: StageSpec) -> sql.Identifier:
    return sql.Identifier(spec.schema, spec.old_name)


def new_disp(spec: StageSpec) -> str:
    return display_name(spec.schema, spec.name)


def old_disp(spec: StageSpec) -> str:
    return display_name(spec.schema, spec.old_name)


_OID_SQL = """
SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""


def rel_oid(conn: psycopg.Connection, schema: str, name: str) -> int | None:
    row = conn.execute(_OID_SQL, (schema, name)).fetchone()
    return int(row[0]) if row else None


def new_oid(conn: psycopg.Connection, spec: StageSpec) -> int | None:
    """The new table's oid, or None when there is none (the original is not one)."""
    oid = rel_oid(conn, spec.schema, spec.name)
    return None if oid == spec.oid else oid


def require_new(conn: psycopg.Connection, spec: StageSpec) -> int:
    oid = new_oid(conn, spec)
    row = conn.execute("SELECT relkind FROM pg_catalog.pg_class WHERE oid = %s",
                       (oid,)).fetchone() if oid else None
    if row is None or row[0] != "p":
        raise MigrateError(f"{new_disp(spec)} is not the new partitioned table: run the Build "
                           "stage first")
    return oid  # type: ignore[return-value]


def old_exists(conn: psycopg.Connection, spec: StageSpec) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = %s)",
                       (spec.oid,)).fetchone()
    return bool(row and row[0])


def partitions(conn: psycopg.Connection, oid: int) -> list[tuple[str, str, int]]:
    """The new table's partitions (schema, name, oid), by name. Only one level: the layout
    stage makes plain partitions."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.oid, c.relkind FROM pg_catalog.pg_inherits i"
        " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE i.inhparent = %s ORDER BY c.relname", (oid,)).fetchall()
    deeper = [r[1] for r in rows if r[3] != "r"]
    if deeper:
        raise MigrateError(f"partition {deeper[0]!r} is not a plain table: the migration "
                           "builds one level of partitions")
    return [(r[0], r[1], int(r[2])) for r in rows]


def taken_names(conn: psycopg.Connection, schema: str) -> set[str]:
    """Relation names in `schema` (indexes share the namespace with tables)."""
    return {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s", (schema,)).fetchall()}


def free_name(base: str, suffix: str, taken: set[str]) -> str:
    """Like PostgreSQL's ChooseRelationName: base_suffix, else base_suffix1, 2, ... (cut to
    63 bytes); the name chosen is added to `taken`."""
    n = 0
    while True:
        name = fit(base, f"_{suffix}{n or ''}")
        if name not in taken:
            taken.add(name)
            return name
        n += 1


def one(conn: psycopg.Connection, query: sql.Composable | str, params: tuple = ()) -> bool:
    """The first column of a one-row query, as a bool (False when there is no row)."""
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return bool(row and row[0])


def has_constraint(spec: StageSpec, schema: str, table: str, name: str, *,
                   validated: bool = False, on_new: bool = False
                   ) -> Callable[[psycopg.Connection], bool]:
    """A done check: schema.table has the constraint `name` (validated; referencing the new
    table)."""
    def done(conn: psycopg.Connection) -> bool:
        st = constraint_state(conn, rel_oid(conn, schema, table), name)
        if st is None:
            return False
        if on_new and st[2] != new_oid(conn, spec):
            return False
        return st[1] or not validated
    return done


def constraint_state(conn: psycopg.Connection, relid: int | None, name: str
                     ) -> tuple[str, bool, int] | None:
    """(contype, convalidated, confrelid) of the constraint `name` on `relid`, or None."""
    if relid is None:
        return None
    row = conn.execute(
        "SELECT contype::text, convalidated, confrelid FROM pg_catalog.pg_constraint"
        " WHERE conrelid = %s AND conname = %s", (relid, name)).fetchone()
    return (row[0], bool(row[1]), int(row[2])) if row else None


def original_name(spec: StageSpec, kind: str, name: str) -> str:
    """The name a constraint, index or sequence of the original had before Build renamed it
    out of the way (the spec's `renamed`: kind, original, aside), else `name`."""
    for k, orig, aside in getattr(spec, "renamed", ()):
        if (k, aside) == (kind, name):
            return orig
    return name


def swap_name(spec: StageSpec) -> str:
    return fit(f"pgparts_swap_{spec.oid}")


def as_named_sql(conn: psycopg.Connection, schema: str, reads: str, wants: str, tmp: str,
                 fetch: sql.Composable, prefix: sql.Composable) -> sql.Composed:
    """A DO block that re-points an object (a view, a trigger, a rule) from the table it reads,
    `reads`, to the table named `wants`: within the block, `wants` steps aside as `tmp` and
    `reads` takes its name while `fetch` (a query giving the object's definition, e.g.
    pg_get_viewdef) deparses it, both names go back, and `prefix` + that definition runs, naming
    `wants`. The server deparses (no SQL text is edited), aliases included; the renames take
    ACCESS EXCLUSIVE on both tables until the transaction ends."""
    body = sql.SQL(
        "DECLARE\n  d pg_catalog.text;\nBEGIN\n"
        "  ALTER TABLE {wants} RENAME TO {tmp};\n"
        "  ALTER TABLE {reads} RENAME TO {wants_name};\n"
        "  d := ({fetch});\n"
        "  ALTER TABLE {wants} RENAME TO {reads_name};\n"
        "  ALTER TABLE {tmp_ident} RENAME TO {wants_name};\n"
        "  EXECUTE {prefix} || pg_catalog.rtrim(d, ' ;');\nEND").format(
        wants=sql.Identifier(schema, wants), tmp=sql.Identifier(tmp),
        reads=sql.Identifier(schema, reads), wants_name=sql.Identifier(wants),
        fetch=fetch, reads_name=sql.Identifier(reads), tmp_ident=sql.Identifier(schema, tmp),
        prefix=sql.Literal(prefix.as_string(conn)))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def view_prefix(conn: psycopg.Connection, schema: str, name: str) -> sql.Composed:
    """CREATE OR REPLACE VIEW with the view's options (check_option, security_barrier, ...),
    which CREATE OR REPLACE would otherwise reset."""
    row = conn.execute(
        "SELECT coalesce(c.reloptions, '{}')::pg_catalog.text[] FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    options = [o.split("=", 1) for o in (row[0] if row else [])]
    with_ = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in options)) \
        if options else sql.SQL("")
    return sql.SQL("CREATE OR REPLACE VIEW {}{} AS ").format(sql.Identifier(schema, name), with_)
