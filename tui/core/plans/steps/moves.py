"""The steps of an online row move (tui/core/moves, its docstring's ten phases), shared by the
move kinds (split, merge, rebound, move-values, drain-default): a kind decides the sources and
the new partitions, this module turns them into engine steps with catalog-based `done` checks
and truthful locks.

A move has one source partition or several (merge, rebound, move-values into an existing
partition; all in one schema): each is captured into its own log and all are copied in one
snapshot; one swap detaches every source and attaches every new partition. The first source
is the anchor: the new tables' temporary names, the DEFAULT's helper CHECKs and the registry's
move_target entries carry its oid. Each new partition takes the sub-partitioning of its model
(add_subpartitions): the source's, or for a move out of the DEFAULT (drain-default, fill-gaps,
create-ahead) the neighbour the kind names (the newest partition, the one below a hole).

Steps, in order (each commits alone; a re-run skips what the catalog shows done):

1. build the new partitions beside the live ones (LIKE the parent, a CHECK equal to the bound,
   the sub-partitions, the owner of what each replaces (owners.py), grants), each recorded in
   pgparts' registry in the transaction that creates it;
2. install the change capture on every source (an instant of SHARE ROW EXCLUSIVE per leaf);
3. copy the sources' rows in one REPEATABLE READ snapshot (nobody waits);
4. build the parent's indexes and primary key on the new tables (leaves first), ANALYZE them
   (a big move: each new table's in a step of its own, the steps run on moves.SESSIONS
   sessions at once, as the validations of their keys and of the referencing keys below);
   then the parent's own foreign keys on them (on the leaves of a sub-partitioned one), added
   NOT VALID (an instant of SHARE ROW EXCLUSIVE on the referenced tables) and validated in a
   step of their own, so that the swap's ATTACH adopts them instead of validating them under
   the parent's lock (measured: 0.5 s per ATTACH of 1M rows with three keys);
5. catch up: replay the change logs in a snapshot (nobody waits);
6. with a plain DEFAULT partition that is not the source: CHECKs on it excluding the new
   bounds, NOT VALID, then VALIDATE (its own step), so that ATTACH does not scan it; the
   exact verification (count and checksum per new bound in one snapshot, writers carrying
   on: one pass over the sources for every bound, which also counts their rows, so a row no
   bound takes or two bounds take fails it); then the logs replayed once more (what was
   written during the verification's scans), so that the swap's last replay is short;
7. the swap, one short transaction: lock the referencing tables and the parent, lock the
   sources against writers, deferred keys made immediate (SET CONSTRAINTS ALL IMMEDIATE: the
   replay's checks then leave no trigger event pending for the ALTERs below, which refuse a
   table with one), last replay, capture removed, foreign keys referencing the parent
   dropped (a placeholder CHECK holding the name of each key of a table with several:
   name_holders()), DETACH the sources, renames, ATTACH the new tables (no scan), foreign
   keys re-created NOT VALID;
8. VALIDATE the re-created foreign keys, a step per referencing table (VALIDATE's SHARE
   UPDATE EXCLUSIVE conflicts with itself: its keys one after the other; writers carry on);
9. drop the detached sources, once the registry shows them recorded as verified by this move
   (the swap records that in its own transaction). What guarantees that no row is lost is
   6.'s verification (count and checksum per new bound, exact in its snapshot) together with
   the swap's last replay of every change since, under its locks, with the logs found empty
   after it. The drop step reads no row: the new partitions are live, so any write since the
   swap makes them differ from the detached sources, and no query now can tell a lost row
   from one updated or deleted since (a containment test cannot either); comparing them once
   more cost as much as the verification (bench/README.md) and could prove nothing it did not.
   The DROP takes an instant of ACCESS EXCLUSIVE on the tables the sources' foreign keys
   reference (their triggers there go with the keys): the step gives way like the swap.

A re-run after the swap cannot be planned from the request any more (the partitions it named
have new bounds): `unfinished()` finds the detached sources in the registry and
`finish_steps()` plans 8. and 9. from what the registry and the catalog say.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ...bounds import Bound, BoundValue
from ...catalog import PartNode
from ...moves import changelog as cl
from ...moves.keys import Key, describe_key
from ...names import display_name
from ..engine.model import (
    Destroyed,
    Estimate,
    Lock,
    Plan,
    PlanFacts,
    Statement,
    Step,
    VerificationFailed,
)
from . import markers, owners
from .shape import IndexShape, grant_statements, index_shapes

LOG_SCHEMA = markers.SCHEMA
BOUND_CHECK = "pgparts_bound_check"
HELPER_PREFIX = "pgparts_move_excl_"
SWAP_STATEMENT_TIMEOUT = 10.0
# the registry state of a detached source whose rows were verified in the new partitions
VERIFIED = "verified"
# Index builds and key validations of different tables run at once on this many sessions
# (Step.parallel, Plan.sessions: runner.py) when the move is at least this big: PostgreSQL's
# own parallel workers help a build's sort, not its scan, ANALYZE or VALIDATE (bench/README.md,
# measured on 2 cores); small moves keep one session, the other's setup costing more than the
# steps overlap.
SESSIONS = 2
PARALLEL_MIN_BYTES = 32 * 1024 * 1024
_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
               "d": "SET DEFAULT"}


@dataclass
class NewPartition:
    """A table a move builds: under `temp` until the swap, then `name`, attached with `bound`."""

    name: str
    temp: str
    bound: sql.Composable  # FOR VALUES ... or DEFAULT
    bound_text: str
    predicate: sql.Composable  # which of the source's rows it takes
    check: sql.Composable | None  # its CHECK (None: a DEFAULT, whose rows no bound describes)
    exclusion: sql.Composable | None = None  # the DEFAULT helper CHECK for this bound
    # the partition whose sub-partitioning it takes (None: the first source's); a move out of
    # the DEFAULT names a neighbour here (the newest partition, the one below a hole)
    model: PartNode | None = None
    # that sub-partitioning (move_plan fills both from the catalog)
    partition_by: sql.Composable | None = None
    subparts: list[SubPartition] = field(default_factory=list)
    # the owner it is given, that of the partition it replaces (None: the applying role's;
    # owners.assign_move_owners fills it)
    owner: str | None = None

    def shaped_like(self, move: Move) -> PartNode:
        return self.model if self.model is not None else move.source

    @property
    def is_default(self) -> bool:
        return self.check is None


@dataclass
class SubPartition:
    """A leaf of a sub-partitioned new partition: built as `temp`, named `name` at the swap."""

    name: str
    temp: str
    bound: sql.Composable
    model_oid: int = 0  # the model's sub-partition it is shaped like (its grants)
    owner: str | None = None  # as NewPartition.owner


@dataclass
class ForeignKey:
    """A foreign key referencing the parent, as catalog parts (never deparsed text)."""

    table: sql.Identifier
    table_disp: str
    table_oid: int
    name: str
    columns: list[str]
    ref_columns: list[str]
    match_full: bool
    on_update: str
    on_delete: str
    deferrable: bool
    deferred: bool

    def drop_sql(self, hold_name: bool = False) -> sql.Composed:
        """DROP the key; `hold_name`: in the same command, a placeholder CHECK takes its name
        (`CHECK (true) NO INHERIT NOT VALID`: no scan, no child table touched) until
        add_sql(replace=True) puts the key back (name_holders())."""
        hold = sql.SQL(", ADD CONSTRAINT {} CHECK (true) NO INHERIT NOT VALID").format(
            sql.Identifier(self.name)) if hold_name else sql.SQL("")
        return sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}{}").format(
            self.table, sql.Identifier(self.name), hold)

    def add_sql(self, parent: sql.Identifier, replace: bool = False) -> sql.Composed:
        """ADD the key NOT VALID; `replace`: in place of drop_sql(hold_name=True)'s
        placeholder, in one command (its DROP runs before its ADD)."""
        return sql.SQL(
            "ALTER TABLE {t} {drop}ADD CONSTRAINT {n} FOREIGN KEY ({c}) REFERENCES {p} ({r}){m}"
            " ON UPDATE {u} ON DELETE {d}{defer} NOT VALID").format(
            t=self.table, n=sql.Identifier(self.name),
            drop=sql.SQL("DROP CONSTRAINT {}, ").format(sql.Identifier(self.name)) if replace
            else sql.SQL(""),
            c=sql.SQL(", ").join(map(sql.Identifier, self.columns)), p=parent,
            r=sql.SQL(", ").join(map(sql.Identifier, self.ref_columns)),
            m=sql.SQL(" MATCH FULL" if self.match_full else ""),
            u=sql.SQL(self.on_update), d=sql.SQL(self.on_delete),
            defer=sql.SQL((" DEFERRABLE" + (" INITIALLY DEFERRED" if self.deferred else ""))
                          if self.deferrable else ""))

    def validate_sql(self) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            self.table, sql.Identifier(self.name))

    def to_json(self) -> list[Any]:
        return [self.table_oid, self.name]


def name_holders(fkeys: Sequence[ForeignKey]) -> set[int]:
    """The indexes of the keys whose names are held by a placeholder between their DROP and
    their re-creation in the swap: those of a table with two keys or more. Re-creating a key
    that references a partitioned table names its entry per partition by a rule (PostgreSQL
    15: `<table>_<columns>_fkeyN`, 18: `<key>_N`, cut at 63 bytes) that skips only the names
    taken then: two keys named by PostgreSQL on the same columns (`r_id_fkey` and
    `r_id_fkey4` on 15), or `x` and `x_1` (18), made the first re-created key's entries take
    the second's name ("constraint ... already exists"). A placeholder of each name keeps the
    entries off them. A table's only key cannot collide: its own name is the one taken."""
    count: dict[int, int] = {}
    for fk in fkeys:
        count[fk.table_oid] = count.get(fk.table_oid, 0) + 1
    return {i for i, fk in enumerate(fkeys) if count[fk.table_oid] > 1}


