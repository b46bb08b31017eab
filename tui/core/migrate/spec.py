"""What a migration was asked to do, and where pgparts records it.

`MigrationSpec` holds the choices of a migration (the table, its partition column, the new key,
the tie-break, the surrogate, the partitions of the layout) and the name the original table
takes at the Build stage. The first stage that changes anything records it in pgparts' registry
(`pgparts.plan_objects`, role 'migration', objid the original table's oid; trust rules of
steps/markers.py: an untrusted registry is never read nor written), so `status`, `--resume` and
`--abort` read where a migration stands from the registry cross-checked against the catalog,
never from a comment or a name alone.

Registry columns used: schema_name/name the table as the operator named it, source_oid the
original's oid (kept through the rename), replacement the original's name after Build,
parent_oid the new partitioned table's oid (0 before Build), state the last stage that completed,
note this spec as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.steps import markers
from . import MigrateError

ROLE = markers.MIGRATION_ROLE
OLD_SUFFIX = "_premigration"
MAX_IDENTIFIER_BYTES = 63


@dataclass(frozen=True)
class SpecPartition:
    """One partition of the new table; bounds as text PostgreSQL reads (cast to the column's
    type), MINVALUE / MAXVALUE, or None for the DEFAULT partition."""

    name: str
    lo: str | None = None
    hi: str | None = None
    default: bool = False
    rows: int | None = None  # estimated or counted when the layout was made (progress, ETA)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "from": self.lo, "to": self.hi, "default": self.default,
                "rows": self.rows}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SpecPartition:
        rows = d.get("rows")
        return cls(str(d["name"]), _opt(d.get("from")), _opt(d.get("to")),
                   bool(d.get("default", False)), None if rows is None else int(rows))


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def old_name_for(name: str) -> str:
    """The name the original table takes at Build: `<name>_premigration`, cut to fit 63 bytes
    (at a character boundary)."""
    room = MAX_IDENTIFIER_BYTES - len(OLD_SUFFIX.encode())
    base = name.encode()[:room].decode("utf-8", "ignore")
    return base + OLD_SUFFIX


@dataclass(frozen=True)
class MigrationSpec:
    schema: str
    name: str
    oid: int  # pg_class oid of the original table; a rename keeps it
    old_name: str  # the original's name once Build has renamed it
    column: str  # partition column
    column_kind: str  # source.KINDS value: timestamptz, timestamp, date or integer
    key: tuple[str, ...]  # the new primary key (holds `column`)
    tiebreak: str | None
    surrogate: str | None
    partitions: tuple[SpecPartition, ...]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # set by Build, in the transaction that renames: (kind, original name, name out of the way)
    # for every constraint ('constraint'), index ('index') and identity sequence ('sequence')
    # of the original, and (sequence schema, sequence, column) of the serial sequences whose
    # ownership moved to the new table; abort puts all of it back
    renamed: tuple[tuple[str, str, str], ...] = ()
    owned_sequences: tuple[tuple[str, str, str], ...] = ()
    # stage 8 (collisions at insert time) is offered, not imposed: chosen with the migration
    insert_trigger: bool = False

    # -- identifiers -----------------------------------------------------------------------
    @property
    def table(self) -> sql.Identifier:
        """The table under its own name: the original before Build, the new one after."""
        return sql.Identifier(self.schema, self.name)

    @property
    def old_table(self) -> sql.Identifier:
        """The original table once Build renamed it."""
        return sql.Identifier(self.schema, self.old_name)

    @property
    def column_ident(self) -> sql.Identifier:
        return sql.Identifier(self.column)

    @property
    def key_idents(self) -> list[sql.Identifier]:
        return [sql.Identifier(c) for c in self.key]

    @property
    def tiebreak_ident(self) -> sql.Identifier | None:
        return sql.Identifier(self.tiebreak) if self.tiebreak else None

    @property
    def surrogate_ident(self) -> sql.Identifier | None:
        return sql.Identifier(self.surrogate) if self.surrogate else None

    def renamed_to(self, kind: str, original: str) -> str | None:
        return next((new for k, old, new in self.renamed if (k, old) == (kind, original)), None)

    def partition_ident(self, p: SpecPartition) -> sql.Identifier:
        return sql.Identifier(self.schema, p.name)

    @property
    def display(self) -> str:
        return display_name(self.schema, self.name)

    @property
    def old_display(self) -> str:
        return display_name(self.schema, self.old_name)

    # -- JSON (the registry's note) ------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "name": self.name, "oid": self.oid,
                "old_name": self.old_name, "column": self.column,
                "column_kind": self.column_kind, "key": list(self.key),
                "tiebreak": self.tiebreak, "surrogate": self.surrogate,
                "partitions": [p.to_json() for p in self.partitions],
                "created_at": self.created_at.isoformat(),
                "renamed": [list(r) for r in self.renamed],
                "owned_sequences": [list(r) for r in self.owned_sequences],
                "insert_trigger": self.insert_trigger}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MigrationSpec:
        try:
            return cls(str(d["schema"]), str(d["name"]), int(d["oid"]), str(d["old_name"]),
                       str(d["column"]), str(d["column_kind"]),
                       tuple(str(c) for c in d["key"]), _opt(d.get("tiebreak")),
                       _opt(d.get("surrogate")),
                       tuple(SpecPartition.from_json(p) for p in d["partitions"]),
                       datetime.fromisoformat(str(d["created_at"])),
                       tuple((str(a), str(b), str(c)) for a, b, c in d.get("renamed", [])),
                       tuple((str(a), str(b), str(c))
                             for a, b, c in d.get("owned_sequences", [])),
                       bool(d.get("insert_trigger", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise MigrateError(f"pgparts' record of this migration is unreadable: {exc}") from exc


# -- the registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recorded:
    """A migration as the registry holds it."""

    spec: MigrationSpec
    state: str  # the last stage that completed
    new_oid: int  # the partitioned table's oid, 0 before Build


def record_sql(spec: MigrationSpec, state: str, plan_id: str) -> sql.Composed:
    """Insert or update the registry's entry of `spec` (objid the original's oid; the owner
    recorded is the original's owner as the catalog says now)."""
    return sql.SQL(
        "INSERT INTO {reg} (objid, role, schema_name, name, parent_oid, source_oid, source_name,"
        " owner, replacement, state, note, plan_id)"
        " SELECT c.oid, {role}, {schema}, {name}, 0, c.oid, {name}, c.relowner, {old},"
        " {state}, {note}, {plan} FROM pg_catalog.pg_class c WHERE c.oid = {oid}"
        " ON CONFLICT (role, objid) DO UPDATE SET state = EXCLUDED.state,"
        " note = EXCLUDED.note, replacement = EXCLUDED.replacement,"
        " plan_id = EXCLUDED.plan_id").format(
        reg=markers.REGISTRY, role=sql.Literal(ROLE), schema=sql.Literal(spec.schema),
        name=sql.Literal(spec.name), old=sql.Literal(spec.old_name), state=sql.Literal(state),
        note=sql.Literal(json.dumps(spec.to_json(), ensure_ascii=False)),
        plan=sql.Literal(plan_id), oid=sql.Literal(spec.oid))


