"""What the console shows of a plan before it runs: steps, SQL, locks, estimates, and the plain
sentences of the confirmation dialog.

The SQL is rendered on the planning worker's connection (psycopg's as_string needs one) and kept
as text in a `PlanPreview`, so nothing here touches the database and the widgets only draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from ..core.humanfmt import plural
from ..core.plans import Plan
from ..core.plans.consolidate import ConsolidationStatus, WeekStatus
from .format import human_bytes, thousands


@dataclass
class PlanPreview:
    """A plan with its SQL rendered, ready to draw. `sql[i]` holds (note, statement) pairs of
    step i (0-based)."""

    plan: Plan
    sql: list[list[tuple[str, str]]] = field(default_factory=list)
    script: str = ""  # the whole plan as a reviewable .sql script

    @classmethod
    def build(cls, plan: Plan, conn: psycopg.Connection) -> PlanPreview:
        rendered = [[(st.note, st.render(conn)) for st in step.statements] for step in plan.steps]
        return cls(plan, rendered, plan.to_sql(conn))

    @property
    def drops_originals(self) -> bool:
        """The plan drops tables (the detached originals): the operator types the name first."""
        d = self.plan.details
        return bool(d.get("dropped_leftovers")) or bool(d.get("weeks")
                                                         and not d.get("keep_detached"))


def week_label(week: WeekStatus | None, partition: str) -> str:
    """'week 2024-01-07' when the partition's lower bound is a date, else 'partition X'."""
    if week is not None and week.lower is not None:
        return f"week {week.lower:%Y-%m-%d}"
    return f"partition {partition}"


def change_lines(plan: Plan, status: ConsolidationStatus | None) -> list[str]:
    """One sentence per week of what applying changes, plus a total for a batch."""
    by_name = {w.node.qualified: w for w in status.weeks} if status is not None else {}
    weeks = plan.details.get("weeks", [])
    lines = []
    for w in weeks:
        week = by_name.get(w["partition"])
        lines.append(
            f"{w['partition']}: replace {plural(w['subpartitions'], 'partition')} holding "
            f"{plural(w['rows'], 'row')}, {human_bytes(w['bytes_before'])}, of "
            f"{week_label(week, w['partition'])} with one partition {w['consolidated']}")
    if len(weeks) > 1:
        rows = sum(w["rows"] for w in weeks)
        parts = sum(w["subpartitions"] for w in weeks)
        lines.append(
            f"in all: {len(weeks)} weeks, {plural(parts, 'partition')}, {thousands(rows)} rows, "
            f"{human_bytes(plan.details.get('bytes_before', 0))} become {len(weeks)} partitions")
    for d in plan.details.get("dropped_leftovers", []):
        lines.append(f"drop {d['table']} ({human_bytes(d['bytes'])}), detached by an earlier "
                     f"run and replaced by {d['replaced_by']}")
    return lines


def consequence_lines(plan: Plan) -> list[str]:
    """What the application notices while the plan runs, and what happens to the originals."""
    out = []
    if plan.details.get("weeks"):
        out.append("Writes to a week wait while that week is copied; reads continue. The table "
                   f"{plan.target} is locked (ACCESS EXCLUSIVE) only for the swap of each week, "
                   "for milliseconds.")
        if plan.details.get("keep_detached"):
            out.append("The original partitions are kept, detached, after the swap.")
        else:
            out.append("The original partitions are dropped once every one of their rows is "
                       "verified to be in the new partition.")
    return out


def render_plan(preview: PlanPreview, status: ConsolidationStatus | None = None
                ) -> RenderableType:
    """The preview pane: what changes, estimated space saved, then each step with its SQL."""
    plan = preview.plan
    parts: list[RenderableType] = []
    parts.append(Text(f"Plan: {plan.title}", style="bold"))
    changes = Table.grid(padding=(0, 1))  # wrapped lines stay indented under their bullet
    changes.add_column(no_wrap=True)
    changes.add_column()
    lines = change_lines(plan, status) or plan.summary
    if plan.details.get("keep_detached") and plan.details.get("weeks"):
        lines = [*lines, "the original partitions are kept detached"]
    for line in lines:
        changes.add_row(" •", line)
    parts.append(changes)
    head = Text()
    d = plan.details
    if d.get("weeks"):
        before = int(d.get("bytes_before", 0))
        saved = int(d.get("est_bytes_saved", 0))
        head.append("  estimated space saved: ", style="bold")
        head.append(f"{human_bytes(saved)} of {human_bytes(before)}", style="bold green")
        head.append(" (rebuilt indexes are packed to their fillfactor; each extra leaf's maps "
                    "and index meta pages go away; dead rows are not copied)\n", style="dim")
    est = plan.estimate
    head.append(f"  {len(plan.steps)} steps · ~{thousands(est.rows)} rows to copy · "
                f"~{est.seconds:.1f} s estimated", style="dim")
    parts.append(head)
    for i, step in enumerate(plan.steps, 1):
        t = Text()
        t.append(f"\n{i:>2}. {step.title}", style="bold cyan")
        mode = "one transaction" if step.transactional else "no transaction"
        if step.transactional and step.isolation != "read committed":
            mode += f", {step.isolation}"
        t.append(f"  ({mode})", style="dim")
        parts.append(t)
        body = Text()
        body.append(f"{step.explanation}\n")
        for lock in step.locks:
            body.append("lock ", style="dim")
            body.append(f"{lock.mode} on {lock.relation}", style="yellow")
            if lock.blocks:
                body.append(f": {lock.blocks}", style="dim")
            body.append("\n")
        e = step.estimate
        if e.rows or e.seconds:
            body.append(f"estimate: ~{thousands(e.rows)} rows, {human_bytes(max(e.bytes, 0))}, "
                        f"~{e.seconds:.1f} s\n", style="dim")
        if step.verify_note:
            body.append(f"verified before commit: {step.verify_note}\n", style="green")
        body.rstrip()
        parts.append(Padding(body, (0, 0, 0, 4)))
        statements = preview.sql[i - 1] if i - 1 < len(preview.sql) else []
        code = "\n".join(
            (f"-- {note}\n" if note else "") + text.rstrip().rstrip(";") + ";"
            for note, text in statements)
        if code:
            parts.append(Padding(Syntax(code, "sql", theme="ansi_dark", word_wrap=True,
                                        background_color="default"), (0, 0, 0, 4)))
    return Group(*parts)
