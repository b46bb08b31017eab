"""The create_ahead kind: keep N partitions beyond now (finding no_future_partition).

The new partitions follow the newest one: its interval (calendar months, or a fixed step such as
a week) on the grid its bounds define, its naming pattern, and its sub-partitioning (the same
HASH modulus, or the same LIST groups, named after it). They get the parent's indexes (ATTACH
creates them on an empty table), the parent's owner and the grants of the parent and of the
newest partition. Cells from the one holding now to N beyond it that no partition covers are
created; older holes are fill-gaps' business.

Planning checks the DEFAULT partition for rows of each new bound (one EXISTS per partition,
in one query: the only read of rows at plan time, said in the preview). The partitions whose
rows the DEFAULT holds are built by a move of the DEFAULT's rows, drain-default's steps
(plans/steps/moves.py: the DEFAULT is the source, the new partitions, sub-partitioned like the
newest one, and a new empty DEFAULT the targets; writers carry on), after the others; when
the DEFAULT is itself partitioned (or the newest partition has sub-partitions a move cannot
copy: more than one level, an expression), that move is not supported and the partition is
refused with a message instead, as below. Never does an ATTACH fail on the DEFAULT's rows.

The others, per partition, each step its own short transaction under the lock timeout
(retried):
1. check the DEFAULT partition again for rows of the new bound, an EXISTS under a statement
   timeout, at apply time: rows written there since planning would make the ATTACH fail, so
   the plan refuses that partition with a message instead and stops (the partitions before it
   stay; the next run moves them);
2. create the table standalone (LIKE the parent, with its sub-partitions): no lock on the
   parent but ACCESS SHARE, where CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE on
   it and scan the DEFAULT under that lock;
3. a CHECK on the DEFAULT excluding the new bound, added NOT VALID then validated online, so
   4. ATTACH does not scan the DEFAULT (SHARE UPDATE EXCLUSIVE on the parent, ACCESS
   EXCLUSIVE on the DEFAULT for milliseconds); 5. the CHECK is dropped again.
Between 3 and 4 an insert of a row for the new bound into the parent fails on the CHECK
instead of landing in the DEFAULT; for a future bound nothing should be writing there yet.
create_attach_steps() is these steps, shared with fill_gaps.

The create step records the table in pgparts' registry (steps/markers.py, role
'new_partition') in its transaction, after giving it the parent's owner; the ATTACH's
transaction deletes the entry. A table left standalone by an interrupted run is taken up again
by the next plan only when a trusted registry entry names it and the catalog agrees (same oid,
name, owner, not attached): its owner is then the parent's, not the applying role, when a
superuser applied. Any other table of that name, whoever owns it and whatever its comment says,
is never attached (anyone with CREATE on the schema could have put it there): the new partition
gets another name. A taken-up table is still attached only while it holds no row (a step checks
before the DEFAULT's CHECK is added).
"""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import psycopg
from psycopg import sql

from ...bounds import Bound, BoundValue
from ...catalog import Forest, PartNode
from ...config import Config
from ...humanfmt import plural
from ...moves import keys
from ...moves.changelog import MoveError
from ...moves.planning import (
    Interval,
    PlanningError,
    cell_of,
    grid_start,
    infer_interval,
    infer_name_pattern,
)
from ...names import check_identifier_length, display_name, quote_ident
from ...table_code import named, table_code
from ..engine.model import Estimate, Lock, Plan, PlanFacts, Statement, Step, VerificationFailed
from ..engine.runner import RunResult
from ..kind import Option, PlanKind, PlanKindError, Request, find_table
from ..steps import markers, moves, owners
from ..steps.shape import grant_statements
from ..steps.swap import DEFAULT_CHECK_PREFIX, bound_sql, default_helper_steps
from .drain_default import replacement_default
from .lifecycle import (
    key_of,
    literal_text,
    now_utc,
    policy_of,
    ranged_children,
    refuse_script,
    show,
)
from .split import move_key, range_partition

DEFAULT_COUNT = 4
CHECK_TIMEOUT_SECONDS = 60.0  # the DEFAULT's EXISTS check: an index or a small DEFAULT answers


def _count(n: int) -> None:
    if not 1 <= n <= 1000:  # as the policy's premake
        raise ValueError("must be from 1 to 1000")


