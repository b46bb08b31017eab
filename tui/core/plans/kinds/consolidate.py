"""The consolidation kind: replace old sub-partitioned range partitions by one plain partition
each. The planning itself lives in plans/consolidate.py; this is its declaration."""

from __future__ import annotations

from typing import Any

import psycopg

from ...catalog import Forest, PartNode
from ...config import Config
from ...humanfmt import count, plural, seconds, size
from ...units import parse_age
from ..consolidate import (
    ConsolidationError,
    ConsolidationStatus,
    build_consolidation_plan,
    consolidation_status,
)
from ..engine.model import Plan
from ..engine.runner import RunResult
from ..kind import Option, PlanKind, PlanKindError, Request


def _at_least_one(n: int) -> None:
    if n < 1:
        raise ValueError("must be at least 1")


class Consolidate(PlanKind):
    name = "consolidate"
    title = "Consolidate old partitions"
    summary = "status, preview and apply consolidation plans"
    noun = "consolidation"
    has_status = True
    table_help = "the RANGE-partitioned parent ('name' or 'schema.name')"
    options = (
        Option("older_than", "str", metavar="AGE", parse=parse_age,
               help="partitions whose upper bound is older than AGE, e.g. 3months "
                    "(default: [plans] older_than, 3 months)"),
        Option("batch", "int", metavar="N", validate=_at_least_one,
               help="at most N partitions, oldest first (default: [plans] batch, 5)"),
        Option("weeks", "list", metavar="NAME",
               help="exactly these partitions instead of --older-than/--batch"),
        Option("drop_kept", "list", metavar="NAME",
               help="verify again and drop originals an earlier run kept because rows were "
                    "missing from their replacement (see status)"),
        Option("keep_detached", "flag",
               help="keep the original partitions detached instead of dropping them"),
    )
    status_help = ("'status': one line per partition: HASH_PARTITIONED, LIST_PARTITIONED, "
                   "CONSOLIDATED (built by pgparts), PLAIN or OTHER")

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return node.is_partitioned and node.strategy == "range" and any(
            c.is_partitioned for c in node.children)

    def status(self, conn: psycopg.Connection, forest: Forest, target: str
               ) -> ConsolidationStatus:
        try:
            return consolidation_status(conn, target, forest)
        except ConsolidationError as exc:
            raise PlanKindError(str(exc)) from None

    def status_text(self, status: ConsolidationStatus) -> str:
        return status_text(status)

    def status_json(self, status: ConsolidationStatus) -> Any:
        return status.to_json()

    def default_request(self, forest: Forest, target: str, config: Config) -> Request:
        return Request({"older_than": config.plans.older_than, "batch": config.plans.batch,
                        "keep_detached": config.plans.keep_detached}, target)

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        target = status.parent.qualified if status is not None else request.target
        try:
            return build_consolidation_plan(
                conn, target, config=config.plans, older_than=request.get("older_than"),
                batch=request.get("batch"), weeks=request.get("weeks"),
                keep_detached=request.get("keep_detached"),
                drop_kept=request.get("drop_kept"), forest=forest, status=status)
        except ConsolidationError as exc:
            raise PlanKindError(str(exc)) from None

    def nothing_to_do(self, plan: Plan) -> list[str]:
        return [f"nothing to consolidate in {plan.target}"] + [
            f"pgparts: {line}" for line in plan.summary if line != "nothing to consolidate"]

    def report(self, result: RunResult, plan: Plan) -> list[str]:
        d = result.details
        before, after = d.get("bytes_before", 0), d.get("bytes_after")
        done, earlier = _weeks_done(result, plan)
        out = [f"consolidated {plural(len(done), 'partition')} of {plan.target} in "
               f"{seconds(result.seconds)}"
               + (f"; {plural(len(earlier), 'partition')} already done" if earlier else "")]
        out += [f"  {w['partition']} -> {w['consolidated']}" for w in done]
        out += [f"  {w['partition']} -> {w['consolidated']} (already done)" for w in earlier]
        skipped = len(result.already_done_steps)
        out.append(f"  {plural(len(result.done_steps), 'step')} done by this run"
                   + (f", {skipped} already done" if skipped else "")
                   + f"; {plural(result.rows_copied, 'row')} copied")
        if after is not None:
            out.append(f"  size before {size(before)}, after {size(after)}"
                       + (" (originals kept detached)" if d.get("keep_detached") else ""))
        holds = [o.hold_seconds for o in result.steps if o.hold_seconds is not None]
        if holds:
            est = d.get("est_hold_seconds")
            out.append(f"  longest ACCESS EXCLUSIVE hold on {plan.target}: "
                       f"{max(holds) * 1000:.0f} ms"
                       + (f" (estimated ~{est * 1000:.0f} ms)" if est else ""))
        out += [f"  {line}" for line in plan.summary
                if line.startswith(("kept ", "ignored ", "pgparts' registry"))]
        return out


def _weeks_done(result: RunResult, plan: Plan) -> tuple[list[dict], list[dict]]:
    """The plan's weeks split into those this run changed and those an earlier run had done
    (every step of the week skipped). Steps name their week in `group`."""
    changed: set[str] = set()
    seen: set[str] = set()
    for step, out in zip(plan.steps, result.steps, strict=True):
        if step.group:
            seen.add(step.group)
            if out.status != "skipped":
                changed.add(step.group)
    weeks = plan.details.get("weeks", [])
    done = [w for w in weeks if w["partition"] in changed or w["partition"] not in seen]
    return done, [w for w in weeks if w not in done]


def status_text(st: ConsolidationStatus) -> str:
    rows = [("partition", "status", "parts", "rows", "size", "bound", "")]
    for w in st.weeks:
        rows.append((w.node.qualified, w.status, str(w.subpartitions or ""), count(w.rows),
                     size(w.bytes), w.bound, w.pending))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for r in rows:
        cells = [r[i].ljust(widths[i]) if i not in (2, 3, 4) else r[i].rjust(widths[i])
                 for i in range(6)]
        lines.append("  ".join(cells + ([r[6]] if r[6] else [])).rstrip())
    out = [f"{st.parent.qualified}: {plural(len(st.weeks), 'partition')}"
           " (rows and sizes are the catalog's estimates)", *lines]
    if st.note:
        out.append(st.note)
    for d in st.detached:
        out.append(f"detached original {d.display} ({size(d.bytes)}), replaced by "
                   f"{d.replacement}: dropped by the next --apply unless --keep-detached")
    for d in st.kept:
        out.append(f"kept original {d.display} ({size(d.bytes)}): {d.refused}; compare it "
                   f"with {d.replacement} and drop it by hand, or verify again and drop it: "
                   f"pgparts consolidate {st.parent.qualified} --drop-kept {d.display} --apply")
    out += st.ignored
    return "\n".join(out) + "\n"


__all__ = ["Consolidate", "status_text"]