def referencing_keys(conn: psycopg.Connection, parent_oid: int) -> list[ForeignKey]:
    """The foreign keys referencing the parent, on the referencing tables' top level."""
    rows = conn.execute(
        "SELECT c.conrelid, n.nspname, r.relname, c.conname,"
        " ARRAY(SELECT a.attname FROM pg_catalog.unnest(c.conkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n"
        "  ORDER BY k.o),"
        " ARRAY(SELECT a.attname FROM pg_catalog.unnest(c.confkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n"
        "  ORDER BY k.o),"
        " c.confmatchtype, c.confupdtype, c.confdeltype, c.condeferrable, c.condeferred,"
        " r.relkind"
        " FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class r ON r.oid = c.conrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace"
        " WHERE c.contype = 'f' AND c.confrelid = %s AND c.conparentid = 0"
        " ORDER BY n.nspname, r.relname, c.conname", (parent_oid,)).fetchall()
    out = []
    for oid, schema, rel, name, cols, refs, match, upd, dele, defer, deferred, relkind in rows:
        if relkind == "p":
            raise cl.MoveError(
                f"{display_name(schema, rel)} is partitioned and references the table "
                f"({name}): re-creating that key NOT VALID during the swap is not supported")
        out.append(ForeignKey(sql.Identifier(schema, rel), display_name(schema, rel), int(oid),
                              name, list(cols), list(refs), match == "f", _FK_ACTIONS[upd],
                              _FK_ACTIONS[dele], bool(defer), bool(deferred)))
    return out


@dataclass
class OutgoingKey:
    """A foreign key of the parent to another table. ATTACH clones it onto a partition that
    lacks it and validates it there under the parent's lock (a scan of every row); a partition
    that has a matching, validated key is adopted as is. So the new tables get it before the
    swap: added NOT VALID (an instant of SHARE ROW EXCLUSIVE on the referenced table), then
    validated (SHARE UPDATE EXCLUSIVE on the new table, ROW SHARE on the referenced one)."""

    name: str
    ref: sql.Identifier
    ref_disp: str
    parts: ForeignKey  # columns, referenced columns, match, actions, deferrability

    def add_sql(self, table: sql.Identifier) -> sql.Composed:
        return ForeignKey(table, "", 0, self.name, self.parts.columns, self.parts.ref_columns,
                          self.parts.match_full, self.parts.on_update, self.parts.on_delete,
                          self.parts.deferrable, self.parts.deferred).add_sql(self.ref)

    def validate_sql(self, table: sql.Identifier) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            table, sql.Identifier(self.name))


def outgoing_keys(conn: psycopg.Connection, parent_oid: int) -> list[OutgoingKey]:
    """The parent's own validated foreign keys to other tables (a key to the parent itself is
    left to ATTACH, and so is a NOT VALID one: ATTACH clones it NOT VALID, without a scan)."""
    rows = conn.execute(
        "SELECT c.conname, n.nspname, r.relname,"
        " ARRAY(SELECT a.attname FROM pg_catalog.unnest(c.conkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n"
        "  ORDER BY k.o),"
        " ARRAY(SELECT a.attname FROM pg_catalog.unnest(c.confkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n"
        "  ORDER BY k.o),"
        " c.confmatchtype, c.confupdtype, c.confdeltype, c.condeferrable, c.condeferred"
        " FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class r ON r.oid = c.confrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace"
        " WHERE c.contype = 'f' AND c.conrelid = %s AND c.conparentid = 0"
        " AND c.confrelid <> c.conrelid AND c.convalidated ORDER BY c.conname",
        (parent_oid,)).fetchall()
    return [OutgoingKey(name, sql.Identifier(schema, rel), display_name(schema, rel),
                        ForeignKey(sql.Identifier(schema, rel), "", 0, name, list(cols),
                                   list(refs), match == "f", _FK_ACTIONS[upd],
                                   _FK_ACTIONS[dele], bool(defer), bool(deferred)))
            for name, schema, rel, cols, refs, match, upd, dele, defer, deferred in rows]


@dataclass
class Move:
    """One move: rows of `sources` (one partition, or several of one schema) into `targets`.
    The first source is the move's anchor: the new tables' temporary names, the DEFAULT's
    helper CHECKs and the registry's move_target entries are named after its oid."""

    kind: str
    parent: PartNode
    sources: list[PartNode]
    key: Key
    caps: list[cl.Capture]
    targets: list[NewPartition]
    default: PartNode | None  # a plain DEFAULT partition that stays (None: none, or the source)
    fkeys: list[ForeignKey] = field(default_factory=list)
    plan_id: str = ""

    @property
    def source(self) -> PartNode:
        return self.sources[0]

    @property
    def cap(self) -> cl.Capture:
        return self.caps[0]

    @property
    def detached_name(self) -> str:
        return detached_name(self.source.oid)

    @property
    def schema(self) -> str:
        return self.source.schema

    @property
    def replay_key(self) -> list[tuple[str, bool]]:
        """The key the replay matches rows by, (column, null-safe). The sources' unique key,
        plus the partition key column when that key lacks it (a partition's own unique index):
        the same key value may then sit in two sources, never with the same partition key
        value, which may be NULL (a list partition holding NULL) and is compared null-safe."""
        out = [(k, False) for k in self.cap.key]
        if self.key.column not in self.cap.key:
            out.append((self.key.column, True))
        return out

    def temp_ident(self, t: NewPartition) -> sql.Identifier:
        return sql.Identifier(self.schema, t.temp)

    def final_ident(self, t: NewPartition) -> sql.Identifier:
        return sql.Identifier(self.schema, t.name)

    def cl_targets(self, final: bool = False) -> list[cl.Target]:
        return [cl.Target(self.final_ident(t) if final else self.temp_ident(t), t.predicate,
                          t.name) for t in self.targets]

    def rows(self) -> sql.Composable:
        """The sources' rows as one relation: the source itself, or their UNION ALL (the
        columns named, since partitions may order them differently)."""
        if len(self.caps) == 1:
            return self.cap.source
        cols = sql.SQL(", ").join(map(sql.Identifier, self.cap.columns))
        return sql.SQL("({}) AS pgparts_sources").format(
            sql.SQL(" UNION ALL ").join(sql.SQL("SELECT {} FROM {}").format(cols, c.source)
                                        for c in self.caps))

    @property
    def sources_disp(self) -> str:
        return ", ".join(s.qualified for s in self.sources)


def side_by_side(move: Move, est: Estimate) -> bool:
    """Whether the move's index builds and key validations run on SESSIONS sessions."""
    return len(move.targets) > 1 and est.bytes >= PARALLEL_MIN_BYTES


def _share(total: int, parts: int, i: int) -> int:
    return total // parts + (total % parts if i == 0 else 0)


def detached_name(source_oid: int) -> str:
    return f"pgparts_moved_{source_oid}"


def temp_name(source_oid: int, i: int) -> str:
    return f"pgparts_new_{source_oid}_{i}"


def temp_index_name(source_oid: int, i: int, j: int) -> str:
    return f"pgparts_new_{source_oid}_{i}_ix{j}"


def _truncate(name: str, limit: int = 63) -> str:
    raw = name.encode("utf-8")[:limit]
    return raw.decode("utf-8", errors="ignore")


def index_renames(conn: psycopg.Connection, move: Move) -> list[Statement]:
    """In the swap: the detached sources' indexes out of the way, then the new tables'
    indexes named like the parent's, for their table (`payment_pkey` on payment_2023_h2:
    payment_2023_h2_pkey), so nothing named pgparts_* stays on a live table."""
    rels = [s.oid for s in move.sources] + [c.oid for s in move.sources for c in s.children]
    own = [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT i.indexrelid, n.nspname, c.relname FROM pg_catalog.pg_index i"
        " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE i.indrelid = ANY(%s) ORDER BY 1", (rels,)).fetchall()]
    out = [Statement(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
        sql.Identifier(schema, name), sql.Identifier(f"pgparts_moved_{oid}")),
        note="the detached source's index, out of the way") for oid, schema, name in own]
    taken = existing_names(conn, move.schema) - {n for _, sch, n in own if sch == move.schema}
    taken |= {sp.name for t in move.targets for sp in t.subparts} | {
        t.name for t in move.targets}
    shapes = target_shapes(conn, move)
    for i, t in enumerate(move.targets):
        for j, (shape, owner) in enumerate(shapes):
            suffix = shape.name[len(owner):] if shape.name.startswith(owner) \
                else "_" + shape.name
            renames = [(temp_index_name(move.source.oid, i, j), t.name)]
            renames += [(f"{sp.temp}_ix{j}", sp.name) for sp in t.subparts]
            for temp, table in renames:
                name = unique_name(table + suffix, taken)
                out.append(Statement(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(move.schema, temp), sql.Identifier(name))))
    return out


def unique_name(wanted: str, taken: set[str]) -> str:
    """`wanted` cut to 63 bytes, or with _2, _3, ... when taken; added to `taken`."""
    base = _truncate(wanted)
    name, n = base, 1
    while name in taken:
        n += 1
        name = _truncate(base, 63 - len(f"_{n}")) + f"_{n}"
    taken.add(name)
    return name


def target_shapes(conn: psycopg.Connection, move: Move) -> list[tuple[IndexShape, str]]:
    """The indexes each new table gets, with the name theirs are named after: the parent's
    (ATTACH adopts them), then, when the replay's key is a unique index the source has of its
    own (a list partition holding NULL cannot be under a primary key), that index too, so the
    new partitions keep the uniqueness the sources had (a merge of partitions whose values
    collide fails there, before anything is swapped)."""
    out = [(shape, move.parent.name) for shape in index_shapes(conn, move.parent.oid)]
    if move.key.column in move.cap.key:
        return out
    for shape in index_shapes(conn, move.source.oid):
        inherited = conn.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_inherits"
                                 " WHERE inhrelid = %s)", (shape.oid,)).fetchone()[0]
        if shape.unique and shape.plain_cols == list(move.cap.key) and not inherited \
                and shape.predicate is None:
            out.append((shape, move.source.name))
            break
    return out


