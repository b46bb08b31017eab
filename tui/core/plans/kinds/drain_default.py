"""The drain-default kind: move the rows of the DEFAULT partition into new partitions shaped
like the newest one (its interval, naming pattern and sub-partitioning; on a LIST-partitioned
table, one per value: drain_list.py), online (tui/core/moves; the steps are
plans/steps/moves.py). The DEFAULT is the move's source; its replacement, a new empty DEFAULT,
is one of the targets (it takes the rows no new partition takes: NULL keys, rows written
meanwhile outside them). A sub-partitioned DEFAULT is refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from ...catalog import Forest, PartNode
from ...config import Config
from ...infinity import is_infinite
from ...moves import keys
from ...moves.changelog import MoveError
from ...moves.planning import Existing, PlanningError, infer_interval, propose_partitions
from ...names import display_name
from ..engine.model import Plan, PlanFacts
from ..engine.runner import RunResult
from ..kind import NodeAction, PlanKind, PlanKindError, Request, find_table
from ..steps import moves
from .drain_list import list_drain_plan
from .split import (
    default_partition,
    move_key,
    range_parent,
    range_partition,
    refuse_reading_code,
)


def replacement_default(default: PartNode, targets: list[moves.NewPartition]
                        ) -> moves.NewPartition:
    """The new, empty DEFAULT that takes the old one's place and name when the DEFAULT is a
    move's source: it takes the rows none of `targets` take (NULL keys, rows of other bounds,
    rows written meanwhile outside them). Built last, after `targets`."""
    rest = sql.SQL("NOT ({})").format(sql.SQL(" OR ").join(t.predicate for t in targets))
    return moves.NewPartition(
        name=default.name, temp=moves.temp_name(default.oid, len(targets)),
        bound=sql.SQL("DEFAULT"), bound_text="DEFAULT", predicate=rest, check=None)


class DrainDefault(PlanKind):
    name = "drain_default"
    title = "Drain the DEFAULT partition"
    summary = "move the DEFAULT partition's rows into new partitions shaped like their " \
              "neighbours, online"
    noun = "drain-default"
    table_help = "the RANGE- or LIST-partitioned parent ('name' or 'schema.name')"
    fixes = ("default_has_rows",)
    moves_rows = True

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return (node.is_partitioned and node.strategy in ("range", "list")
                and node.default_partition_oid is not None)

    def actions_for(self, forest: Forest, node: PartNode) -> list[NodeAction]:
        """On the DEFAULT partition itself, the entry is that partition's own action."""
        parent = forest.nodes.get(node.parent_oid) if node.parent_oid else None
        return [replace(a, on_node=True, detail=node.qualified)
                if parent is not None and parent.default_partition_oid == node.oid else a
                for a in super().actions_for(forest, node)]

    def moved_from(self, forest: Forest, node: PartNode, action: NodeAction) -> list[PartNode]:
        """The DEFAULT partition, whichever node the entry was made for."""
        default = forest.nodes.get(action.table.default_partition_oid or 0)
        return [default] if default is not None else []

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        parent = find_table(forest, request.target)
        if parent.strategy != "list":
            parent = range_parent(forest, request.target)
        try:
            earlier = moves.unfinished(conn, parent)
            if earlier is not None:
                return moves.finish_plan(conn, self.name, parent, earlier)
            default = default_partition(parent, forest)
            if default is None:
                raise PlanKindError(f"{parent.qualified} has no DEFAULT partition")
            if default.is_partitioned:
                raise PlanKindError(f"the DEFAULT partition {default.qualified} is itself "
                                    f"partitioned: draining it is not supported yet")
            # the plan is made from the DEFAULT's rows: a preview reads them only when that
            # runs no code of the table's
            refuse_reading_code(conn, request, default, move_key(conn, parent).column,
                                "drain-default")
            if parent.strategy == "list":
                return list_drain_plan(conn, forest, parent, default, self.name)
            return self._build(conn, parent, default)
        except (MoveError, PlanningError) as exc:
            raise PlanKindError(str(exc)) from None

    def _build(self, conn: psycopg.Connection, parent: PartNode, default: PartNode) -> Plan:
        """The range parent's plan: new partitions shaped like its newest one."""
        key = move_key(conn, parent)
        ranges = [c for c in parent.children if c.bound is not None and c.bound.kind == "range"]
        texts = [v.text for c in ranges for v in (c.bound.lower[0], c.bound.upper[0])
                 if v.special is None]
        typed = iter(keys.type_values(conn, key, texts))

        def val(v: Any) -> Any:
            return keys.bound_value(v.special) if v.special else next(typed).value

        existing = [Existing(c.name, val(c.bound.lower[0]), val(c.bound.upper[0]))
                    for c in ranges]
        # a range up to 'infinity' has no period's shape either
        bounded = [e for e in existing
                   if e.lower is not keys.MINVALUE and e.upper is not keys.MAXVALUE
                   and not is_infinite(e.lower) and not is_infinite(e.upper)]
        if not bounded:
            raise PlanKindError(f"{parent.qualified} has no bounded range partition to take "
                                f"the new partitions' shape from")
        newest = max(bounded, key=lambda e: e.lower)
        interval = infer_interval(newest.lower, newest.upper)
        # the only read of rows at plan time: one aggregate over the DEFAULT, asked for
        occupied = keys.default_occupancy(conn, key, default.ident, interval)
        schema = default.schema
        proposals = propose_partitions(existing, occupied, parent.name,
                                       taken_names=moves.existing_names(conn, schema))
        read_note = (f"planning read the rows of {default.qualified} once (one aggregate "
                     f"query: where its key values lie) to propose these partitions")
        if not proposals:
            return Plan(kind=self.name, title=f"drain {default.qualified}",
                        target=parent.qualified, target_oid=parent.oid, steps=[],
                        summary=[f"{default.qualified} holds no row a range partition could "
                                 f"take"], facts=PlanFacts(notes=[read_note]))
        model = next(c for c in ranges if c.name == newest.name)
        targets = [range_partition(conn, key, default, p.name,
                                   moves.temp_name(default.oid, i), p.lower, p.upper)
                   for i, p in enumerate(proposals)]
        for t in targets:  # its sub-partitioning too (none when it is plain)
            t.model = model
        targets.append(replacement_default(default, targets))
        changes = [f"move the rows of {default.qualified} (the DEFAULT) into new partitions "
                   f"shaped like {newest.name}:"] + [
            f"  {display_name(schema, t.name)} {t.bound_text}" for t in targets[:-1]] + [
            f"  a new, empty {display_name(schema, default.name)} DEFAULT replaces it (it "
            f"takes the rows none of these take, e.g. NULL keys)"]
        return moves.move_plan(conn, self.name, f"drain {default.qualified}", parent, default,
                               targets, None, changes, [read_note])

    def report(self, result: RunResult, plan: Plan) -> list[str]:
        return super().report(result, plan) + moves.hold_line(result, plan)


__all__ = ["DrainDefault"]