def _relation(conn: psycopg.Connection, schema: str, name: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT c.oid, c.relkind, c.relispartition"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    if row is None:
        return None
    return {"oid": row[0], "relkind": row[1], "attached": row[2]}


def left_standalone(conn: psycopg.Connection, parent_oid: int) -> dict[str, str]:
    """The tables an interrupted create-ahead or fill-gaps run created for `parent_oid` and did
    not attach, by name, with their relkind: only those a trusted registry records and the
    catalog agrees with (same oid, schema, name and owner, a table, no rules, attached to
    nothing). Never a table found by its name, owner or comment alone."""
    if not _can_record(conn):  # the registry absent, or not this role's to read
        return {}
    reg = markers.read_registry(conn)
    if not reg.trusted:
        return {}
    entries = reg.of(markers.NEW_PARTITION_ROLE, parent_oid)
    facts = markers.relation_facts(conn, [e.objid for e in entries])
    out: dict[str, str] = {}
    for e in entries:
        f = facts.get(e.objid)
        if not markers.mismatch(e, f) and f is not None and f["attached_to"] is None:
            out[e.name] = f["relkind"]
    return out


def _can_record(conn: psycopg.Connection) -> bool:
    """Whether the create step can record its table: the registry exists (trusted: checked
    before) and the applying role may read and write it (one a superuser created grants nobody),
    or it may create it. A role that may not (no CREATE on the database, no schema pgparts)
    still creates partitions, unrecorded, as before there was a
    registry: after an interruption its table is left aside, never taken up."""
    row = conn.execute(
        "SELECT CASE WHEN t.oid IS NOT NULL"
        # one privilege per call: with a list PostgreSQL answers whether the role holds any
        "  THEN pg_catalog.has_schema_privilege(n.oid, 'USAGE')"
        "   AND pg_catalog.has_table_privilege(t.oid, 'SELECT')"
        "   AND pg_catalog.has_table_privilege(t.oid, 'INSERT')"
        "   AND pg_catalog.has_table_privilege(t.oid, 'DELETE')"
        "  WHEN n.oid IS NULL"
        "  THEN pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')"
        "  ELSE pg_catalog.has_schema_privilege(n.oid, 'CREATE') END"
        " FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'pgparts'"
        " LEFT JOIN pg_catalog.pg_class t ON t.relnamespace = n.oid"
        "  AND t.relname = 'plan_objects'").fetchone()
    return bool(row and row[0])


def _created(parent_oid: int, schema: str, name: str) -> Any:
    """The create step is done once the table is attached, or left standalone by a run of ours
    (recorded): a table of that name that is neither makes the CREATE fail instead."""
    attached = _attached(parent_oid, schema, name)

    def done(conn: psycopg.Connection) -> bool:
        return attached(conn) or name in left_standalone(conn, parent_oid)
    return done


def _attached(parent_oid: int, schema: str, name: str) -> Any:
    def done(conn: psycopg.Connection) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_inherits i"
            " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE i.inhparent = %s AND n.nspname = %s AND c.relname = %s"
            " AND NOT i.inhdetachpending)", (parent_oid, schema, name)).fetchone()
        return bool(row and row[0])
    return done


def _partition_by(node: PartNode) -> sql.Composable:
    if node.key_expressions or not node.key_columns or node.strategy not in ("hash", "list",
                                                                              "range"):
        raise PlanKindError(f"create_ahead copies sub-partitioning by columns only; "
                            f"{node.qualified} is partitioned by an expression")
    return sql.SQL(" PARTITION BY {} ({})").format(
        sql.SQL(node.strategy.upper()),
        sql.SQL(", ").join(sql.Identifier(c) for c in node.key_columns))


def _for_values(bound: Bound) -> sql.Composable:
    if bound.kind == "default":
        return sql.SQL("DEFAULT")
    if bound.kind == "hash":
        return sql.SQL("FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
            sql.Literal(bound.modulus), sql.Literal(bound.remainder))
    if bound.kind == "list":
        return sql.SQL("FOR VALUES IN ({})").format(sql.SQL(", ").join(
            sql.SQL("NULL") if v.special == "NULL" else sql.Literal(v.text)
            for v in bound.values))
    return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(
        sql.SQL(", ").join(bound_sql(v) for v in bound.lower),
        sql.SQL(", ").join(bound_sql(v) for v in bound.upper))


