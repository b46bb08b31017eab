"""Matching the config's `[policy."schema.table"]` sections to the tables of a loaded forest.

A policy names its table the way `pgparts tree NAME` does (tui/core/names.py): 'name' or
'schema.name', quoted parts keep their case. It applies to partitioned tables only (a root or a
partitioned level inside a tree); its findings thresholds hold for that table and everything below
it, unless a policy on a lower level sets the same threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .catalog import Forest, PartNode
from .config import FindingsConfig, TablePolicy


@dataclass
class PolicyResolution:
    """Which table each policy means in this database, and the policies that match none."""

    by_oid: dict[int, TablePolicy] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line each, naming the policy


def resolve_policies(forest: Forest, policies: Mapping[str, TablePolicy]) -> PolicyResolution:
    out = PolicyResolution()
    for key, policy in policies.items():
        hits = [
            n for n in forest.nodes.values()
            if n.name == policy.name and (policy.schema is None or n.schema == policy.schema)
        ]
        tables = [n for n in hits if n.is_partitioned]
        where = f"[policy] {key!r}"
        if not tables:
            what = ("is a partition, not a partitioned table" if hits
                    else "names no partitioned table in this database")
            out.problems.append(f"{where} {what}; it does nothing here")
            continue
        if len(tables) > 1:
            names = ", ".join(sorted(t.qualified for t in tables))
            out.problems.append(
                f"{where} is ambiguous ({names}); qualify it with a schema; it does nothing here"
            )
            continue
        node = tables[0]
        other = out.by_oid.get(node.oid)
        if other is not None:
            # 'orders' and 'public.orders' both name public.orders: the qualified one wins
            keep = policy if policy.schema is not None and other.schema is None else other
            drop = other if keep is policy else policy
            out.problems.append(
                f"[policy] {drop.key!r} and {keep.key!r} both name {node.qualified}; "
                f"{keep.key!r} is used"
            )
            out.by_oid[node.oid] = keep
            continue
        out.by_oid[node.oid] = policy
    return out


def thresholds_by_oid(
    forest: Forest, base: FindingsConfig, by_oid: Mapping[int, TablePolicy]
) -> dict[int, FindingsConfig]:
    """The findings thresholds of every partitioned table under a policy that sets some: each
    threshold from the nearest policy above it (itself included), else from [findings]."""
    with_thresholds = {oid: p for oid, p in by_oid.items() if p.has_thresholds}
    if not with_thresholds:
        return {}
    out: dict[int, FindingsConfig] = {}

    def visit(node: PartNode, inherited: FindingsConfig) -> None:
        policy = with_thresholds.get(node.oid)
        here = policy.thresholds(inherited) if policy is not None else inherited
        if here is not base:
            out[node.oid] = here
        for child in node.children:
            if child.is_partitioned:
                visit(child, here)

    for root in forest.roots:
        visit(root, base)
    return out