def state_sql(spec: MigrationSpec, state: str) -> sql.Composed:
    """Move the recorded migration to `state` (run in the transaction that completes it)."""
    return sql.SQL("UPDATE {reg} SET state = {state} WHERE role = {role} AND objid = {oid}"
                   ).format(reg=markers.REGISTRY, state=sql.Literal(state),
                            role=sql.Literal(ROLE), oid=sql.Literal(spec.oid))


def new_table_sql(spec: MigrationSpec) -> sql.Composed:
    """Record the new partitioned table's oid (in the transaction that creates it)."""
    return sql.SQL(
        "UPDATE {reg} SET parent_oid = (SELECT c.oid FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {name} AND c.relkind = 'p')"
        " WHERE role = {role} AND objid = {oid}").format(
        reg=markers.REGISTRY, schema=sql.Literal(spec.schema), name=sql.Literal(spec.name),
        role=sql.Literal(ROLE), oid=sql.Literal(spec.oid))


def forget_sql(spec: MigrationSpec) -> sql.Composed:
    return sql.SQL("DELETE FROM {reg} WHERE role = {role} AND objid = {oid}").format(
        reg=markers.REGISTRY, role=sql.Literal(ROLE), oid=sql.Literal(spec.oid))


def read_recorded(conn: psycopg.Connection, schema: str, name: str) -> Recorded | None:
    """The migration recorded for the table schema.name, or None. Raises MigrateError when the
    registry is not trusted (pgparts never reads it then)."""
    reg = markers.read_registry(conn)
    if reg.problem:
        raise MigrateError(f"pgparts refuses to use its registry: {reg.problem}")
    for e in reg.of(ROLE):
        if (e.schema, e.name) == (schema, name):
            try:
                doc = json.loads(e.note)
            except ValueError as exc:
                raise MigrateError(
                    f"pgparts' record of this migration is unreadable: {exc}") from exc
            spec = MigrationSpec.from_json(doc)
            if spec.oid != e.objid:
                raise MigrateError("pgparts' record of this migration names another table")
            return Recorded(spec, e.state, e.parent_oid)
    return None
