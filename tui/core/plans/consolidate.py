"""Consolidation: replace an old, sub-partitioned range partition by one plain partition.

Scenario 1: `account_balances` has one RANGE partition per week, each HASH (or LIST)
sub-partitioned. Old weeks are read-mostly, and four leaves with five indexes each cost space,
planning time and lock slots. Consolidating a week builds `<week>_consolidated` beside the live
week and swaps the two in a transaction that holds the parent's ACCESS EXCLUSIVE lock for
milliseconds.

Per week, the steps are:

1. Build (one transaction). `LOCK week IN SHARE ROW EXCLUSIVE MODE` waits for in-flight writers of
   that week only, and blocks new writes to that week (never to the parent or other weeks) until
   the copy commits; reads continue. Create the table (the parent's columns, defaults, CHECKs),
   a validated CHECK matching the week's bound (so ATTACH needs no scan), copy the rows leaf by
   leaf, compare the row count and an order-independent checksum of the week and of the copy in
   the same transaction (the week cannot change under the lock: an exact comparison), build the
   indexes the parent defines after the copy (faster than maintaining them row by row, and
   ATTACH adopts them), add the parent's foreign keys (validated here, not under the parent's
   lock), install the mirror trigger and the change counter (below), and mark the
   table with a comment holding a digest of both tables' catalog state. All of it commits
   together or not at all, so a killed copy never leaves a half-filled table.
2. Analyze the new table.
3. Verify: if nothing changed either table since the build verified them (counter and digest),
   that is the proof; otherwise, in one REPEATABLE READ snapshot, row count and checksum of every
   row of the week and of the new table must be equal.
4. Swap (one short transaction, retried as a whole on lock timeout): DETACH the week, ATTACH the
   new table (no scan: the CHECK implies the bound), drop the helper CHECK and the mirror
   trigger, mark the old week as the detached original.
5. Drop the detached original after checking that every one of its rows is in the new partition:
   nothing changed either table since the build (counter and digest), or else equal checksums
   or a multiset difference (skipped with keep_detached, where the swap removes the counter and
   the later drop compares in full).
6. Remove the change counter: its trigger on the new partition, function and sequence, in a
   transaction of its own (dropping a trigger takes ACCESS EXCLUSIVE on the live partition, which
   must not wait for the drop's COMMIT to unlink the original's files).

The change counter: a sequence bumped by BEFORE ROW triggers on the week (cloned to its
partitions) and on the new table, ENABLE ALWAYS so that session_replication_role = replica
(logical replication) does not skip them, SECURITY DEFINER so writers need no privilege on the
sequence. nextval is never rolled back, so an aborted write still counts (a needless but safe
full comparison). It only proves anything together with the digest, which catches what skips
row triggers: TRUNCATE and table rewrites (relfilenode), partitions attached to or detached from
the week, column changes, and triggers disabled even for a moment (the trigger's catalog row
gets a new xmin). A write in flight when the counter is read has either bumped it already or is
uncommitted, which a snapshot comparison would not see either. Its trigger stays on the new,
live partition from the swap to the drop, because writes to it after the swap must stay visible
to the drop's check (a row deleted from the live week since the swap keeps the original).

Why a mirror trigger instead of holding the week's lock until the swap: a writer blocked on the
week holds ROW EXCLUSIVE on the parent while it waits, so the swap's DETACH (ACCESS EXCLUSIVE on
the parent) would deadlock with it. Instead the copy commits, and from that commit on the
trigger applies every insert, update and delete of the week to the new table in the writer's own
transaction; the two stay equal at every snapshot until the DETACH stops writes to the week.
Verification therefore runs before the swap, not under the parent's lock, where scanning two
copies of a week would hold the lock for seconds. Writes to the week between copy and swap are
never lost. (TRUNCATE of a week leaf is not mirrored; the verification would catch it.)

Resuming: each step's done() reads the catalog (tables, attachment, the pgparts comments), so a
re-run after a killed connection skips what committed and finishes the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..bounds import BoundValue
from ..catalog import Forest, PartNode, load_forest
from ..config import PlansConfig
from ..names import check_identifier_length, display_name
from .model import Estimate, Lock, Plan, Statement, Step, VerificationFailed

SUFFIX = "_consolidated"
MARKER = "pgparts:"
TRIGGER_NAME = "pgparts_mirror"
COUNT_TRIGGER = "pgparts_changes"
CHECK_NAME = "pgparts_bound_check"

HASH_PARTITIONED = "HASH_PARTITIONED"
LIST_PARTITIONED = "LIST_PARTITIONED"
CONSOLIDATED = "CONSOLIDATED"
OTHER = "OTHER"

# Rough throughput for time estimates (measured by bench/consolidate.py on a 2-core machine:
# copy + index builds + analyze + verification of the account_balances shape).
EST_BYTES_PER_SECOND = 60 * 1024**2
# A b-tree built by sorting is packed to its fillfactor (90%); one grown by random inserts
# settles near 70% full (Yao's 69% for random splits). Rebuilt indexes shrink by about that.
REBUILT_INDEX_RATIO = 0.70 / 0.90
# Every leaf has free-space and visibility maps (3 + 1 pages at least once vacuumed) and a
# meta page plus a root page per b-tree: what disappears with each leaf beyond the first.
PER_LEAF_OVERHEAD_PAGES = 4
PER_INDEX_OVERHEAD_PAGES = 2


class ConsolidationError(ValueError):
    """The request cannot be planned (unknown table, wrong shape, name too long...)."""


# -- status ----------------------------------------------------------------------------------
@dataclass
class WeekStatus:
    node: PartNode
    status: str
    subpartitions: int
    rows: int
    bytes: int
    lower: datetime | None
    upper: datetime | None
    pending: str = ""  # "copy built, swap pending" when a run stopped between build and swap

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def bound(self) -> str:
        return self.node.bound.short() if self.node.bound else (self.node.bound_text or "")

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.node.qualified,
            "status": self.status,
            "subpartitions": self.subpartitions,
            "rows": self.rows,
            "bytes": self.bytes,
            "bound": self.node.bound_text,
            "lower": self.lower.isoformat() if self.lower else None,
            "upper": self.upper.isoformat() if self.upper else None,
            "pending": self.pending,
        }


@dataclass
class DetachedOriginal:
    """A week detached by a swap and kept (keep_detached, or a run that stopped before the drop)."""

    oid: int
    schema: str
    name: str
    replacement: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"table": display_name(self.schema, self.name), "replaced_by": self.replacement,
                "bytes": self.bytes}


@dataclass
class ConsolidationStatus:
    parent: PartNode
    weeks: list[WeekStatus]
    detached: list[DetachedOriginal] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "parent": self.parent.qualified,
            "partitions": [w.to_json() for w in self.weeks],
            "detached_originals": [d.to_json() for d in self.detached],
        }


def _find_parent(forest: Forest, table: str) -> PartNode:
    try:
        node = forest.find(table)
    except (LookupError, ValueError) as exc:
        raise ConsolidationError(str(exc)) from None
    if not node.is_partitioned:
        raise ConsolidationError(f"{node.qualified} is not a partitioned table")
    if node.strategy != "range":
        raise ConsolidationError(
            f"{node.qualified} is partitioned by {node.strategy}; consolidation works on a "
            f"RANGE-partitioned table whose partitions are sub-partitioned"
        )
    if len(node.key_columns) != 1 or node.key_expressions:
        raise ConsolidationError(
            f"{node.qualified} has key {node.key}; consolidation needs a single-column range key"
        )
    return node


def _classify(node: PartNode) -> str:
    if node.is_partitioned:
        return {"hash": HASH_PARTITIONED, "list": LIST_PARTITIONED}.get(node.strategy or "",
                                                                         OTHER)
    if node.relkind == "r" and not node.is_default:
        return CONSOLIDATED
    return OTHER


def _week_order(w: WeekStatus) -> tuple:
    """Oldest first: MINVALUE lower bounds first, then by lower bound, the DEFAULT last."""
    if w.node.is_default:
        return (2, 0.0, w.name)
    if w.lower is None:
        return (0, 0.0, w.name)
    return (1, w.lower.timestamp(), w.name)


def _markers(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every table carrying a pgparts comment, with its attachment."""
    rows = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, c.relkind, d.description,"
        " (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1)"
        " FROM pg_description d"
        " JOIN pg_class c ON c.oid = d.objoid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0"
        " AND d.description LIKE 'pgparts:%'"
    ).fetchall()
    out = []
    for oid, schema, name, relkind, text, parent in rows:
        try:
            data = json.loads(text[len(MARKER):])
        except ValueError:
            continue
        if isinstance(data, dict):
            out.append({**data, "oid": oid, "schema": schema, "name": name,
                        "relkind": relkind, "attached_to": parent})
    return out


