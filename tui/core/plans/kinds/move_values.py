"""The move-values kind: list values (NULL among them) from one list partition to another, or
to a new one, online (tui/core/moves; the steps are plans/steps/moves.py). The source is
rebuilt without the values; an existing target is rebuilt with them (both are the move's
sources then), a new one is built with only them. Policy only."""

from __future__ import annotations

import psycopg

from ...catalog import Forest, PartNode
from ...moves.planning import move_list_values
from ...names import display_name, parse_qualified_name
from ..engine.model import Plan
from ..kind import Option, PlanKindError, Request
from ..steps import moves
from .moving import (
    MoveKind,
    default_notes,
    list_partition,
    new_partition_name,
    parse_values,
    sources_of,
    typed_lists,
)
from .split import about, check_new_names, default_partition, move_key


def _parsed(spec: str) -> tuple[str | None, str] | None:
    try:
        return parse_qualified_name(spec)
    except ValueError:
        return None


def _existing(parent: PartNode, spec: str) -> PartNode | None:
    """The partition of `parent` that `spec` names, or None when it names none (a new name)."""
    for c in parent.children:
        if c.name == spec:
            return c
    parsed = _parsed(spec)
    if parsed is None:
        return None
    schema, name = parsed
    return next((c for c in parent.children
                 if c.name == name and (schema is None or c.schema == schema)), None)


class MoveValues(MoveKind):
    name = "move_values"
    title = "Move list values to another partition"
    summary = "move list values from one list partition to another or to a new one, online"
    noun = "move-values"
    table_help = "the LIST-partitioned parent ('name' or 'schema.name')"
    strategies = ("list",)
    options = (
        Option("from_partition", positional=True, metavar="FROM_PARTITION",
               help="the list partition holding the values"),
        Option("to_partition", positional=True, metavar="TO_PARTITION",
               help="an existing list partition, or the name of a new one"),
        Option("values", "repeat", metavar="V[,V]",
               help="the values to move, comma-separated (NULL for NULL; repeat the flag for "
                    "more)"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return (node.parent_strategy == "list" and node.relkind in ("r", "p")
                and node.bound is not None and node.bound.kind == "list")

    def plan_move(self, conn: psycopg.Connection, forest: Forest, parent: PartNode,
                  request: Request) -> Plan:
        if not (request.get("from_partition") and request.get("to_partition")):
            raise PlanKindError("name the partition holding the values and where they go")
        if not request.get("values"):
            raise PlanKindError("--values: give the values to move (comma-separated)")
        wanted = parse_values(request.get("values"))
        (source,) = sources_of(forest, parent, [request.get("from_partition")], "move-values")
        to_spec = request.get("to_partition")
        target = _existing(parent, to_spec)
        if target is not None:
            (target,) = sources_of(forest, parent, [to_spec], "move-values")
            if target.oid == source.oid:
                raise PlanKindError(f"{source.qualified} is both where the values are and "
                                    f"where they go")
        sources = [source] + ([target] if target is not None else [])
        schema = source.schema
        to_new = ""
        if target is None:
            self._other_parent(forest, parent, to_spec)
            to_new = about("TO_PARTITION", new_partition_name, to_spec, schema)
            check_new_names(conn, schema, [to_new], set())
        key = move_key(conn, parent)
        lists, moving = typed_lists(conn, key, sources, wanted)
        by_text = {v.text: v for vs in lists for v in vs} | {v.text: v for v in moving}
        left, after = move_list_values([v.text for v in lists[0]], [v.text for v in moving],
                                       [v.text for v in lists[1]] if target else None)
        to_name = target.name if target is not None else to_new
        targets = [
            list_partition(conn, key, source.name, moves.temp_name(source.oid, 0),
                           [by_text[t] for t in left]),
            list_partition(conn, key, to_name, moves.temp_name(source.oid, 1),
                           [by_text[t] for t in after]),
        ]
        shown = ", ".join("NULL" if v.text is None else v.text for v in moving)
        changes = [f"move {shown} from {source.qualified} to "
                   f"{display_name(schema, to_name)}"
                   f"{'' if target is not None else ' (new)'}:"] + [
            f"  {display_name(schema, t.name)} {t.bound_text}" for t in targets]
        notes = [f"planning cast the values to the key's type ({key.type_sql}, built in) on "
                 f"the server; no row was read"]
        default = default_partition(parent, forest)
        notes += default_notes(default)
        return moves.move_plan(conn, self.name,
                               f"move {shown} from {source.qualified} to "
                               f"{display_name(schema, to_name)}", parent, sources, targets,
                               default, changes, notes)

    @staticmethod
    def _other_parent(forest: Forest, parent: PartNode, spec: str) -> None:
        """A name that is a partition of another table is refused as such (clearer than
        'exists already')."""
        try:
            other = forest.find(spec)
        except (LookupError, ValueError):
            return
        owner = forest.nodes.get(other.parent_oid) if other.parent_oid else None
        if owner is not None and owner.oid != parent.oid:
            raise PlanKindError(f"{other.qualified} is a partition of {owner.qualified}, not "
                                f"of {parent.qualified}")


__all__ = ["MoveValues"]
