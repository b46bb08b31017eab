"""Consolidation status: what each partition of a RANGE-partitioned table is, what earlier runs
left (pgparts' registry cross-checked against the catalog), and which weeks a plan takes.

Catalog reads only: nothing here reads a row of a table or a view, or calls a function that a
table, view or type could carry (see markers.py for why comments are not trusted).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from ..catalog import Forest, PartNode, load_forest
from ..config import PlansConfig
from ..names import display_name, parse_qualified_name
from .steps import markers
from .steps.markers import Registry
from .steps.shadow import COUNT_TRIGGER

SUFFIX = "_consolidated"
MARKER = "pgparts:"  # comment prefix of earlier versions' markers: reported, never trusted

HASH_PARTITIONED = "HASH_PARTITIONED"
LIST_PARTITIONED = "LIST_PARTITIONED"
CONSOLIDATED = "CONSOLIDATED"  # a plain partition pgparts built (in its registry)
PLAIN = "PLAIN"  # a plain partition pgparts did not build: nothing to consolidate
OTHER = "OTHER"
CANDIDATE_STATUSES = (HASH_PARTITIONED, LIST_PARTITIONED)



class ConsolidationError(ValueError):
    """The request cannot be planned (unknown table, wrong shape, name too long...)."""


# -- status ----------------------------------------------------------------------------------
@dataclass
class WeekStatus:
    node: PartNode
    status: str
    subpartitions: int
    rows: int
    bytes: int
    lower: datetime | None
    upper: datetime | None
    pending: str = ""  # "copy built, swap pending" when a run stopped between build and swap

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def bound(self) -> str:
        return self.node.bound.short() if self.node.bound else (self.node.bound_text or "")

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.node.qualified,
            "status": self.status,
            "subpartitions": self.subpartitions,
            "rows": self.rows,
            "bytes": self.bytes,
            "bound": self.node.bound_text,
            "lower": self.lower.isoformat() if self.lower else None,
            "upper": self.upper.isoformat() if self.upper else None,
            "pending": self.pending,
        }


@dataclass
class DetachedOriginal:
    """A week detached by a swap and kept (keep_detached, a run that stopped before the drop,
    or a drop that refused: `refused` then says why), as recorded in pgparts' registry and
    cross-checked against the catalog."""

    oid: int
    schema: str
    name: str
    replacement: str
    bytes: int
    refused: str = ""
    new_schema: str = ""
    new_name: str = ""

    @property
    def display(self) -> str:
        return display_name(self.schema, self.name)

    def to_json(self) -> dict[str, Any]:
        return {"table": display_name(self.schema, self.name), "replaced_by": self.replacement,
                "bytes": self.bytes, "refused": self.refused}


@dataclass
class ConsolidationStatus:
    parent: PartNode
    weeks: list[WeekStatus]
    detached: list[DetachedOriginal] = field(default_factory=list)  # to drop on the next apply
    kept: list[DetachedOriginal] = field(default_factory=list)  # a drop refused: by hand
    ignored: list[str] = field(default_factory=list)  # "ignored X: not provably pgparts' own"
    counters: list[int] = field(default_factory=list)  # weeks whose change counter is left
    registry: Registry = field(default_factory=lambda: Registry(False))
    unit: str = "partition"  # "week" when every bounded partition spans seven days

    @property
    def note(self) -> str:
        """What the table offers, when it is not the usual case: nothing to consolidate."""
        if any(w.status in CANDIDATE_STATUSES for w in self.weeks):
            return ""
        n = len(self.weeks)
        done = sum(1 for w in self.weeks if w.status == CONSOLIDATED)
        if done:
            return (f"nothing left to consolidate: {done} of the {n} partitions of "
                    f"{self.parent.qualified} {'was' if done == 1 else 'were'} consolidated by "
                    f"pgparts and none is sub-partitioned")
        if n == 0:
            return f"nothing to consolidate: {self.parent.qualified} has no partitions"
        if n == 1:
            return (f"nothing to consolidate: the one partition of {self.parent.qualified} is "
                    f"not sub-partitioned (consolidation replaces a HASH or LIST "
                    f"sub-partitioned partition by one plain partition)")
        return (f"nothing to consolidate: none of the {n} partitions of "
                f"{self.parent.qualified} is sub-partitioned (consolidation replaces a "
                f"HASH or LIST sub-partitioned partition by one plain partition)")

    def to_json(self) -> dict[str, Any]:
        return {
            "parent": self.parent.qualified,
            "partitions": [w.to_json() for w in self.weeks],
            "detached_originals": [d.to_json() for d in self.detached],
            "kept_originals": [d.to_json() for d in self.kept],
            "ignored": list(self.ignored),
            "note": self.note,
        }


def _find_parent(forest: Forest, table: str) -> PartNode:
    try:
        node = forest.find(table)
    except (LookupError, ValueError) as exc:
        raise ConsolidationError(str(exc)) from None
    if not node.is_partitioned:
        raise ConsolidationError(f"{node.qualified} is not a partitioned table")
    if node.strategy != "range":
        raise ConsolidationError(
            f"{node.qualified} is partitioned by {node.strategy}; consolidation works on a "
            f"RANGE-partitioned table whose partitions are sub-partitioned"
        )
    if len(node.key_columns) != 1 or node.key_expressions:
        raise ConsolidationError(
            f"{node.qualified} has key {node.key}; consolidation needs a single-column range key"
        )
    return node


def _classify(node: PartNode, built: set[int]) -> str:
    if node.is_partitioned:
        return {"hash": HASH_PARTITIONED, "list": LIST_PARTITIONED}.get(node.strategy or "",
                                                                         OTHER)
    if node.relkind == "r" and not node.is_default:
        return CONSOLIDATED if node.oid in built else PLAIN
    return OTHER


def _week_order(w: WeekStatus) -> tuple:
    """Oldest first: MINVALUE lower bounds first, then by lower bound, the DEFAULT last."""
    if w.node.is_default:
        return (2, 0.0, w.name)
    if w.lower is None:
        return (0, 0.0, w.name)
    return (1, w.lower.timestamp(), w.name)


def _comment_markers(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Relations carrying a pgparts comment marker (earlier versions, or forged): only to say
    that they are ignored. Catalog reads only."""
    rows = conn.execute(
        "SELECT c.oid, d.description FROM pg_catalog.pg_description d"
        " JOIN pg_catalog.pg_class c ON c.oid = d.objoid"
        " WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0"
        " AND d.description LIKE 'pgparts:{%'").fetchall()
    out = []
    for oid, text in rows:
        try:
            data = json.loads(text[len(MARKER):])
        except ValueError:
            continue
        if isinstance(data, dict):
            out.append({**data, "oid": int(oid)})
    return out