def _exact_bytes(conn: psycopg.Connection, oids: Iterable[int]) -> dict[int, int]:
    """pg_total_relation_size per relation (sums leaves for a partitioned one), under the
    connection's lock_timeout."""
    ids = list(oids)
    if not ids:
        return {}
    rows = conn.execute(
        "WITH RECURSIVE t(root, relid) AS ("
        "  SELECT x, x FROM unnest(%s::oid[]) x"
        "  UNION ALL SELECT t.root, i.inhrelid FROM t JOIN pg_inherits i ON i.inhparent = t.relid)"
        " SELECT root, sum(pg_total_relation_size(relid))::bigint FROM t GROUP BY root",
        (ids,),
    ).fetchall()
    return {r[0]: int(r[1] or 0) for r in rows}


def consolidation_status(conn: psycopg.Connection, table: str,
                         forest: Forest | None = None) -> ConsolidationStatus:
    forest = forest or load_forest(conn)
    parent = _find_parent(forest, table)
    markers = _markers(conn)
    built = {m["source_oid"] for m in markers
             if m.get("role") == "consolidated" and m.get("parent_oid") == parent.oid
             and m["attached_to"] is None}
    weeks: list[WeekStatus] = []
    for child in parent.children:
        status = _classify(child)
        lower = upper = None
        if child.bound is not None and child.bound.kind == "range":
            lower = child.bound.lower[0].as_datetime() if child.bound.lower else None
            upper = child.bound.upper[0].as_datetime() if child.bound.upper else None
        weeks.append(WeekStatus(
            node=child, status=status,
            subpartitions=sum(1 for _ in child.leaves()) if child.is_partitioned else 0,
            rows=child.rows, bytes=child.total_bytes, lower=lower, upper=upper,
            pending="copy built, swap pending" if child.oid in built else "",
        ))
    weeks.sort(key=_week_order)
    originals = [m for m in markers if m.get("role") == "original"
                 and m.get("parent_oid") == parent.oid and m["attached_to"] is None]
    sizes = _exact_bytes(conn, [m["oid"] for m in originals])
    detached = [DetachedOriginal(m["oid"], m["schema"], m["name"],
                                 str(m.get("replacement", "")), sizes.get(m["oid"], 0))
                for m in originals]
    return ConsolidationStatus(parent, weeks, detached)


# -- selection -------------------------------------------------------------------------------
def select_weeks(status: ConsolidationStatus, *, now: datetime,
                 older_than: timedelta | None = None, batch: int = 5,
                 names: list[str] | None = None) -> list[WeekStatus]:
    """What to consolidate: explicit names, else sub-partitioned weeks whose upper bound is older
    than `older_than`, oldest first, `batch` of them. Weeks a stopped run left half way (copy
    built, swap pending) always come first, so a re-run finishes them."""
    candidates = [w for w in status.weeks if w.status in (HASH_PARTITIONED, LIST_PARTITIONED)]
    if names:
        chosen: list[WeekStatus] = []
        for name in names:
            hits = [w for w in status.weeks
                    if name in (w.name, w.node.qualified, display_name(w.node.schema, w.name))]
            if not hits:
                raise ConsolidationError(
                    f"{status.parent.qualified} has no partition named {name!r}")
            week = hits[0]
            if week not in candidates:
                raise ConsolidationError(
                    f"{week.node.qualified} is {week.status}; only HASH_PARTITIONED or "
                    f"LIST_PARTITIONED partitions can be consolidated")
            if week not in chosen:
                chosen.append(week)
        return sorted(chosen, key=lambda w: (w.lower is None, w.lower or now))
    pending = [w for w in candidates if w.pending]
    if older_than is None:
        older_than = PlansConfig().older_than
    cutoff = now - older_than
    old = [w for w in candidates if not w.pending and w.upper is not None and w.upper <= cutoff]
    old.sort(key=lambda w: w.upper or now)
    return pending + old[:max(batch - len(pending), 0)]


# -- plan building ---------------------------------------------------------------------------
@dataclass
class _IndexDef:
    name: str
    statement: sql.Composable
    is_constraint: bool


@dataclass
class _ParentShape:
    columns: list[str]  # every column, in order
    insertable: list[str]  # without generated columns
    pk: list[str]
    indexes: list[_IndexDef]
    foreign_keys: list[tuple[str, str]]  # (name, definition as deparsed by the server)
    referencing: list[str]  # display names of tables whose FKs reference the parent


