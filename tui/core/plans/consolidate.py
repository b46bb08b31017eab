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
   lock), install the mirror trigger and the change counter (below), and record the copy, the
   week, the counter's function and sequence, and a digest of both tables' catalog state in
   pgparts' registry (markers.py; the schema `pgparts` is created on first use). All of it
   commits together or not at all, so a killed copy never leaves a half-filled table.
2. Analyze the new table.
3. Verify: if nothing changed either table since the build verified them (counter and digest),
   that is the proof; otherwise, in one REPEATABLE READ snapshot, row count and checksum of every
   row of the week and of the new table must be equal.
   With a plain DEFAULT partition, two more steps before the swap: add a CHECK to the DEFAULT
   excluding the week's bound, NOT VALID (an instant of ACCESS EXCLUSIVE on the DEFAULT), then
   VALIDATE it (SHARE UPDATE EXCLUSIVE: writers carry on), so the swap's ATTACH does not scan
   the DEFAULT under the parent's lock; a step after the swap drops that CHECK again.
4. Swap (one short transaction, retried as a whole on lock timeout): DETACH the week, ATTACH the
   new table (no scan: the CHECK implies the bound), drop the helper CHECK and the mirror
   trigger. The week is now the detached original the registry recorded in step 1.
   Foreign keys of other tables referencing the parent would stop the DETACH (the week's rows
   are referenced): the swap locks those tables first, drops the keys, and re-creates them
   NOT VALID after the ATTACH (steps/swap.py); a step after the swap validates them, writers
   carrying on. A key on a partitioned referencing table is refused at planning time.
5. Drop the detached original after checking that every one of its rows is in the new partition:
   nothing changed either table since the build (counter and digest), or else equal checksums
   or a multiset difference (skipped with keep_detached, where the swap removes the counter and
   the later drop compares in full). When rows are missing the original is kept and recorded
   as such ('refused'): later runs report it once, with `--drop-kept` as the remedy, instead of
   failing on it again.
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

Resuming: each step's done() reads the catalog and the registry, so a re-run after a killed
connection skips what committed and finishes the rest. A plan first finishes what the registry
says earlier runs left (originals to drop, counters to remove), whatever weeks it was given.

Trust: only the registry says what pgparts built or detached, and only when its schema and table
are controlled by the operator alone; every entry is cross-checked against the catalog (oid,
name, kind, owner, attachment, bound) before anything reads from or drops the relation.
Comments are notes for people. Planning (status, dry run, --sql) reads the catalog only: it
never reads a row, so it never runs code that a table, a view or a type could carry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..catalog import Forest, PartNode, load_forest
from ..config import PlansConfig
from ..humanfmt import count, plural, size
from ..moves.changelog import MoveError
from ..names import check_identifier_length, display_name
from .consolidate_status import (
    CANDIDATE_STATUSES,
    CONSOLIDATED,
    HASH_PARTITIONED,
    LIST_PARTITIONED,
    OTHER,
    PLAIN,
    SUFFIX,
    ConsolidationError,
    ConsolidationStatus,
    DetachedOriginal,
    WeekStatus,
    consolidation_status,
    name_matches,
    relation_bytes,
    select_weeks,
)
from .engine.model import (
    Destroyed,
    Estimate,
    Figure,
    Lock,
    Plan,
    PlanFacts,
    Statement,
    Step,
    VerificationFailed,
)
from .hashing import extended_hash_supported
from .steps import markers, owners
from .steps.moves import ForeignKey, keys_from_note, referencing_keys, validate_key_steps
from .steps.shadow import (
    changes_since_copy,
    counter_function_body,
    counter_idents,
    counter_name,
    digest_sql,
    equality_operators,
    evidence_sql,
    mirror_function_body,
    shadow_statements,
)
from .steps.shadow import counter_removal_step as _counter_removal_step
from .steps.shape import grant_statements, index_shapes
from .steps.swap import CHECK_NAME, EST_BYTES_PER_SECOND, swap_step
from .steps.swap import bound_sql as _bound_sql
from .steps.swap import default_helper_steps as _default_helper
from .steps.swap import drop_detached_step as _drop_step
from .steps.verify import compare_sql, raise_unless_equal

