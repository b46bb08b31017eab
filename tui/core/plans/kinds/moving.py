"""What the move kinds share (split, merge, rebound, move-values): their build/report frame
(an unfinished move is finished first), the partitions a request names, their bounds typed by
the server in one call, list partitions as new tables, names following the table's pattern,
and the DEFAULT's note. Policy only; the steps are plans/steps/moves.py."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ...catalog import Forest, PartNode
from ...config import Config
from ...moves import keys
from ...moves.changelog import MoveError
from ...moves.planning import (
    MAXVALUE,
    MINVALUE,
    Interval,
    PlanningError,
    infer_name_pattern,
)
from ...names import parse_qualified_name, quote_ident
from ..engine.model import Plan
from ..engine.runner import RunResult
from ..kind import PlanKind, PlanKindError, Request, find_table
from ..steps import moves


class MoveKind(PlanKind):
    """A kind that moves rows online through plans/steps/moves.py: the parent must be
    partitioned by one of `strategies`; a move left unfinished on it is finished before any new
    one is planned (`plan_move` builds the new one); the report says how long the swap held."""

    strategies: tuple[str, ...] = ("range",)
    moves_rows = True

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        parent = parent_of(forest, request.target, self.strategies)
        try:
            earlier = moves.unfinished(conn, parent)
            if earlier is not None:
                return moves.finish_plan(conn, self.name, parent, earlier)
            return self.plan_move(conn, forest, parent, request)
        except (MoveError, PlanningError) as exc:
            raise PlanKindError(str(exc)) from None

    def plan_move(self, conn: psycopg.Connection, forest: Forest, parent: PartNode,
                  request: Request) -> Plan:
        raise NotImplementedError

    def report(self, result: RunResult, plan: Plan) -> list[str]:
        return super().report(result, plan) + moves.hold_line(result, plan)


def default_notes(default: PartNode | None, bounds: str = "CHECKs excluding the new bounds"
                  ) -> list[str]:
    """What the swap's ATTACH does about the DEFAULT partition: a plain one gets `bounds` (the
    CHECKs) first, so ATTACH does not scan it; a sub-partitioned one is scanned."""
    if default is None:
        return []
    if default.relkind == "r":
        return [f"{default.qualified} (the DEFAULT) gets {bounds} before the swap (validated "
                f"without blocking writers), so ATTACH does not scan it"]
    return [f"{default.qualified} (the DEFAULT) is sub-partitioned: the swap's ATTACH scans "
            f"it under the parent's lock"]


def _value(v: Any) -> Any:
    return v if v is MINVALUE or v is MAXVALUE else v.value


def partition_of(forest: Forest, parent: PartNode, spec: str) -> PartNode:
    """The partition `spec` ('name' or 'schema.name', quoted as in SQL where needed, or a
    partition's exact name) of `parent`; a clear line otherwise."""
    exact = [c for c in parent.children if c.name == spec]
    if exact:
        return exact[0]
    try:
        schema, name = parse_qualified_name(spec)
    except ValueError as exc:
        raise PlanKindError(str(exc)) from None
    hits = [c for c in parent.children if c.name == name and (schema is None
                                                              or c.schema == schema)]
    if hits:
        return hits[0]
    try:
        other = forest.find(spec)
    except (LookupError, ValueError):
        raise PlanKindError(f"{parent.qualified} has no partition named {spec}") from None
    owner = forest.nodes.get(other.parent_oid) if other.parent_oid else None
    if owner is None:
        raise PlanKindError(f"{other.qualified} is not a partition of {parent.qualified}")
    raise PlanKindError(f"{other.qualified} is a partition of {owner.qualified}, not of "
                        f"{parent.qualified}")


def new_partition_name(text: str, schema: str) -> str:
    """A new partition's name as the user gave it: split's and merge's --name, move-values'
    new TO_PARTITION, and the console's fields for them. Taken as typed (quotes, spaces,
    capitals kept), unless it holds a dot: then it is read as SQL reads [schema.]name (quoted
    parts keep their case and dots, unquoted ones fold to lower case), and a schema other than
    `schema`, where the move builds its partitions, is refused, as is a text that does not
    read as a name (`a.b.c`)."""
    if "." not in text:
        return text
    try:
        named, name = parse_qualified_name(text)
    except ValueError:
        raise PlanKindError(f"{text} is not [schema.]name: a dot separates a schema from the "
                            f"name (quote a name holding a dot: \"v1.2\")") from None
    if named is not None and named != schema:
        raise PlanKindError(f"{text} names schema {quote_ident(named)}: a move builds its "
                            f"partitions in the schema of the partitions it moves, "
                            f"{quote_ident(schema)}")
    return name


def parent_of(forest: Forest, target: str, strategies: tuple[str, ...]) -> PartNode:
    parent = find_table(forest, target)
    if parent.strategy not in strategies:
        raise PlanKindError(f"{parent.qualified} is partitioned by {parent.strategy}, not by "
                            f"{' or '.join(strategies)}")
    return parent


def sources_of(forest: Forest, parent: PartNode, specs: list[str], kind: str) -> list[PartNode]:
    """The partitions `specs` names, each a partition of `parent` with a range or list bound
    (not the DEFAULT), none named twice; one clear line otherwise."""
    out: list[PartNode] = []
    for spec in specs:
        node = partition_of(forest, parent, spec)
        if node.bound is None or node.bound.is_default:
            raise PlanKindError(f"{node.qualified} is the DEFAULT partition: {kind} moves "
                                f"range or list partitions (drain-default empties a DEFAULT)")
        if node.bound.kind not in ("range", "list"):
            raise PlanKindError(f"{node.qualified} is a {node.bound.kind} partition: {kind} "
                                f"moves range or list partitions")
        if any(o.oid == node.oid for o in out):
            raise PlanKindError(f"{node.qualified} is named twice")
        out.append(node)
    return out


def typed_ranges(conn: psycopg.Connection, key: keys.Key, nodes: list[PartNode],
                 extra: list[str] = ()) -> tuple[list[tuple[Any, Any]], list[keys.KeyValue]]:
    """Each node's (lower, upper) as KeyValue or MINVALUE / MAXVALUE, and `extra` typed, in one
    call (comparable with each other)."""
    texts: list[str | None] = []
    for n in nodes:
        assert n.bound is not None
        texts += [v.text for v in (n.bound.lower[0], n.bound.upper[0]) if v.special is None]
    try:
        typed = iter(keys.type_values(conn, key, [*texts, *extra]))
    except PlanningError as exc:
        raise PlanKindError(str(exc)) from None
    out = []
    for n in nodes:
        assert n.bound is not None
        lo, hi = n.bound.lower[0], n.bound.upper[0]
        out.append((MINVALUE if lo.special == "MINVALUE" else next(typed),
                    MAXVALUE if hi.special == "MAXVALUE" else next(typed)))
    return out, list(typed)


def parse_values(raw: list[str]) -> list[str | None]:
    """`--values a,b --values NULL`: comma-separated values, NULL (any case) for NULL."""
    out: list[str | None] = []
    for item in raw:
        for part in item.split(","):
            text = part.strip()
            if not text:
                raise PlanKindError("--values: an empty value (NULL is written NULL)")
            out.append(None if text.upper() == "NULL" else text)
    return out


def typed_lists(conn: psycopg.Connection, key: keys.Key, nodes: list[PartNode],
                extra: list[str | None] = ()) -> tuple[list[list[keys.KeyValue]],
                                                      list[keys.KeyValue]]:
    """Each list node's values and `extra`, typed in one call: their canonical text is what
    compares them (NULL is None)."""
    texts: list[str | None] = []
    for n in nodes:
        assert n.bound is not None
        texts += [None if v.special == "NULL" else v.text for v in n.bound.values]
    try:
        typed = iter(keys.type_values(conn, key, [*texts, *extra]))
    except PlanningError as exc:
        raise PlanKindError(str(exc)) from None
    out = []
    for n in nodes:
        assert n.bound is not None
        out.append([next(typed) for _ in n.bound.values])
    return out, list(typed)


def list_partition(conn: psycopg.Connection, key: keys.Key, name: str, temp: str,
                   values: list[keys.KeyValue]) -> moves.NewPartition:
    bound = sql.SQL("FOR VALUES IN ({})").format(sql.SQL(", ").join(
        sql.SQL("NULL") if v.text is None else sql.Literal(v.text) for v in values))
    return moves.NewPartition(
        name=name, temp=temp, bound=bound, bound_text=bound.as_string(conn),
        predicate=keys.list_predicate(key, values), check=keys.list_check(key, values),
        exclusion=keys.list_exclusion(key, values))


def merged_range_name(parent: PartNode, first: PartNode, lo: Any, last_lo: Any) -> str:
    """A merged range partition's name in the table's pattern: the first partition's name with
    its bound's token followed by the last one's (`payment_2020` + `payment_2021`:
    `payment_2020_2021`; `payment_2023` + `payment_2023_h2`, one token, `payment_2023`); the
    first partition's name when its name spells no bound."""
    if lo is MINVALUE or last_lo is MINVALUE:
        return first.name
    pattern = infer_name_pattern(first.name, _value(lo), parent.name, Interval())
    if pattern.name(_value(lo)) != first.name:
        return first.name

    def token(v: Any) -> str:
        return pattern.name(_value(v))[len(pattern.prefix):
                                       len(pattern.name(_value(v))) - len(pattern.suffix)]

    first_token, last_token = token(lo), token(last_lo)
    if first_token == last_token:  # payment_2023 + payment_2023_h2: one year, payment_2023
        return f"{pattern.prefix}{first_token}{pattern.suffix}"
    return f"{pattern.prefix}{first_token}_{last_token}{pattern.suffix}"