_TABLE_PRIVILEGES = frozenset(
    ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"))


def _grant_statements(conn: psycopg.Connection, oids: list[int], new: sql.Identifier
                      ) -> list[Statement]:
    """GRANTs giving the new table the privileges granted on the parent or on the week.

    The mirror trigger writes to the new table with the writer's own privileges, and after the
    swap it is the week's partition: whoever may write the week (through the parent or directly)
    must be able to write its copy, or their writes would fail until the swap.
    """
    rows = conn.execute(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN NULL"
        " ELSE pg_get_userbyid(a.grantee)::text END AS grantee, a.privilege_type"
        " FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = ANY(%s)"
        " ORDER BY 1 NULLS FIRST, 2", (oids,)).fetchall()
    by_role: dict[str | None, list[str]] = {}
    for grantee, privilege in rows:
        if privilege in _TABLE_PRIVILEGES:  # only known keywords become SQL
            by_role.setdefault(grantee, []).append(privilege)
    return [
        Statement(sql.SQL("GRANT {privs} ON TABLE {new} TO {role}").format(
            privs=sql.SQL(", ").join(sql.SQL(p) for p in privs), new=new,
            role=sql.SQL("PUBLIC") if role is None else sql.Identifier(role)),
            note="the privileges granted on the parent and the week")
        for role, privs in by_role.items()
    ]


def _parent_shape(conn: psycopg.Connection, parent: PartNode, new_ident: sql.Identifier
                  ) -> _ParentShape:
    version = int(conn.info.server_version)
    cur = conn.cursor(row_factory=dict_row)
    cols = cur.execute(
        "SELECT attnum, attname, attgenerated <> '' AS generated, attcollation"
        " FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (parent.oid,)).fetchall()
    by_num = {c["attnum"]: c for c in cols}
    nnd = sql.SQL("x.indnullsnotdistinct" if version >= 150000 else "false")
    idx_rows = cur.execute(sql.SQL(
        "SELECT x.indexrelid, ic.relname, am.amname, x.indisunique, x.indnkeyatts, x.indnatts,"
        " x.indkey::int2[] AS keys, x.indclass::oid[] AS classes,"
        " x.indcollation::oid[] AS colls, x.indoption::int2[] AS opts,"
        " pg_get_expr(x.indpred, x.indrelid) AS pred, con.contype, {nnd} AS nnd,"
        " ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, false)"
        "       FROM generate_series(1, x.indnatts) k ORDER BY k) AS coldefs"
        " FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid"
        " JOIN pg_am am ON am.oid = ic.relam"
        " LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid"
        "   AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x')"
        " WHERE x.indrelid = %s ORDER BY x.indexrelid").format(nnd=nnd), (parent.oid,)).fetchall()
    opclasses = {r["oid"]: r for r in cur.execute(
        "SELECT o.oid, n.nspname, o.opcname, o.opcdefault FROM pg_opclass o"
        " JOIN pg_namespace n ON n.oid = o.opcnamespace"
        " WHERE o.oid = ANY(%s)",
        ([c for r in idx_rows for c in r["classes"]],)).fetchall()}
    collations = {r["oid"]: r for r in cur.execute(
        "SELECT c.oid, n.nspname, c.collname FROM pg_collation c"
        " JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = ANY(%s)",
        ([c for r in idx_rows for c in r["colls"] if c],)).fetchall()}
    pk: list[str] = []
    indexes: list[_IndexDef] = []
    for r in idx_rows:
        if r["contype"] == "x":
            raise ConsolidationError(
                f"{parent.qualified} has an exclusion constraint ({r['relname']}); "
                f"consolidation does not handle those yet")
        key_parts: list[sql.Composable] = []
        include: list[sql.Composable] = []
        plain_cols: list[str] = []
        for k in range(r["indnatts"]):
            attnum = r["keys"][k]
            if k >= r["indnkeyatts"]:
                include.append(sql.Identifier(by_num[attnum]["attname"]))
                continue
            if attnum:
                col = by_num[attnum]
                plain_cols.append(col["attname"])
                part: sql.Composable = sql.Identifier(col["attname"])
            else:
                # an expression, as PostgreSQL's own deparser prints it
                part = sql.SQL("({})").format(sql.SQL(r["coldefs"][k]))
            extras: list[sql.Composable] = [part]
            coll = r["colls"][k]
            if coll and (not attnum or coll != by_num[attnum]["attcollation"]):
                c = collations[coll]
                extras.append(sql.SQL("COLLATE {}").format(sql.Identifier(c["nspname"],
                                                                           c["collname"])))
            opc = opclasses.get(r["classes"][k])
            if opc is not None and not opc["opcdefault"]:
                extras.append(sql.Identifier(opc["nspname"], opc["opcname"]))
            opt = r["opts"][k]
            if opt & 1:
                extras.append(sql.SQL("DESC" if opt & 2 else "DESC NULLS LAST"))
            elif opt & 2:
                extras.append(sql.SQL("NULLS FIRST"))
            key_parts.append(sql.SQL(" ").join(extras))
        inc = sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(include)) if include \
            else sql.SQL("")
        if r["contype"] in ("p", "u"):
            if r["contype"] == "p":
                pk = plain_cols
            kind = sql.SQL("PRIMARY KEY" if r["contype"] == "p" else
                           ("UNIQUE NULLS NOT DISTINCT" if r["nnd"] else "UNIQUE"))
            stmt = sql.SQL("ALTER TABLE {} ADD {} ({}){}").format(
                new_ident, kind, sql.SQL(", ").join(sql.Identifier(c) for c in plain_cols), inc)
            indexes.append(_IndexDef(r["relname"], stmt, True))
            continue
        where = sql.SQL(" WHERE {}").format(sql.SQL(r["pred"])) if r["pred"] else sql.SQL("")
        stmt = sql.SQL("CREATE {unique}INDEX ON {t} USING {am} ({keys}){inc}{nnd}{where}").format(
            unique=sql.SQL("UNIQUE " if r["indisunique"] else ""), t=new_ident,
            am=sql.Identifier(r["amname"]), keys=sql.SQL(", ").join(key_parts), inc=inc,
            nnd=sql.SQL(" NULLS NOT DISTINCT" if r["nnd"] else ""), where=where)
        indexes.append(_IndexDef(r["relname"], stmt, False))
    fks = [(row["conname"], row["def"]) for row in cur.execute(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE conrelid = %s AND contype = 'f' AND conparentid = 0 ORDER BY conname",
        (parent.oid,)).fetchall()]
    referencing = [display_name(row["nspname"], row["relname"]) for row in cur.execute(
        "SELECT DISTINCT n.nspname, c.relname FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE k.confrelid = %s AND k.contype = 'f' AND k.conparentid = 0"
        " ORDER BY 1, 2", (parent.oid,)).fetchall()]
    names = [c["attname"] for c in cols]
    return _ParentShape(names, [c["attname"] for c in cols if not c["generated"]], pk,
                        indexes, fks, referencing)


def _bound_sql(v: BoundValue) -> sql.Composable:
    if v.special in ("MINVALUE", "MAXVALUE"):
        return sql.SQL(v.special)
    # bound text is what the server printed; re-emit it as a literal, never pasted
    return sql.Literal(v.text)


def _row_hash(cols: list[str], fast: bool) -> sql.Composed:
    """A 64-bit hash of a whole row. hash_record_extended (PG 14+) hashes each column with its
    type's hash function, three times faster than hashing the row's text, but only for types
    that have one (json, point... do not); hashing the text works for every type."""
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in cols))
    if fast:
        return sql.SQL("hash_record_extended({}, 0)").format(row)
    return sql.SQL("hashtextextended({}::text, 0)").format(row)


def _checksum_sql(table: sql.Composable, cols: list[str], fast: bool) -> sql.Composed:
    """count(*) and an order-independent checksum: the sum of a 64-bit hash of every row."""
    return sql.SQL("SELECT count(*), coalesce(sum({h}), 0) FROM {t}").format(
        h=_row_hash(cols, fast), t=table)


def _fast_hash_works(conn: psycopg.Connection, table: sql.Composable, cols: list[str]) -> bool:
    """Whether every column type has an extended hash function: try it on one row."""
    if int(conn.info.server_version) < 140000:
        return False
    try:
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 1").format(
                _row_hash(cols, True), table)).fetchone()
    except psycopg.errors.UndefinedFunction:
        return False
    return row is not None  # an empty table proves nothing: rows may arrive before verify


# -- the change counter: proof that nothing changed since the copy was verified ----------------
def _counter_name(week_oid: int) -> str:
    return f"pgparts_changes_{week_oid}"


def _counter_idents(schema: str, week_oid: int) -> tuple[sql.Identifier, sql.Identifier]:
    """The counter sequence and its trigger function, named after the original week's oid
    (kept by the detached original, so a re-run finds them)."""
    return (sql.Identifier(schema, _counter_name(week_oid)),
            sql.Identifier(schema, f"pgparts_count_{week_oid}"))


def _rels_sql(old_oid: int, schema: str, new_name: str) -> sql.Composed:
    """The original week, its partitions (recursively) and the copy, as a recursive CTE."""
    return sql.SQL(
        "WITH RECURSIVE rels(oid) AS ("
        "SELECT {old}::pg_catalog.oid"
        " UNION ALL SELECT c.oid FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {new}"
        " UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i"
        " JOIN rels r ON i.inhparent = r.oid)").format(
        old=sql.Literal(old_oid), schema=sql.Literal(schema), new=sql.Literal(new_name))