# -- catalog checks used by done() -------------------------------------------------------------
def _rel_oid(c: psycopg.Connection, schema: str, name: str) -> int | None:
    row = c.execute("SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                    (schema, name)).fetchone()
    return int(row[0]) if row else None


def _attached_to(c: psycopg.Connection, oid: int) -> int | None:
    row = c.execute("SELECT inhparent FROM pg_catalog.pg_inherits WHERE inhrelid = %s",
                    (oid,)).fetchone()
    return int(row[0]) if row else None


def swapped(c: psycopg.Connection, move: Move) -> bool:
    """No source is a partition of the parent any more (detached, or dropped): the swap
    detaches them all in one transaction."""
    return all(_attached_to(c, s.oid) != move.parent.oid for s in move.sources)


def _registry_exists(c: psycopg.Connection) -> bool:
    row = c.execute(sql.SQL("SELECT pg_catalog.to_regclass({}) IS NOT NULL").format(
        sql.Literal(markers.REGISTRY.as_string(c)))).fetchone()
    return bool(row and row[0])


def registered_targets(c: psycopg.Connection, source_oids: int | list[int]
                       ) -> list[tuple[str, str, str]]:
    """(name built under, final name, bound text) of the move targets recorded for a move
    whose sources include any of `source_oids` (the anchor's oid is `source_oid`, every
    source's oid is in `note`)."""
    oids = {source_oids} if isinstance(source_oids, int) else set(source_oids)
    if not _registry_exists(c) or markers.trust_problem(c):
        return []
    out = []
    for name, repl, bound, source, note in c.execute(sql.SQL(
            "SELECT name, replacement, bound, source_oid, note FROM {} WHERE role = {}"
            " ORDER BY name").format(markers.REGISTRY, sql.Literal(markers.MOVE_TARGET_ROLE))
            ).fetchall():
        try:
            others = {int(o) for o in json.loads(note or "[]")}
        except (ValueError, TypeError):
            others = set()
        if int(source) in oids or others & oids:
            out.append((name, repl, bound))
    return out


# -- the replay, as statements of the step's own transaction -----------------------------------
def replay_statements(move: Move, targets: list[cl.Target]) -> list[Statement]:
    """Apply every log entry the transaction sees and delete exactly those: in a REPEATABLE
    READ step (one snapshot for all statements), or under a lock that stops new entries (the
    swap). Delete then insert per key, the key's last image (changelog's docstring, 4.). One
    log per source: a key (with the partition key column) lives in one source only, so each
    log holds its keys' whole history and the logs are replayed one after the other."""
    rkey = move.replay_key
    key = sql.SQL(", ").join(sql.Identifier(k) for k, _ in rkey)
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{k} IS NOT DISTINCT FROM b.{k}" if nullsafe else "t.{k} = b.{k}").format(
            k=sql.Identifier(k)) for k, nullsafe in rkey)
    cols = sql.SQL(", ").join(map(sql.Identifier, move.cap.insertable))
    out = [Statement(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(cap.log),
                     "lock", note="one replay at a time; writers appending to the log go on")
           for cap in move.caps]
    for cap in move.caps:
        last = sql.SQL("SELECT DISTINCT ON ({key}) * FROM {log} ORDER BY {key}, pgparts_seq"
                       " DESC").format(key=key, log=cap.log)
        of = f" ({cap.name}'s log)" if len(move.caps) > 1 else ""
        for t in targets:
            out.append(Statement(sql.SQL(
                "DELETE FROM {t} AS t USING (SELECT DISTINCT {key} FROM {log}) AS b WHERE {m}"
            ).format(t=t.table, key=key, log=cap.log, m=match), "copy",
                note=f"replay{of}: remove the changed keys from {t.label}"))
        for t in targets:
            out.append(Statement(sql.SQL(
                "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM ({last}) l"
                " WHERE NOT l.pgparts_old AND ({pred}) IS TRUE").format(
                t=t.table, cols=cols, last=last, pred=t.predicate), "copy",
                note=f"replay{of}: the changed keys' last images into {t.label}"))
        out.append(Statement(sql.SQL("DELETE FROM {}").format(cap.log), "ddl",
                             note="forget the entries applied (exactly those this snapshot "
                                  "sees)"))
    return out


def raise_unless(conn: psycopg.Connection, cond: sql.Composable, message: str
                 ) -> sql.Composed:
    """The exported script's form of a check: a DO block that raises unless `cond` holds, so
    `psql -v ON_ERROR_STOP=1` stops there."""
    body = sql.SQL("BEGIN\n  IF NOT coalesce(({c}), false) THEN\n    RAISE EXCEPTION '%', {m};\n"
                   "  END IF;\nEND").format(c=cond, m=sql.Literal("pgparts: " + message))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def verify_sql(rows: sql.Composable, cols: list[str], targets: list[cl.Target]
               ) -> tuple[sql.Composed, sql.Composed]:
    """The verification's query, one row: the sources' row count, then count and checksum of
    their rows of each target's bound, then count and checksum of each target. The sources
    are read once for every bound (FILTER: a row's hash is computed only for the bounds that
    take it; measured as fast as one filtered scan per bound on 1M rows, and it counts the
    rows no bound takes). Also the exported script's condition: true when all agree."""
    h = cl.row_hash(cols)
    src = [sql.SQL("pg_catalog.count(*) FILTER (WHERE ({p}) IS TRUE) AS {n}, coalesce("
                   "pg_catalog.sum({h}) FILTER (WHERE ({p}) IS TRUE), 0) AS {s}").format(
        p=t.predicate, h=h, n=sql.Identifier(f"n{i}"), s=sql.Identifier(f"h{i}"))
        for i, t in enumerate(targets)]
    tables = [sql.SQL("(SELECT pg_catalog.count(*) AS n, coalesce(pg_catalog.sum({h}), 0) AS h"
                      " FROM {t}) {a}").format(h=h, t=t.table, a=sql.Identifier(f"t{i}"))
              for i, t in enumerate(targets)]
    frm = sql.SQL("(SELECT pg_catalog.count(*) AS n, {src} FROM {rows}) s, {tables}").format(
        src=sql.SQL(", ").join(src), rows=rows, tables=sql.SQL(", ").join(tables))
    cols_out = [sql.SQL("s.n")]
    cols_out += [sql.SQL("s.{}, s.{}").format(sql.Identifier(f"n{i}"), sql.Identifier(f"h{i}"))
                 for i in range(len(targets))]
    cols_out += [sql.SQL("{a}.n, {a}.h").format(a=sql.Identifier(f"t{i}"))
                 for i in range(len(targets))]
    agree = [sql.SQL("s.n = {}").format(sql.SQL(" + ").join(
        sql.SQL("s.{}").format(sql.Identifier(f"n{i}")) for i in range(len(targets))))]
    agree += [sql.SQL("s.{n} = {a}.n AND s.{h} = {a}.h").format(
        n=sql.Identifier(f"n{i}"), h=sql.Identifier(f"h{i}"), a=sql.Identifier(f"t{i}"))
        for i in range(len(targets))]
    return (sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(cols_out), frm),
            sql.SQL("SELECT {} FROM {}").format(sql.SQL(" AND ").join(agree), frm))


def verify_check(targets: list[cl.Target], sdisp: str
                 ) -> Callable[[Any, psycopg.Connection], str]:
    """The check of verify_sql()'s row: each target equal to the sources' rows of its bound,
    and the sources' every row taken by exactly one bound (their count is the bounds' sum:
    a row no bound takes or two bounds take makes it differ)."""
    def check(row: Any, _c: psycopg.Connection) -> str:
        total, got = int(row[0]), [int(v) for v in row[1:]]
        k = len(targets)
        src, dst = got[:2 * k], got[2 * k:]
        lines = []
        for i, t in enumerate(targets):
            s_n, s_h, d_n, d_h = src[2 * i], src[2 * i + 1], dst[2 * i], dst[2 * i + 1]
            if (s_n, s_h) != (d_n, d_h):
                raise VerificationFailed(
                    f"{t.label} holds {d_n:,} rows (checksum {d_h}), {sdisp} {s_n:,} of its "
                    f"bound (checksum {s_h})")
            lines.append(f"{t.label}: {d_n:,} rows, checksum {d_h}, equal to {sdisp}'s")
        taken = sum(src[0::2])
        if taken != total:
            raise VerificationFailed(f"the new partitions' bounds take {taken:,} of {sdisp}'s "
                                     f"{total:,} rows: each must be taken exactly once")
        return "; ".join(lines + [f"each of {sdisp}'s {total:,} rows in exactly one bound"])
    return check


