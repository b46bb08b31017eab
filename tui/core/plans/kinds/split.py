"""The split kind: cut a range partition at one or more values, online (tui/core/moves; the
steps are plans/steps/moves.py). This module is policy: which partition, which bounds, which
names, every input checked before any SQL runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from ...catalog import Forest, PartNode
from ...moves import keys
from ...moves.planning import MAXVALUE, MINVALUE, PlanningError, split_range
from ...names import check_identifier_length, display_name
from ...table_code import refusal, table_code
from ..engine.model import Plan
from ..kind import Option, PlanKindError, Request
from ..steps import moves
from .moving import (
    MoveKind,
    _value,
    default_notes,
    new_partition_name,
    parent_of,
    partition_of,
)

T = TypeVar("T")


def range_parent(forest: Forest, target: str) -> PartNode:
    return parent_of(forest, target, ("range",))


def move_key(conn: psycopg.Connection, parent: PartNode) -> keys.Key:
    """The partition key, refused unless its type is built in: typing a value runs the type's
    input function, and planning never runs code a table (or its types) could carry."""
    key = keys.describe_key(conn, parent.oid)
    row = conn.execute(
        "SELECT t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace"
        " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = %s AND a.attname = %s", (parent.oid, key.column)).fetchone()
    if not (row and row[0]):
        raise PlanKindError(f"moving rows supports partition keys of built-in types only, "
                            f"not {key.type_sql}")
    return key


def check_new_names(conn: psycopg.Connection, schema: str, names: list[str],
                    allowed: set[str]) -> None:
    taken = moves.existing_names(conn, schema) - allowed
    seen: set[str] = set()
    for name in names:
        try:
            check_identifier_length(name)
        except ValueError as exc:
            raise PlanKindError(str(exc)) from None
        if name in seen:
            raise PlanKindError(f"the name {name} is given twice")
        if name in taken:
            raise PlanKindError(f"{display_name(schema, name)} exists already")
        seen.add(name)


def bound_values(conn: psycopg.Connection, key: keys.Key, node: PartNode,
                 extra: list[str]) -> tuple[Any, Any, list[keys.KeyValue]]:
    """The node's range bound and `extra` typed in one call (comparable with each other)."""
    bound = node.bound
    assert bound is not None
    lo, hi = bound.lower[0], bound.upper[0]
    texts = [v.text for v in (lo, hi) if v.special is None] + list(extra)
    try:
        typed = keys.type_values(conn, key, texts)
    except PlanningError as exc:
        raise PlanKindError(str(exc)) from None
    it = iter(typed)
    lo_v = MINVALUE if lo.special == "MINVALUE" else next(it)
    hi_v = MAXVALUE if hi.special == "MAXVALUE" else next(it)
    return lo_v, hi_v, list(it)


def _edge_sql(v: Any) -> sql.Composable:
    if v is MINVALUE or v is MAXVALUE:
        return sql.SQL(repr(v))
    if isinstance(v, keys.KeyValue):
        return sql.Literal(v.text)
    if isinstance(v, datetime):
        return sql.Literal(v.isoformat(sep=" "))
    return sql.Literal(str(v))


def range_partition(conn: psycopg.Connection, key: keys.Key, source: PartNode, name: str,
                    temp: str, lo: Any, hi: Any) -> moves.NewPartition:
    bound = sql.SQL("FOR VALUES FROM ({}) TO ({})").format(_edge_sql(lo), _edge_sql(hi))
    return moves.NewPartition(
        name=name, temp=temp, bound=bound, bound_text=bound.as_string(conn),
        predicate=keys.range_predicate(key, lo, hi), check=keys.range_predicate(key, lo, hi),
        exclusion=keys.exclusion_predicate(key, lo, hi))


def default_partition(parent: PartNode, forest: Forest) -> PartNode | None:
    if parent.default_partition_oid is None:
        return None
    return forest.nodes.get(parent.default_partition_oid)