def _digest_sql(old_oid: int, schema: str, new_name: str) -> sql.Composed:
    """A digest of what can change rows without firing a row trigger, over the original week,
    its partitions and the copy: each relation's file node (TRUNCATE, a rewrite by ALTER ...
    TYPE, VACUUM FULL), the set of relations (a partition attached or detached), the columns,
    and the counter triggers' catalog rows (DISABLE / ENABLE TRIGGER updates the row, so its
    xmin changes). Our own swap (DETACH / ATTACH) and ANALYZE leave it unchanged."""
    return sql.SQL(
        "{rels} SELECT pg_catalog.md5(coalesce("
        "pg_catalog.string_agg(x, ',' ORDER BY x COLLATE \"C\"), '')) FROM ("
        " SELECT pg_catalog.concat_ws(':', 'r', c.oid, c.relkind, c.relfilenode)"
        " FROM pg_catalog.pg_class c JOIN rels r ON r.oid = c.oid"
        " UNION ALL SELECT pg_catalog.concat_ws(':', 'a', a.attrelid, a.attnum, a.attname,"
        " a.atttypid, a.atttypmod, a.attcollation, a.attisdropped)"
        " FROM pg_catalog.pg_attribute a JOIN rels r ON r.oid = a.attrelid WHERE a.attnum > 0"
        " UNION ALL SELECT pg_catalog.concat_ws(':', 't', t.tgrelid, t.tgname, t.tgenabled,"
        " t.xmin) FROM pg_catalog.pg_trigger t JOIN rels r ON r.oid = t.tgrelid"
        " WHERE t.tgname = {trg}) d(x)").format(
        rels=_rels_sql(old_oid, schema, new_name), trg=sql.Literal(COUNT_TRIGGER))


def _evidence_sql(old_oid: int, schema: str, new_name: str) -> sql.Composed:
    """(digest now, the copy's marker, whether the counter exists): read by _changes_since_copy."""
    return sql.SQL(
        "SELECT ({digest}),"
        " (SELECT pg_catalog.obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {new}),"
        " EXISTS (SELECT FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {seq} AND c.relkind = 'S')").format(
        digest=_digest_sql(old_oid, schema, new_name), schema=sql.Literal(schema),
        new=sql.Literal(new_name), seq=sql.Literal(_counter_name(old_oid)))


def _changes_since_copy(row: Any, conn: psycopg.Connection, seq: sql.Identifier) -> str:
    """'' when nothing can have changed the week or the copy since the build verified them
    equal, else why the tables must be compared again.

    The build verified the copy against the week under a lock that kept every writer out, and
    in the same transaction installed ALWAYS triggers (they fire under session_replication_role
    = replica too) that bump the counter before any row of the week or the copy is inserted,
    updated or deleted. The counter is a sequence: nextval is never rolled back, so a write that
    aborted still counts (we compare again, needlessly but safely). What bypasses row triggers
    shows in the digest. A write in flight when this is read either already bumped the counter
    (BEFORE triggers), or is not committed, which a snapshot-based comparison would not see
    either."""
    digest, marker_text, has_counter = row
    if not has_counter:
        return "no change counter"
    called, last = conn.execute(sql.SQL("SELECT is_called, last_value FROM {}").format(seq)
                                ).fetchone()
    if called:
        return f"{last:,} row write(s) counted since the copy"
    recorded = None
    if marker_text and marker_text.startswith(MARKER):
        try:
            recorded = json.loads(marker_text[len(MARKER):]).get("digest")
        except (ValueError, AttributeError):
            recorded = None
    if not recorded or recorded != digest:
        return "files, partitions, columns or counter triggers changed since the copy"
    return ""


def _counter_cleanup_sql(conn: psycopg.Connection, schema: str, new_name: str,
                         seq: sql.Identifier, count_fn: sql.Identifier) -> sql.Composed:
    """Remove the counter's trigger from the copy (only if it is there: DROP TRIGGER takes
    ACCESS EXCLUSIVE on the table even with IF EXISTS), its function and its sequence."""
    body = sql.SQL(
        "BEGIN\n"
        "  IF EXISTS (SELECT FROM pg_catalog.pg_trigger t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {new_name} AND t.tgname = {trg_name}) THEN\n"
        "    DROP TRIGGER {trg} ON {new};\n"
        "  END IF;\n"
        "  DROP FUNCTION IF EXISTS {fn}();\n"
        "  DROP SEQUENCE IF EXISTS {seq};\n"
        "END").format(
        schema=sql.Literal(schema), new_name=sql.Literal(new_name),
        trg_name=sql.Literal(COUNT_TRIGGER), trg=sql.Identifier(COUNT_TRIGGER),
        new=sql.Identifier(schema, new_name), fn=count_fn, seq=seq)
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def _marker_statement(conn: psycopg.Connection, new: sql.Identifier, marker: str, old_oid: int,
                      schema: str, new_name: str) -> Statement:
    """COMMENT ON the copy: the marker, plus the digest taken at the end of the build (the
    comment needs a literal, so a DO block builds the statement)."""
    body = sql.SQL(
        "BEGIN\n  EXECUTE {prefix} || pg_catalog.quote_literal({m} || ({j}::pg_catalog.jsonb"
        " || pg_catalog.jsonb_build_object('digest', ({digest})))::text);\nEND").format(
        prefix=sql.Literal(sql.SQL("COMMENT ON TABLE {} IS ").format(new).as_string(conn)),
        m=sql.Literal(MARKER), j=sql.Literal(marker[len(MARKER):]),
        digest=_digest_sql(old_oid, schema, new_name))
    return Statement(sql.SQL("DO {}").format(sql.Literal(body.as_string(conn))),
                     note="marks the copy complete (committed with it), with a digest of the "
                          "tables' files, columns and counter triggers")


@dataclass
class WeekPlan:
    week: WeekStatus
    new_name: str
    leaves: list[PartNode]
    exact_bytes: int
    est_bytes_after: int
    est_saved: int


def _rel_exists(conn: psycopg.Connection, schema: str, name: str) -> int | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    return int(row[0]) if row else None