def _child_name(template: PartNode, child: PartNode, new_name: str) -> str:
    """`account_balances_2026_11_29_hash_0` -> `<new_name>_hash_0`."""
    rest = (child.name[len(template.name):] if child.name.startswith(template.name)
            else f"_{child.name}")
    name = new_name + rest
    try:
        check_identifier_length(name)
    except ValueError as exc:
        raise PlanKindError(str(exc)) from None
    return name


def _shape_statements(conn: psycopg.Connection, template: PartNode, schema: str, name: str,
                      owner: str | None, parent_oid: int) -> list[Statement]:
    """CREATE TABLE statements for `name`'s sub-partitions, shaped like `template`'s, with
    their owner and grants (recursively for deeper levels)."""
    out: list[Statement] = []
    for child in sorted(template.children, key=lambda c: c.name):
        if child.bound is None:
            continue
        cname = _child_name(template, child, name)
        ident = sql.Identifier(schema, cname)
        by = _partition_by(child) if child.is_partitioned else sql.SQL("")
        out.append(Statement(sql.SQL("CREATE TABLE {} PARTITION OF {} {}{}").format(
            ident, sql.Identifier(schema, name), _for_values(child.bound), by),
            note=f"sub-partition {child.bound.short()}, as {child.qualified}"))
        out += owners.default_privilege_statements(conn, schema, ident)
        out += _owner_and_grants(conn, ident, owner, [parent_oid, child.oid])
        if child.is_partitioned:
            out += _shape_statements(conn, child, schema, cname, owner, parent_oid)
    return out


def _owner_and_grants(conn: psycopg.Connection, ident: sql.Identifier, owner: str | None,
                      oids: list[int]) -> list[Statement]:
    out = []
    if owner is not None:
        out.append(Statement(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
            ident, sql.Identifier(owner)), note="the parent's owner"))
    return out + grant_statements(conn, oids, ident)