__all__ = [
    "CANDIDATE_STATUSES", "CONSOLIDATED", "HASH_PARTITIONED", "LIST_PARTITIONED", "OTHER",
    "PLAIN", "SUFFIX", "ConsolidationError", "ConsolidationStatus", "DetachedOriginal",
    "WeekPlan", "WeekStatus", "build_consolidation_plan", "consolidation_status",
    "select_weeks",
]


# A b-tree built by sorting is packed to its fillfactor (90%); one grown by random inserts
# settles near 70% full (Yao's 69% for random splits). Rebuilt indexes shrink by about that.
REBUILT_INDEX_RATIO = 0.70 / 0.90
# Every leaf has free-space and visibility maps (3 + 1 pages at least once vacuumed) and a
# meta page plus a root page per b-tree: what disappears with each leaf beyond the first.
PER_LEAF_OVERHEAD_PAGES = 4
PER_INDEX_OVERHEAD_PAGES = 2
# The swap's estimate: DETACH + ATTACH without scans + catalog updates, on an idle server.
SWAP_SECONDS = 0.05


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
    # the btree equality operator of each primary key column's operator class (schema, name):
    # the mirror trigger names it, so that it never resolves through a writer's search_path
    pk_equality: list[tuple[str, str]]
    indexes: list[_IndexDef]
    foreign_keys: list[tuple[str, str]]  # (name, definition as deparsed by the server)


_grant_statements = grant_statements