def _marker_of(conn: psycopg.Connection, oid: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT obj_description(%s::oid, 'pg_class')", (oid,)).fetchone()
    text = row[0] if row else None
    if not text or not text.startswith(MARKER):
        return None
    try:
        data = json.loads(text[len(MARKER):])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _attached_to(conn: psycopg.Connection, oid: int) -> int | None:
    row = conn.execute("SELECT inhparent FROM pg_inherits WHERE inhrelid = %s",
                       (oid,)).fetchone()
    return int(row[0]) if row else None


def build_consolidation_plan(
    conn: psycopg.Connection,
    table: str,
    *,
    config: PlansConfig | None = None,
    older_than: timedelta | None = None,
    batch: int | None = None,
    weeks: list[str] | None = None,
    keep_detached: bool | None = None,
    now: datetime | None = None,
) -> Plan:
    config = config or PlansConfig()
    forest = load_forest(conn)
    status = consolidation_status(conn, table, forest)
    parent = status.parent
    chosen = select_weeks(
        status, now=now or forest.loaded_at,
        older_than=older_than if older_than is not None else config.older_than,
        batch=batch if batch is not None else config.batch, names=weeks)
    keep = config.keep_detached if keep_detached is None else keep_detached
    version = int(conn.info.server_version)
    default = forest.nodes.get(parent.default_partition_oid or 0)
    steps: list[Step] = []
    week_plans: list[WeekPlan] = []
    sizes = _exact_bytes(conn, [w.node.oid for w in chosen])
    # originals left detached by an earlier run that stopped before its drop step
    leftovers = [d for d in status.detached] if not keep else []
    for week in chosen:
        wp, week_steps = _week_steps(conn, parent, week, default, keep, version,
                                     sizes.get(week.node.oid, week.bytes), config)
        week_plans.append(wp)
        steps += week_steps
    for orig in leftovers:
        steps += _drop_leftover_steps(conn, parent, orig)
    if not keep:
        # a counter left on a live partition whose original is gone (dropped by hand after a
        # drop step refused): nothing left for it to prove
        handled = {orig.oid for orig in leftovers}
        for schema, name, week_oid in _orphan_counters(conn, parent):
            if week_oid not in handled:
                steps.append(_counter_removal_step(conn, schema, name,
                                                   display_name(schema, name), week_oid, ""))
    before = sum(wp.exact_bytes for wp in week_plans)
    saved = sum(wp.est_saved for wp in week_plans)
    rows = sum(wp.week.rows for wp in week_plans)
    summary = []
    if not week_plans and not leftovers:
        summary.append("nothing to consolidate")
    for wp in week_plans:
        summary.append(
            f"{wp.week.node.qualified}: replace {wp.week.subpartitions} partitions holding "
            f"~{wp.week.rows:,} rows, {wp.exact_bytes:,} bytes, with one partition "
            f"{display_name(wp.week.node.schema, wp.new_name)}"
            + (" (copy already built)" if wp.week.pending else ""))
    for orig in leftovers:
        summary.append(f"drop {display_name(orig.schema, orig.name)}, detached by an earlier "
                       f"run and replaced by {orig.replacement}")
    if week_plans:
        summary.append(
            f"total: ~{rows:,} rows, {before:,} bytes now; estimated after "
            f"{before - saved:,} bytes (saves ~{saved:,}: rebuilt indexes are packed, and "
            f"the extra leaves' maps and index meta pages go away)")
    if keep and week_plans:
        summary.append("the original partitions are kept detached (keep_detached)")
    plan = Plan(
        kind="consolidate",
        title=f"consolidate {len(week_plans)} partition(s) of {parent.qualified}",
        target=parent.qualified,
        target_oid=parent.oid,
        steps=steps,
        summary=summary,
        details={
            "weeks": [
                {"partition": wp.week.node.qualified,
                 "consolidated": display_name(wp.week.node.schema, wp.new_name),
                 "subpartitions": wp.week.subpartitions, "rows": wp.week.rows,
                 "bytes_before": wp.exact_bytes, "est_bytes_after": wp.est_bytes_after,
                 "bound": wp.week.node.bound_text}
                for wp in week_plans],
            "dropped_leftovers": [d.to_json() for d in leftovers],
            "bytes_before": before,
            "est_bytes_saved": saved,
            "keep_detached": keep,
        },
    )
    news = [(wp.week.node.schema, wp.new_name) for wp in week_plans]
    olds = [(wp.week.node.schema, wp.week.node.name) for wp in week_plans]

    def after(c: psycopg.Connection) -> dict[str, Any]:
        oids = [o for o in (_rel_exists(c, s, n) for s, n in news + olds) if o]
        total = sum(_exact_bytes(c, oids).values())
        return {"bytes_after": total}

    def describe(c: psycopg.Connection) -> str:
        lines = [_week_state_line(c, parent, wp) for wp in week_plans]
        lines.append("the interrupted step was rolled back; nothing half-done is committed. "
                     "Run the same command again to resume")
        return "; ".join(lines)

    plan.after = after
    plan.describe_state = describe
    return plan


def _week_state_line(conn: psycopg.Connection, parent: PartNode, wp: WeekPlan) -> str:
    week = wp.week.node
    new_oid = _rel_exists(conn, week.schema, wp.new_name)
    old_oid = _rel_exists(conn, week.schema, week.name)
    name = week.qualified
    if new_oid is None:
        return f"{name}: unchanged"
    if _attached_to(conn, new_oid) != parent.oid:
        return f"{name}: copy built and kept in sync, not yet swapped in"
    if old_oid is not None:
        return f"{name}: consolidated; the original is detached and kept"
    return f"{name}: consolidated, original dropped"


def _week_steps(conn: psycopg.Connection, parent: PartNode, week: WeekStatus,
                default: PartNode | None, keep: bool, version: int, exact_bytes: int,
                config: PlansConfig) -> tuple[WeekPlan, list[Step]]:
    node = week.node
    new_name = node.name + SUFFIX
    try:
        check_identifier_length(new_name)
    except ValueError as exc:
        raise ConsolidationError(
            f"cannot consolidate {node.qualified}: {exc}; rename the partition first") from None
    leaves = [leaf for leaf in node.leaves()]
    foreign = [leaf.qualified for leaf in leaves if leaf.relkind != "r"]
    if foreign:
        raise ConsolidationError(
            f"{node.qualified} has non-table leaves ({', '.join(foreign)}); cannot copy them")
    new_oid = _rel_exists(conn, node.schema, new_name)
    if new_oid is not None:
        marker = _marker_of(conn, new_oid)
        if not marker or marker.get("role") != "consolidated" or \
                marker.get("source_oid") != node.oid:
            raise ConsolidationError(
                f"a table {display_name(node.schema, new_name)} already exists and was not "
                f"built by pgparts for {node.qualified}; rename or drop it first")
    new = sql.Identifier(node.schema, new_name)
    old = node.ident
    shape = _parent_shape(conn, parent, new)
    key = parent.key_columns[0]
    bound = node.bound
    assert bound is not None and bound.kind == "range"
    new_disp = display_name(node.schema, new_name)
    old_disp = node.qualified
    parent_disp = parent.qualified
    fn = sql.Identifier(node.schema, f"pgparts_mirror_{node.oid}")
    rows, nbytes = week.rows, exact_bytes

    # -- CHECK matching the bound: validated while rows go in, so ATTACH skips its scan ------
    conds: list[sql.Composable] = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(key))]
    if bound.lower and bound.lower[0].special != "MINVALUE":
        conds.append(sql.SQL("{} >= {}").format(sql.Identifier(key), _bound_sql(bound.lower[0])))
    if bound.upper and bound.upper[0].special != "MAXVALUE":
        conds.append(sql.SQL("{} < {}").format(sql.Identifier(key), _bound_sql(bound.upper[0])))
    check_expr = sql.SQL(" AND ").join(conds)
    for_values = sql.SQL("FOR VALUES FROM ({}) TO ({})").format(
        sql.SQL(", ").join(_bound_sql(v) for v in bound.lower),
        sql.SQL(", ").join(_bound_sql(v) for v in bound.upper))

    ins_cols = sql.SQL(", ").join(sql.Identifier(c) for c in shape.insertable)
    persistence = {leaf.persistence for leaf in leaves}
    unlogged = sql.SQL("UNLOGGED ") if persistence == {"u"} else sql.SQL("")
    likes = ["DEFAULTS", "CONSTRAINTS", "GENERATED", "STORAGE"]
    if version >= 140000:
        likes.append("COMPRESSION")
    including = sql.SQL(" ").join(sql.SQL("INCLUDING " + w) for w in likes)

    marker_new = MARKER + json.dumps({
        "role": "consolidated", "parent_oid": parent.oid, "source_oid": node.oid,
        "source": node.name, "bound": node.bound_text}, ensure_ascii=False)
    marker_old = MARKER + json.dumps({
        "role": "original", "parent_oid": parent.oid, "replacement": new_disp,
        "bound": node.bound_text}, ensure_ascii=False)

    # -- mirror trigger: keeps the new table equal to the week between copy and swap -----------
    def col_list(prefix: str, cols: list[str]) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.SQL(prefix), sql.Identifier(c)) for c in cols)

    if shape.pk:
        match = sql.SQL(" AND ").join(
            sql.SQL("{c} = OLD.{c}").format(c=sql.Identifier(c)) for c in shape.pk)
        delete = sql.SQL("DELETE FROM {new} WHERE {match};").format(new=new, match=match)
    else:
        match = sql.SQL("ROW({}) ::text IS NOT DISTINCT FROM ROW({})::text").format(
            col_list("s", shape.columns), col_list("OLD", shape.columns))
        delete = sql.SQL(
            "DELETE FROM {new} WHERE ctid = (SELECT s.ctid FROM {new} s WHERE {match} LIMIT 1);"
        ).format(new=new, match=match)
    body = sql.SQL(
        "BEGIN\n"
        "  IF TG_OP IN ('DELETE', 'UPDATE') THEN\n    {delete}\n  END IF;\n"
        "  IF TG_OP IN ('INSERT', 'UPDATE') THEN\n"
        "    INSERT INTO {new} ({cols}) VALUES ({vals});\n  END IF;\n"
        "  RETURN NULL;\nEND"
    ).format(delete=delete, new=new, cols=ins_cols, vals=col_list("NEW", shape.insertable))
    body_text = body.as_string(conn)
    fast = _fast_hash_works(conn, old, shape.columns)
    seq, count_fn = _counter_idents(node.schema, node.oid)
    count_body = sql.SQL(
        "BEGIN\n  PERFORM pg_catalog.nextval({seq}::pg_catalog.regclass);\n"
        "  IF TG_OP = 'DELETE' THEN\n    RETURN OLD;\n  END IF;\n  RETURN NEW;\nEND"
    ).format(seq=sql.Literal(seq.as_string(conn))).as_string(conn)
    evidence = _evidence_sql(node.oid, node.schema, new_name)

    def new_done(c: psycopg.Connection) -> bool:
        oid = _rel_exists(c, node.schema, new_name)
        if oid is None:
            return False
        m = _marker_of(c, oid)
        return bool(m and m.get("role") == "consolidated" and m.get("source_oid") == node.oid)

    def swapped(c: psycopg.Connection) -> bool:
        oid = _rel_exists(c, node.schema, new_name)
        return oid is not None and _attached_to(c, oid) == parent.oid

    def analyzed(c: psycopg.Connection) -> bool:
        oid = _rel_exists(c, node.schema, new_name)
        if oid is None:
            return False
        row = c.execute("SELECT pg_stat_get_last_analyze_time(%s) IS NOT NULL"
                        " OR pg_stat_get_last_autoanalyze_time(%s) IS NOT NULL",
                        (oid, oid)).fetchone()
        return bool(row and row[0]) or swapped(c)

    def dropped(c: psycopg.Connection) -> bool:
        oid = _rel_exists(c, node.schema, node.name)
        return swapped(c) and (oid is None or oid != node.oid)

    # -- step 1: build ----------------------------------------------------------------------
    stmts = [
        Statement(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(old), "lock",
                  note=f"wait for in-flight writes to {old_disp}; hold further writes to this "
                       f"partition only until the copy commits"),
        Statement(sql.SQL("CREATE {unlogged}TABLE {new} (LIKE {parent} {including})").format(
            unlogged=unlogged, new=new, parent=parent.ident, including=including),
            note="the parent's columns, defaults and CHECK constraints"),
        Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})").format(
            new, sql.Identifier(CHECK_NAME), check_expr),
            note="the partition bound as a CHECK: checked row by row during the copy, "
                 "so ATTACH needs no validation scan"),
        *_grant_statements(conn, [parent.oid, node.oid], new),
    ]
    for leaf in leaves:
        leaf_rows = leaf.rows
        leaf_bytes = int(nbytes * (leaf.total_bytes / week.bytes)) if week.bytes else 0
        stmts.append(Statement(
            sql.SQL("INSERT INTO {new} ({cols}) SELECT {cols} FROM {leaf}").format(
                new=new, cols=ins_cols, leaf=leaf.ident),
            "copy", note=f"copy {leaf.qualified}", est_rows=leaf_rows, est_bytes=leaf_bytes))

    def check_copy(row: Any, _c: psycopg.Connection) -> str:
        n_old, h_old, n_new, h_new = row
        if (n_old, h_old) != (n_new, h_new):
            raise VerificationFailed(
                f"{old_disp} has {n_old:,} rows (checksum {h_old}) but {n_new:,} (checksum "
                f"{h_new}) went into {new_disp}")
        return f"{new_disp}: {n_new:,} rows copied, checksum {h_new} equal to {old_disp}"

    # Both checksums right after the copy, in its transaction: the week cannot change under the
    # lock and the copy is invisible to others, so this compares them exactly. Two scans that
    # PostgreSQL runs in parallel; measured faster than hashing each row as the copy inserts
    # it (INSERT ... RETURNING into an aggregate runs serially in the copy's process).
    verify_sql = sql.SQL("SELECT o.*, n.* FROM ({}) o, ({}) n").format(
        _checksum_sql(old, shape.columns, fast), _checksum_sql(new, shape.columns, fast))
    stmts.append(Statement(
        verify_sql, "verify",
        note="count and checksum of the week (locked against writes) and of the copy must be "
             "equal", check=check_copy))
    for ix in shape.indexes:
        stmts.append(Statement(ix.statement, note=f"like the parent's index {ix.name}"))
    for name, definition in shape.foreign_keys:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            new, sql.Identifier(name), sql.SQL(definition)),
            note="the parent's foreign key, validated now rather than under the parent's lock"))
    stmts += [
        Statement(sql.SQL(
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS {body}").format(
            fn=fn, body=sql.Literal(body_text)),
            note="mirror function: applies writes to the week to the new table"),
        Statement(sql.SQL(
            "CREATE TRIGGER {trg} AFTER INSERT OR UPDATE OR DELETE ON {old}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
            trg=sql.Identifier(TRIGGER_NAME), old=old, fn=fn),
            note="from this commit until the swap, writes to the week reach both tables"),
        Statement(sql.SQL("CREATE SEQUENCE {}").format(seq),
                  note="change counter: row writes to the week or the copy after this commit"),
        Statement(sql.SQL(
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp AS {body}").format(
            fn=count_fn, body=sql.Literal(count_body)),
            note="counts a write before it happens; runs as its owner, so writers need no "
                 "privilege on the counter"),
        Statement(sql.SQL(
            "CREATE TRIGGER {trg} BEFORE INSERT OR UPDATE OR DELETE ON {old}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
            trg=sql.Identifier(COUNT_TRIGGER), old=old, fn=count_fn)),
        Statement(sql.SQL(
            "CREATE TRIGGER {trg} BEFORE INSERT OR UPDATE OR DELETE ON {new}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
            trg=sql.Identifier(COUNT_TRIGGER), new=new, fn=count_fn)),
        Statement(sql.SQL(
            "ALTER TABLE {old} ENABLE ALWAYS TRIGGER {mirror}, ENABLE ALWAYS TRIGGER {count}"
        ).format(old=old, mirror=sql.Identifier(TRIGGER_NAME),
                 count=sql.Identifier(COUNT_TRIGGER)),
            note="fire under session_replication_role = replica too (logical replication)"),
        Statement(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
            new, sql.Identifier(COUNT_TRIGGER))),
        _marker_statement(conn, new, marker_new, node.oid, node.schema, new_name),
    ]
    locks = [
        Lock("SHARE ROW EXCLUSIVE", old_disp,
             "writes to this partition wait until the copy commits; reads continue; "
             "the parent and other partitions are not locked"),
        Lock("ACCESS EXCLUSIVE", new_disp, "new table, not visible to anyone yet"),
    ]
    secs = nbytes / EST_BYTES_PER_SECOND
    build = Step(
        title=f"Build {new_disp}",
        explanation=(
            f"Copy the {week.subpartitions} partitions of {old_disp} (~{rows:,} rows) into a new "
            f"plain table with the parent's columns, defaults, constraints and indexes, and a "
            f"CHECK matching the bound. Writers to this week wait during the copy; everyone "
            f"else carries on. A trigger then keeps the copy in sync until the swap."),
        statements=stmts, locks=locks, retry="statement",
        estimate=Estimate(rows, nbytes, secs * 0.8), done=new_done, group=old_disp)
    # -- step 2: analyze --------------------------------------------------------------------
    analyze = Step(
        title=f"Analyze {new_disp}",
        explanation="Planner statistics for the new partition before it serves queries.",
        statements=[Statement(sql.SQL("ANALYZE {}").format(new), "maintenance")],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", new_disp, "blocks nothing of the application")],
        transactional=False, estimate=Estimate(0, 0, secs * 0.05), done=analyzed,
        group=old_disp)

    # -- step 3: verify ---------------------------------------------------------------------
    def check_equal(row: Any, _c: psycopg.Connection) -> str:
        n_old, h_old, n_new, h_new = row
        if (n_old, h_old) != (n_new, h_new):
            raise VerificationFailed(
                f"{old_disp} has {n_old:,} rows (checksum {h_old}) but {new_disp} has "
                f"{n_new:,} (checksum {h_new})")
        return f"{new_disp}: {n_new:,} rows, checksum {h_new} equal to {old_disp}"

    def check_verify(row: Any, c: psycopg.Connection) -> str:
        why = _changes_since_copy(row, c, seq)
        if not why:
            return (f"{old_disp} and {new_disp} unchanged since the build verified them equal "
                    f"(no row write counted; same files, columns and counter triggers)")
        # same REPEATABLE READ snapshot as the evidence: both tables as of one instant
        return f"{check_equal(c.execute(verify_sql).fetchone(), c)} ({why})"

    verify = Step(
        title=f"Verify {new_disp}",
        explanation=(
            f"The build compared the copy with {old_disp} (row count and checksum) while writes "
            f"to it were held. If no write reached either table since (a change counter kept "
            f"by triggers) and nothing bypassed the triggers (files, partitions, columns and "
            f"triggers unchanged), that still holds. Otherwise, in one snapshot, count the rows "
            f"of both and compare a checksum of every row (sum of a 64-bit hash of each row, so "
            f"order does not matter). Nothing is locked beyond plain reads."),
        statements=[Statement(evidence, "verify",
                              note="unchanged since the verified copy, or else rows and "
                                   "checksum of both tables must be equal",
                              check=check_verify)],
        locks=[Lock("ACCESS SHARE", f"{old_disp}, {new_disp}", "blocks nothing")],
        isolation="repeatable read", estimate=Estimate(0, 0, secs * 0.1), done=swapped,
        verify_note="row count and checksum of the week and the copy are equal", group=old_disp)

    # -- step 4: swap -----------------------------------------------------------------------
    swap_locks = [
        Lock("ACCESS EXCLUSIVE", parent_disp,
             "every read and write of the table waits: from DETACH to COMMIT, milliseconds"),
        Lock("ACCESS EXCLUSIVE", old_disp, "detached"),
        Lock("ACCESS EXCLUSIVE", new_disp, "attached"),
    ]
    if default is not None:
        swap_locks.append(Lock(
            "ACCESS EXCLUSIVE", default.qualified,
            "the DEFAULT partition; ATTACH scans it unless it has a CHECK excluding this range"))
    for ref in shape.referencing:
        swap_locks.append(Lock("ACCESS EXCLUSIVE", ref,
                               "references the parent: DETACH drops its per-partition FK"))
    swap_stmts = [
        Statement(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent.ident, old),
                  "lock", note="ACCESS EXCLUSIVE on the parent from here to COMMIT"),
        Statement(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            parent.ident, new, for_values), "lock",
            note="no validation scan: the CHECK implies the bound; the indexes are adopted"),
        Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            new, sql.Identifier(CHECK_NAME)), note="the partition bound now enforces it"),
        Statement(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(TRIGGER_NAME), old)),
        Statement(sql.SQL("DROP FUNCTION {}()").format(fn)),
    ]
    if keep:
        # the drop comes later, if ever: no trigger stays on the live partition meanwhile, and
        # that drop compares the tables in full
        swap_stmts += [
            Statement(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(COUNT_TRIGGER), t), note="the change counter")
            for t in (new, old)]
        swap_stmts += [Statement(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(count_fn)),
                       Statement(sql.SQL("DROP SEQUENCE IF EXISTS {}").format(seq))]
    swap_stmts.append(
        Statement(sql.SQL("COMMENT ON TABLE {} IS {}").format(old, sql.Literal(marker_old)),
                  note="marks the detached original for status and resume"))

    def check_attached(c: psycopg.Connection) -> str:
        oid = _rel_exists(c, node.schema, new_name)
        row = c.execute(
            "SELECT pg_get_expr(n.relpartbound, 0),"
            " EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = %s),"
            " EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = n.oid AND i.inhparent = %s)"
            " FROM pg_class n WHERE n.oid = %s",
            (node.oid, parent.oid, oid)).fetchone()
        if not row or row[0] != node.bound_text or row[1] or not row[2]:
            raise VerificationFailed(f"{new_disp} is not attached with {node.bound_text}")
        return f"{new_disp} attached {node.bound_text}; {old_disp} detached"

    swap = Step(
        title=f"Swap {old_disp} for {new_disp}",
        explanation=(
            f"In one short transaction: detach {old_disp}, attach {new_disp} with the same "
            f"bound, drop the helper CHECK and the mirror trigger. The parent is locked from "
            f"DETACH to COMMIT only. On a lock timeout the whole transaction is rolled back "
            f"and retried after a pause, so no lock is held while waiting."),
        statements=swap_stmts, locks=swap_locks, retry="step",
        statement_timeout_seconds=max(10.0, config.lock_timeout_seconds * 3),
        estimate=Estimate(0, 0, 0.05), done=swapped, verify=check_attached,
        verify_note="the new table is attached with the week's bound", hold_from=1,
        group=old_disp)
    steps = [build, analyze, verify, swap]
    if not keep:
        steps.append(_drop_step(conn, old, old_disp, node.schema, new_name, new_disp,
                                shape.columns, nbytes, dropped, node.oid, fast))
        steps.append(_counter_removal_step(conn, node.schema, new_name, new_disp, node.oid,
                                           old_disp))
    # -- estimates ----------------------------------------------------------------------------
    index_bytes = sum(leaf.total_index_bytes for leaf in leaves)
    est_saved = int(index_bytes * (1 - REBUILT_INDEX_RATIO))
    est_saved += (len(leaves) - 1) * 8192 * (
        PER_LEAF_OVERHEAD_PAGES + PER_INDEX_OVERHEAD_PAGES * len(shape.indexes))
    est_saved += int(sum(leaf.heap_bytes * (leaf.n_dead_tup / max(leaf.n_dead_tup
                                                                    + leaf.n_live_tup, 1))
                         for leaf in leaves))
    est_saved = min(est_saved, nbytes)
    wp = WeekPlan(week, new_name, leaves, nbytes, nbytes - est_saved, est_saved)
    return wp, steps


