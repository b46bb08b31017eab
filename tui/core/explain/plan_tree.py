"""EXPLAIN (FORMAT JSON) output as a tree of PlanNode.

"Plan" here is PostgreSQL's query plan; the layout changes pgparts runs are `tui.core.plans`.

Version differences handled here: 'Actual Rows' is a float on 18 (integer 0 for nodes never
executed), and ModifyTable lists its partitions under 'Target Tables' (PG 14+).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..preorder import preorder

# Nodes that carry the relation they read in 'Relation Name' (a Bitmap Index Scan does not: its
# Bitmap Heap Scan parent does).
SCAN_TYPES = frozenset({
    "Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Scan",
    "Tid Range Scan", "Sample Scan", "Foreign Scan", "Custom Scan",
})
APPEND_TYPES = frozenset({"Append", "Merge Append"})
CONDITION_KEYS = (
    "Index Cond", "Recheck Cond", "Filter", "Join Filter", "Hash Cond", "Merge Cond",
    "TID Cond", "One-Time Filter",
)


class RelationRef(NamedTuple):
    """The relation a scan reads, as VERBOSE names it (a tuple: built 10,000 times per plan over
    10,000 partitions, three times cheaper than a frozen dataclass)."""

    schema: str | None
    name: str
    alias: str | None


@dataclass(slots=True)  # 10,000 of them for a plan over 10,000 partitions
class PlanNode:
    """One node of EXPLAIN's plan, the figures the report reads taken out of its JSON."""

    node_type: str
    raw: dict[str, Any] = field(repr=False)
    relation: RelationRef | None = None
    index_name: str | None = None
    startup_cost: float | None = None
    total_cost: float | None = None
    plan_rows: float | None = None
    actual_rows: float | None = None
    actual_loops: int | None = None
    actual_total_time: float | None = None
    subplans_removed: int | None = None
    conditions: dict[str, str] = field(default_factory=dict)
    parent_relationship: str | None = None
    subplan_name: str | None = None
    operation: str | None = None  # ModifyTable: Insert/Update/Delete/Merge
    target_tables: list[RelationRef] = field(default_factory=list)
    children: list[PlanNode] = field(default_factory=list)
    parent: PlanNode | None = field(default=None, repr=False)

    @property
    def is_scan(self) -> bool:
        return self.relation is not None and self.node_type in SCAN_TYPES

    @property
    def is_append(self) -> bool:
        return self.node_type in APPEND_TYPES

    @property
    def never_executed(self) -> bool:
        """ANALYZE only: the node never ran (Actual Loops 0), e.g. pruned at run time."""
        return self.actual_loops == 0

    def walk(self) -> Iterator[PlanNode]:
        """This node and every node below it, depth first, parents before children."""
        return preorder(self)

    def ancestors(self) -> Iterator[PlanNode]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def label(self) -> str:
        """'Seq Scan on control.payment_2024 p' style, for trees and text output."""
        text = self.node_type
        if self.operation and self.node_type == "ModifyTable":
            text = f"{self.operation} ({self.node_type})"
        if self.index_name and self.relation is None:
            text += f" using {self.index_name}"
        if self.relation is not None:
            where = f"{self.relation.schema}.{self.relation.name}" if self.relation.schema \
                else self.relation.name
            text += f" on {where}"
            if self.relation.alias and self.relation.alias != self.relation.name:
                text += f" {self.relation.alias}"
        if self.subplan_name:
            text = f"{self.subplan_name}: {text}"
        return text


@dataclass
class PlanTree:
    """EXPLAIN's plan as nodes, with its timings and settings."""

    root: PlanNode
    planning_ms: float | None
    execution_ms: float | None
    settings: dict[str, str]
    analyzed: bool
    raw: dict[str, Any] = field(repr=False)
    # every node in walk() order, built once: the report walks a 10,000-node plan several times
    nodes: list[PlanNode] = field(default_factory=list, repr=False)

    def walk(self) -> Iterator[PlanNode]:
        if not self.nodes:
            self.nodes = list(self.root.walk())
        return iter(self.nodes)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _relation(raw: dict[str, Any]) -> RelationRef | None:
    name = raw.get("Relation Name")
    if not name:
        return None
    return RelationRef(raw.get("Schema"), name, raw.get("Alias"))


_NUMBERS = (int, float)


def _node(raw: dict[str, Any], parent: PlanNode | None) -> PlanNode:
    """One node without its children. Hot: once per plan node, and a plan over 10,000
    partitions has 10,000 of them, so the figures are read inline rather than through _num."""
    get = raw.get
    name = get("Relation Name")
    startup, total, rows = get("Startup Cost"), get("Total Cost"), get("Plan Rows")
    actual_rows, loops, actual_time = get("Actual Rows"), get("Actual Loops"), \
        get("Actual Total Time")
    targets = get("Target Tables")
    return PlanNode(
        str(get("Node Type", "?")),
        raw,
        RelationRef(get("Schema"), name, get("Alias")) if name else None,
        get("Index Name"),
        float(startup) if isinstance(startup, _NUMBERS) else None,
        float(total) if isinstance(total, _NUMBERS) else None,
        float(rows) if isinstance(rows, _NUMBERS) else None,
        float(actual_rows) if isinstance(actual_rows, _NUMBERS) else None,
        int(loops) if isinstance(loops, _NUMBERS) else None,
        float(actual_time) if isinstance(actual_time, _NUMBERS) else None,
        get("Subplans Removed"),
        {k: str(raw[k]) for k in CONDITION_KEYS if k in raw},
        get("Parent Relationship"),
        get("Subplan Name"),
        get("Operation"),
        [r for t in targets if (r := _relation(t))] if targets else [],
        [],
        parent,
    )


def parse_node(raw: dict[str, Any], parent: PlanNode | None = None) -> PlanNode:
    """A node and its subtree (iteratively: plans can be deep as well as wide)."""
    top = _node(raw, parent)
    stack = [(top, raw)]
    while stack:
        node, data = stack.pop()
        plans = data.get("Plans")
        if not plans:
            continue
        children = [_node(child, node) for child in plans]
        node.children = children
        stack.extend(zip(children, plans, strict=True))
    return top


def parse_plan(document: Any) -> PlanTree:
    """Parse what EXPLAIN (FORMAT JSON) returned: a list holding one object with 'Plan'."""
    top = document[0] if isinstance(document, list) else document
    if not isinstance(top, dict) or "Plan" not in top:
        raise ValueError("not an EXPLAIN (FORMAT JSON) document")
    root = parse_node(top["Plan"])
    nodes = list(root.walk())
    settings = top.get("Settings") or {}
    analyzed = any(n.actual_loops is not None for n in nodes)
    return PlanTree(
        root=root,
        planning_ms=_num(top.get("Planning Time")),
        execution_ms=_num(top.get("Execution Time")),
        settings={str(k): str(v) for k, v in settings.items()},
        analyzed=analyzed,
        raw=top,
        nodes=nodes,
    )
