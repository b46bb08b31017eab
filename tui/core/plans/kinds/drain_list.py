"""drain-default on a LIST-partitioned table: one new list partition per distinct value the
DEFAULT holds, NULL included (`FOR VALUES IN (NULL)`), named like the existing list partitions
(`events_us` for 'us' gives `events_asia`), sub-partitioned like them when they all are alike,
then the move of drain_default.py (the DEFAULT is the source, a new empty DEFAULT one of the
targets).

A NULL key is never lost: each target's predicate is NULL-safe (`key IS NOT NULL AND key IN
(...)`, or `key IS NULL`), so the new DEFAULT's predicate, the negation of all of them, is true
for every row no other target takes, a NULL key written meanwhile included (with `key IN (...)`
alone it would be NULL for such a row, and the copy and the replay, which keep rows whose
predicate IS TRUE, would leave it out)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ...catalog import Forest, PartNode
from ...moves import keys
from ...moves.planning import MAX_PROPOSALS
from ...names import check_identifier_length, display_name
from ..engine.model import Plan, PlanFacts
from ..kind import PlanKindError
from ..steps import moves
from .split import move_key


def _prefix(parent: PartNode) -> str:
    """How the existing list partitions spell their value: `events_us` IN ('us') -> `events_`;
    else `<parent>_`."""
    for c in parent.children:
        b = c.bound
        if b is None or b.kind != "list" or len(b.values) != 1 or b.values[0].special:
            continue
        text = str(b.values[0].text)
        if text and c.name.endswith(text) and len(c.name) > len(text):
            return c.name[:-len(text)]
    return f"{parent.name}_"


def _model(parent: PartNode, default: PartNode) -> tuple[PartNode, bool]:
    """The partition whose sub-partitioning the new list partitions take: any of the list
    partitions when they are all sub-partitioned alike (or all plain), else the DEFAULT (plain:
    a sub-partitioned DEFAULT is refused before); and whether they differ. List partitions have
    no newest one to follow."""
    lists = [c for c in parent.children if c.bound is not None and c.bound.kind == "list"]
    shapes = {moves.sub_partitioning(c) for c in lists}
    if len(shapes) == 1 and lists:
        return min(lists, key=lambda c: c.name), False
    return default, len(shapes) > 1


def null_safe(key: keys.Key, value: keys.KeyValue) -> sql.Composed:
    """The rows of one list value, never NULL itself: TRUE or FALSE for every row."""
    if value.text is None:
        return sql.SQL("({} IS NULL)").format(key.ident)
    return sql.SQL("({} IS NOT NULL AND {})").format(key.ident, keys.list_predicate(key, [value]))


def list_drain_plan(conn: psycopg.Connection, forest: Forest, parent: PartNode,
                    default: PartNode, kind: str) -> Plan:
    """The plan moving the DEFAULT's rows of a LIST-partitioned `parent` into one new
    partition per value (MoveError / PlanningError / PlanKindError for what cannot be)."""
    from .drain_default import replacement_default  # the kind imports this module

    key = move_key(conn, parent)
    # the only read of rows at plan time: the DEFAULT's distinct key values, asked for
    rows = conn.execute(sql.SQL(
        "SELECT v::pg_catalog.text FROM (SELECT DISTINCT {k} AS v FROM {d}) s"
        " ORDER BY v NULLS LAST LIMIT {n}").format(
        k=key.ident, d=default.ident, n=sql.Literal(MAX_PROPOSALS + 1))).fetchall()
    read_note = (f"planning read the rows of {default.qualified} once (one query: its distinct "
                 f"key values) to propose these partitions")
    if len(rows) > MAX_PROPOSALS:
        raise PlanKindError(f"{default.qualified} holds more than {MAX_PROPOSALS} distinct "
                            f"values: that many list partitions are not proposed")
    if not rows:
        return Plan(kind=kind, title=f"drain {default.qualified}", target=parent.qualified,
                    target_oid=parent.oid, steps=[],
                    summary=[f"{default.qualified} holds no row"],
                    facts=PlanFacts(notes=[read_note]))
    prefix = _prefix(parent)
    taken = moves.existing_names(conn, default.schema)
    names: set[str] = set()
    targets: list[moves.NewPartition] = []
    for i, (text,) in enumerate(rows):
        value = keys.KeyValue(text, None)
        base = prefix + ("null" if text is None else text)
        name, n = base, 1
        while name in taken or name in names:
            n += 1
            name = f"{base}_{n}"
        try:
            check_identifier_length(name)
        except ValueError as exc:
            raise PlanKindError(f"{exc} (the partition for {text!r}); drain-default names list "
                                f"partitions after their value") from None
        names.add(name)
        bound = sql.SQL("FOR VALUES IN ({})").format(
            sql.SQL("NULL") if text is None else sql.Literal(text))
        pred = null_safe(key, value)
        targets.append(moves.NewPartition(
            name=name, temp=moves.temp_name(default.oid, i), bound=bound,
            bound_text=bound.as_string(conn), predicate=pred, check=pred))
    model, mixed = _model(parent, default)
    for t in targets:
        t.model = model
    targets.append(replacement_default(default, targets))
    schema = default.schema
    changes = [f"move the rows of {default.qualified} (the DEFAULT) into one new list "
               f"partition per value it holds:"] + [
        f"  {display_name(schema, t.name)} {t.bound_text}" for t in targets[:-1]] + [
        f"  a new, empty {display_name(schema, default.name)} DEFAULT replaces it (it takes "
        f"the rows of values written meanwhile)"]
    notes = [read_note]
    if mixed:
        notes.append(f"the list partitions of {parent.qualified} are not sub-partitioned alike: "
                     f"the new ones are plain")
    if any(text is None for (text,) in rows):
        notes.append("rows with a NULL key get a partition FOR VALUES IN (NULL) of their own")
    return moves.move_plan(conn, kind, f"drain {default.qualified}", parent, default, targets,
                           None, changes, notes)