def relation_bytes(conn: psycopg.Connection, oids: Iterable[int]) -> dict[int, int]:
    """pg_total_relation_size per relation (sums leaves for a partitioned one), under the
    connection's lock_timeout. Only for partitions of the parent and cross-checked originals:
    it reads file sizes, never rows."""
    ids = list(oids)
    if not ids:
        return {}
    rows = conn.execute(
        "WITH RECURSIVE t(root, relid) AS ("
        "  SELECT x, x FROM pg_catalog.unnest(%s::pg_catalog.oid[]) x"
        "  UNION ALL SELECT t.root, i.inhrelid FROM t"
        "  JOIN pg_catalog.pg_inherits i ON i.inhparent = t.relid)"
        " SELECT root, pg_catalog.sum(pg_catalog.pg_total_relation_size(relid))::bigint"
        " FROM t GROUP BY root",
        (ids,),
    ).fetchall()
    return {r[0]: int(r[1] or 0) for r in rows}


def _is_weekly(children: list[PartNode]) -> bool:
    spans = []
    for c in children:
        b = c.bound
        if b is None or b.kind != "range" or not b.lower or not b.upper:
            continue
        lo, hi = b.lower[0].as_datetime(), b.upper[0].as_datetime()
        if lo is None or hi is None:
            continue
        spans.append(hi - lo)
    return bool(spans) and all(s == timedelta(days=7) for s in spans)