# -- the steps ---------------------------------------------------------------------------------
def move_steps(conn: psycopg.Connection, move: Move) -> list[Step]:
    parent, source = move.parent, move.source
    pdisp, sdisp = parent.qualified, move.sources_disp
    temps = move.cl_targets()
    tnames = "new " + ", ".join(display_name(move.schema, t.name) for t in move.targets)
    est = Estimate(rows=sum(s.rows or 0 for s in move.sources),
                   bytes=sum(s.total_table_bytes or 0 for s in move.sources))
    version = int(conn.info.server_version)
    source_oids = [s.oid for s in move.sources]

    def is_swapped(c: psycopg.Connection) -> bool:
        return swapped(c, move)

    def built(c: psycopg.Connection) -> bool:
        if is_swapped(c):
            return True
        names = {r[0] for r in registered_targets(c, source_oids)}
        return all(_rel_oid(c, move.schema, t.temp) is not None and t.temp in names
                   for t in move.targets)

    # 1. build
    likes = ["DEFAULTS", "CONSTRAINTS", "GENERATED", "STORAGE"]
    if version >= 140000:
        likes.append("COMPRESSION")
    including = sql.SQL(" ").join(sql.SQL("INCLUDING " + w) for w in likes)
    stmts = [Statement(markers.guard_sql(conn, create=True),
                       note="pgparts' registry (schema pgparts, created owned by you on first "
                            "use): stop unless only you or a superuser control it")]
    for t, tt in zip(move.targets, temps, strict=True):
        by = sql.SQL(" {}").format(t.partition_by) if t.partition_by is not None \
            else sql.SQL("")
        # a neighbour it is shaped like lends its grants too, as create-ahead's partitions get
        shaped = [t.model.oid] if t.model is not None else []
        stmts.append(Statement(sql.SQL("CREATE TABLE {} (LIKE {} {}){}").format(
            tt.table, parent.ident, including, by),
            note=f"{t.name} ({t.bound_text}), built as {t.temp}: the parent's columns, "
                 f"defaults and CHECKs" + (f", the sub-partitioning of "
                                           f"{t.shaped_like(move).qualified}" if t.subparts
                                           else "")))
        stmts += owners.default_privilege_statements(conn, move.schema, tt.table)
        if t.owner is not None:
            stmts.append(owners.owner_statement(tt.table, t.owner, "the owner of the partition "
                                                                   "it replaces"))
        if t.check is not None:
            stmts.append(Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})").format(
                tt.table, sql.Identifier(BOUND_CHECK), t.check),
                note="the bound as a CHECK on the empty table (validated for free): ATTACH "
                     "needs no scan" + (" (every sub-partition inherits it)" if t.subparts
                                        else "")))
        for sp in t.subparts:
            leaf = sql.Identifier(move.schema, sp.temp)
            stmts.append(Statement(sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
                leaf, tt.table, sp.bound), note=f"{sp.name}, built as {sp.temp}"))
            stmts += owners.default_privilege_statements(conn, move.schema, leaf)
            if sp.owner is not None:
                stmts.append(owners.owner_statement(leaf, sp.owner, "the owner of the "
                                                                    "sub-partition it replaces"))
            stmts += grant_statements(conn, [parent.oid, *source_oids, *shaped, sp.model_oid],
                                      leaf)
        stmts.append(Statement(markers.register_relation_sql(
            role=markers.MOVE_TARGET_ROLE, schema=move.schema, name=t.temp,
            parent_oid=parent.oid, source_oid=source.oid, source_name=source.name,
            bound=t.bound_text, plan_id=move.plan_id, replacement=t.name, relkinds="rp"),
            note="recorded in pgparts' registry in the same transaction"))
        if len(move.sources) > 1:
            stmts.append(Statement(sql.SQL(
                "UPDATE {} SET note = {} WHERE role = {} AND objid = {}::pg_catalog.regclass"
                "::pg_catalog.oid").format(
                markers.REGISTRY, sql.Literal(json.dumps(source_oids)),
                sql.Literal(markers.MOVE_TARGET_ROLE),
                sql.Literal(tt.table.as_string(conn))), note="the move's every source"))
        stmts += grant_statements(conn, [parent.oid, *source_oids, *shaped], tt.table)
    steps = [Step(
        title=f"Build {tnames} beside {sdisp}",
        explanation="Create the new partitions as empty tables next to the live ones; no row "
                    "is read and nobody waits (ACCESS SHARE on the parent, for LIKE).",
        statements=stmts, locks=[Lock("ACCESS SHARE", pdisp, "nobody")],
        estimate=Estimate(0, 0, 0.05), done=built)]

    # 2. capture
    def captured(c: psycopg.Connection) -> bool:
        return is_swapped(c) or all(cl.installed(c, cap) for cap in move.caps)

    capture: list[Statement] = []
    for cap in move.caps:
        capture += [Statement(s, "lock" if i == 0 else "ddl")
                    for i, s in enumerate(cl.install_sql(conn, cap))]
        # the log's rows are replayed into the new partitions: nobody else may write them
        for log in (cap.log, cap.state):
            capture += owners.default_privilege_statements(conn, cap.log_schema, log)
        # its sequence orders the entries of a key (the replay keeps the last): a role that
        # could setval it could make an old entry win
        capture += owners.default_privilege_statements(conn, cap.log_schema, cap.sequence,
                                                       objtype="S")
    steps.append(Step(
        title=f"Capture changes to {sdisp}",
        explanation=("A trigger on every table of the source writes each change into a log in "
                     "schema pgparts, from before the copy on. CREATE TRIGGER waits for the "
                     "writes in flight there and holds new ones for an instant (lock_timeout, "
                     "retried)."),
        statements=capture,
        locks=[Lock("SHARE ROW EXCLUSIVE", s.qualified, "its writers, for an instant")
               for s in move.sources],
        retry="step", statement_timeout_seconds=SWAP_STATEMENT_TIMEOUT,
        estimate=Estimate(0, 0, 0.05), done=captured))

    # 3. copy
    def copy_done(c: psycopg.Connection) -> bool:
        return is_swapped(c) or all(cl.installed(c, cap) and cl.copied(c, cap)
                                    for cap in move.caps)

    def capture_ok(_row: Any, c: psycopg.Connection) -> str:
        for cap in move.caps:
            problems = cl.capture_problems(c, cap)
            if problems:
                raise VerificationFailed(f"change capture is broken: {problems[0]}")
        return "change capture in place"

    leaves = [o for cap in move.caps for o in cap.leaves]
    cols = sql.SQL(", ").join(map(sql.Identifier, move.cap.insertable))
    rows = move.rows()
    copy = [Statement(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(cap.log),
                      "lock", note="no replay during the copy; writers appending go on")
            for cap in move.caps]
    copy.append(Statement(
        sql.SQL("SELECT 1"), "verify", note="the capture triggers are in place",
        check=capture_ok, script=raise_unless(conn, sql.SQL(
            "SELECT pg_catalog.count(*) = {n} FROM pg_catalog.pg_trigger"
            " WHERE tgrelid = ANY({l}::pg_catalog.oid[]) AND tgenabled = 'A'"
            " AND tgname IN ({a}, {b})").format(
            n=sql.Literal(2 * len(leaves)), l=sql.Literal(leaves),
            a=sql.Literal(cl.TRIGGER), b=sql.Literal(cl.TRIGGER + "_truncate")),
            "the change capture is not in place")))
    for i, t in enumerate(temps):
        # each INSERT takes its bound's share of the sources' rows: an even share each (the
        # remainder to the first), so the progress total counts every source row once
        copy.append(Statement(sql.SQL(
            "INSERT INTO {t} ({c}) OVERRIDING SYSTEM VALUE SELECT {c} FROM {s}"
            " WHERE ({p}) IS TRUE").format(t=t.table, c=cols, s=rows, p=t.predicate),
            "copy", note=f"copy {sdisp}'s rows of {t.label}",
            est_rows=_share(est.rows, len(temps), i), est_bytes=_share(est.bytes, len(temps), i)))
    # that every row went to exactly one new partition is checked by the verification (6b.),
    # which counts the sources' rows per bound in its one pass over them anyway
    for cap in move.caps:
        copy += [
            Statement(sql.SQL(
                "DELETE FROM {} WHERE pg_catalog.pg_visible_in_snapshot(pgparts_xid,"
                " pg_catalog.pg_current_snapshot())").format(cap.log),
                note="forget the log entries this snapshot's copy already holds"),
            Statement(sql.SQL(
                "INSERT INTO {} (snapshot, rows) SELECT pg_catalog.pg_current_snapshot()::"
                "pg_catalog.text, pg_catalog.count(*) FROM {}").format(cap.state, cap.source),
                note="record that the copy committed"),
        ]
    steps.append(Step(
        title=f"Copy {sdisp} into {tnames}",
        explanation=("One REPEATABLE READ snapshot: ACCESS SHARE on the source (nobody waits), "
                     "writers carry on and their changes go to the log."),
        statements=copy, locks=[Lock("ACCESS SHARE", s.qualified, "nobody")
                                for s in move.sources],
        isolation="repeatable read", estimate=est, done=copy_done))

    # 4. indexes, primary key, analyze
    shapes = [shape for shape, _ in target_shapes(conn, move)]
    idx_of: list[list[Statement]] = []
    for i, t in enumerate(temps):
        idx: list[Statement] = []
        for j, shape in enumerate(shapes):
            # sub-partitions first, named by us: the index on the new partition then adopts
            # them (and the swap can name them after their table)
            for sp in move.targets[i].subparts:
                leaf = sql.Identifier(move.schema, sp.temp)
                lname = sql.Identifier(f"{sp.temp}_ix{j}")
                idx.append(Statement(shape.constraint_sql(leaf, lname)
                                     if shape.contype in ("p", "u")
                                     else shape.create_sql(leaf, name=lname),
                                     note=f"{shape.name} on {sp.name}"))
            name = sql.Identifier(temp_index_name(source.oid, i, j))
            idx.append(Statement(shape.constraint_sql(t.table, name)
                                 if shape.contype in ("p", "u")
                                 else shape.create_sql(t.table, name=name),
                                 note=f"{shape.name} on {t.label}: ATTACH adopts it"))
        idx.append(Statement(sql.SQL("ANALYZE {}").format(t.table), "maintenance"))
        idx_of.append(idx)

    def indexed(c: psycopg.Connection, only: NewPartition | None = None) -> bool:
        if is_swapped(c):
            return True
        for t in move.targets if only is None else [only]:
            oid = _rel_oid(c, move.schema, t.temp)
            if oid is None:
                return False
            n = c.execute("SELECT pg_catalog.count(*) FROM pg_catalog.pg_index"
                          " WHERE indrelid = %s", (oid,)).fetchone()[0]
            if n < len(shapes):
                return False
        return True

    explained = ("The parent's indexes and keys on the new tables (faster after the copy than "
                 "row by row), then ANALYZE. Only the new tables are locked.")
    parallel = side_by_side(move, est)
    if parallel:
        for i, (t, idx) in enumerate(zip(move.targets, idx_of, strict=True)):
            steps.append(Step(
                title=f"Index new {display_name(move.schema, t.name)}",
                explanation=explained + f" At once with the other new tables' ({SESSIONS} "
                                        f"sessions).",
                statements=idx, locks=[Lock("ACCESS EXCLUSIVE", display_name(
                    move.schema, t.name), "nobody: not attached yet")],
                estimate=Estimate(0, _share(est.bytes, len(temps), i), 0.1),
                done=lambda c, t=t: indexed(c, t), parallel="index"))
    else:
        steps.append(Step(
            title=f"Index {tnames}", explanation=explained,
            statements=[st for idx in idx_of for st in idx],
            locks=[Lock("ACCESS EXCLUSIVE", tnames, "nobody: not attached yet")],
            estimate=Estimate(0, est.bytes, 0.1), done=indexed))

    # 4b. the parent's own foreign keys, so that ATTACH adopts them instead of validating
    # them under the parent's lock
    outgoing = outgoing_keys(conn, parent.oid)
    if outgoing:
        steps += outgoing_key_steps(move, outgoing, tnames, is_swapped, parallel)

    # 5. catch up
    steps.append(Step(
        title=f"Catch up with the writes to {sdisp}",
        explanation="Replay the log written during the copy, in one snapshot; nobody waits.",
        statements=replay_statements(move, temps),
        locks=[Lock("ACCESS SHARE", s.qualified, "nobody") for s in move.sources],
        isolation="repeatable read", estimate=Estimate(0, 0, 0.1), done=is_swapped))

    # 6. the DEFAULT's helper CHECKs
    default = move.default
    helpers = [(f"{HELPER_PREFIX}{source.oid}_{i}", t.exclusion)
               for i, t in enumerate(move.targets) if t.exclusion is not None]
    if default is not None and default.relkind == "r" and helpers:
        names = [n for n, _ in helpers]

        def helper_state(c: psycopg.Connection) -> list[bool]:
            return [bool(r[0]) for r in c.execute(
                "SELECT convalidated FROM pg_catalog.pg_constraint WHERE conrelid = %s"
                " AND contype = 'c' AND conname = ANY(%s)", (default.oid, names)).fetchall()]

        steps.append(Step(
            title=f"Exclude the new bounds from {default.qualified}",
            explanation=("CHECKs on the DEFAULT partition saying it holds no row of the new "
                         "bounds, NOT VALID: no scan, an instant of ACCESS EXCLUSIVE on it "
                         "(lock_timeout, retried). Validated next, they spare the swap's "
                         "ATTACH a scan of the DEFAULT under the parent's lock."),
            statements=[Statement(sql.SQL("ALTER TABLE {} {}").format(
                default.ident, sql.SQL(", ").join(
                    sql.SQL("ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
                        sql.Identifier(n), e) for n, e in helpers)), "lock")],
            locks=[Lock("ACCESS EXCLUSIVE", default.qualified, "an instant: no scan")],
            retry="step", statement_timeout_seconds=SWAP_STATEMENT_TIMEOUT,
            estimate=Estimate(0, 0, 0.01),
            done=lambda c: is_swapped(c) or len(helper_state(c)) == len(names)))
        steps.append(Step(
            title=f"Validate the exclusion CHECKs on {default.qualified}",
            explanation="VALIDATE scans the DEFAULT under SHARE UPDATE EXCLUSIVE: its writers "
                        "carry on.",
            statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                default.ident, sql.Identifier(n)), "verify") for n in names],
            locks=[Lock("SHARE UPDATE EXCLUSIVE", default.qualified, "no writer")],
            estimate=Estimate(0, default.total_table_bytes, 0.1),  # a scan: no row moves
            done=lambda c: is_swapped(c) or (len(helper_state(c)) == len(names)
                                              and all(helper_state(c)))))
    else:
        names = []

    # 6b. exact verification while writers carry on
    verify = replay_statements(move, temps)
    counts, agrees = verify_sql(rows, list(move.cap.columns), temps)
    verify.append(Statement(
        counts, "verify", note=f"count and checksum of each new partition against {sdisp}'s "
                               f"rows of its bound (one pass over {sdisp} for every bound)",
        check=verify_check(temps, sdisp), script=raise_unless(
            conn, agrees, "a new partition differs from the source's rows of its bound, or a "
                          "row of the source is in no new bound or in two")))
    steps.append(Step(
        title=f"Verify {tnames} against {sdisp}",
        explanation=("In one REPEATABLE READ snapshot, writers carrying on: replay what the "
                     "snapshot sees, then compare row count and order-independent checksum per "
                     "new bound with the source's rows of that bound (one pass over the source "
                     "for every bound, counting its rows too: each must be in exactly one "
                     "bound). Exact: the swap then replays only what was written after this "
                     "snapshot, under its lock. Nothing is dropped unless this passed."),
        statements=verify, locks=[Lock("ACCESS SHARE", s.qualified, "nobody")
                                  for s in move.sources],
        isolation="repeatable read", estimate=Estimate(0, 0, 0.1),  # rows: the copy's
        done=is_swapped, verify_note="count and checksum per new bound"))
    # 6c. the verification's scans take seconds; what writers wrote meanwhile is replayed here,
    # in a snapshot, rather than by the swap under the parent's lock (measured on 2M rows
    # with four writers: the swap's last replay took 140 ms of its 229 ms without this step)
    steps.append(Step(
        title=f"Catch up with the writes to {sdisp} since the verification",
        explanation="Replay the logs written during the verification, in one snapshot; nobody "
                    "waits. The swap then replays only what is written after this.",
        statements=replay_statements(move, temps),
        locks=[Lock("ACCESS SHARE", s.qualified, "nobody") for s in move.sources],
        isolation="repeatable read", estimate=Estimate(0, 0, 0.1), done=is_swapped))

    # 7. swap
    steps.append(swap_step(conn, move, names))
    # 8., 9.
    steps += finish_steps(conn, move.parent, source_oids, move.schema,
                          [detached_name(o) for o in source_oids], move.fkeys, parallel)
    return steps