def _subset_check(old: sql.Composable, new: sql.Composable, cols: list[str], fast: bool,
                  old_disp: str, new_disp: str) -> Any:
    def check(row: Any, conn: psycopg.Connection) -> str:
        n_old, h_old, n_new, h_new = row
        if (n_old, h_old) == (n_new, h_new):
            return f"{old_disp} and {new_disp} hold the same {n_new:,} rows (checksum {h_new})"
        # the new partition changed since the swap (it is live): every row of the original
        # must still be in it; a multiset difference of row hashes finds any that is not
        missing = conn.execute(sql.SQL(
            "SELECT count(*) FROM (SELECT {h} FROM {old} EXCEPT ALL SELECT {h} FROM {new}) d"
        ).format(h=_row_hash(cols, fast), old=old, new=new)).fetchone()[0]
        if missing:
            raise VerificationFailed(
                f"{missing:,} of the {n_old:,} rows of {old_disp} are not in {new_disp} (changed "
                f"since the swap?); {old_disp} is kept: compare and drop it by hand")
        return f"all {n_old:,} rows of {old_disp} are in {new_disp}"
    return check


def _drop_step(conn: psycopg.Connection, old: sql.Identifier, old_disp: str, schema: str,
               new_name: str, new_disp: str, cols: list[str], nbytes: int, done: Any,
               old_oid: int, fast: bool) -> Step:
    new = sql.Identifier(schema, new_name)
    seq, count_fn = _counter_idents(schema, old_oid)
    full_sql = sql.SQL("SELECT o.*, n.* FROM ({}) o, ({}) n").format(
        _checksum_sql(old, cols, fast), _checksum_sql(new, cols, fast))
    subset = _subset_check(old, new, cols, fast, old_disp, new_disp)

    def check(row: Any, c: psycopg.Connection) -> str:
        why = _changes_since_copy(row, c, seq)
        if not why:
            return (f"{old_disp} and {new_disp} unchanged since the build verified them equal "
                    f"(no row write counted; same files, columns and counter triggers): every "
                    f"row of {old_disp} is in {new_disp}")
        return f"{subset(c.execute(full_sql).fetchone(), c)} ({why})"

    return Step(
        title=f"Drop the detached {old_disp}",
        explanation=(
            f"Check that every row of the detached original is in {new_disp}: nothing written "
            f"to either table since the build verified them equal (the change counter and the "
            f"digest of files, columns and triggers), or else equal count and checksum, or if "
            f"the live partition changed since the swap, a multiset difference of row hashes. "
            f"Then drop it with its partitions and remove the change counter. The parent is "
            f"not locked: the table is no longer a partition."),
        statements=[
            Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(old), "lock",
                      note="the detached original; the application no longer uses it"),
            Statement(_evidence_sql(old_oid, schema, new_name), "verify",
                      note="every row of the original must be in the consolidated partition: "
                           "nothing changed since the verified copy, or equal checksums, or "
                           "no row missing from a multiset difference",
                      check=check),
            Statement(sql.SQL("DROP TABLE {}").format(old)),
        ],
        locks=[Lock("ACCESS EXCLUSIVE", old_disp, "detached: blocks nothing of the parent"),
               Lock("ACCESS SHARE", new_disp, "blocks nothing")],
        estimate=Estimate(0, -nbytes if nbytes else 0, nbytes / EST_BYTES_PER_SECOND * 0.1),
        done=done, verify_note="no row of the original is missing from the new partition",
        group=old_disp)