def _parent_shape(conn: psycopg.Connection, parent: PartNode, new_ident: sql.Identifier
                  ) -> _ParentShape:
    cur = conn.cursor(row_factory=dict_row)
    cols = cur.execute(
        "SELECT attnum, attname, attgenerated <> '' AS generated, attcollation"
        " FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (parent.oid,)).fetchall()
    pk: list[str] = []
    pk_equality: list[tuple[str, str]] = []
    indexes: list[_IndexDef] = []
    for shape in index_shapes(conn, parent.oid):
        if shape.contype == "x":
            raise ConsolidationError(
                f"{parent.qualified} has an exclusion constraint ({shape.name}); "
                f"consolidation does not handle those yet")
        if shape.contype in ("p", "u"):
            if shape.contype == "p":
                pk = shape.plain_cols
                pk_equality = _equality_operators(conn, shape.key_opclasses)
            indexes.append(_IndexDef(shape.name, shape.constraint_sql(new_ident), True))
            continue
        indexes.append(_IndexDef(shape.name, shape.create_sql(new_ident), False))
    fks = [(row["conname"], row["def"]) for row in cur.execute(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE conrelid = %s AND contype = 'f' AND conparentid = 0 ORDER BY conname",
        (parent.oid,)).fetchall()]
    names = [c["attname"] for c in cols]
    return _ParentShape(names, [c["attname"] for c in cols if not c["generated"]], pk,
                        pk_equality, indexes, fks)


def _equality_operators(conn: psycopg.Connection, opclasses: list[int]
                        ) -> list[tuple[str, str]]:
    found = equality_operators(conn, opclasses)
    if found is None:
        raise ConsolidationError(
            "the primary key's operator class has no usable equality operator")
    return found


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


def _registered(conn: psycopg.Connection, role: str, objid: int | None,
                source_oid: int) -> bool:
    """Whether pgparts' (trusted) registry records `objid` in `role` for the week, and the
    catalog still agrees (same name, kind, owner). Used by done-checks at apply time."""
    if objid is None:
        return False
    registry = markers.read_registry(conn)
    entry = registry.get(role, objid) if registry.trusted else None
    if entry is None or entry.source_oid != source_oid:
        return False
    return not markers.mismatch(entry, markers.relation_facts(conn, [objid]).get(objid))


def _owner_statements(conn: psycopg.Connection, week: PartNode, new: sql.Identifier
                      ) -> list[Statement]:
    """The copy is owned like the week it replaces (owners.py); refused at planning time when
    the applying role cannot give it that owner."""
    owner = owners.owners_of(conn, [week.oid])[week.oid]
    if owner == owners.current_role(conn):
        return []
    problem = owners.owner_problem(conn, {owner}, week.schema,
                                   f"the copy of {week.qualified}", "the week is")
    if problem:
        raise ConsolidationError(problem)
    return [owners.owner_statement(new, owner, "the owner of the week it replaces")]


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
    forest: Forest | None = None,
    drop_kept: list[str] | None = None,
    status: ConsolidationStatus | None = None,
    expiring: datetime | None = None,
) -> Plan:
    """The plan for `table`. It first finishes what earlier runs left (pgparts' registry says
    what: originals to drop, change counters to remove), whatever the selection. With
    `forest`, the already loaded catalog is used instead of loading it again. `drop_kept`:
    originals whose drop refused, to verify again and drop. `expiring`: weeks ending at or before
    it are left alone (maintain: its retention removes them right after). Planning reads the
    catalog only."""
    config = config or PlansConfig()
    forest = forest or load_forest(conn)
    status = status or consolidation_status(conn, table, forest)
    parent = status.parent
    keep = config.keep_detached if keep_detached is None else keep_detached
    if drop_kept:
        chosen: list[WeekStatus] = []
        kept = [_find_kept(status, name) for name in drop_kept]
    else:
        chosen = select_weeks(
            status, now=now or forest.loaded_at,
            older_than=older_than if older_than is not None else config.older_than,
            batch=batch if batch is not None else config.batch, names=weeks,
            expiring=expiring)
        kept = []
    version = int(conn.info.server_version)
    default = forest.nodes.get(parent.default_partition_oid or 0)
    plan_id = uuid.uuid4().hex
    steps: list[Step] = []
    week_plans: list[WeekPlan] = []
    sizes = relation_bytes(conn, [w.node.oid for w in chosen])
    # originals left detached by an earlier run that stopped before its drop step
    leftovers = ([] if keep else list(status.detached)) + kept
    refusals: dict[int, tuple[str, str, str]] = {}  # oid: (why, original, replacement)
    # keys a swap re-created NOT VALID and a stopped run left unvalidated (kept originals too)
    leftover_steps, pending = _leftover_validations(conn, parent, status)
    steps += leftover_steps
    for orig in leftovers:
        steps += _drop_leftover_steps(conn, parent, orig, refusals)
    fkeys = _referencing(conn, parent) if chosen else []
    handled = {orig.oid for orig in leftovers}
    for week_oid in status.counters:
        if week_oid in handled:
            continue
        # a counter whose original is gone or kept after a refused drop: nothing left for it
        # to prove (a later drop of a kept original compares in full)
        entry = next(e for e in status.registry.of(markers.CONSOLIDATED_ROLE, parent.oid)
                     if e.source_oid == week_oid)
        steps.append(_counter_removal_step(conn, entry.schema, entry.name,
                                           display_name(entry.schema, entry.name), week_oid,
                                           ""))
    for week in chosen:
        wp, week_steps = _week_steps(conn, parent, week, default, keep, version,
                                     sizes.get(week.node.oid, week.bytes), config, plan_id,
                                     status, refusals, fkeys, pending)
        week_plans.append(wp)
        steps += week_steps
    before = sum(wp.exact_bytes for wp in week_plans)
    saved = sum(wp.est_saved for wp in week_plans)
    rows = sum(wp.week.rows for wp in week_plans)
    summary = []
    spared = [w for w in status.weeks if expiring is not None and not chosen and not drop_kept
              and w.status in CANDIDATE_STATUSES and w.upper is not None
              and w.upper <= expiring]
    if not steps:
        summary.append(f"nothing to consolidate: {plural(len(spared), 'older partition')} "
                       f"left to retention, which removes "
                       f"{'it' if len(spared) == 1 else 'them'} next" if spared
                       else status.note or "nothing to consolidate")
    for wp in week_plans:
        summary.append(
            f"{wp.week.node.qualified}: replace {wp.week.subpartitions} partitions holding "
            f"~{wp.week.rows:,} rows, {wp.exact_bytes:,} bytes, with one partition "
            f"{display_name(wp.week.node.schema, wp.new_name)}"
            + (" (copy already built)" if wp.week.pending else ""))
        if wp.week.upper is not None and wp.week.upper > (now or forest.loaded_at):
            summary.append(
                f"{wp.week.node.qualified} is not over yet (until {wp.week.bound}): writers "
                f"to it wait while it is copied, and its later rows go into one plain "
                f"partition")
    for orig in leftovers:
        if orig.refused:
            summary.append(f"verify again and drop {orig.display}, kept by an earlier run "
                           f"({orig.refused})")
        else:
            summary.append(f"drop {orig.display}, detached by an earlier run and replaced by "
                           f"{orig.replacement}")
    if week_plans:
        summary.append(
            f"total: ~{rows:,} rows, {before:,} bytes now; estimated after "
            f"{before - saved:,} bytes (saves ~{saved:,}: rebuilt indexes are packed, and "
            f"the extra leaves' maps and index meta pages go away)")
    if keep and week_plans:
        summary.append("the original partitions are kept detached (keep_detached)")
    for d in status.kept:
        if d not in kept:
            summary.append(_kept_line(parent, d))
    summary += status.ignored
    plan = Plan(
        kind="consolidate",
        title=f"consolidate {len(week_plans)} partition{'' if len(week_plans) == 1 else 's'} "
              f"of {parent.qualified}",
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
            "kept_originals": [d.to_json() for d in status.kept if d not in kept],
            "ignored": list(status.ignored),
            "bytes_before": before,
            "est_bytes_saved": saved,
            "est_hold_seconds": SWAP_SECONDS if week_plans else None,
            "keep_detached": keep,
            "plan_id": plan_id,
        },
        lock_timeout_seconds=config.lock_timeout_seconds,
        facts=_facts(week_plans, leftovers, keep, before, saved, fkeys),
    )
    news = [(wp.week.node.schema, wp.new_name) for wp in week_plans]
    olds = [(wp.week.node.schema, wp.week.node.name) for wp in week_plans]

    def after(c: psycopg.Connection) -> dict[str, Any]:
        oids = [o for o in (_rel_exists(c, s, n) for s, n in news + olds) if o]
        total = sum(relation_bytes(c, oids).values())
        return {"bytes_after": total}

    def describe(c: psycopg.Connection) -> str:
        lines = [_week_state_line(c, parent, wp) for wp in week_plans]
        kept_now = _record_refusals(c, {oid: why for oid, (why, _o, _n) in refusals.items()})
        for oid in kept_now:
            why, old_disp, new_disp = refusals[oid]
            lines.append(_kept_line(parent, DetachedOriginal(oid, "", "", new_disp, 0, why),
                                    old_disp))
        # read in the console as well as on the command line (and kept in the journal):
        # 'command' would be wrong in the console, which says what to press itself
        lines.append("the interrupted step was rolled back; nothing half-done is committed, "
                     "and a re-run of the same plan resumes.")
        return "; ".join(lines)

    plan.after = after
    plan.describe_state = describe
    return plan


