"""The fill_gaps kind: create partitions for the holes between range partitions (finding
range_gap).

The new partitions are cut on the newest partition's grid (its interval, anchored on its lower
bound; a hole off the grid gets the pieces the grid cuts it into) and named after its pattern
(moves/planning.gap_partitions). Holes below the first partition or above the last are not
holes: drain-default proposes partitions there when the DEFAULT holds rows of them.

Planning checks the DEFAULT partition for rows of each new partition (one EXISTS each, in one
query: the only read of rows at plan time, said in the preview). Then either

- the DEFAULT holds rows of some hole: every new partition is built by one online move of the
  DEFAULT's rows, drain-default's steps (plans/steps/moves.py: the DEFAULT is the source, the
  new partitions and a new empty DEFAULT its targets; the DEFAULT's other rows stay in the new
  DEFAULT, which the swap's ATTACH scans under the parent's lock). Each new partition takes
  the sub-partitioning of the partition below its hole (steps/moves.add_subpartitions); a
  sub-partitioned DEFAULT is refused with a message saying so;
- or it holds none (or there is no DEFAULT): each partition is created standalone shaped like
  the partition below its hole, its sub-partitions included, and attached without a scan of
  the DEFAULT (create_ahead's create_attach_steps: a validated helper CHECK on the DEFAULT
  excludes the bound; an EXISTS at apply time refuses a partition whose rows reached the
  DEFAULT since planning, before anything fails at ATTACH).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg

from ...catalog import Forest, PartNode
from ...config import Config
from ...humanfmt import plural
from ...moves import keys
from ...moves.changelog import MoveError
from ...moves.planning import Existing, PlanningError, Proposal, gap_partitions, lt, show
from ...names import display_name
from ..engine.model import Plan, PlanFacts, Step
from ..engine.runner import RunResult
from ..kind import PlanKind, PlanKindError, Request
from ..steps import moves
from .create_ahead import (
    create_attach_steps,
    default_holds,
    left_standalone,
    stale_helper_step,
)
from .drain_default import replacement_default
from .split import (
    default_partition,
    move_key,
    range_parent,
    range_partition,
    refuse_reading_code,
)


def _text(v: Any) -> str:
    """A proposal's bound value as the key's type reads it."""
    if isinstance(v, keys.KeyValue):
        return str(v.text)
    if isinstance(v, datetime | date):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    return str(v)


def _ranges(node: PartNode) -> list[PartNode]:
    return [c for c in node.children if c.bound is not None and c.bound.kind == "range"]


class FillGaps(PlanKind):
    name = "fill_gaps"
    title = "Fill the gaps between range partitions"
    summary = "create partitions for the holes between range partitions (moving their rows " \
              "out of the DEFAULT online)"
    noun = "fill-gaps"
    table_help = "the RANGE-partitioned parent ('name' or 'schema.name')"
    fixes = ("range_gap",)

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return node.is_partitioned and node.strategy == "range" and len(_ranges(node)) >= 2

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        parent = range_parent(forest, request.target)
        try:
            plan = self._build(conn, forest, parent, request)
        except (MoveError, PlanningError) as exc:
            raise PlanKindError(str(exc)) from None
        plan.lock_timeout_seconds = config.plans.lock_timeout_seconds
        return plan

    def _build(self, conn: psycopg.Connection, forest: Forest, parent: PartNode,
               request: Request) -> Plan:
        earlier = moves.unfinished(conn, parent)
        if earlier is not None:
            return moves.finish_plan(conn, self.name, parent, earlier)
        key = move_key(conn, parent)
        if key.category == "other":
            raise PlanKindError(f"fill-gaps cuts holes on the grid of the newest partition, "
                                f"for time and number keys only, not {key.type_sql}")
        ranges = _ranges(parent)
        texts = [v.text for c in ranges for v in (c.bound.lower[0], c.bound.upper[0])
                 if v.special is None]
        typed = iter(keys.type_values(conn, key, texts))

        def val(v: Any) -> Any:
            return keys.bound_value(v.special) if v.special else next(typed).value

        nodes = {c.name: c for c in ranges}
        existing = [Existing(c.name, val(c.bound.lower[0]), val(c.bound.upper[0]))
                    for c in ranges]
        taken = moves.existing_names(conn, parent.schema)
        # a table an interrupted run created and did not attach yet keeps its name (create
        # path), as create_ahead takes it up again: recorded in pgparts' registry for this
        # parent (whoever owns it: the parent's owner when a superuser applied), shaped the same
        standalone = left_standalone(conn, parent.oid)
        proposals = gap_partitions(existing, parent.name,
                                   taken_names=taken - set(standalone))
        default = default_partition(parent, forest)
        stale = stale_helper_step(conn, parent, default)
        if not proposals:
            return Plan(kind=self.name, title=f"fill the gaps of {parent.qualified}",
                        target=parent.qualified, target_oid=parent.oid, steps=stale,
                        summary=[f"{parent.qualified} has no hole between its range "
                                 f"partitions"])
        if default is not None:  # the EXISTS below: never when it runs the table's code
            refuse_reading_code(conn, request, default, key.column, "fill-gaps")
        holds = default_holds(conn, default, key.column,
                              [(_text(p.lower), _text(p.upper)) for p in proposals])
        # the partition ending where a proposal's hole starts: its shape is the new one's
        below = {p.name: self._below(existing, nodes, p) for p in proposals}
        if any(standalone.get(p.name, below[p.name].relkind) != below[p.name].relkind
               for p in proposals):
            proposals = gap_partitions(existing, parent.name, taken_names=taken)
            below = {p.name: self._below(existing, nodes, p) for p in proposals}
        changes_head = (f"fill the holes between the range partitions of {parent.qualified} "
                        f"with {plural(len(proposals), 'new partition')}:")
        read_note = [f"planning checked the DEFAULT partition {default.qualified} for rows of "
                     f"each new partition (one EXISTS each)"] if default is not None else []
        if any(holds):
            assert default is not None
            if any(p.name in taken for p in proposals):  # a move renames into free names only
                proposals = gap_partitions(existing, parent.name, taken_names=taken)
                below = {p.name: self._below(existing, nodes, p) for p in proposals}
            plan = self._move(conn, parent, default, key, proposals, holds, below,
                              changes_head, read_note)
        else:
            plan = self._create(conn, parent, default, key, proposals, below, changes_head,
                                read_note)
        plan.steps[:0] = stale
        return plan

    @staticmethod
    def _below(existing: list[Existing], nodes: dict[str, PartNode], p: Proposal) -> PartNode:
        """The partition just below the hole holding `p` (a hole has one on each side)."""
        best: Existing | None = None
        for e in existing:
            if not lt(p.lower, e.upper) and (best is None or lt(best.upper, e.upper)):
                best = e
        assert best is not None
        return nodes[best.name]

    def _move(self, conn: psycopg.Connection, parent: PartNode, default: PartNode,
              key: keys.Key, proposals: list[Proposal], holds: list[bool],
              below: dict[str, PartNode], changes_head: str, notes: list[str]) -> Plan:
        held = [p for p, h in zip(proposals, holds, strict=True) if h]
        where = ", ".join(f"[{show(p.lower)}, {show(p.upper)})" for p in held)
        if default.is_partitioned:
            raise PlanKindError(f"the DEFAULT partition {default.qualified} holds rows of the "
                                f"holes ({where}) and is itself partitioned: moving rows out "
                                f"of a sub-partitioned DEFAULT is not supported")
        targets = [range_partition(conn, key, default, p.name,
                                   moves.temp_name(default.oid, i), p.lower, p.upper)
                   for i, p in enumerate(proposals)]
        for t, p in zip(targets, proposals, strict=True):
            t.model = below[p.name]  # shaped like the partition below its hole
        targets.append(replacement_default(default, targets))
        schema = default.schema
        changes = [changes_head] + [
            f"  {display_name(schema, t.name)} {t.bound_text}" for t in targets[:-1]] + [
            f"  the DEFAULT partition {default.qualified} holds rows of {where}: every new "
            f"partition is built by moving the DEFAULT's rows online, and a new "
            f"{display_name(schema, default.name)} DEFAULT replaces it, keeping the rows of "
            f"no new partition"]
        notes = notes + ["the new DEFAULT is attached last in the swap and scanned under the "
                         "parent's lock for rows of the other bounds: the rows it keeps (of "
                         "no hole) are read there once"]
        return moves.move_plan(conn, self.name, f"fill the gaps of {parent.qualified}", parent,
                               default, targets, None, changes, notes)

    def _create(self, conn: psycopg.Connection, parent: PartNode, default: PartNode | None,
                key: keys.Key, proposals: list[Proposal], below: dict[str, PartNode],
                changes_head: str, notes: list[str]) -> Plan:
        row = conn.execute(
            "SELECT pg_catalog.pg_get_userbyid(relowner)::text,"
            " pg_catalog.pg_get_userbyid(relowner) <> CURRENT_USER"
            " FROM pg_catalog.pg_class WHERE oid = %s", (parent.oid,)).fetchone()
        owner = row[0] if row and row[1] else None
        steps: list[Step] = []
        changes = [changes_head]
        for p in proposals:
            disp = display_name(parent.schema, p.name)
            range_text = f"[{show(p.lower)}, {show(p.upper)})"
            template = below[p.name]
            refusal = (f"refused {disp}: the DEFAULT partition "
                       f"{default.qualified if default else ''} holds rows of its range "
                       f"{range_text} written since the plan was made; attaching it would "
                       f"fail. Run fill-gaps again: it moves them. The partitions before it "
                       f"were created")
            steps += create_attach_steps(conn, parent, template, default, key.column,
                                         _text(p.lower), _text(p.upper), range_text, p.name,
                                         owner, refusal)
            shape = (f", sub-partitioned like {template.qualified}" if template.is_partitioned
                     else "")
            changes.append(f"  {disp} FOR VALUES FROM {show(p.lower)} TO {show(p.upper)}"
                           f"{shape}")
        summary = [changes[0].rstrip(":")]
        if default is not None:
            summary.append(f"the DEFAULT partition {default.qualified} holds no row of them: "
                           f"each is created standalone and attached without a scan of it (a "
                           f"validated CHECK excludes the new bound meanwhile; an insert of a "
                           f"row of that bound fails until the ATTACH instead of landing in "
                           f"the DEFAULT)")
        return Plan(kind=self.name, title=f"fill the gaps of {parent.qualified}",
                    target=parent.qualified, target_oid=parent.oid, steps=steps,
                    summary=summary, facts=PlanFacts(changes=changes, notes=notes),
                    details={"created": [p.name for p in proposals]})

    def report(self, result: RunResult, plan: Plan) -> list[str]:
        return super().report(result, plan) + moves.hold_line(result, plan)


__all__ = ["FillGaps"]
