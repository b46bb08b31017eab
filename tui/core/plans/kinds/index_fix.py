"""The index_fix kind: the parent's indexes on every partition, without blocking writes
(findings index_missing and index_invalid).

- A partition that lacks an index attached to a parent index: `CREATE INDEX CONCURRENTLY` on the
  partition (for a primary key or unique constraint, then `ADD CONSTRAINT ... USING INDEX`),
  then `ALTER INDEX parent_index ATTACH PARTITION`. A sub-partitioned partition gets its index
  `ON ONLY` itself (instant), its partitions get theirs the same way, and it is attached last.
  The parent index becomes valid by itself once every partition has a valid one attached.
- An invalid index on a partition: `REINDEX INDEX CONCURRENTLY`, which keeps its name, its
  attachment and its constraint.

Every index build is announced in pgparts' registry before it starts (markers.py,
'index_build'), because a killed `CREATE INDEX CONCURRENTLY` leaves an invalid index behind and
only one pgparts provably started may be dropped: the build step drops an invalid index of the
announced name before building again, and a later run drops the `_ccnew`/`_ccold` indexes an
interrupted REINDEX left. CONCURRENTLY cannot run in a transaction block, so those steps are
autocommit statements; on a lock timeout such a step starts again from its first statement.
Every step's done() reads the catalog, so a re-run resumes.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ...catalog import Forest, IndexInfo, PartNode
from ...config import Config
from ...humanfmt import plural
from ...names import display_name
from ..engine.model import Estimate, Lock, Plan, PlanFacts, Statement, Step
from ..kind import Option, PlanKind, PlanKindError, Request, find_table
from ..steps import markers
from ..steps.shape import IndexShape, index_shapes

EST_BYTES_PER_SECOND = 60 * 1024**2
MAX_NAME_BYTES = 63
_LEFTOVER = re.compile(r"_cc(new|old)[0-9]*")


@dataclass(frozen=True)
class ParentIndex:
    """The index a partition's index is attached to: known by name (it may not exist yet when
    the plan is made, for an index created ON ONLY a sub-partitioned partition)."""

    schema: str
    name: str
    contype: str | None

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return display_name(self.schema, self.name)

    def oid_sql(self) -> sql.Composed:
        return sql.SQL(
            "(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {})").format(
            sql.Literal(self.schema), sql.Literal(self.name))


# -- catalog reads at run time (done checks) ------------------------------------------------
def _index_row(conn: psycopg.Connection, schema: str, name: str) -> tuple | None:
    """(valid, table oid, attached-to oid or None) of the index schema.name, or None."""
    return conn.execute(
        "SELECT x.indisvalid, x.indrelid,"
        " (SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()


def _attached(conn: psycopg.Connection, table_oid: int, parent: ParentIndex) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_index x"
        " JOIN pg_catalog.pg_inherits i ON i.inhrelid = x.indexrelid"
        " JOIN pg_catalog.pg_class p ON p.oid = i.inhparent"
        " JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace"
        " WHERE x.indrelid = %s AND n.nspname = %s AND p.relname = %s)",
        (table_oid, parent.schema, parent.name)).fetchone()
    return bool(row and row[0])


def _intent_recorded(conn: psycopg.Connection, key: int) -> bool:
    exists = conn.execute(sql.SQL("SELECT pg_catalog.to_regclass({}) IS NOT NULL").format(
        sql.Literal(markers.REGISTRY.as_string(conn)))).fetchone()
    if not (exists and exists[0]):
        return False
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE role = {} AND objid = {})")
                       .format(markers.REGISTRY, sql.Literal(markers.INDEX_BUILD_ROLE),
                               sql.Literal(key))).fetchone()
    return bool(row and row[0])


# -- planning -------------------------------------------------------------------------------
@dataclass
class _Names:
    """Relation names taken in the schemas concerned (read once), plus the plan's own."""

    taken: set[tuple[str, str]]

    def choose(self, schema: str, base: str) -> str:
        for n in range(1000):
            suffix = "" if n == 0 else f"_{n}"
            stem = base
            while len((stem + suffix).encode("utf-8")) > MAX_NAME_BYTES:
                stem = stem[:-1]
            name = stem + suffix
            if (schema, name) not in self.taken:
                self.taken.add((schema, name))
                return name
        raise PlanKindError(f"no free index name for {base!r} in schema {schema!r}")