def _counter_exists_sql(schema: str, new_name: str, week_oid: int) -> sql.Composed:
    seq, fn = _counter_name(week_oid), f"pgparts_count_{week_oid}"
    return sql.SQL(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {seq})"
        " OR EXISTS (SELECT FROM pg_catalog.pg_proc p"
        " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = {schema} AND p.proname = {fn})"
        " OR EXISTS (SELECT FROM pg_catalog.pg_trigger t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {new} AND t.tgname = {trg})").format(
        schema=sql.Literal(schema), seq=sql.Literal(seq), fn=sql.Literal(fn),
        new=sql.Literal(new_name), trg=sql.Literal(COUNT_TRIGGER))


def _counter_removal_step(conn: psycopg.Connection, schema: str, new_name: str, new_disp: str,
                          week_oid: int, group: str) -> Step:
    """Its own short transaction after the drop's: the drop's COMMIT unlinks the original's
    files (a fraction of a second for a large week), and the live partition must not stay
    locked meanwhile."""
    seq, count_fn = _counter_idents(schema, week_oid)
    exists = _counter_exists_sql(schema, new_name, week_oid)

    def removed(c: psycopg.Connection) -> bool:
        row = c.execute(exists).fetchone()
        return not (row and row[0])

    return Step(
        title=f"Remove the change counter from {new_disp}",
        explanation=(
            f"Drop the counter's trigger from {new_disp}, its function and its sequence. "
            f"Dropping a trigger takes ACCESS EXCLUSIVE on the table: reads and writes of this "
            f"partition wait from then to COMMIT, milliseconds (a lock timeout retries the "
            f"transaction after a pause)."),
        statements=[Statement(_counter_cleanup_sql(conn, schema, new_name, seq, count_fn),
                              "lock", note="trigger (if there), function and sequence")],
        locks=[Lock("ACCESS EXCLUSIVE", new_disp,
                    "reads and writes of this partition wait, milliseconds")],
        retry="step", statement_timeout_seconds=10.0, estimate=Estimate(0, 0, 0.01),
        done=removed, group=group)