def outgoing_key_steps(move: Move, keys: list[OutgoingKey], tnames: str,
                       is_swapped: Any, parallel: bool = False) -> list[Step]:
    """Add the parent's own keys to the new tables NOT VALID, then validate them (`parallel`:
    each new table's in a step of its own, the steps at once). On a sub-partitioned new partition
    they go on its leaves: ATTACH then creates the key on the partition itself and adopts the
    leaves' validated keys (before PostgreSQL 18 a partitioned table cannot have a NOT VALID
    foreign key at all; measured on 15 and 18)."""
    rels_of = [[(sql.Identifier(move.schema, temp), temp)
                for temp in ([sp.temp for sp in t.subparts] or [t.temp])] for t in move.targets]
    rels = [r for of in rels_of for r in of]
    names = [k.name for k in keys]
    refs = list(dict.fromkeys(k.ref_disp for k in keys))

    def state(c: psycopg.Connection, of: list[tuple[sql.Identifier, str]] = rels
              ) -> list[bool] | None:
        """convalidated of every key on every table keyed; None when one is missing."""
        out: list[bool] = []
        for _, temp in of:
            oid = _rel_oid(c, move.schema, temp)
            rows = [] if oid is None else c.execute(
                "SELECT convalidated FROM pg_catalog.pg_constraint WHERE conrelid = %s"
                " AND contype = 'f' AND conname = ANY(%s)", (oid, names)).fetchall()
            if len(rows) < len(names):
                return None
            out += [bool(r[0]) for r in rows]
        return out

    def added(c: psycopg.Connection) -> bool:
        return is_swapped(c) or state(c) is not None

    def validated(c: psycopg.Connection, of: list[tuple[sql.Identifier, str]] = rels) -> bool:
        if is_swapped(c):
            return True
        got = state(c, of)
        return got is not None and all(got)

    def validate(title: str, of: list[tuple[sql.Identifier, str]], where: str, rows: int,
                 parallel: bool = False) -> Step:
        return Step(
            title=title,
            explanation=("Checks the copied rows against the referenced tables now, so that "
                         "the swap's ATTACH adopts the keys without a scan under the parent's "
                         "lock. SHARE UPDATE EXCLUSIVE on the new tables, ROW SHARE on the "
                         "referenced ones: nobody waits."
                         + (f" At once with the other new tables' ({SESSIONS} sessions)."
                            if parallel else "")),
            statements=[Statement(k.validate_sql(ident), "verify") for ident, _ in of
                        for k in keys],
            locks=[Lock("SHARE UPDATE EXCLUSIVE", where, "nobody: not attached yet")]
            + [Lock("ROW SHARE", r, "nobody") for r in refs],
            estimate=Estimate(rows, 0, 0.1),
            done=lambda c: validated(c, of), parallel="outgoing-keys" if parallel else "")

    rows = sum(s.rows or 0 for s in move.sources)
    where = tnames + (" (on their sub-partitions)" if any(t.subparts for t in move.targets)
                      else "")
    steps = [
        Step(title=f"Add the parent's foreign keys to {tnames}",
             explanation=("NOT VALID: no row is read; an instant of SHARE ROW EXCLUSIVE on each "
                          "referenced table (its writers wait that long; lock_timeout, "
                          "retried)."),
             statements=[Statement(k.add_sql(ident), "lock") for ident, _ in rels for k in keys],
             locks=[Lock("SHARE ROW EXCLUSIVE", r, "its writers, for an instant") for r in refs],
             retry="step", statement_timeout_seconds=SWAP_STATEMENT_TIMEOUT,
             estimate=Estimate(0, 0, 0.01), done=added)]
    if not parallel:
        return steps + [validate(f"Validate the parent's foreign keys on {tnames}", rels, where,
                                 rows)]
    for i, (t, of) in enumerate(zip(move.targets, rels_of, strict=True)):
        disp = display_name(move.schema, t.name)
        steps.append(validate(
            f"Validate the parent's foreign keys on new {disp}", of,
            disp + (" (on its sub-partitions)" if t.subparts else ""),
            _share(rows, len(move.targets), i), parallel=True))
    return steps


