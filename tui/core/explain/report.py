"""The pruning report: per reference to a partitioned table, what the plan scanned and pruned.

The counts come from the plan and the catalog alone (pruning.py, relations.py). The advice on
why (reconcile.py, reading the text with sqlglot) is added when some reference needs it: a
level the plan did not prune, pruning at executor start-up or during execution, a generic plan,
or a setting that disables pruning (needs_advice). A report whose every table was pruned at plan
time at every level has nothing to explain, and the text is not read for advice then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog import Forest, PartNode
from .plan_tree import PlanTree
from .pruning import TableReference, build_references, count_detach_pending
from .relations import Mentions
from .runner import RawExplain
from .statement import Statement

if TYPE_CHECKING:
    from .advice import Advice, LevelAnalysis, QueryAnalysis


@dataclass
class ExplainReport:
    """What one EXPLAIN found: pruning per table reference, and the advice."""

    statement: Statement
    raw: RawExplain
    analysis: QueryAnalysis | None  # None: no reference needed advice, the text was not read
    references: list[TableReference]
    general: list[Advice] = field(default_factory=list)
    server_version: int = 0
    forest: Forest | None = None
    catalog_seconds: float = 0.0
    report_seconds: float = 0.0

    @property
    def plan(self) -> PlanTree:
        return self.raw.plan

    def full_scans(self) -> list[TableReference]:
        return [r for r in self.references if r.status == "full"]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.statement.text,
            "analyze": self.raw.analyze,
            "generic_plan": self.raw.generic,
            "server_version": self.server_version,
            "planning_ms": self.plan.planning_ms,
            "execution_ms": self.plan.execution_ms,
            "tables": [reference_json(r) for r in self.references],
            "advice": [a.text() for a in self.general],
            "advice_codes": [a.code for a in self.general],
        }


def reference_json(r: TableReference) -> dict[str, Any]:
    return {
        "table": r.table.qualified,
        "reference": r.label,
        "partitions_total": r.partitions_total,
        "detach_pending": r.detach_pending,
        "partitions_scanned": r.partitions_scanned,
        "pruned_at_plan": r.pruned_at_plan,
        "pruned_at_startup": r.pruned_at_startup,
        "never_executed": r.never_executed,
        "scanned": [p.node.qualified for p in r.partitions],
        "scanned_bounds": [{"partition": p.node.qualified, "bounds": p.bounds,
                            "executed": p.executed} for p in r.partitions],
        "status": r.status,
        "verdict": r.verdict,
        "advice": [a.text() for a in r.advice],
        "advice_codes": [a.code for a in r.advice],
    }


def alive_oids(ref: TableReference) -> set[int]:
    alive: set[int] = set()
    for p in ref.partitions:
        alive.update(p.node.path)
    return alive


def executed_alive(ref: TableReference) -> set[int]:
    alive: set[int] = set()
    for p in ref.partitions:
        if p.executed is not False:
            alive.update(p.node.path)
    return alive


def level_state(level: LevelAnalysis, alive: set[int]) -> tuple[bool, bool]:
    """(relevant, pruned): whether this key level matters and whether the plan pruned at it."""
    relevant = pruned = False
    for node in level.nodes:
        if node.oid not in alive:
            continue
        populated = [c for c in node.children
                     if (c.leaf_count > 0 or c.is_leaf) and not c.detach_pending]
        if len(populated) > 1:
            relevant = True
        if any(c.oid not in alive for c in populated):
            pruned = True
    return relevant, pruned


def needs_advice(ref: TableReference, settings: dict[str, str]) -> bool:
    """Whether the advice could say anything about this reference: False when every partition
    level it reaches was pruned at plan time (and nothing was left to start-up or execution,
    nor is the plan generic), where the advice would have nothing to explain."""
    if ref.partitions_total == 0:
        return False
    if ref.generic or ref.pruned_at_startup or ref.never_executed or ref.startup_unattributed:
        return True
    if settings.get("enable_partition_pruning") == "off":
        return True
    alive = alive_oids(ref)
    nodes = [ref.table] if ref.table.oid in alive else []
    while nodes:
        node = nodes.pop()
        populated = [c for c in node.children
                     if (c.leaf_count > 0 or c.is_leaf) and not c.detach_pending]
        if len(populated) > 1 and all(c.oid in alive for c in populated):
            return True  # a level kept every partition: the advice says why
        nodes.extend(c for c in populated if c.is_partitioned and c.oid in alive)
    return False


def zero_scan_references(
    plan: PlanTree, forest: Forest, read_oids: set[int], refs: list[TableReference]
) -> list[TableReference]:
    """Partitioned tables the query reads but the plan never scans (e.g. a contradiction)."""
    # covered: the reported tables, their ancestors and (through the path) their descendants;
    # checked per candidate instead of walking every reported tree (10,000 nodes)
    reported: set[int] = set()
    above: set[int] = set()

    def covered(node: PartNode) -> bool:
        return node.oid in above or any(o in reported for o in node.path)

    for r in refs:
        reported.add(r.table.oid)
        above.update(r.table.path)
    out = []
    for oid in sorted(read_oids):
        node: PartNode | None = forest.nodes.get(oid)
        if node is None or not node.is_partitioned or covered(node):
            continue
        if any(a in read_oids for a in node.path[:-1]):
            continue  # reported against the ancestor the query also names
        out.append(TableReference(
            table=node, label=node.name, partitions_total=node.leaf_count, partitions=[],
            pruned_at_startup=0, analyzed=plan.analyzed, generic=False))
        reported.add(node.oid)
        above.update(node.path)
    return out


def build_report(
    raw: RawExplain, forest: Forest, named: Mentions, server_version: int,
    by_name: dict[tuple[str, str], PartNode] | None = None,
) -> ExplainReport:
    """The counts, without advice. `named`: the relations the query names, read with
    PostgreSQL's grammar (relations.py): the counts come from the plan and the catalog, never
    from whether the advice's parser could read the text."""
    refs = build_references(raw.plan, forest, mentioned=named.refnames,
                            locked=raw.locked_oids, generic=raw.generic, by_name=by_name)
    refs += zero_scan_references(raw.plan, forest, named.read, refs)
    count_detach_pending(forest, refs)
    for ref in refs:
        ref.generic = raw.generic
    return ExplainReport(raw.statement, raw, None, refs, [], server_version, forest)
