"""The merge kind: adjacent range partitions, or list partitions, into one, online
(tui/core/moves; the steps are plans/steps/moves.py, every source captured and copied, one
swap). Policy only: which partitions, the merged bound, its name."""

from __future__ import annotations

import functools

import psycopg

from ...catalog import Forest, PartNode
from ...moves.planning import lt, merge_lists, merge_ranges
from ...names import display_name
from ..engine.model import Plan
from ..kind import Option, PlanKindError, Request
from ..steps import moves
from .moving import (
    MoveKind,
    default_notes,
    list_partition,
    merged_range_name,
    new_partition_name,
    sources_of,
    typed_lists,
    typed_ranges,
)
from .split import (
    _value,
    about,
    check_new_names,
    default_partition,
    move_key,
    range_partition,
)


class Merge(MoveKind):
    name = "merge"
    title = "Merge partitions"
    summary = "merge adjacent range partitions, or list partitions, into one, online"
    noun = "merge"
    table_help = "the RANGE- or LIST-partitioned parent ('name' or 'schema.name')"
    strategies = ("range", "list")
    options = (
        Option("partitions", "list", positional=True, metavar="PARTITION",
               help="the partitions to merge (two or more; ranges must be adjacent)"),
        Option("name", metavar="NEW",
               help="the merged partition's name (default: ranges follow the first one's "
                    "name, payment_2020 + payment_2021 give payment_2020_2021; lists keep the "
                    "first one's name)"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return (node.parent_strategy in ("range", "list") and node.relkind in ("r", "p")
                and node.bound is not None and node.bound.kind in ("range", "list"))

    def plan_move(self, conn: psycopg.Connection, forest: Forest, parent: PartNode,
                  request: Request) -> Plan:
        specs = list(request.get("partitions") or [])
        if len(specs) < 2:
            raise PlanKindError("name two or more partitions to merge")
        sources = sources_of(forest, parent, specs, "merge")
        key = move_key(conn, parent)
        schema = sources[0].schema
        given = about("--name", new_partition_name, request.get("name"), schema) \
            if request.get("name") else None
        if parent.strategy == "range":
            bounds, _ = typed_ranges(conn, key, sources)
            merge_ranges([(_value(a), _value(b)) for a, b in bounds])  # adjacent, or refused
            ordered = sorted(zip(sources, bounds, strict=True), key=functools.cmp_to_key(
                lambda x, y: -1 if lt(_value(x[1][0]), _value(y[1][0])) else 1))
            sources = [s for s, _ in ordered]
            lo_kv, hi_kv = ordered[0][1][0], ordered[-1][1][1]
            name = given or merged_range_name(parent, sources[0], lo_kv,
                                                            ordered[-1][1][0])
            check_new_names(conn, schema, [name], {s.name for s in sources})
            target = range_partition(conn, key, sources[0], name,
                                     moves.temp_name(sources[0].oid, 0), lo_kv, hi_kv)
        else:
            values, _ = typed_lists(conn, key, sources)
            merge_lists([[v.text for v in vs] for vs in values])
            name = given or sources[0].name
            check_new_names(conn, schema, [name], {s.name for s in sources})
            target = list_partition(conn, key, name, moves.temp_name(sources[0].oid, 0),
                                    [v for vs in values for v in vs])
        default = default_partition(parent, forest)
        changes = [f"merge {', '.join(f'{s.qualified} ({s.bound_text})' for s in sources)} "
                   f"into:", f"  {display_name(schema, target.name)} {target.bound_text}"]
        notes = [f"planning cast the partitions' bounds to the key's type ({key.type_sql}, "
                 f"built in) on the server; no row was read",
                 *default_notes(default, "a CHECK excluding the new bound")]
        return moves.move_plan(conn, self.name, f"merge {', '.join(s.qualified for s in sources)}",
                               parent, sources, [target], default, changes, notes)


__all__ = ["Merge"]