def _unregistered_counters(conn: psycopg.Connection, parent: PartNode,
                           known: set[int]) -> list[str]:
    """Change-counter-like triggers on the parent's partitions that pgparts did not record."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, t.tgfoid FROM pg_catalog.pg_inherits i"
        " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid"
        " WHERE i.inhparent = %s AND t.tgname = %s AND t.tgparentid = 0",
        (parent.oid, COUNT_TRIGGER)).fetchall()
    return [f"ignored the trigger on {display_name(s, n)}: named like pgparts' but its "
            f"function is not in pgparts' registry; never dropped by pgparts"
            for s, n, fn in rows if int(fn) not in known]


def consolidation_status(conn: psycopg.Connection, table: str,
                         forest: Forest | None = None) -> ConsolidationStatus:
    """Per partition of `table`: its status, and what earlier runs left, from pgparts' registry
    cross-checked against the catalog. Catalog reads only: nothing here reads a row."""
    forest = forest or load_forest(conn)
    parent = _find_parent(forest, table)
    registry = markers.read_registry(conn)
    ignored: list[str] = []
    if registry.problem:
        ignored.append(f"pgparts' registry (schema pgparts) is not used: {registry.problem}; "
                       f"nothing recorded there is trusted")
    entries = [e for e in registry.entries if e.parent_oid == parent.oid]
    comments = [m for m in _comment_markers(conn) if m.get("parent_oid") == parent.oid]
    facts = markers.relation_facts(conn, sorted(
        {e.objid for e in entries if e.role in (markers.CONSOLIDATED_ROLE,
                                                 markers.ORIGINAL_ROLE)}
        | {m["oid"] for m in comments}))
    children_by_bound = {c.bound_text: c for c in parent.children}
    built: set[int] = set()
    pending: set[int] = set()
    for e in registry.of(markers.CONSOLIDATED_ROLE, parent.oid):
        why = markers.mismatch(e, facts.get(e.objid))
        f = facts.get(e.objid)
        if not why and f and f["relkind"] != "r":
            why = "not a plain table"
        if not why and f and f["attached_to"] not in (None, parent.oid):
            why = "attached elsewhere"
        if why:
            if why != "gone":
                ignored.append(f"ignored {display_name(e.schema, e.name)}: not provably "
                               f"pgparts' own ({why})")
            continue
        if f and f["attached_to"] == parent.oid:
            built.add(e.objid)
        else:
            pending.add(e.source_oid)
    detached: list[DetachedOriginal] = []
    kept: list[DetachedOriginal] = []
    trusted: set[int] = set(built)
    for e in registry.of(markers.ORIGINAL_ROLE, parent.oid):
        f = facts.get(e.objid)
        why = markers.mismatch(e, f)
        repl = children_by_bound.get(e.bound)
        if not why and f and f["attached_to"] == parent.oid:
            continue  # recorded by a build: the week, not swapped yet
        if not why and f and f["attached_to"] is not None:
            why = "attached to a table"
        if not why and (repl is None or repl.oid not in built):
            why = f"no partition pgparts built has its bound {e.bound}"
        if why:
            if why != "gone":
                owner = f" (owner {f['owner_name']})" if f else ""
                ignored.append(f"ignored {display_name(e.schema, e.name)}: not provably "
                               f"pgparts' own: {why}{owner}")
            continue
        assert repl is not None
        trusted.add(e.objid)
        orig = DetachedOriginal(e.objid, e.schema, e.name, e.replacement or repl.qualified, 0,
                                e.note if e.state == markers.REFUSED else "",
                                repl.schema, repl.name)
        (kept if e.state == markers.REFUSED else detached).append(orig)
    sizes = relation_bytes(conn, [d.oid for d in detached + kept])
    for d in detached + kept:
        d.bytes = sizes.get(d.oid, 0)
    for m in comments:
        if m["oid"] in trusted:
            continue
        f = facts.get(m["oid"])
        if f is None:
            continue
        ignored.append(f"ignored {display_name(f['schema'], f['name'])}: not provably pgparts' "
                       f"own (owner {f['owner_name']}; its comment marker is not trusted)")
    fn_oids = {e.objid for e in registry.of(markers.COUNTER_FUNCTION_ROLE, parent.oid)}
    ignored += _unregistered_counters(conn, parent, fn_oids)
    # a counter whose work is over: its original dropped (or refused) after the swap
    live_originals = {d.oid for d in detached}
    built_sources = {e.source_oid for e in registry.of(markers.CONSOLIDATED_ROLE, parent.oid)
                     if e.objid in built}
    counters = sorted({e.source_oid for e in registry.of(markers.COUNTER_FUNCTION_ROLE,
                                                          parent.oid)
                       if e.source_oid in built_sources and e.source_oid not in live_originals})
    weeks: list[WeekStatus] = []
    for child in parent.children:
        status = _classify(child, built)
        lower = upper = None
        if child.bound is not None and child.bound.kind == "range":
            lower = child.bound.lower[0].as_datetime() if child.bound.lower else None
            upper = child.bound.upper[0].as_datetime() if child.bound.upper else None
        weeks.append(WeekStatus(
            node=child, status=status,
            subpartitions=sum(1 for _ in child.leaves()) if child.is_partitioned else 0,
            rows=child.rows, bytes=child.total_bytes, lower=lower, upper=upper,
            pending="copy built, swap pending" if child.oid in pending else "",
        ))
    weeks.sort(key=_week_order)
    unit = "week" if _is_weekly(parent.children) else "partition"
    return ConsolidationStatus(parent, weeks, detached, kept, ignored, counters, registry, unit)


# -- selection -------------------------------------------------------------------------------
def name_matches(spec: str, schema: str, name: str) -> bool:
    try:
        want_schema, want = parse_qualified_name(spec)
    except ValueError:
        return False
    return want == name and (want_schema is None or want_schema == schema)


def select_weeks(status: ConsolidationStatus, *, now: datetime,
                 older_than: timedelta | None = None, batch: int = 5,
                 names: list[str] | None = None,
                 expiring: datetime | None = None) -> list[WeekStatus]:
    """What to consolidate: explicit names, else sub-partitioned weeks whose upper bound is older
    than `older_than` (but not at or before `expiring`, what retention removes next), oldest
    first, `batch` of them. Weeks a stopped run left half way (copy built, swap pending) always
    come first, so a re-run finishes them.

    Names are read the way `tree` reads them ('name', 'schema.name', quoted forms). A name of a
    week an earlier run already swapped (now detached, or consolidated) is skipped: the plan
    finishes that run's work anyway. A week that has not begun yet is refused: its rows are
    still to come, and they would land in one plain partition instead of the sub-partitions."""
    candidates = [w for w in status.weeks if w.status in CANDIDATE_STATUSES]
    if names:
        chosen: list[WeekStatus] = []
        finished = [(d.schema, d.name) for d in status.detached + status.kept]
        finished += [(w.node.schema, w.name[:-len(SUFFIX)]) for w in status.weeks
                     if w.status == CONSOLIDATED and w.name.endswith(SUFFIX)]
        for name in names:
            hits = [w for w in status.weeks if name_matches(name, w.node.schema, w.name)]
            if not hits:
                if any(name_matches(name, s, n) for s, n in finished):
                    continue  # swapped by an earlier run; its leftovers are finished below
                raise ConsolidationError(
                    f"{status.parent.qualified} has no partition named {name!r}")
            if len(hits) > 1:
                raise ConsolidationError(
                    f"{name!r} is ambiguous: "
                    f"{', '.join(sorted(w.node.qualified for w in hits))}; qualify it")
            week = hits[0]
            if week not in candidates:
                raise ConsolidationError(
                    f"{week.node.qualified} is {week.status}; only HASH_PARTITIONED or "
                    f"LIST_PARTITIONED partitions can be consolidated")
            if week.lower is not None and week.lower > now and not week.pending:
                raise ConsolidationError(
                    f"{week.node.qualified} starts in the future ({week.bound}): its rows are "
                    f"still to come and would go into one plain partition instead of its "
                    f"sub-partitions; consolidate a {status.unit} once it is over")
            if week not in chosen:
                chosen.append(week)
        return sorted(chosen, key=lambda w: (w.lower is None, w.lower or now))
    pending = [w for w in candidates if w.pending]
    if older_than is None:
        older_than = PlansConfig().older_than
    cutoff = now - older_than
    old = [w for w in candidates if not w.pending and w.upper is not None and w.upper <= cutoff
           and (expiring is None or w.upper > expiring)]
    old.sort(key=lambda w: w.upper or now)
    return pending + old[:max(batch - len(pending), 0)]