def _facts(week_plans: list[WeekPlan], leftovers: list[DetachedOriginal], keep: bool,
           before: int, saved: int, fkeys: list[ForeignKey]) -> PlanFacts:
    def label(w: WeekStatus) -> str:
        return f"week {w.lower:%Y-%m-%d}" if w.lower is not None else \
            f"partition {w.node.qualified}"

    changes = [
        f"{wp.week.node.qualified}: replace {plural(wp.week.subpartitions, 'partition')} "
        f"holding {plural(wp.week.rows, 'row')}, {size(wp.exact_bytes)}, of "
        f"{label(wp.week)} with one partition {display_name(wp.week.node.schema, wp.new_name)}"
        for wp in week_plans]
    if len(week_plans) > 1:
        rows = sum(wp.week.rows for wp in week_plans)
        parts = sum(wp.week.subpartitions for wp in week_plans)
        changes.append(f"in all: {len(week_plans)} weeks, {plural(parts, 'partition')}, "
                       f"{count(rows)} rows, {size(before)} become "
                       f"{len(week_plans)} partitions")
    if keep and week_plans:
        changes.append("the original partitions are kept detached")
    # every drop checks first that the original's rows are in its replacement
    destroys = [] if keep else [Destroyed("table", wp.week.node.qualified, verified=True)
                                for wp in week_plans]
    destroys += [Destroyed("table", d.display, verified=True) for d in leftovers]
    figures = [Figure("bytes", before, before - saved, "bytes")] if week_plans else []
    notes = [
        f"estimated space saved: {size(saved)} of {size(before)}. How: the new indexes are "
        f"built by sorting, packed to their fillfactor (90%) where indexes grown by inserts "
        f"sit near 70%; each leaf beyond the first also had its own free-space/visibility "
        f"maps and index meta pages; dead rows are not copied. Heap size is otherwise "
        f"unchanged."] if week_plans else []
    if fkeys and week_plans:
        notes.append(
            "foreign keys referencing the table (" + ", ".join(
                f"{fk.name} on {fk.table_disp}" for fk in fkeys)
            + ") are dropped and re-created NOT VALID in each week's swap, then validated "
              "after it (the referencing tables are locked for the swap's milliseconds, "
              "then read once per week while writers carry on); no referencing row is "
              "deleted")
    return PlanFacts(changes=changes, destroys=destroys, figures=figures, notes=notes)