@dataclass
class _Ctx:
    conn: psycopg.Connection
    plan_id: str
    names: _Names
    intents: dict[tuple[int, int], markers.Entry]  # (table oid, parent index oid) -> entry
    changes: list[str]
    index_oids: dict[tuple[int, str], int]  # (table oid, index name) -> oid, from the forest
    attached: dict[int, set[int]]  # index oid -> the tables with an index attached to it


def _estimate(node: PartNode) -> Estimate:
    nbytes = node.total_table_bytes or node.heap_bytes
    return Estimate(rows=node.rows, bytes=nbytes, seconds=nbytes / EST_BYTES_PER_SECOND)


def _missing_steps(cx: _Ctx, table: PartNode, parent: ParentIndex, parent_oid: int | None,
                   shape: IndexShape) -> list[Step]:
    """Steps giving `table` an index attached to `parent` (recursively for its partitions)."""
    entry = cx.intents.get((table.oid, parent_oid)) if parent_oid is not None else None
    if entry is not None:
        name, key = entry.name, entry.objid  # an earlier run announced it: build the same one
    else:
        name = cx.names.choose(table.schema, f"{table.name}_{parent.name}")
        key = secrets.randbelow(2**31 - 2) + 1
    ident = sql.Identifier(table.schema, name)
    display = display_name(table.schema, name)
    record = sql.SQL("{}; {}").format(
        markers.guard_sql(cx.conn, create=True),
        markers.register_index_build_sql(
            key=key, schema=table.schema, name=name, table_oid=table.oid,
            parent_index=parent.oid_sql(), state="create", plan_id=cx.plan_id))
    group = table.qualified
    attach = Step(
        title=f"Attach {display} to {parent.display}",
        explanation=f"ALTER INDEX {parent.display} ATTACH PARTITION {display}; the parent "
                    f"index becomes valid once every partition has one attached",
        statements=[
            Statement(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(parent.ident, ident),
                      note=f"attach {display}"),
            Statement(markers.forget_index_build_sql(key),
                      note="the build is finished: pgparts' registry forgets it")],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", parent.display, "other DDL on it waits"),
               Lock("ACCESS EXCLUSIVE", display, "only this new index"),
               Lock("ACCESS SHARE", table.qualified, "nothing but ACCESS EXCLUSIVE waits")],
        done=lambda c, t=table.oid, p=parent: _attached(c, t, p), group=group)
    if table.is_partitioned:
        cx.changes.append(f"create {display} ON ONLY {table.qualified}, give its partitions "
                          f"theirs, attach it to {parent.display}")
        create_only = (sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} {}").format(
            table.ident, sql.Identifier(name), _constraint_clause(shape))
            if shape.contype in ("p", "u") else
            shape.create_sql(table.ident, name=sql.Identifier(name), only=True))
        steps = [Step(
            title=f"Create {display} on {table.qualified} only",
            explanation=f"the index on the sub-partitioned {table.qualified} alone (no data: "
                        f"instant); its partitions get theirs next, and pgparts' registry "
                        f"records it so a re-run builds the same",
            statements=[Statement(record, note="record the build in pgparts' registry"),
                        Statement(create_only, note=f"create {display}")],
            locks=[Lock("SHARE", table.qualified, "writers to it wait for the instant it takes")],
            done=lambda c, s=table.schema, n=name, t=table.oid, p=parent: (
                _index_row(c, s, n) is not None or _attached(c, t, p)),
            group=group)]
        here = ParentIndex(table.schema, name, shape.contype)
        here_oid = cx.index_oids.get((table.oid, name))  # made by an interrupted earlier run
        done = cx.attached.get(here_oid, set()) if here_oid is not None else set()
        for child in table.children:
            # foreign tables hold no indexes; a partition an earlier run finished has its own
            if child.relkind != "f" and child.oid not in done:
                steps += _missing_steps(cx, child, here, here_oid, shape)
        return steps + [attach]
    cx.changes.append(f"create {display} on {table.qualified} (CONCURRENTLY), attach it to "
                      f"{parent.display}")
    steps = [
        Step(title=f"Record the build of {display}",
             explanation="pgparts' registry records the index before it is built, so that an "
                         "interrupted build's invalid index is provably pgparts' own",
             statements=[Statement(record, note="record the build in pgparts' registry")],
             done=lambda c, k=key, t=table.oid, p=parent: (
                 _intent_recorded(c, k) or _attached(c, t, p)),
             group=group),
        Step(title=f"Build {display} on {table.qualified}",
             explanation=f"CREATE INDEX CONCURRENTLY: reads and writes to {table.qualified} go "
                         f"on; it waits for transactions older than it. An invalid {display} "
                         f"left by an interrupted build of this plan is dropped first",
             statements=[
                 Statement(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(ident),
                           note=f"drop what an interrupted build of {display} left"),
                 Statement(shape.create_sql(table.ident, name=sql.Identifier(name),
                                            concurrently=True),
                           kind="maintenance", note=f"build {display}")],
             locks=[Lock("SHARE UPDATE EXCLUSIVE", table.qualified,
                         "other DDL and maintenance on it wait; reads and writes go on")],
             transactional=False, retry="step", estimate=_estimate(table),
             done=lambda c, s=table.schema, n=name, t=table.oid, p=parent: (
                 _valid(c, s, n) or _attached(c, t, p)),
             group=group)]
    if shape.contype in ("p", "u"):
        steps.append(Step(
            title=f"Make {display} the {_contype_word(shape)} of {table.qualified}",
            explanation="ALTER TABLE ... ADD CONSTRAINT ... USING INDEX: the parent's index "
                        "belongs to a constraint, so the partition's must too",
            statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}")
                                  .format(table.ident, sql.Identifier(name),
                                          sql.SQL("PRIMARY KEY" if shape.contype == "p"
                                                  else "UNIQUE"), sql.Identifier(name)),
                                  note=f"constraint {name}")],
            locks=[Lock("ACCESS EXCLUSIVE", table.qualified,
                        "its readers and writers wait for the instant it takes")],
            done=lambda c, t=table.oid, n=name, p=parent: (
                _constraint(c, t, n) or _attached(c, t, p)),
            group=group))
    return steps + [attach]