class CreateAhead(PlanKind):
    name = "create_ahead"
    title = "Create partitions ahead"
    summary = "create the next partitions ahead of time, shaped like the newest one"
    noun = "create_ahead"
    fixes = ("no_future_partition",)
    table_help = "the table RANGE partitioned by time ('name' or 'schema.name')"
    options = (
        Option("count", "int", metavar="N", validate=_count,
               help=f"keep N partitions beyond the one holding now (default: the table's "
                    f"[policy] premake, else {DEFAULT_COUNT})"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        try:
            key_of(node, self.name)
        except PlanKindError:
            return False
        return bool(ranged_children(node))

    def default_request(self, forest: Forest, target: str, config: Config) -> Request:
        return Request({"count": None}, target)

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config, now: datetime | None = None) -> Plan:
        root = find_table(forest, request.target)
        key, ktype = key_of(root, self.name)
        policy = policy_of(forest, root, config)
        count = request.get("count") or (policy.premake if policy and policy.premake
                                         else DEFAULT_COUNT)
        ranged = ranged_children(root)
        if not ranged:
            raise PlanKindError(f"{root.qualified} has no bounded range partition to take the "
                                f"shape from")
        newest = ranged[-1]
        try:
            interval = infer_interval(newest.lower, newest.upper)
        except PlanningError as exc:
            raise PlanKindError(str(exc)) from None
        pattern = infer_name_pattern(newest.node.name, newest.lower, root.name, interval)
        now = now or now_utc()
        anchor = newest.lower
        k_now = cell_of(anchor, interval, now)
        taken = [(r.lower, r.upper) for r in ranged] + _unbounded(root)
        default = forest.nodes.get(root.default_partition_oid) \
            if root.default_partition_oid else None
        row = conn.execute(
            "SELECT pg_catalog.pg_get_userbyid(relowner)::text,"
            " pg_catalog.pg_get_userbyid(relowner) <> CURRENT_USER"
            " FROM pg_catalog.pg_class WHERE oid = %s", (root.oid,)).fetchone()
        owner = row[0] if row and row[1] else None
        earlier = moves.unfinished(conn, root)
        if earlier is not None:  # a move of the DEFAULT's rows swapped in by an earlier run
            plan = moves.finish_plan(conn, self.name, root, earlier)
            plan.lock_timeout_seconds = config.plans.lock_timeout_seconds
            return plan
        cells: list[tuple[datetime, datetime]] = []
        notes: list[str] = []
        for k in range(k_now, k_now + count + 1):
            lo = grid_start(anchor, interval, k)
            hi = grid_start(anchor, interval, k + 1)
            overlap = [t for t in taken if t[0] < hi and lo < t[1]]
            if overlap:
                if not any(t == (lo, hi) for t in overlap):
                    notes.append(f"{show(lo)} to {show(hi)} is partly covered by an existing "
                                 f"partition; left alone")
                continue
            cells.append((lo, hi))
        texts = [(literal_text(lo, ktype), literal_text(hi, ktype)) for lo, hi in cells]
        # a preview never reads the DEFAULT when that runs the table's code (table_code.py);
        # refusing would stop `maintain --dry-run` for this table's other actions too, so it
        # plans as if the DEFAULT held none of the new bounds' rows and says so. A run plans
        # again and reads it; this plan, applied as it is (the console), refuses a partition
        # whose rows the DEFAULT holds at its apply-time EXISTS
        unread = (table_code(conn, default.oid, [key])
                  if default is not None and cells and not request.applying else [])
        holds = [False] * len(texts) if unread else default_holds(conn, default, key, texts)
        why_not = _why_no_move(default, newest.node) if any(holds) else ""
        steps: list[Step] = stale_helper_step(conn, root, default)
        created: list[str] = []
        specs: list[str] = []  # schema-qualified always: never ambiguous for a later lookup
        to_move: list[tuple[str, str, str, str]] = []  # (name, lo text, hi text, range text)
        names: set[str] = set()
        for (lo, hi), (lo_text, hi_text), held in zip(cells, texts, holds, strict=True):
            range_text = f"[{show(lo)}, {show(hi)})"
            moving = held and not why_not
            name = self._free_name(conn, root, pattern.name(lo), newest.node, reuse=not moving,
                                   also_taken=names)
            names.add(name)
            disp = display_name(root.schema, name)
            if moving:
                to_move.append((name, lo_text, hi_text, range_text))
            else:
                dname = default.qualified if default is not None else ""
                if held:
                    refusal = (f"refused {disp}: the DEFAULT partition {dname} holds rows of "
                               f"its range {range_text} and {why_not}; the partitions before "
                               f"it were created")
                elif unread:
                    refusal = (f"refused {disp}: the DEFAULT partition {dname} holds rows of "
                               f"its range {range_text}, which the preview did not check "
                               f"(reading it runs the table's code); attaching it would fail. "
                               f"`pgparts create-ahead ... --apply` or a maintain run moves "
                               f"them. The partitions before it were created")
                else:
                    refusal = (f"refused {disp}: the DEFAULT partition {dname} holds rows of "
                               f"its range {range_text} written since the plan was made; "
                               f"attaching it would fail. Run create-ahead again: it moves "
                               f"them. The partitions before it were created")
                steps += create_attach_steps(conn, root, newest.node, default, key, lo_text,
                                             hi_text, range_text, name, owner, refusal)
            created.append(disp)
            specs.append(f"{quote_ident(root.schema)}.{quote_ident(name)}")
        interval_text = _interval_text(interval)
        summary = ([f"create {plural(len(created), 'partition')} of {root.qualified} ahead "
                    f"({interval_text}, shaped like {newest.node.qualified}), keeping {count} "
                    f"beyond the one holding now"] if created else
                   [f"{root.qualified} already has partitions up to {count} beyond now"])
        details: dict[str, Any] = {"plan_id": uuid.uuid4().hex, "created": specs}
        if unread:
            assert default is not None
            details["not_checked"] = (f"did not check the DEFAULT partition "
                                      f"{default.qualified} for their rows: reading it would "
                                      f"run {named(unread)}; a run reads it")
            summary.append(f"planning did not check the DEFAULT partition {default.qualified} "
                           f"for rows of the new partitions: reading it would run "
                           f"{named(unread)}, code that is not built in, and a preview never "
                           f"runs the table's code. This plan assumes it holds none; "
                           f"`pgparts create-ahead ... --apply` and maintain runs read it (as "
                           f"the applying role) and move such rows into the new partitions")
        elif cells and default is not None:
            summary.append(f"planning checked the DEFAULT partition {default.qualified} for "
                           f"rows of each new partition (one EXISTS each)")
        if cells and default is not None and len(to_move) < len(cells):
            still = "" if unread else "still "
            summary.append(f"before creating each one, the run checks that the DEFAULT "
                           f"partition {default.qualified} {still}holds none of its rows (an "
                           f"EXISTS under a statement timeout); if it does, that partition "
                           f"is refused and the run stops there")
        changes = [f"new partition {c}" for c in created]
        destroys: list[Any] = []
        if to_move:
            assert default is not None
            move = self._move_plan(conn, forest, root, default, newest.node, to_move)
            steps += move.steps
            changes += move.facts.changes
            destroys = move.facts.destroys
            notes += move.facts.notes
            details["move"] = move.details
            summary.append(f"the DEFAULT partition {default.qualified} holds rows of "
                           f"{', '.join(n for n, *_ in to_move)}: they are moved into "
                           f"{'it' if len(to_move) == 1 else 'them'} online, as drain-default "
                           f"does, and a new empty DEFAULT takes its place")
        elif why_not:
            notes.append(f"the DEFAULT partition {default.qualified} holds rows of a new "
                         f"partition and {why_not}: that partition is refused")
        return Plan(kind=self.name, title=f"create {plural(len(created), 'partition')} of "
                                          f"{root.qualified} ahead",
                    target=root.qualified, target_oid=root.oid, steps=steps, summary=summary,
                    facts=PlanFacts(changes=changes, destroys=destroys, notes=notes,
                                    extra={"created": created, "count": count}),
                    details=details,
                    lock_timeout_seconds=config.plans.lock_timeout_seconds)

    def _move_plan(self, conn: psycopg.Connection, forest: Forest, root: PartNode,
                   default: PartNode, newest: PartNode,
                   to_move: list[tuple[str, str, str, str]]) -> Plan:
        """Drain-default's steps for the new partitions whose rows the DEFAULT holds: the
        DEFAULT is the move's source, the new partitions and a new empty DEFAULT its targets."""
        try:
            key = move_key(conn, root)
            targets = [range_partition(conn, key, default, name,
                                       moves.temp_name(default.oid, i), keys.KeyValue(lo, None),
                                       keys.KeyValue(hi, None))
                       for i, (name, lo, hi, _r) in enumerate(to_move)]
            for t in targets:  # shaped like the newest partition, its sub-partitions too
                t.model = newest
            targets.append(replacement_default(default, targets))
            changes = [f"move the rows of {default.qualified} (the DEFAULT) of "
                       f"{r} into {display_name(root.schema, n)}" for n, _lo, _hi, r in to_move]
            return moves.move_plan(conn, self.name, f"move rows out of {default.qualified}",
                                   root, default, targets, None, changes, [])
        except (MoveError, PlanningError) as exc:
            raise PlanKindError(str(exc)) from None

    def report(self, result: RunResult, plan: Plan) -> list[str]:
        return super().report(result, plan) + moves.hold_line(result, plan)

    def _free_name(self, conn: psycopg.Connection, root: PartNode, base: str,
                   newest: PartNode, reuse: bool = True, also_taken: set[str] | None = None
                   ) -> str:
        """`base`, or `base_2`, ... when a relation nobody may reuse holds the name (with
        `reuse` False, any relation: a move renames its new table to it in the swap)."""
        ours = left_standalone(conn, root.oid) if reuse else {}
        name, n = base, 1
        while True:
            try:
                check_identifier_length(name)
            except ValueError as exc:
                raise PlanKindError(str(exc)) from None
            rel = _relation(conn, root.schema, name)
            # free, or left standalone by an interrupted run of this kind: taken up again
            if name not in (also_taken or set()) and (
                    rel is None or ours.get(name) == newest.relkind):
                return name
            n += 1
            name = f"{base}_{n}"

def create_attach_steps(conn: psycopg.Connection, root: PartNode, newest: PartNode,
                        default: PartNode | None, key: str, lo_text: str, hi_text: str,
                        range_text: str, name: str, owner: str | None,
                        refusal: str) -> list[Step]:
    """Create `name` standalone for [lo_text, hi_text) shaped like `newest` (its
    sub-partitions too), then attach it without a scan of the DEFAULT: a check that the DEFAULT
    holds no row of the bound (refused with `refusal` otherwise), the DEFAULT's helper CHECK
    added and validated, ATTACH, the helper CHECK dropped. Texts are the bound values as the
    key's type reads them."""
    schema = root.schema
    ident = sql.Identifier(schema, name)
    disp = display_name(schema, name)
    attached = _attached(root.oid, schema, name)
    lo_sql, hi_sql = sql.Literal(lo_text), sql.Literal(hi_text)
    steps: list[Step] = []
    if default is not None:
        col = sql.Identifier(key)
        def check(row: Any, _c: psycopg.Connection, refusal: str = refusal) -> str:
            if row and row[0]:
                raise VerificationFailed(refusal)
            return f"the DEFAULT holds no row of {range_text}"

        exists = sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} >= {} AND {} < {})").format(
            default.ident, col, lo_sql, col, hi_sql)

        steps.append(Step(
            title=f"Check the DEFAULT for rows of {disp}",
            explanation=f"EXISTS on {default.qualified} for {key} in {range_text}, under a "
                        f"statement timeout: rows there would make the ATTACH fail, so "
                        f"the plan refuses this partition instead",
            statements=[Statement(exists, "verify",
                note="refuse the partition if the DEFAULT holds rows of its range",
                check=check, script=refuse_script(conn, exists, refusal))],
            locks=[Lock("ACCESS SHARE", default.qualified, "blocks no reader or writer")],
            statement_timeout_seconds=CHECK_TIMEOUT_SECONDS, done=attached,
            verify_note="the DEFAULT holds no row of the new range", group=disp))
    by = _partition_by(newest) if newest.is_partitioned else sql.SQL("")
    problem = markers.trust_problem(conn)
    if problem:
        raise PlanKindError(f"pgparts refuses to use its registry, where it records {disp} "
                            f"until it is attached: {problem} (drop or fix the schema pgparts, "
                            f"see README, Security)")
    record = _can_record(conn)
    statements = [Statement(sql.SQL(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        " INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS){}").format(
        ident, root.ident, by), note=f"standalone, shaped like {root.qualified}")]
    if record:
        statements.insert(0, Statement(
            markers.guard_sql(conn, create=True),
            note="pgparts' registry (schema pgparts, created owned by you on first use): "
                 "stop unless only you or a superuser control it"))
        # entries of leftovers the operator dropped or attached by hand since
        statements.insert(1, Statement(sql.SQL(
        "DELETE FROM {reg} r WHERE r.role = {role} AND r.parent_oid = {parent}"
        " AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = r.objid"
        " AND NOT c.relispartition)").format(
        reg=markers.REGISTRY, role=sql.Literal(markers.NEW_PARTITION_ROLE),
        parent=sql.Literal(root.oid)),
        note="forget recorded tables of this parent that are gone or attached"))
    statements += owners.default_privilege_statements(conn, schema, ident)
    statements += _owner_and_grants(conn, ident, owner, [root.oid, newest.oid])
    statements += _shape_statements(conn, newest, schema, name, owner, root.oid)
    # after the owner is given: the entry records the owner a re-run must find
    if record:
        statements.append(Statement(markers.register_relation_sql(
            role=markers.NEW_PARTITION_ROLE, schema=schema, name=name, parent_oid=root.oid,
            source_oid=0, source_name="", bound=range_text, plan_id="", relkinds="rp"),
            note="recorded in pgparts' registry in the same transaction: only a table so "
                 "recorded is taken up by a run after an interruption"))
    steps.append(Step(
        title=f"Create {disp}",
        explanation=f"CREATE TABLE {disp} standalone for {range_text}"
                    + (f", with {plural(len(newest.children), 'sub-partition')} like "
                       f"{newest.qualified}" if newest.is_partitioned else "")
                    + "; only ACCESS SHARE on the parent (LIKE reads its columns)"
                    + ("" if record else
                       ". You cannot record it in pgparts' registry (it does not exist and you "
                       "may not create the schema pgparts, or it is another role's): if the run "
                       "stops before the ATTACH, this table stays aside and the next run "
                       "creates the partition under another name"),
        statements=statements,
        locks=[Lock("ACCESS SHARE", root.qualified, "blocks no reader or writer")],
        retry="step", statement_timeout_seconds=10.0, estimate=Estimate(0, 0, 0.05),
        done=_created(root.oid, schema, name), group=disp))
    steps.append(_empty_step(conn, ident, disp, attached))
    helpers: list[Step] = []
    if default is not None:
        bound = Bound("range", "", lower=(BoundValue(lo_text),), upper=(BoundValue(hi_text),))
        # the helper CHECK's name comes from an oid; the new table has none yet
        stand_in = SimpleNamespace(oid=_helper_id(schema, name))
        helpers = default_helper_steps(conn, root, default, stand_in,  # type: ignore[arg-type]
                                       key, bound, disp, attached)
        for helper in helpers[1:]:  # their titles name only the DEFAULT
            helper.title = f"{helper.title} (for {disp})"
        steps += helpers[:2]
    steps.append(Step(
        title=f"Attach {disp}",
        explanation=f"ALTER TABLE {root.qualified} ATTACH PARTITION {disp} FOR VALUES "
                    f"{range_text}: the table is empty, and the parent's indexes are created "
                    f"on it (empty: instant)",
        statements=[Statement(sql.SQL(
            "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            root.ident, ident, lo_sql, hi_sql), note=f"attach {disp}")] + ([
            Statement(markers.guard_sql(conn, create=False),
                      note="stop unless only you or a superuser control pgparts' registry"),
            Statement(sql.SQL(
                "DELETE FROM {} WHERE role = {} AND objid = {}::pg_catalog.regclass"
                "::pg_catalog.oid").format(
                markers.REGISTRY, sql.Literal(markers.NEW_PARTITION_ROLE),
                sql.Literal(ident.as_string(conn))),
                note="attached: no longer a leftover to take up")] if record else []),
        locks=[Lock("SHARE UPDATE EXCLUSIVE", root.qualified,
                    "other DDL on it waits; reads and writes go on"),
               Lock("ACCESS EXCLUSIVE", disp, "nobody uses it yet")]
        + ([Lock("ACCESS EXCLUSIVE", default.qualified,
                 "an instant: its CHECK spares the scan")] if default is not None else []),
        retry="step", statement_timeout_seconds=10.0, estimate=Estimate(0, 0, 0.05),
        done=attached, group=disp))
    steps += helpers[2:]
    return steps



def _empty_step(conn: psycopg.Connection, ident: sql.Identifier, disp: str,
                attached: Any) -> Step:
    """The table about to be attached holds no row. A table of that name left standalone is
    taken up only when pgparts' registry records it (an interrupted run's, empty); one holding
    rows is not ours,
    such as a partition the operator detached to keep aside: attaching it would bring its
    rows back into the table."""
    refusal = (f"refused {disp}: a table of that name exists outside the partitioned table and "
               f"holds rows, so no run of pgparts left it there; rename or drop it, then run "
               f"again. The partitions before it were created")
    exists = sql.SQL("SELECT EXISTS (SELECT FROM {})").format(ident)

    def check(row: Any, _c: psycopg.Connection) -> str:
        if row and row[0]:
            raise VerificationFailed(refusal)
        return f"{disp} is empty"

    return Step(
        title=f"Check that {disp} is empty",
        explanation=f"{disp} is attached only while it holds no row: pgparts creates it empty, "
                    f"and a table of that name holding rows is somebody else's",
        statements=[Statement(exists, "verify", note="refuse a table that holds rows",
                              check=check, script=refuse_script(conn, exists, refusal))],
        locks=[Lock("ACCESS SHARE", disp, "nobody uses it yet")],
        statement_timeout_seconds=CHECK_TIMEOUT_SECONDS, done=attached,
        verify_note=f"{disp} holds no row", group=disp)


def _helper_id(schema: str, name: str) -> int:
    return zlib.crc32(f"{schema}.{name}".encode())


def stale_helper_step(conn: psycopg.Connection, root: PartNode,
                      default: PartNode | None) -> list[Step]:
    """A step dropping the DEFAULT's helper CHECKs of partitions create_attach_steps attached
    already: left by a run killed between the ATTACH and the CHECK's removal (a re-run plans
    nothing more for that partition). Only the names those steps give (from the partition's
    name) are dropped."""
    if default is None or default.relkind != "r":
        return []
    wanted = {f"{DEFAULT_CHECK_PREFIX}{_helper_id(c.schema, c.name)}" for c in root.children
              if c.oid != default.oid}
    found = [r[0] for r in conn.execute(
        "SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = %s AND contype = 'c'"
        " AND conname = ANY(%s) ORDER BY 1", (default.oid, sorted(wanted))).fetchall()]
    if not found:
        return []
    oid = default.oid

    def gone(c: psycopg.Connection) -> bool:
        return not c.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE"
                             " conrelid = %s AND conname = ANY(%s))", (oid, found)).fetchone()[0]

    return [Step(
        title=f"Remove leftover helper CHECKs from {default.qualified}",
        explanation=(f"An earlier run attached the partitions these CHECKs excluded from the "
                     f"DEFAULT and was stopped before removing them; the partition bounds keep "
                     f"those rows out of {default.qualified} now. ACCESS EXCLUSIVE on it for an "
                     f"instant (a lock timeout retries it)."),
        statements=[Statement(sql.SQL("ALTER TABLE {} {}").format(default.ident, sql.SQL(", ")
                              .join(sql.SQL("DROP CONSTRAINT IF EXISTS {}").format(
                                  sql.Identifier(n)) for n in found)), "lock")],
        locks=[Lock("ACCESS EXCLUSIVE", default.qualified, "an instant")],
        retry="step", statement_timeout_seconds=10.0, estimate=Estimate(0, 0, 0.01),
        done=gone)]