def swap_step(conn: psycopg.Connection, move: Move, helpers: list[str]) -> Step:
    parent = move.parent
    pdisp, sdisp = parent.qualified, move.sources_disp
    temps = move.cl_targets()

    # The referencing tables first: their writers lock them, then (the key's check) the parent;
    # a swap holding the parent while waiting for one of them would deadlock with such a
    # writer. A writer deleting or re-keying a row of the parent locks the other way round (the
    # parent, then each referencing table for the key's check, NO ACTION and RESTRICT keys as
    # much as CASCADE ones): no order avoids both, so the swap gives way ("give-way" retry: its
    # lock waits end well before deadlock_timeout, the attempt is rolled back and retried), and
    # the deadlock detector never aborts that writer (bench/move.py measured writers stalled
    # 1.08 s and one aborted when the swap waited out deadlock_timeout instead).
    # The whole step is one query (Step.one_query): these locks, the parent's and everything
    # after them reach the server in one round trip, so the referencing tables are held only
    # for the server's own time until the parent's lock is granted, and the parent only for
    # the server's work until the COMMIT. The order of the locks is unchanged.
    refs = list(dict.fromkeys((fk.table_disp, fk.table.as_string(conn)) for fk in move.fkeys))
    stmts = [
        Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(q)), "lock",
                  note=f"{disp}: its key on the table is dropped and re-created below")
        for disp, q in refs]
    stmts.append(
        Statement(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(parent.ident),
                  "lock", note="then the parent, in the order writers lock"))
    stmts += [Statement(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(s.ident),
                        "lock", note="no write to the source is in flight or can start")
              for s in move.sources]
    # A deferred key (the table's own, which the new partitions carry since 4b.) would queue
    # the replay's checks to the COMMIT, and ALTER TABLE refuses a table with pending trigger
    # events ("cannot ALTER TABLE ... because it has pending trigger events"): the checks run
    # at the end of each replay statement instead, every one of them kept. They read only the
    # rows this replay writes (those written since the last catch-up).
    stmts.append(Statement(sql.SQL("SET CONSTRAINTS ALL IMMEDIATE"),
                           note="deferred keys checked as the replay writes, not at COMMIT"))
    stmts += replay_statements(move, temps)
    # checked on the server, before anything after it in the same query runs: a log entry
    # left (impossible under the source's lock) stops the swap before the DETACH
    logs = len(move.caps) > 1
    for cap in move.caps:
        of = f"{cap.name}'s " if logs else ""
        stmts.append(Statement(raise_unless(conn, sql.SQL(
            "SELECT NOT EXISTS (SELECT FROM {})").format(cap.log),
            f"{of}change log is not empty after the last replay"), "verify",
            note=f"{of}change log fully replayed (empty)"))
    for cap in move.caps:
        stmts += [Statement(s, note="the capture is no longer needed")
                  for s in cl.remove_sql(conn, cap)]
    held = name_holders(move.fkeys)
    stmts += [Statement(fk.drop_sql(i in held), note=f"{fk.table_disp}: its key would stop the "
                                                     f"DETACH (re-created NOT VALID below)"
                        + ("; a placeholder CHECK holds its name meanwhile" if i in held
                           else ""))
              for i, fk in enumerate(move.fkeys)]
    replacement = json.dumps([t.name for t in move.targets])
    for src in move.sources:
        gone = detached_name(src.oid)
        stmts += [
            Statement(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent.ident,
                                                                            src.ident)),
            Statement(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                src.ident, sql.Identifier(gone)),
                note="the detached source keeps its rows until they are verified"),
            *[Statement(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                c.ident, sql.Identifier(detached_name(c.oid))),
                note="its sub-partition, out of the way") for c in src.children],
            Statement(markers.register_relation_sql(
                role=markers.MOVE_SOURCE_ROLE, schema=src.schema, name=gone,
                parent_oid=parent.oid, source_oid=src.oid, source_name=src.name,
                bound=src.bound_text, plan_id=move.plan_id, relkinds="rp",
                replacement=replacement,
                state=VERIFIED), note="recorded in pgparts' registry as verified: its rows "
                                      "matched per bound before the swap, and the swap "
                                      "replayed every change since"),
        ]
        if move.fkeys:
            stmts.append(Statement(sql.SQL(
                "UPDATE {} SET note = {} WHERE role = {} AND objid = {}"
                "::pg_catalog.regclass::pg_catalog.oid").format(
                markers.REGISTRY, sql.Literal(json.dumps([fk.to_json() for fk in move.fkeys])),
                sql.Literal(markers.MOVE_SOURCE_ROLE),
                sql.Literal(sql.Identifier(src.schema, gone).as_string(conn))),
                note="the keys to validate after the swap"))
    stmts += index_renames(conn, move)
    for t in move.targets:
        if t.temp != t.name:
            stmts.append(Statement(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                move.temp_ident(t), sql.Identifier(t.name))))
        stmts += [Statement(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.Identifier(move.schema, sp.temp), sql.Identifier(sp.name)))
            for sp in t.subparts]
    # ranges first: attaching a DEFAULT scans it for rows of the other partitions' bounds,
    # and a DEFAULT attached earlier would be scanned by every later ATTACH
    for t in sorted(move.targets, key=lambda t: t.is_default):
        stmts.append(Statement(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            parent.ident, move.final_ident(t), t.bound),
            note=("the new DEFAULT: scanned for rows of other bounds (it holds only the rows "
                  "no new partition takes)") if t.is_default else
            "no scan: its validated CHECK implies the bound"))
    stmts += [Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
        move.final_ident(t), sql.Identifier(BOUND_CHECK)),
        note="the bound is the partition's own constraint now") for t in move.targets
        if t.check is not None]
    stmts += [Statement(fk.add_sql(parent.ident, i in held),
                        note=f"{fk.table_disp}: enforced for every new write from the commit on"
                        + ("; in place of its placeholder" if i in held else ""))
              for i, fk in enumerate(move.fkeys)]
    if helpers and move.default is not None:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} {}").format(
            move.default.ident, sql.SQL(", ").join(
                sql.SQL("DROP CONSTRAINT IF EXISTS {}").format(sql.Identifier(n))
                for n in helpers)), note="the exclusion CHECKs served their purpose"))
    locks = [Lock("ACCESS EXCLUSIVE", pdisp, "every reader and writer of the table, for the "
                  "swap's milliseconds"),
             *[Lock("ACCESS EXCLUSIVE", src.qualified, "nobody after the swap")
               for src in move.sources]]
    if move.default is not None:
        locks.append(Lock("ACCESS EXCLUSIVE", move.default.qualified, "DETACH and ATTACH take "
                          "it; no scan"))
    locks += [Lock("ACCESS EXCLUSIVE", disp, "its readers and writers, for the swap (DROP "
                   "CONSTRAINT)") for disp in dict.fromkeys(fk.table_disp for fk in move.fkeys)]
    return Step(
        title=f"Swap {sdisp} for {', '.join(t.name for t in move.targets)}",
        explanation=("One short transaction, sent to the server with its COMMIT as one "
                     "query (one round trip under the locks), retried as a whole: the last "
                     "replay (only the entries since the catch-up), the change log checked "
                     "empty, DETACH, ATTACH without scans, foreign keys re-created NOT VALID. "
                     "No row is copied or scanned under the parent's lock. It gives way to "
                     "writers: each lock wait ends at lock_timeout or a fifth of the server's "
                     "deadlock_timeout, whichever is shorter, and the attempt is rolled back "
                     "and retried, so a writer locking these tables in the other order waits "
                     "no longer than that and is never aborted."),
        statements=stmts, locks=locks, retry="give-way", one_query=True,
        statement_timeout_seconds=SWAP_STATEMENT_TIMEOUT, estimate=Estimate(0, 0, 0.05),
        done=lambda c: swapped(c, move), hold_from=len(refs) + 1)


def keys_by_table(conn: psycopg.Connection, fkeys: list[ForeignKey], biggest_first: bool
                  ) -> list[list[ForeignKey]]:
    """The referencing keys, those of one referencing table together: its VALIDATEs take SHARE
    UPDATE EXCLUSIVE on it, which conflicts with itself, so they go in one step and no two
    steps run at once on one table. `biggest_first`: the tables with the most pages to read
    (a VALIDATE reads the whole referencing table, once per key) first, so that the sessions
    taking the next step end close together."""
    by: dict[int, list[ForeignKey]] = {}
    for fk in fkeys:
        by.setdefault(fk.table_oid, []).append(fk)
    if not biggest_first or len(by) < 2:
        return list(by.values())
    size = dict(conn.execute(
        "SELECT oid, pg_catalog.pg_relation_size(oid) FROM pg_catalog.pg_class"
        " WHERE oid = ANY(%s)", (list(by),)).fetchall())
    return sorted(by.values(), key=lambda ks: -(size.get(ks[0].table_oid) or 0) * len(ks))