def _kept_line(parent: PartNode, d: DetachedOriginal, display: str = "") -> str:
    name = display or d.display
    return (f"kept {name}: {d.refused or 'its drop refused'}; compare it with "
            f"{d.replacement} and drop it by hand, or verify again and drop it with "
            f"`pgparts consolidate {parent.qualified} --drop-kept {name} --apply`")


def _find_kept(status: ConsolidationStatus, name: str) -> DetachedOriginal:
    for d in status.kept + status.detached:
        if name_matches(name, d.schema, d.name):
            return d
    raise ConsolidationError(
        f"{name!r} is not an original of {status.parent.qualified} that pgparts detached and "
        f"kept")


def _record_refusals(conn: psycopg.Connection, refusals: dict[int, str]) -> set[int]:
    """After a failed run: mark originals whose drop found rows missing as kept, so that later
    runs report them once instead of failing on them again. Only in a trusted registry."""
    if not refusals or markers.trust_problem(conn):
        return set()
    done = set()
    for oid, why in refusals.items():
        cur = conn.execute(sql.SQL(
            "UPDATE {} SET state = {}, note = {} WHERE role = {} AND objid = {}").format(
            markers.REGISTRY, sql.Literal(markers.REFUSED), sql.Literal(why),
            sql.Literal(markers.ORIGINAL_ROLE), sql.Literal(oid)))
        if cur.rowcount:
            done.add(oid)
    return done


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
                config: PlansConfig, plan_id: str, status: ConsolidationStatus,
                refusals: dict[int, tuple[str, str, str]], fkeys: list[ForeignKey],
                pending: set[tuple[int, str]]) -> tuple[WeekPlan, list[Step]]:
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
    if new_oid is not None and not week.pending:
        why = (f"pgparts' registry is not used: {status.registry.problem}"
               if status.registry.problem else "pgparts' registry has no record of it")
        raise ConsolidationError(
            f"a table {display_name(node.schema, new_name)} already exists and was not "
            f"provably built by pgparts for {node.qualified} ({why}); rename or drop it first")
    new = sql.Identifier(node.schema, new_name)
    old = node.ident
    shape = _parent_shape(conn, parent, new)
    key = parent.key_columns[0]
    bound = node.bound
    assert bound is not None and bound.kind == "range"
    new_disp = display_name(node.schema, new_name)
    old_disp = node.qualified
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

    unit = status.unit

    # -- mirror trigger: keeps the new table equal to the week between copy and swap -----------
    body_text = mirror_function_body(conn, new, shape.columns, shape.insertable, shape.pk,
                                     shape.pk_equality)
    fast = extended_hash_supported(conn, _column_types(conn, parent.oid))
    seq, count_fn = counter_idents(node.schema, node.oid)
    count_body = counter_function_body(conn, seq)
    evidence = evidence_sql(node.oid, node.schema, new_name)

    def new_done(c: psycopg.Connection) -> bool:
        return _registered(c, markers.CONSOLIDATED_ROLE, _rel_exists(c, node.schema, new_name),
                           node.oid)

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
        Statement(markers.guard_sql(conn, create=True),
                  note="pgparts' registry (schema pgparts, created owned by you on first use): "
                       "stop unless only you or a superuser control it"),
        Statement(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(old), "lock",
                  note=f"wait for in-flight writes to {old_disp}; hold further writes to this "
                       f"partition only until the copy commits"),
        Statement(sql.SQL("CREATE {unlogged}TABLE {new} (LIKE {parent} {including})").format(
            unlogged=unlogged, new=new, parent=parent.ident, including=including),
            note="the parent's columns, defaults and CHECK constraints"),
        *owners.default_privilege_statements(conn, node.schema, new),
        Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})").format(
            new, sql.Identifier(CHECK_NAME), check_expr),
            note="the partition bound as a CHECK: checked row by row during the copy, "
                 "so ATTACH needs no validation scan"),
        *_owner_statements(conn, node, new),
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
    verify_sql = compare_sql(old, new, shape.columns, fast)
    script_equal = raise_unless_equal(conn, verify_sql, old_disp, new_disp)
    stmts.append(Statement(
        verify_sql, "verify",
        note=f"count and checksum of the {unit} (locked against writes) and of the copy must "
             f"be equal", check=check_copy, script=script_equal))
    for ix in shape.indexes:
        stmts.append(Statement(ix.statement, note=f"like the parent's index {ix.name}"))
    for name, definition in shape.foreign_keys:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            new, sql.Identifier(name), sql.SQL(definition)),
            note="the parent's foreign key, validated now rather than under the parent's lock"))
    stmts += [
        *shadow_statements(old=old, new=new, mirror_fn=fn, mirror_body=body_text, seq=seq,
                           count_fn=count_fn, count_body=count_body, unit=unit),
        # nobody but pgparts may move the change counter the swap's check reads
        *owners.default_privilege_statements(conn, node.schema, seq, objtype="S"),
        Statement(markers.register_relation_sql(
            role=markers.CONSOLIDATED_ROLE, schema=node.schema, name=new_name,
            parent_oid=parent.oid, source_oid=node.oid, source_name=node.name,
            bound=node.bound_text, plan_id=plan_id),
            note="records the copy in pgparts' registry (committed with it): what later runs "
                 "and the status trust, never a comment"),
        Statement(markers.register_relation_sql(
            role=markers.ORIGINAL_ROLE, schema=node.schema, name=node.name,
            parent_oid=parent.oid, source_oid=node.oid, source_name=node.name,
            bound=node.bound_text, plan_id=plan_id, relkinds="rp", replacement=new_disp,
            state=markers.DETACHED),
            note=f"records the {unit}, to be recognised once the swap detached it"),
        Statement(markers.register_function_sql(
            schema=node.schema, name=f"pgparts_count_{node.oid}", parent_oid=parent.oid,
            source_oid=node.oid, plan_id=plan_id)),
        Statement(markers.register_relation_sql(
            role=markers.COUNTER_SEQUENCE_ROLE, schema=node.schema,
            name=counter_name(node.oid), parent_oid=parent.oid, source_oid=node.oid,
            source_name=node.name, bound=None, plan_id=plan_id, relkinds="S")),
        Statement(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(
            f"pgparts: consolidated copy of {old_disp} (a note for people; pgparts trusts "
            f"only its registry, pgparts.plan_objects)"))),
        Statement(sql.SQL("UPDATE {reg} SET digest = ({digest}) WHERE role = {role}"
                          " AND source_oid = {src}").format(
            reg=markers.REGISTRY, digest=digest_sql(node.oid, node.schema, new_name),
            role=sql.Literal(markers.CONSOLIDATED_ROLE), src=sql.Literal(node.oid)),
            note="a digest of both tables' files, columns and counter triggers, taken last"),
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
            f"CHECK matching the bound. Writers to this {unit} wait during the copy; everyone "
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
        why = changes_since_copy(row, c, seq)
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
                                   "checksum of both tables must be equal (the script "
                                   "always compares them)",
                              check=check_verify, script=script_equal)],
        locks=[Lock("ACCESS SHARE", f"{old_disp}, {new_disp}", "blocks nothing")],
        isolation="repeatable read", estimate=Estimate(0, 0, secs * 0.1), done=swapped,
        verify_note=f"row count and checksum of the {unit} and the copy are equal",
        group=old_disp)

    # -- the DEFAULT partition: a validated CHECK excluding the bound, so ATTACH does not scan it
    helper = _default_helper(conn, parent, default, node, key, bound, old_disp, swapped)
    valid = _validated(conn, fkeys, pending)
    # -- step 4: swap -----------------------------------------------------------------------
    swap = swap_step(conn, parent=parent, node=node, new_name=new_name, for_values=for_values,
                     mirror_fn=fn, seq=seq, count_fn=count_fn, keep=keep, default=default,
                     default_checked=bool(helper), fkeys=fkeys, validate_after=valid,
                     lock_timeout_seconds=config.lock_timeout_seconds, done=swapped,
                     unit=unit, seconds=SWAP_SECONDS)
    steps = [build, analyze, verify, *helper[:2], swap, *helper[2:],
             *validate_key_steps(conn, parent, valid, swapped, group=old_disp)]
    if not keep:
        steps.append(_drop_step(conn, old, old_disp, node.schema, new_name, new_disp,
                                shape.columns, nbytes, dropped, node.oid, fast, refusals))
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