def default_holds(conn: psycopg.Connection, default: PartNode | None, key: str,
                  ranges: list[tuple[str, str]]) -> list[bool]:
    """Whether the DEFAULT holds rows of each range [lower text, upper text), in one query of
    one EXISTS per range (a read of its rows at plan time; an index on the key answers it)."""
    if default is None or not ranges:
        return [False] * len(ranges)
    col = sql.Identifier(key)
    row = conn.execute(sql.SQL("SELECT ARRAY[{}]::pg_catalog.bool[]").format(
        sql.SQL(", ").join(sql.SQL("EXISTS (SELECT FROM {} WHERE {} >= {} AND {} < {})").format(
            default.ident, col, sql.Literal(lo), col, sql.Literal(hi)) for lo, hi in ranges)
    )).fetchone()
    return [bool(v) for v in row[0]]


def _why_no_move(default: PartNode | None, newest: PartNode) -> str:
    """Why the DEFAULT's rows of a new partition cannot be moved into it ('' when they can):
    what steps/moves.add_subpartitions refuses, said per partition instead of for the plan."""
    if default is not None and default.is_partitioned:
        return ("the DEFAULT is itself partitioned: moving rows out of a sub-partitioned "
                "DEFAULT is not supported")
    if newest.is_partitioned and (newest.key_expressions or not newest.key_columns or any(
            c.is_partitioned for c in newest.children)):
        return (f"{newest.qualified} is sub-partitioned by an expression or on more than one "
                f"level: a move into that shape is not supported")
    return ""


def _unbounded(root: PartNode) -> list[tuple[datetime, datetime]]:
    """Ranges with a MINVALUE or MAXVALUE end, as far as datetimes go: nothing is created
    where they reach (an open-ended last partition covers the whole future)."""
    lowest = datetime.min.replace(tzinfo=UTC)
    highest = datetime.max.replace(tzinfo=UTC)
    out = []
    for c in root.children:
        b = c.bound
        if b is None or b.kind != "range" or not b.lower or not b.upper:
            continue
        lo = lowest if b.lower[0].special == "MINVALUE" else b.lower[0].as_datetime()
        hi = highest if b.upper[0].special == "MAXVALUE" else b.upper[0].as_datetime()
        if lo is not None and hi is not None and (lo == lowest or hi == highest):
            out.append((lo, hi))
    return out


def _interval_text(interval: Interval) -> str:
    if interval.months:
        return plural(interval.months, "month") + " each"
    step = interval.step
    if step.days and step.days % 7 == 0 and not step.seconds:
        return plural(step.days // 7, "week") + " each"
    if step.days and not step.seconds:
        return plural(step.days, "day") + " each"
    return f"{step} each"