def keys_from_note(conn: psycopg.Connection, note: str | None) -> list[ForeignKey]:
    """The referencing keys a swap recorded in a registry entry's note (ForeignKey.to_json),
    enough to validate them: the tables that are gone are left out."""
    fkeys = []
    for table_oid, name in json.loads(note or "[]"):
        row = conn.execute("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
                           " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                           " WHERE c.oid = %s", (table_oid,)).fetchone()
        if row is not None:
            fkeys.append(ForeignKey(sql.Identifier(row[0], row[1]),
                                    display_name(row[0], row[1]), int(table_oid), name,
                                    [], [], False, "", "", False, False))
    return fkeys


def validate_key_steps(conn: psycopg.Connection, parent: PartNode, fkeys: list[ForeignKey],
                       after_swap: Callable[[psycopg.Connection], bool], parallel: bool = False,
                       group: str = "") -> list[Step]:
    """VALIDATE the referencing keys a swap re-created NOT VALID, a step per referencing table
    (`parallel`: those steps at once, the biggest table first); done once `after_swap` holds
    and the keys are validated. Shared by the moves and consolidation (`group`: its week)."""
    steps: list[Step] = []
    tables = keys_by_table(conn, fkeys, parallel)
    parallel = parallel and len(tables) > 1
    for keys in tables:
        # Before PostgreSQL 18, VALIDATE marks only the key itself: its entries for each
        # referenced partition (conparentid set) keep convalidated = false although every
        # row was checked (measured on 15; validating them by name checks every referencing
        # row against that one partition, and fails). Enforcement is the same either way.
        def validated(c: psycopg.Connection, keys: list[ForeignKey] = keys) -> bool:
            rows = c.execute("SELECT convalidated FROM pg_catalog.pg_constraint WHERE conrelid"
                             " = %s AND conname = ANY(%s) AND contype = 'f'",
                             (keys[0].table_oid, [fk.name for fk in keys])).fetchall()
            return after_swap(c) and all(r[0] for r in rows)

        table = keys[0].table_disp
        steps.append(Step(
            title=f"Validate {', '.join(fk.name for fk in keys)} on {table}",
            explanation="Check the referencing rows against the new partitions: SHARE UPDATE "
                        "EXCLUSIVE on the referencing table, ROW SHARE on the parent; writers "
                        "carry on." + (f" At once with the other referencing tables' "
                                       f"({SESSIONS} sessions)." if parallel else ""),
            statements=[Statement(fk.validate_sql(), "verify") for fk in keys],
            locks=[Lock("SHARE UPDATE EXCLUSIVE", table, "no writer"),
                   Lock("ROW SHARE", parent.qualified, "nobody")],
            estimate=Estimate(0, 0, 0.1), done=validated,
            parallel="referencing-keys" if parallel else "", group=group))
    return steps


def finish_steps(conn: psycopg.Connection, parent: PartNode, source_oids: int | list[int],
                 schema: str, detached: str | list[str], fkeys: list[ForeignKey],
                 parallel: bool = False) -> list[Step]:
    """8. and 9.: validate the re-created keys, a step per referencing table (`parallel`:
    those steps at once, the biggest table first); drop the detached sources once the
    registry shows them verified by this move (no row is read: the module docstring, 9.).
    Neither is done before the swap."""
    oids = [source_oids] if isinstance(source_oids, int) else list(source_oids)
    olds = [detached] if isinstance(detached, str) else list(detached)
    steps: list[Step] = []

    def after_swap(c: psycopg.Connection) -> bool:
        return all(_attached_to(c, o) != parent.oid for o in oids)

    steps += validate_key_steps(conn, parent, fkeys, after_swap, parallel)
    old_ids = [sql.Identifier(schema, d) for d in olds]
    old_disp = ", ".join(display_name(schema, d) for d in olds)
    refs = referenced_tables(conn, oids)  # the detached tables keep the sources' oids

    def registered(row: Any, _c: psycopg.Connection) -> str:
        if not row[0]:
            raise VerificationFailed(f"pgparts' registry does not record {old_disp} as a "
                                     f"detached move source verified by this move; it is kept")
        return (f"{old_disp} {'is' if len(olds) == 1 else 'are'} recorded as verified by this "
                f"move: equal per new bound before the swap, every change since replayed in it")

    def dropped(c: psycopg.Connection) -> bool:
        return after_swap(c) and all(_rel_oid(c, schema, d) is None for d in olds)

    def recorded(d: str, o: sql.Identifier) -> sql.Composed:
        return sql.SQL("EXISTS (SELECT FROM {} WHERE role = {} AND name = {}"
                       " AND schema_name = {} AND state = {}"
                       " AND objid = {}::pg_catalog.regclass)").format(
            markers.REGISTRY, sql.Literal(markers.MOVE_SOURCE_ROLE), sql.Literal(d),
            sql.Literal(schema), sql.Literal(VERIFIED), sql.Literal(o.as_string(conn)))

    proof = sql.SQL("SELECT {}").format(sql.SQL(" AND ").join(
        recorded(d, o) for d, o in zip(olds, old_ids, strict=True)))
    steps.append(Step(
        title=f"Drop {old_disp}, verified before the swap",
        explanation=(f"Only a detached source the registry records as verified by this move is "
                     f"dropped: the swap records that in its own transaction, after the "
                     f"verification (count and checksum per new bound, exact in its snapshot) "
                     f"and the last replay of every change since, with the log found empty. "
                     f"No row is compared again here: the new partitions are live, writes since "
                     f"the swap make them differ from {old_disp}, and no comparison now could "
                     f"tell a lost row from one changed since. Then DROP it and forget the move "
                     f"in pgparts' registry. Nobody uses {old_disp}, but dropping its foreign "
                     f"keys takes an instant of ACCESS EXCLUSIVE on the tables they reference: "
                     f"like the swap, the step gives way to their writers (each lock wait ends "
                     f"at lock_timeout or a fifth of deadlock_timeout, and it is retried)."),
        statements=[
            Statement(markers.guard_sql(conn, create=False),
                      note="pgparts' registry is trusted"),
            Statement(proof, "verify",
                      note="the registry records the detached table as verified by this move",
                      check=registered, script=raise_unless(
                          conn, proof,
                          f"the registry does not record {old_disp} as verified; it is kept")),
            *[Statement(sql.SQL("DROP TABLE {}").format(o),
                        note="only after the registry check above passed") for o in old_ids],
            Statement(forget_sql(oids), note="forget the move in pgparts' registry"),
        ],
        locks=[*[Lock("ACCESS EXCLUSIVE", display_name(schema, d), "nobody: detached")
                 for d in olds],
               *[Lock("ACCESS EXCLUSIVE", r, "its readers and writers, for an instant: the "
                      "detached table's foreign key to it goes with the table") for r in refs]],
        # DROP TABLE drops the detached table's own foreign keys (the parent's, kept by
        # DETACH), which takes ACCESS EXCLUSIVE on each table they reference: queued behind
        # a transaction that reads it, the DROP would hold up its every reader and writer
        # (bench/move.py measured 1 s, the deadlock detector ending a cycle with a writer
        # whose key checks lock those tables in another order), so it gives way as the swap
        retry="give-way", statement_timeout_seconds=SWAP_STATEMENT_TIMEOUT,
        estimate=Estimate(0, 0, 0.1), done=dropped, verify_note="rows of the source verified"))
    return steps


def referenced_tables(conn: psycopg.Connection, oids: list[int]) -> list[str]:
    """The tables the foreign keys of these tables (and of their sub-partitions) reference,
    but themselves."""
    return [display_name(r[0], r[1]) for r in conn.execute(
        "SELECT DISTINCT n.nspname, c.relname FROM pg_catalog.pg_constraint k"
        " JOIN pg_catalog.pg_class c ON c.oid = k.confrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE k.contype = 'f' AND k.conrelid IN (SELECT t.relid FROM"
        "  pg_catalog.unnest(%s::pg_catalog.oid[]) o, pg_catalog.pg_partition_tree(o) t)"
        " AND k.confrelid <> k.conrelid ORDER BY 1, 2", (oids,)).fetchall()]


def forget_sql(oids: list[int]) -> sql.Composed:
    """Forget a finished move in the registry: the entry of each source it dropped (`oids`),
    and the move's targets, recorded under the anchor's oid with every source's oid in their
    note. By any of `oids`, not the anchor's alone: a finish after the swap covers only the
    sources whose entries pass their catalog check, which may leave the anchor out."""
    listed = sql.SQL(", ").join(sql.Literal(o) for o in oids)
    return sql.SQL(
        "DELETE FROM {reg} WHERE (role = {src} AND source_oid IN ({oids}))"
        " OR (role = {tgt} AND (source_oid IN ({oids}) OR EXISTS (SELECT FROM"
        " pg_catalog.jsonb_array_elements_text(coalesce(note, '[]')::pg_catalog.jsonb) e"
        " WHERE e.value::pg_catalog.oid IN ({oids}))))").format(
        reg=markers.REGISTRY, src=sql.Literal(markers.MOVE_SOURCE_ROLE),
        tgt=sql.Literal(markers.MOVE_TARGET_ROLE), oids=listed)


@dataclass
class Unfinished:
    """A move whose swap committed but whose detached sources are still there."""

    source_oids: list[int]
    schema: str
    detached: list[str]
    source_names: list[str]
    targets: list[str]
    fkeys: list[ForeignKey]

    @property
    def source_oid(self) -> int:
        return self.source_oids[0]


def unfinished(conn: psycopg.Connection, parent: PartNode) -> Unfinished | None:
    """The first move of `parent` whose detached sources the registry records and the catalog
    confirms (same oid, name, owner, detached), with every other source of the same move (the
    same plan id); None when there is none."""
    reg = markers.read_registry(conn)
    if not reg.trusted:
        return None
    entries = reg.of(markers.MOVE_SOURCE_ROLE, parent.oid)
    facts = markers.relation_facts(conn, [e.objid for e in entries])

    def confirmed(e: markers.Entry) -> bool:
        f = facts.get(e.objid)
        return not markers.mismatch(e, f) and f is not None and f["attached_to"] is None

    for first in entries:
        if not confirmed(first):
            continue
        group = [e for e in entries if confirmed(e) and e.schema == first.schema and (
            e is first or (first.plan_id and e.plan_id == first.plan_id))]
        fkeys = keys_from_note(conn, first.note)
        return Unfinished([e.objid for e in group], first.schema, [e.name for e in group],
                          [e.source_name for e in group],
                          list(json.loads(first.replacement or "[]")), fkeys)
    return None


# -- plans -------------------------------------------------------------------------------------
def own_shape_notes(conn: psycopg.Connection, source: PartNode,
                    rebuilt: tuple[str, ...] = ()) -> list[str]:
    """What the source has of its own, beyond the parent's shape: its own triggers refuse the
    move (they would not follow the rows, and would not fire on the replay); its own indexes
    and CHECK constraints are not rebuilt on the new partitions, which the preview says."""
    trig = conn.execute(
        "SELECT tgname FROM pg_catalog.pg_trigger WHERE tgrelid = %s AND NOT tgisinternal"
        " AND tgparentid = 0 AND tgname NOT LIKE 'pgparts%%' ORDER BY 1 LIMIT 1",
        (source.oid,)).fetchone()
    if trig:
        raise cl.MoveError(f"{source.qualified} has a trigger of its own ({trig[0]}), not the "
                           f"parent's: the new partitions would not have it")
    out = []
    idx = [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c"
        " ON c.oid = i.indexrelid WHERE i.indrelid = %s AND NOT EXISTS (SELECT FROM"
        " pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid)"
        " AND NOT coalesce(i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL"
        "  AND ARRAY(SELECT a.attname::pg_catalog.text FROM pg_catalog.unnest(i.indkey::int2[])"
        "   WITH ORDINALITY k(n, o) JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid"
        "   AND a.attnum = k.n ORDER BY k.o) = %s::pg_catalog.text[], false) ORDER BY 1",
        (source.oid, list(rebuilt) or None)).fetchall()]
    if idx:
        out.append(f"{source.qualified}'s own indexes ({', '.join(idx)}), not the parent's, are "
                   f"not built on the new partitions")
    checks = [r[0] for r in conn.execute(
        "SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = %s AND contype = 'c'"
        " AND conislocal AND coninhcount = 0 ORDER BY 1", (source.oid,)).fetchall()]
    if checks:
        out.append(f"{source.qualified}'s own CHECK constraints ({', '.join(checks)}) are not "
                   f"copied to the new partitions")
    return out