def _referencing(conn: psycopg.Connection, parent: PartNode) -> list[ForeignKey]:
    """The foreign keys referencing the parent, which each swap drops and re-creates (a key
    on a partitioned table is refused, as by the move kinds)."""
    try:
        return referencing_keys(conn, parent.oid)
    except MoveError as exc:
        raise ConsolidationError(f"cannot consolidate {parent.qualified}: {exc}") from None


def _validated(conn: psycopg.Connection, fkeys: list[ForeignKey], pending: set[tuple[int, str]]
               ) -> list[ForeignKey]:
    """The keys that are validated now, or that an earlier swap left to validate (`pending`,
    validated first in this plan): those the swap re-creates NOT VALID and a step after it
    validates again (a key someone added NOT VALID is left so)."""
    if not fkeys:
        return []
    valid = {(int(r[0]), r[1]) for r in conn.execute(
        "SELECT conrelid, conname FROM pg_catalog.pg_constraint WHERE contype = 'f'"
        " AND conparentid = 0 AND convalidated AND conrelid = ANY(%s)",
        ([fk.table_oid for fk in fkeys],)).fetchall()}
    return [fk for fk in fkeys if (fk.table_oid, fk.name) in valid | pending]


def _leftover_validations(conn: psycopg.Connection, parent: PartNode,
                          status: ConsolidationStatus
                          ) -> tuple[list[Step], set[tuple[int, str]]]:
    """VALIDATE the referencing keys that a swap of an earlier run re-created NOT VALID (the
    swap recorded them in the registry entry of the week it detached), if that run stopped
    before validating them; nothing when they are validated. With those keys, as (table oid,
    name)."""
    steps: list[Step] = []
    pending: set[tuple[int, str]] = set()
    for d in [*status.detached, *status.kept]:
        entry = status.registry.get(markers.ORIGINAL_ROLE, d.oid) if status.registry.trusted \
            else None
        if entry is None or entry.state == markers.REFUSED:
            continue  # a refusal's note is its reason: validated before that drop refused
        try:
            fkeys = keys_from_note(conn, entry.note)
        except (ValueError, TypeError):
            continue
        for step in validate_key_steps(conn, parent, fkeys, lambda _c: True, group=d.display):
            if not step.is_done(conn):
                steps.append(step)
                pending |= {(fk.table_oid, fk.name) for fk in fkeys}
    return steps, pending