def _constraint_clause(shape: IndexShape) -> sql.Composed:
    inc = sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(shape.include)) \
        if shape.include else sql.SQL("")
    kind = sql.SQL("PRIMARY KEY" if shape.contype == "p" else
                   ("UNIQUE NULLS NOT DISTINCT" if shape.nulls_not_distinct else "UNIQUE"))
    return sql.SQL("{} ({}){}").format(
        kind, sql.SQL(", ").join(sql.Identifier(c) for c in shape.plain_cols), inc)


def _contype_word(shape: IndexShape) -> str:
    return "primary key" if shape.contype == "p" else "unique constraint"


def _valid(conn: psycopg.Connection, schema: str, name: str) -> bool:
    row = _index_row(conn, schema, name)
    return bool(row and row[0])


def _constraint(conn: psycopg.Connection, table_oid: int, name: str) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint"
                       " WHERE conrelid = %s AND conname = %s)", (table_oid, name)).fetchone()
    return bool(row and row[0])


def _reindex_steps(cx: _Ctx, table: PartNode, info: IndexInfo,
                   entry: markers.Entry | None) -> list[Step]:
    key = entry.objid if entry is not None else secrets.randbelow(2**31 - 2) + 1
    ident = sql.Identifier(table.schema, info.name)
    display = display_name(table.schema, info.name)
    cx.changes.append(f"rebuild the invalid index {display} on {table.qualified} "
                      f"(REINDEX CONCURRENTLY)")
    record = sql.SQL("{}; {}").format(
        markers.guard_sql(cx.conn, create=True),
        markers.register_index_build_sql(
            key=key, schema=table.schema, name=info.name, table_oid=table.oid,
            parent_index=sql.Literal(0), state="reindex", plan_id=cx.plan_id))
    return [
        Step(title=f"Record the rebuild of {display}",
             explanation="pgparts' registry records the rebuild before it starts, so that the "
                         "_ccnew index an interrupted REINDEX leaves is provably pgparts' own",
             statements=[Statement(record, note="record the rebuild in pgparts' registry")],
             done=lambda c, k=key, s=table.schema, n=info.name: (
                 _intent_recorded(c, k) or _valid(c, s, n)),
             group=table.qualified),
        Step(title=f"Rebuild {display}",
             explanation=f"REINDEX INDEX CONCURRENTLY: builds a new copy beside it and swaps "
                         f"them; reads and writes to {table.qualified} go on, its name, "
                         f"attachment and constraint stay",
             statements=[Statement(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(ident),
                                   kind="maintenance", note=f"rebuild {display}")],
             locks=[Lock("SHARE UPDATE EXCLUSIVE", table.qualified,
                         "other DDL and maintenance on it wait; reads and writes go on")],
             transactional=False, estimate=_estimate(table),
             done=lambda c, s=table.schema, n=info.name: _valid(c, s, n),
             group=table.qualified),
        _forget_step(cx, table, info.name, key),
    ]