def _orphan_counters(conn: psycopg.Connection, parent: PartNode) -> list[tuple[str, str, int]]:
    """(schema, partition, original week oid) of change-counter triggers on the parent's
    partitions, found by their function's name."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, p.proname FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_trigger t ON t.tgrelid = c.oid JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE i.inhparent = %s AND t.tgname = %s AND p.proname ~ '^pgparts_count_[0-9]+$'",
        (parent.oid, COUNT_TRIGGER)).fetchall()
    return [(schema, name, int(fn.rsplit("_", 1)[1])) for schema, name, fn in rows]


def _drop_leftover_steps(conn: psycopg.Connection, parent: PartNode,
                         orig: DetachedOriginal) -> list[Step]:
    old = sql.Identifier(orig.schema, orig.name)
    old_disp = display_name(orig.schema, orig.name)
    marker = _marker_of(conn, orig.oid) or {}
    new_disp = str(marker.get("replacement", ""))
    row = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid ="
        " c.relnamespace JOIN pg_inherits i ON i.inhrelid = c.oid"
        " WHERE i.inhparent = %s AND pg_get_expr(c.relpartbound, 0) = %s",
        (parent.oid, marker.get("bound"))).fetchone()
    if row is None:
        raise ConsolidationError(
            f"{old_disp} was detached by pgparts but no partition of {parent.qualified} has its "
            f"bound {marker.get('bound')}; check it and drop it by hand")
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum", (parent.oid,)).fetchall()]

    def done(c: psycopg.Connection) -> bool:
        return _rel_exists(c, orig.schema, orig.name) != orig.oid

    new_disp = new_disp or display_name(row[0], row[1])
    steps = [_drop_step(conn, old, old_disp, row[0], row[1], new_disp, cols, orig.bytes, done,
                        orig.oid, _fast_hash_works(conn, old, cols))]
    removal = _counter_removal_step(conn, row[0], row[1], new_disp, orig.oid, old_disp)
    if not removal.is_done(conn):
        steps.append(removal)
    return steps