def _column_types(conn: psycopg.Connection, oid: int) -> list[int]:
    return [int(r[0]) for r in conn.execute(
        "SELECT atttypid FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped", (oid,)).fetchall()]


def _drop_leftover_steps(conn: psycopg.Connection, parent: PartNode, orig: DetachedOriginal,
                         refusals: dict[int, tuple[str, str, str]]) -> list[Step]:
    """Drop an original an earlier run detached (cross-checked by consolidation_status), then
    its change counter. Nothing here reads a row: the hash is chosen from the catalog."""
    old = sql.Identifier(orig.schema, orig.name)
    old_disp = orig.display
    new_disp = display_name(orig.new_schema, orig.new_name)
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum", (parent.oid,)).fetchall()]
    fast = extended_hash_supported(conn, _column_types(conn, parent.oid))

    def done(c: psycopg.Connection) -> bool:
        return _rel_exists(c, orig.schema, orig.name) != orig.oid

    steps = [_drop_step(conn, old, old_disp, orig.new_schema, orig.new_name, new_disp, cols,
                        orig.bytes, done, orig.oid, fast, refusals)]
    removal = _counter_removal_step(conn, orig.new_schema, orig.new_name, new_disp, orig.oid,
                                    old_disp)
    if not removal.is_done(conn):
        steps.append(removal)
    return steps