def _forget_step(cx: _Ctx, table: PartNode, name: str, key: int) -> Step:
    """Forget a build once nothing it may have left is there (else a later run drops that)."""
    leftovers = sql.SQL(
        "EXISTS (SELECT FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c"
        " ON c.oid = x.indexrelid WHERE x.indrelid = {t} AND NOT x.indisvalid"
        " AND pg_catalog.left(c.relname, {len}) = {name}"
        " AND pg_catalog.substr(c.relname, {len} + 1) ~ '^_cc(new|old)[0-9]*$')").format(
        t=sql.Literal(table.oid), len=sql.Literal(len(name)), name=sql.Literal(name))
    forget = sql.SQL("{} AND NOT {}").format(markers.forget_index_build_sql(key), leftovers)
    return Step(
        title=f"Forget the rebuild of {display_name(table.schema, name)}",
        explanation="pgparts' registry forgets the rebuild, unless an interrupted attempt left "
                    "an index behind (the next run drops it)",
        statements=[Statement(forget, note="forget the rebuild")],
        done=lambda c, k=key: not _intent_recorded(c, k), group=table.qualified)


def _leftovers(conn: psycopg.Connection, entry: markers.Entry) -> list[str]:
    """Invalid, unattached indexes an interrupted build announced by `entry` left."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c"
        " ON c.oid = x.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE x.indrelid = %s AND n.nspname = %s AND NOT x.indisvalid"
        " AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)",
        (entry.parent_oid, entry.schema)).fetchall()
    out = []
    for (name,) in rows:
        ours = name == entry.name if entry.state == "create" else (
            name.startswith(entry.name) and _LEFTOVER.fullmatch(name[len(entry.name):]))
        if ours:
            out.append(name)
    return out


def _drop_leftover_steps(cx: _Ctx, table: PartNode, entry: markers.Entry,
                         names: list[str]) -> list[Step]:
    steps = []
    for name in names:
        display = display_name(table.schema, name)
        cx.changes.append(f"drop {display}, left invalid by an interrupted build of pgparts")
        steps.append(Step(
            title=f"Drop {display}",
            explanation=f"an interrupted index build of an earlier run left {display} invalid "
                        f"(pgparts' registry announced the build); DROP INDEX CONCURRENTLY",
            statements=[Statement(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(table.schema, name)), note=f"drop {display}")],
            locks=[Lock("SHARE UPDATE EXCLUSIVE", table.qualified,
                        "other DDL and maintenance on it wait; reads and writes go on")],
            transactional=False,
            done=lambda c, s=table.schema, n=name: _index_row(c, s, n) is None,
            group=table.qualified))
    steps.append(_forget_step(cx, table, entry.name, entry.objid))
    return steps


@dataclass
class IndexWork:
    """What index_fix would do under a table (its status)."""

    missing: list[tuple[PartNode, PartNode, IndexInfo]]  # (table, its parent, parent index)
    invalid: list[tuple[PartNode, IndexInfo]]
    untouched: list[str]  # what it leaves alone, and why


def _attached_map(forest: Forest) -> dict[int, set[int]]:
    attached: dict[int, set[int]] = {}
    for info in forest.indexes.values():
        if info.parent_index:
            attached.setdefault(info.parent_index, set()).add(info.table_oid)
    return attached


def index_work(forest: Forest, root: PartNode) -> IndexWork:
    attached = _attached_map(forest)
    missing: list[tuple[PartNode, PartNode, IndexInfo]] = []
    invalid: list[tuple[PartNode, IndexInfo]] = []
    untouched: list[str] = []
    for node in root.walk():
        if node.is_partitioned:
            for info in node.indexes:
                if info.relkind != "I":
                    continue
                for child in node.children:
                    if child.relkind != "f" and child.oid not in attached.get(info.oid, set()):
                        missing.append((child, node, info))
        else:
            invalid += [(node, i) for i in node.indexes if not i.valid]
    return IndexWork(missing, invalid, untouched)


class IndexFix(PlanKind):
    name = "index_fix"
    title = "Build missing and invalid partition indexes"
    summary = "create missing partition indexes (CONCURRENTLY, then attach) and rebuild " \
              "invalid ones"
    noun = "index_fix"
    fixes = ("index_missing", "index_invalid")
    options = (
        Option("only", "choice", choices=("missing", "invalid"), key="i",
               help="only the missing indexes, or only the invalid ones (default: both)"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        if not node.is_partitioned:
            return False
        work = index_work(forest, node)
        return bool(work.missing or work.invalid)

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        root = find_table(forest, request.target)
        work = index_work(forest, root)
        only = request.get("only")
        if only == "invalid":
            work.missing = []
        elif only == "missing":
            work.invalid = []
        registry = markers.read_registry(conn)
        if registry.problem and (work.missing or work.invalid):
            raise PlanKindError(f"pgparts' registry (schema pgparts) is not used: "
                                f"{registry.problem}; index_fix records its builds there first")
        entries = registry.of(markers.INDEX_BUILD_ROLE)
        subtree = {n.oid: n for n in root.walk()}
        entries = [e for e in entries if e.parent_oid in subtree]
        schemas = sorted({n.schema for n in subtree.values()})
        taken = {(r[0], r[1]) for r in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(%s)", (schemas,)).fetchall()}
        cx = _Ctx(conn, uuid.uuid4().hex, _Names(taken),
                  {(e.parent_oid, e.source_oid): e for e in entries if e.state == "create"},
                  [], {(i.table_oid, i.name): i.oid for i in forest.indexes.values()},
                  _attached_map(forest))
        steps: list[Step] = []
        building = {(e.parent_oid, e.name) for e in entries if e.state == "create"}
        pending = {(t.oid, i.oid) for t, _p, i in work.missing}
        left: set[tuple[int, str]] = set()
        for e in entries:
            # builds announced by an earlier run that are no longer to do: drop what they left
            names = _leftovers(conn, e)
            left |= {(e.parent_oid, n) for n in names}
            if e.state == "create" and (e.parent_oid, e.source_oid) in pending:
                continue  # the build step drops its own leftover and builds again
            if e.state == "reindex" and any(t.oid == e.parent_oid and i.name == e.name
                                            for t, i in work.invalid):
                continue  # rebuilt below, leftovers dropped by the next run
            steps += _drop_leftover_steps(cx, subtree[e.parent_oid], e, names)
        # a sub-partitioned partition whose index an interrupted run made ON ONLY it: its
        # partitions are handled under it (below), not as pairs of their own
        under = {(t.oid, cx.intents[(t.oid, i.oid)].name) for t, _p, i in work.missing
                 if t.is_partitioned and (t.oid, i.oid) in cx.intents}
        shapes: dict[int, IndexShape] = {}
        for table, parent, info in work.missing:
            if (parent.oid, info.name) in under:
                continue
            if info.oid not in shapes:
                shapes[info.oid] = index_shapes(conn, parent.oid, [info.oid])[0]
            shape = shapes[info.oid]
            if shape.contype == "x":
                work.untouched.append(f"{display_name(parent.schema, info.name)} backs an "
                                      f"exclusion constraint: index_fix does not build those")
                continue
            steps += _missing_steps(cx, table, ParentIndex(parent.schema, info.name,
                                                           shape.contype), info.oid, shape)
        reindex = {(e.parent_oid, e.name): e for e in entries if e.state == "reindex"}
        for table, info in work.invalid:
            if (table.oid, info.name) in building or (table.oid, info.name) in left:
                continue  # an interrupted build of pgparts: dropped and built again above
            steps += _reindex_steps(cx, table, info, reindex.get((table.oid, info.name)))
        summary = ([f"{len(cx.changes)} index change(s) under {root.qualified}"] if steps
                   else [f"no missing or invalid partition index under {root.qualified}"])
        summary += work.untouched
        return Plan(kind=self.name,
                    title=f"fix {plural(len(cx.changes), 'index', 'indexes')} under "
                          f"{root.qualified}",
                    target=root.qualified, target_oid=root.oid, steps=steps, summary=summary,
                    facts=PlanFacts(changes=list(cx.changes)),
                    details={"plan_id": cx.plan_id},
                    lock_timeout_seconds=config.plans.lock_timeout_seconds)
