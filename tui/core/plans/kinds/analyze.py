"""The analyze kind: ANALYZE the partitions that were never analyzed (finding never_analyzed).

Until a partition is analyzed the planner guesses its row count. One step per partition, each
its own short transaction under the lock timeout (ANALYZE takes SHARE UPDATE EXCLUSIVE on the
partition: writers and readers carry on; only other maintenance and DDL on it wait). A step is
done once the catalog has a row estimate for the partition (pg_class.reltuples >= 0), so a
re-run after an interruption analyzes only what is left.
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


def never_analyzed(node: PartNode) -> list[PartNode]:
    """The leaves under `node` that were never analyzed (as the finding counts them)."""
    return [c for c in node.leaves() if c.relkind == "r" and c.reltuples < 0
            and c.last_analyze is None and c.last_autoanalyze is None]


def _analyzed(oid: int) -> Any:
    def done(conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT reltuples >= 0 FROM pg_catalog.pg_class WHERE oid = %s",
                           (oid,)).fetchone()
        return row is None or bool(row[0])  # a partition dropped since needs nothing
    return done


class Analyze(PlanKind):
    name = "analyze"
    title = "Analyze never-analyzed partitions"
    summary = "ANALYZE the partitions that were never analyzed"
    noun = "analyze"
    fixes = ("never_analyzed",)
    options = (
        Option("partitions", "list", metavar="NAME",
               help="only these partitions ('name' or 'schema.name')"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return node.is_partitioned and bool(never_analyzed(node))

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        parent = find_table(forest, request.target)
        chosen = _select(forest, never_analyzed(parent), request.get("partitions"))
        steps = [
            Step(title=f"Analyze {p.qualified}",
                 explanation=f"ANALYZE {p.qualified}: samples its rows for the planner's "
                             f"statistics; readers and writers carry on",
                 statements=[Statement(sql.SQL("ANALYZE {}").format(p.ident),
                                       kind="maintenance", note=f"analyze {p.qualified}")],
                 locks=[Lock("SHARE UPDATE EXCLUSIVE", p.qualified,
                             "other maintenance and DDL on it wait; reads and writes go on")],
                 done=_analyzed(p.oid), group=p.qualified)
            for p in chosen]
        summary = ([f"analyze {plural(len(chosen), 'partition')} of {parent.qualified} never "
                    f"analyzed"] if chosen else [f"every partition of {parent.qualified} has "
                                                  f"been analyzed"])
        return Plan(kind=self.name, title=f"analyze {plural(len(chosen), 'partition')} of "
                                          f"{parent.qualified}",
                    target=parent.qualified, target_oid=parent.oid, steps=steps,
                    summary=summary,
                    facts=PlanFacts(changes=[f"statistics for {p.qualified}" for p in chosen]),
                    details={"plan_id": uuid.uuid4().hex},
                    lock_timeout_seconds=config.plans.lock_timeout_seconds)


def _select(forest: Forest, nodes: list[PartNode], names: list[str] | None) -> list[PartNode]:
    """`nodes`, or those of them named in `names` (each must be one of them)."""
    from ..kind import PlanKindError

    if not names:
        return nodes
    out: list[PartNode] = []
    for spec in names:
        try:
            node = forest.find(spec)
        except (LookupError, ValueError) as exc:
            raise PlanKindError(str(exc)) from None
        if node.oid not in {n.oid for n in nodes}:
            raise PlanKindError(f"{node.qualified} is not one of the partitions this fixes")
        out.append(node)
    return out
