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
    CONSOLIDATED,
    HASH_PARTITIONED,
    LIST_PARTITIONED,
    ConsolidationError,
    ConsolidationStatus,
    build_consolidation_plan,
    consolidation_status,
)
from ..engine.model import Plan
from ..engine.runner import RunResult
from ..kind import (
    Cell,
    Option,
    PlanKind,
    PlanKindError,
    Request,
    StatusColumn,
    StatusRow,
    StatusTable,
)


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
        Option("keep_detached", "flag", key="k", label="originals",
               states=("dropped after verification", "kept detached"),
               help="keep the original partitions detached instead of dropping them"),
    )
    selection = "weeks"
    reset_with_selection = ("older_than", "batch")
    default_selection_help = ("select the weeks older than [plans] older_than, oldest first, "
                              "[plans] batch of them")
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

    def target_for(self, forest: Forest, node: PartNode) -> tuple[PartNode, list[str]] | None:
        """The nearest RANGE-partitioned table at or above `node`, and the week on the way down
        to `node` (a week selected directly, or the week of a selected leaf)."""
        chain = [node]
        while chain[-1].parent_oid is not None:
            parent = forest.nodes.get(chain[-1].parent_oid)
            if parent is None:
                break
            chain.append(parent)
        for i, candidate in enumerate(chain):
            if candidate.is_partitioned and candidate.strategy == "range":
                return candidate, ([chain[i - 1].qualified] if i > 0 else [])
        return None

    def status_table(self, status: ConsolidationStatus) -> StatusTable:
        tone = {HASH_PARTITIONED: "warn", LIST_PARTITIONED: "warn", CONSOLIDATED: "good"}
        prefix = status.parent.name
        rows = []
        for w in status.weeks:
            short = None
            if w.node.schema == status.parent.schema and w.name.startswith(prefix) \
                    and len(w.name) > len(prefix) + 1 and w.node.qualified == w.name:
                short = "…" + w.name[len(prefix):]
            short_status = {HASH_PARTITIONED: f"hash ×{w.subpartitions}",
                            LIST_PARTITIONED: f"list ×{w.subpartitions}"}.get(
                w.status, w.status.lower())
            selectable = w.status in (HASH_PARTITIONED, LIST_PARTITIONED)
            rows.append(StatusRow(w.node.qualified, {
                "partition": Cell(w.node.qualified, short=short),
                "status": Cell(w.status, tone=tone.get(w.status, "dim"), short=short_status),
                "parts": Cell(str(w.subpartitions) if w.subpartitions else ""),
                "rows": Cell(w.rows, "rows"), "size": Cell(w.bytes, "bytes"),
                "bound": Cell((w.lower, w.upper, w.bound), "bound"),
                "note": Cell(w.pending, tone="warn")},
                selectable=selectable,
                refusal="" if selectable else f"{w.node.qualified} is {w.status}: only "
                f"HASH_PARTITIONED or LIST_PARTITIONED partitions can be consolidated"))
        for d in status.detached:
            rows.append(StatusRow(f"detached:{d.oid}", {
                "partition": Cell(d.to_json()["table"], tone="dim"),
                "status": Cell("DETACHED", tone="dim", short="detached"),
                "size": Cell(d.bytes, "bytes"),
                "note": Cell(f"original of {d.replacement}", tone="dim")},
                selectable=False, refusal=f"{d.display} is a detached original: it is dropped "
                f"by the next applied plan unless originals are kept"))
        counts: dict[str, int] = {}
        for w in status.weeks:
            counts[w.status] = counts.get(w.status, 0) + 1
        headline = [(f"{plural(len(status.weeks), 'partition')}: "
                     + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), "")]
        if status.detached:
            headline.append((f" · {plural(len(status.detached), 'detached original')} left",
                             "warn"))
        empty = ("Select HASH_PARTITIONED or LIST_PARTITIONED weeks with space, or press o for "
                 "the weeks older than the threshold.")
        if status.detached:
            empty += ("\nDetached originals left by an earlier run are dropped by the next "
                      "applied plan unless originals are kept (k).")
        columns = [StatusColumn("partition", "partition"), StatusColumn("status", "status"),
                   StatusColumn("parts", "parts", right=True, wide_only=True),
                   StatusColumn("rows", "rows", right=True),
                   StatusColumn("size", "size", right=True),
                   StatusColumn("bound", "bound")]
        # an empty note column still takes its padding: at 80 columns, with 'consolidated'
        # in the status column, those two cells brought in a horizontal scrollbar
        if any(w.pending for w in status.weeks) or status.detached:
            columns.append(StatusColumn("note", ""))
        nothing = ""
        if status.note:  # nothing to select: say why rather than ask to select
            nothing = status.note[:1].upper() + status.note[1:] + "."
            if status.detached:
                nothing += empty[empty.index("\n"):]
        return StatusTable(columns=columns, rows=rows, headline=headline, empty=empty,
                           nothing=nothing)

    def selected(self, plan: Plan) -> list[str]:
        return [w["partition"] for w in plan.details.get("weeks", [])]

    def consequences(self, plan: Plan) -> list[str]:
        if not plan.details.get("weeks"):
            return []
        out = ["Writes to a week wait while that week is copied; reads continue. The table "
               f"{plan.target} is locked (ACCESS EXCLUSIVE) only for the swap of each week, "
               "for milliseconds."]
        if plan.details.get("keep_detached"):
            out.append("The original partitions are kept, detached, after the swap.")
        else:
            out.append("The original partitions are dropped once every one of their rows is "
                       "verified to be in the new partition.")
        return out

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
                drop_kept=request.get("drop_kept"), forest=forest, status=status,
                expiring=request.get("expiring"))  # set by maintain only, no option
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
