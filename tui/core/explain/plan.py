"""EXPLAIN (FORMAT JSON) output as a tree of PlanNode.

Version differences handled here: 'Actual Rows' is a float on 18 (integer 0 for nodes never
executed), and ModifyTable lists its partitions under 'Target Tables' (PG 14+).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class RelationRef:
    schema: str | None
    name: str
    alias: str | None


@dataclass
class PlanNode:
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
        yield self
        for child in self.children:
            yield from child.walk()

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
class Plan:
    root: PlanNode
    planning_ms: float | None
    execution_ms: float | None
    settings: dict[str, str]
    analyzed: bool
    raw: dict[str, Any] = field(repr=False)

    def walk(self) -> Iterator[PlanNode]:
        return self.root.walk()


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _relation(raw: dict[str, Any]) -> RelationRef | None:
    name = raw.get("Relation Name")
    if not name:
        return None
    return RelationRef(raw.get("Schema"), name, raw.get("Alias"))


def parse_node(raw: dict[str, Any], parent: PlanNode | None = None) -> PlanNode:
    loops = raw.get("Actual Loops")
    node = PlanNode(
        node_type=str(raw.get("Node Type", "?")),
        raw=raw,
        relation=_relation(raw),
        index_name=raw.get("Index Name"),
        startup_cost=_num(raw.get("Startup Cost")),
        total_cost=_num(raw.get("Total Cost")),
        plan_rows=_num(raw.get("Plan Rows")),
        actual_rows=_num(raw.get("Actual Rows")),
        actual_loops=int(loops) if isinstance(loops, int | float) else None,
        actual_total_time=_num(raw.get("Actual Total Time")),
        subplans_removed=raw.get("Subplans Removed"),
        conditions={k: str(raw[k]) for k in CONDITION_KEYS if k in raw},
        parent_relationship=raw.get("Parent Relationship"),
        subplan_name=raw.get("Subplan Name"),
        operation=raw.get("Operation"),
        target_tables=[r for t in raw.get("Target Tables", []) if (r := _relation(t))],
        parent=parent,
    )
    node.children = [parse_node(child, node) for child in raw.get("Plans", [])]
    return node


def parse_plan(document: Any) -> Plan:
    """Parse what EXPLAIN (FORMAT JSON) returned: a list holding one object with 'Plan'."""
    top = document[0] if isinstance(document, list) else document
    if not isinstance(top, dict) or "Plan" not in top:
        raise ValueError("not an EXPLAIN (FORMAT JSON) document")
    root = parse_node(top["Plan"])
    settings = top.get("Settings") or {}
    analyzed = any(n.actual_loops is not None for n in root.walk())
    return Plan(
        root=root,
        planning_ms=_num(top.get("Planning Time")),
        execution_ms=_num(top.get("Execution Time")),
        settings={str(k): str(v) for k, v in settings.items()},
        analyzed=analyzed,
        raw=top,
    )