def refuse_reading_code(conn: psycopg.Connection, request: Request, default: PartNode,
                        column: str, command: str) -> None:
    """Before a preview reads the DEFAULT's rows: PlanKindError, in one line, when that read
    would run code of the table's (tui/core/table_code.py); `pgparts COMMAND ... --apply`
    reads it, as the applying role."""
    if request.applying:
        return
    found = table_code(conn, default.oid, [column])
    if found:
        raise PlanKindError(refusal(default.qualified, found,
                                    f"`pgparts {command} ... --apply` reads it"))


def about(flag: str, check: Callable[..., T], *args: Any) -> T:
    """`check(*args)`, its refusal said as being about option `flag` (the plan screen shows
    it under that option's field)."""
    try:
        return check(*args)
    except (PlanKindError, PlanningError) as exc:
        said, word = str(exc), flag.lstrip("-") + " "
        # "--name: name 'x' is 71 bytes" says the option twice
        said = said[len(word):] if said.startswith(word) else said
        raise PlanKindError(f"{flag}: {said}") from None


class Split(MoveKind):
    name = "split"
    title = "Split a range partition"
    summary = "split a range partition at one or more values, online"
    noun = "split"
    table_help = "the RANGE-partitioned parent ('name' or 'schema.name')"
    options = (
        Option("partition", positional=True, metavar="PARTITION",
               help="the partition to split ('name' or 'schema.name')"),
        Option("at", "repeat", metavar="VALUE",
               help="a boundary inside the partition (repeat for several, increasing)"),
        Option("name", "repeat", metavar="NEW",
               help="the new partitions' names: one per --at (the first part keeps the "
                    "partition's name), or one more to rename the first part too "
                    "(default: PARTITION_2, PARTITION_3, ...)"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return (node.parent_strategy == "range" and node.relkind in ("r", "p")
                and node.bound is not None and node.bound.kind == "range")

    def plan_move(self, conn: psycopg.Connection, forest: Forest, parent: PartNode,
                  request: Request) -> Plan:
        if not request.get("partition"):
            raise PlanKindError("say which partition to split")
        source = about("PARTITION", partition_of, forest, parent, request.get("partition"))
        if source.bound is None or source.bound.kind != "range":
            what = "the DEFAULT partition (use drain-default)" if source.bound is not None \
                and source.bound.is_default else "not a range partition"
            raise PlanKindError(f"{source.qualified} is {what}")
        ats = request.get("at")
        if not ats:
            raise PlanKindError("--at: give at least one value to split at")
        key = move_key(conn, parent)
        lo, hi, at = about("--at", bound_values, conn, key, source, ats)
        about("--at", split_range, (_value(lo), _value(hi)), [v.value for v in at])
        edges = [lo, *at, hi]
        n = len(edges) - 1
        names = [about("--name", new_partition_name, text, source.schema)
                 for text in request.get("name") or []]
        if not names:
            names = [source.name] + [f"{source.name}_{i}" for i in range(2, n + 1)]
        elif len(names) == n - 1:
            names = [source.name, *names]
        elif len(names) != n:
            raise PlanKindError(f"--name: give {n - 1} names (the first part keeps "
                                f"{source.name}) or {n}, not {len(names)}")
        about("--name", check_new_names, conn, source.schema, names, {source.name})
        targets = [range_partition(conn, key, source, name, moves.temp_name(source.oid, i),
                                   edges[i], edges[i + 1]) for i, name in enumerate(names)]
        default = default_partition(parent, forest)
        changes = [f"split {source.qualified} ({source.bound_text}) into:"] + [
            f"  {display_name(source.schema, t.name)} {t.bound_text}" for t in targets]
        notes = [f"planning cast the --at values to the key's type ({key.type_sql}, built "
                 f"in) on the server; no row was read", *default_notes(default)]
        return moves.move_plan(conn, self.name, f"split {source.qualified}", parent, source,
                               targets, default, changes, notes)


__all__ = ["Split"]