def existing_names(conn: psycopg.Connection, schema: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s", (schema,)).fetchall()}


def bound_sql(bound: Bound) -> sql.Composable:
    """A parsed bound as FOR VALUES ... (its values as literals, never pasted text)."""
    def val(v: BoundValue) -> sql.Composable:
        return sql.SQL(v.special) if v.special else sql.Literal(v.text)

    def vals(vs: Sequence[BoundValue]) -> sql.Composable:
        return sql.SQL(", ").join(val(v) for v in vs)

    if bound.kind == "hash":
        return sql.SQL("FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
            sql.Literal(bound.modulus), sql.Literal(bound.remainder))
    if bound.kind == "list":
        return sql.SQL("FOR VALUES IN ({})").format(vals(bound.values))
    if bound.kind == "range":
        return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(vals(bound.lower),
                                                              vals(bound.upper))
    return sql.SQL("DEFAULT")


def sub_partitioning(node: PartNode) -> tuple[Any, ...] | None:
    """What two sources must share to be merged: their sub-partitions' strategy, key and
    bounds (None: not sub-partitioned)."""
    if not node.is_partitioned:
        return None
    return (node.strategy, node.key_columns, node.key_expressions,
            tuple(sorted(c.bound_text or "" for c in node.children)))


def add_subpartitions(conn: psycopg.Connection, move: Move) -> None:
    """Give every new partition the sub-partitioning of its model (`NewPartition.model`: a
    neighbour for a move out of the DEFAULT; else the first source): the same strategy and
    key, one sub-partition per sub-partition of the model with its bound, named after the new
    partition the way the model's are named after it (`wk_2026_11_29_h0` of `wk_2026_11_29`
    gives `wk_2026_11_29_b_h0` of `wk_2026_11_29_b`). A plain model gives a plain partition."""
    shapes = {sub_partitioning(s) for s in move.sources}
    if len(shapes) > 1:
        raise cl.MoveError(f"{move.sources_disp} are not sub-partitioned alike: the new "
                           f"partition could not take the shape of each")
    freed = {c.name for s in move.sources for c in s.children if c.schema == move.schema}
    taken = (existing_names(conn, move.schema) - freed) | {t.name for t in move.targets}
    for t in move.targets:
        model = t.shaped_like(move)
        t.partition_by, t.subparts = None, []
        if not model.is_partitioned:
            continue
        if t.is_default:
            raise cl.MoveError("a sub-partitioned DEFAULT is not supported")
        children = sorted(model.children, key=lambda c: (c.bound_text or ""))
        if model.key_expressions or not model.key_columns:
            raise cl.MoveError(f"{model.qualified} is sub-partitioned by an expression: not "
                               f"supported")
        if not children or any(c.is_partitioned or c.bound is None for c in children):
            raise cl.MoveError(f"{model.qualified} has no sub-partitions or more than one "
                               f"level of them: not supported")
        t.partition_by = sql.SQL("PARTITION BY {} ({})").format(
            sql.SQL({"hash": "HASH", "list": "LIST", "range": "RANGE"}[model.strategy or ""]),
            sql.SQL(", ").join(sql.Identifier(c) for c in model.key_columns))
        for k, c in enumerate(children):
            assert c.bound is not None
            suffix = c.name[len(model.name):] if c.name.startswith(model.name) \
                and len(c.name) > len(model.name) else f"_{k}"
            t.subparts.append(SubPartition(unique_name(t.name + suffix, taken),
                                           f"{t.temp}_p{k}", bound_sql(c.bound), c.oid))


def _shape_lines(move: Move) -> list[str]:
    """The preview's line per model: which new partitions are sub-partitioned like it."""
    by_model: dict[int, tuple[PartNode, list[str]]] = {}
    for t in move.targets:
        if t.subparts:
            model = t.shaped_like(move)
            by_model.setdefault(model.oid, (model, []))[1].extend(
                display_name(move.schema, sp.name) for sp in t.subparts)
    return [f"  each sub-partitioned like {model.qualified}: {', '.join(names)}"
            for model, names in by_model.values()]


def _own_key_fits(move: Move, own_key: Sequence[str]) -> None:
    """The sources' own unique index (the replay's key when the parent's key does not serve)
    is built on every new partition: on a sub-partitioned one it must hold the sub-partition
    key, or the index step would fail."""
    for t in move.targets:
        model = t.shaped_like(move)
        if t.subparts and not set(model.key_columns) <= set(own_key):
            raise cl.MoveError(
                f"{move.sources_disp}'s unique index on ({', '.join(own_key)}) orders the "
                f"replay and would be built on {t.name}, sub-partitioned like "
                f"{model.qualified} by ({', '.join(model.key_columns)}), which it does not "
                f"hold: not supported")


def move_plan(conn: psycopg.Connection, kind: str, title: str, parent: PartNode,
              source: PartNode | Sequence[PartNode], targets: list[NewPartition],
              default: PartNode | None, changes: list[str], notes: list[str]) -> Plan:
    """The plan of a move of one source partition, or of several (their rows together into
    `targets`); MoveError for what the user must fix first."""
    sources = [source] if isinstance(source, PartNode) else list(source)
    if not sources:
        raise cl.MoveError("a move needs at least one source partition")
    if len({s.oid for s in sources}) != len(sources):
        raise cl.MoveError("a partition is named twice")
    anchor = sources[0]
    if any(s.schema != anchor.schema for s in sources):
        raise cl.MoveError("the partitions moved together must be in one schema: "
                           + ", ".join(s.qualified for s in sources))
    prior = registered_targets(conn, [s.oid for s in sources])
    wanted = sorted((t.temp, t.name, t.bound_text) for t in targets)
    disp = ", ".join(s.qualified for s in sources)
    if prior and sorted(prior) != wanted:
        raise cl.MoveError(
            f"an unfinished move of {disp} into "
            f"{', '.join(f'{n} ({b})' for _, n, b in prior)} was started earlier: run it again "
            f"with the same values to finish it")
    caps = [cl.describe_source(conn, s.schema, s.name, LOG_SCHEMA) for s in sources]
    key = describe_key(conn, parent.oid)
    if any(c.key != caps[0].key for c in caps[1:]):
        raise cl.MoveError(f"{disp} have different unique keys "
                           f"({'; '.join(', '.join(c.key) for c in caps)}): the replay "
                           f"needs one key for every row moved")
    move = Move(kind, parent, sources, key, caps, targets, default,
                referencing_keys(conn, parent.oid), uuid.uuid4().hex)
    add_subpartitions(conn, move)
    owners.assign_move_owners(conn, move)
    changes = changes + _shape_lines(move) + owners.owner_lines(move)
    own_key = () if key.column in caps[0].key else caps[0].key
    if own_key:
        _own_key_fits(move, own_key)
    for s in sources:
        notes = notes + own_shape_notes(conn, s, own_key)
    if own_key:
        notes.append(f"the replay orders changes by the partitions' own unique index on "
                     f"({', '.join(own_key)}) and {key.column}; the new partitions get that "
                     f"unique index too")
    steps = move_steps(conn, move)
    facts = PlanFacts(changes=changes, destroys=[original(s.schema, s.name, detached_name(s.oid))
                                                 for s in sources],
                      notes=notes + [
                          "online: writers of the table and of the partitions being moved wait "
                          "only for instants of DDL and the swap, each under lock_timeout",
                          f"the detached original{'' if len(sources) == 1 else 's'} of {disp} "
                          f"{'is' if len(sources) == 1 else 'are'} dropped only after every "
                          f"one of {'its' if len(sources) == 1 else 'their'} rows is verified "
                          f"in the new partitions"])
    if move.fkeys:
        facts.notes.append(
            "foreign keys referencing the table (" + ", ".join(
                f"{fk.name} on {fk.table_disp}" for fk in move.fkeys)
            + ") are re-created NOT VALID in the swap and validated after it; no referencing "
              "row is deleted")
    details: dict[str, Any] = {"source": anchor.qualified}
    if len(sources) > 1:
        details["sources"] = [s.qualified for s in sources]
    details["targets"] = [{"name": t.name, "bound": t.bound_text} for t in targets]
    return Plan(kind=kind, title=title, target=parent.qualified, target_oid=parent.oid,
                steps=steps, summary=[], facts=facts, details=details,
                sessions=SESSIONS if any(st.parallel for st in steps) else 1)


def original(schema: str, name: str, detached: str) -> Destroyed:
    """What a move drops: not the partition named `name` (a new partition may take its name),
    but the source the swap detached and renamed `detached` (pgparts_moved_<oid>)."""
    return Destroyed("table", display_name(schema, detached), verified=True,
                     label=f"the detached original of {display_name(schema, name)}",
                     where="in the new partitions")


def finish_plan(conn: psycopg.Connection, kind: str, parent: PartNode, u: Unfinished) -> Plan:
    disp = ", ".join(display_name(u.schema, n) for n in u.source_names)
    olds = [display_name(u.schema, d) for d in u.detached]
    line = (f"finish the move of {disp} started earlier (swapped into "
            f"{', '.join(u.targets)}): validate the foreign keys, drop "
            f"{', '.join(olds)} (verified before the swap)")
    return Plan(kind=kind, title=f"finish moving {disp}", target=parent.qualified,
                target_oid=parent.oid,
                steps=finish_steps(conn, parent, u.source_oids, u.schema, u.detached, u.fkeys),
                summary=[line, "the values given now are not used: the earlier move comes first"],
                facts=PlanFacts(changes=[line], destroys=[
                    original(u.schema, n, d) for n, d in zip(u.source_names, u.detached,
                                                             strict=True)]))


def hold_line(result: Any, plan: Plan) -> list[str]:
    """The swap's hold of the parent's ACCESS EXCLUSIVE lock, as the runner timed it."""
    holds = [o.hold_seconds for o in result.steps if o.hold_seconds is not None]
    if not holds:
        return []
    return [f"  ACCESS EXCLUSIVE on {plan.target} held {max(holds) * 1000:.0f} ms (the swap)"]
