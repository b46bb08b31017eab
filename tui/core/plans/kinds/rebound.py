"""The rebound kind: move the boundary between two neighbouring range partitions, online
(tui/core/moves; the steps are plans/steps/moves.py). Both partitions are rebuilt with their
new bounds and keep their names. Policy only."""

from __future__ import annotations

import psycopg

from ...catalog import Forest, PartNode
from ...moves.planning import lt, rebound
from ...names import display_name
from ..engine.model import Plan
from ..kind import Option, PlanKindError, Request
from ..steps import moves
from .moving import MoveKind, default_notes, sources_of, typed_ranges
from .split import _value, default_partition, move_key, range_partition


class Rebound(MoveKind):
    name = "rebound"
    title = "Move the boundary between two range partitions"
    summary = "move the boundary between two neighbouring range partitions, online"
    noun = "rebound"
    table_help = "the RANGE-partitioned parent ('name' or 'schema.name')"
    options = (
        Option("left", positional=True, metavar="P1",
               help="one of the two neighbours ('name' or 'schema.name')"),
        Option("right", positional=True, metavar="P2", help="the other neighbour"),
        Option("at", metavar="VALUE",
               help="the new boundary, strictly inside the two partitions' bounds together"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return (node.parent_strategy == "range" and node.relkind in ("r", "p")
                and node.bound is not None and node.bound.kind == "range")

    def plan_move(self, conn: psycopg.Connection, forest: Forest, parent: PartNode,
                  request: Request) -> Plan:
        if not (request.get("left") and request.get("right")):
            raise PlanKindError("name the two neighbouring partitions")
        if request.get("at") is None:
            raise PlanKindError("--at: give the new boundary")
        sources = sources_of(forest, parent, [request.get("left"), request.get("right")],
                             "rebound")
        key = move_key(conn, parent)
        bounds, (at,) = typed_ranges(conn, key, sources, [request.get("at")])
        if lt(_value(bounds[1][0]), _value(bounds[0][0])):
            sources.reverse()
            bounds.reverse()
        (llo, lhi), (rlo, rhi) = bounds
        rebound((_value(llo), _value(lhi)), (_value(rlo), _value(rhi)), at.value)
        left, right = sources
        targets = [range_partition(conn, key, left, left.name, moves.temp_name(left.oid, 0),
                                   llo, at),
                   range_partition(conn, key, left, right.name, moves.temp_name(left.oid, 1),
                                   at, rhi)]
        default = default_partition(parent, forest)
        schema = left.schema
        changes = [f"move the boundary between {left.qualified} ({left.bound_text}) and "
                   f"{right.qualified} ({right.bound_text}) to {at.text}:"] + [
            f"  {display_name(schema, t.name)} {t.bound_text}" for t in targets]
        notes = [f"planning cast --at and the bounds to the key's type ({key.type_sql}, built "
                 f"in) on the server; no row was read",
                 "both partitions are rebuilt with their new bounds and keep their names",
                 *default_notes(default)]
        return moves.move_plan(conn, self.name,
                               f"rebound {left.qualified} and {right.qualified}", parent,
                               sources, targets, default, changes, notes)


__all__ = ["Rebound"]
