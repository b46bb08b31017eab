"""The finalize_detach kind: finish interrupted DETACH ... CONCURRENTLY (finding detach_pending).

A partition whose concurrent detach was cancelled or killed stays "detach pending": invisible
through its parent, and inserts for its range fail. `ALTER TABLE parent DETACH PARTITION
partition FINALIZE` completes it, taking SHARE UPDATE EXCLUSIVE on the parent and ACCESS
EXCLUSIVE on the partition (tested on 15 and 18); each step is that one statement in autocommit,
retried when its lock is not granted within the lock timeout. Done once pg_inherits no longer
links the two.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql

from ...catalog import Forest, PartNode
from ...config import Config
from ...humanfmt import plural
from ..engine.model import Lock, Plan, PlanFacts, Statement, Step
from ..kind import Option, PlanKind, Request, find_table
from ..steps.swap import no_longer_partition_of
from .analyze import _select


def detach_pending(node: PartNode) -> list[tuple[PartNode, PartNode]]:
    """(parent, partition) pairs under `node` whose detach is pending."""
    return [(n, c) for n in node.walk() for c in n.children if c.detach_pending]


class FinalizeDetach(PlanKind):
    name = "finalize_detach"
    title = "Finish interrupted detaches"
    summary = "finish DETACH PARTITION ... CONCURRENTLY that was interrupted (FINALIZE)"
    noun = "finalize_detach"
    fixes = ("detach_pending",)
    options = (
        Option("partitions", "list", metavar="NAME",
               help="only these pending partitions ('name' or 'schema.name')"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return node.is_partitioned and bool(detach_pending(node))

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        root = find_table(forest, request.target)
        pairs = detach_pending(root)
        chosen = {c.oid for c in _select(forest, [c for _p, c in pairs],
                                         request.get("partitions"))}
        pairs = [(p, c) for p, c in pairs if c.oid in chosen]
        steps = [
            Step(title=f"Finish detaching {c.qualified}",
                 explanation=f"ALTER TABLE {p.qualified} DETACH PARTITION {c.qualified} "
                             f"FINALIZE: completes the interrupted concurrent detach; "
                             f"{c.qualified} becomes a table of its own with its rows",
                 statements=[Statement(sql.SQL(
                     "ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(p.ident, c.ident),
                     note=f"finish detaching {c.qualified}")],
                 locks=[Lock("SHARE UPDATE EXCLUSIVE", p.qualified,
                             "other DDL on it waits; reads and writes go on"),
                        Lock("ACCESS EXCLUSIVE", c.qualified,
                             "its direct readers and writers wait for the moment it takes")],
                 transactional=False, done=no_longer_partition_of(p.oid, c.oid), group=c.qualified)
            for p, c in pairs]
        summary = ([f"finish detaching {plural(len(pairs), 'partition')} of {root.qualified}"]
                   if pairs else [f"no detach is pending under {root.qualified}"])
        return Plan(kind=self.name, title=f"finish detaching {plural(len(pairs), 'partition')}"
                                          f" of {root.qualified}",
                    target=root.qualified, target_oid=root.oid, steps=steps, summary=summary,
                    facts=PlanFacts(changes=[f"{c.qualified} detached from {p.qualified}"
                                             for p, c in pairs]),
                    details={"plan_id": uuid.uuid4().hex},
                    lock_timeout_seconds=config.plans.lock_timeout_seconds)
