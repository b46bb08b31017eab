"""What the wizard's stage screen draws, from the state one worker run read (`StageState`):
where the migration stands, the stage's findings and plan, a stage's result. Pure: no database,
no widget."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ...core.humanfmt import seconds
from ...core.migrate.report import StageReport
from ...core.migrate.spec import MigrationSpec
from ...core.migrate.stages import STAGES, Stage
from ...core.plans import Plan, RunResult
from ..plan_preview import PlanPreview, render_plan


@dataclass
class StageState:
    """Where a migration stands and its next stage, read in one worker run."""

    spec: MigrationSpec | None = None
    last_done: str = ""  # the registry's last stage done; '' when nothing is recorded
    done: dict[str, bool] = field(default_factory=dict)
    stage: Stage | None = None  # the stage to run next; None when every stage is done
    preview: PlanPreview | None = None
    unavailable: str = ""  # the stage has no plan (why)
    report: StageReport = field(default_factory=StageReport)
    blocking: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the catalog disagrees with the record
    layout: str = ""  # the partitions as a layout file, while they can still change
    error: str = ""


def stage_strip(s: StageState) -> Text:
    """'stages ✓1 ✓2 ▶3 4 5 6 7 8 9': done, the one shown, still to come; '(8)' when the
    migration did not choose stage 8."""
    t = Text("stages ", style="bold")
    for stage in STAGES:
        if s.done.get(stage.name):
            t.append(f"✓{stage.number}", style="green")
        elif s.stage is not None and stage.name == s.stage.name:
            t.append(f"▶{stage.number}", style="bold reverse")
        elif s.spec is not None and not stage.chosen(s.spec):
            t.append(f"({stage.number})", style="dim")
        else:
            t.append(f"{stage.number}", style="dim")
        t.append(" ")
    if s.last_done:
        t.append(f"· last done: {s.last_done}", style="dim")
    elif s.spec is not None:
        t.append("· nothing recorded yet", style="dim")
    return t


def head(table: str, s: StageState) -> Text:
    t = Text()
    t.append(f"Migrate {table}", style="bold")
    if s.spec is not None:
        t.append(f" · by {s.spec.column} · key ({', '.join(s.spec.key)})"
                 + (f" · tie-break {s.spec.tiebreak}" if s.spec.tiebreak else ""), style="dim")
    t.append("\n")
    t.append_text(stage_strip(s))
    return t


def _found(report: StageReport) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if report.lines:
        # wrapped values stay indented under their label, as in the plan's preview
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")  # long names break rather than lose their end
        for line in report.lines:
            label, sep, rest = line.partition(": ")
            if sep and len(label) < 30:
                grid.add_row(Text(f" {label}:", style="bold"), rest)
            else:
                grid.add_row(" •", line)
        parts += [Text("What it found", style="bold cyan"), grid]
    if report.table:
        table = Table(title=report.table_title, title_justify="left", box=None,
                      padding=(0, 1), title_style="bold")
        table.add_column("partition" if report.table_title == "partitions" else "#")
        table.add_column("range")
        table.add_column("rows", justify="right")
        for row in report.table:
            table.add_row(*row)
        parts.append(table)
    return parts


def body(table: str, s: StageState) -> list[RenderableType]:
    """The stage pane once the state is read: the next stage's findings and plan, or why
    nothing can run."""
    if s.error:
        return [Text(s.error, style="bold red")]
    if s.spec is None:
        return [Text(f"No migration of {table} is recorded (escape: back to the tables).",
                     style="bold")]
    if s.problems:
        return [Text("The catalog disagrees with pgparts' record; nothing can run:",
                     style="bold red"), *(Text(f"  {p}", style="red") for p in s.problems)]
    if s.stage is None:
        return [Text("Every stage is done.", style="bold green")]
    stage = s.stage
    parts: list[RenderableType] = [
        Text(f"Stage {stage.number} of {len(STAGES)}: {stage.title}", style="bold underline")]
    if s.blocking:
        # first: at 24 lines what stops the stage is read without scrolling past the counts
        stop = Text("Stopped: ", style="bold red")
        stop.append(s.blocking[0])
        for line in s.blocking[1:]:
            stop.append(f"\n  {line}", style="red")
        stop.append("\n  Resolve it outside pgparts, then esc and pick the table again to "
                    "count again.", style="dim")
        parts.append(stop)
    parts += _found(s.report)
    if s.preview is not None:
        parts += [Text(""), render_plan(s.preview)]
    elif s.unavailable:
        parts.append(Text(f"\nThis stage cannot run: {s.unavailable}", style="bold yellow"))
    return parts


def result_text(plan: Plan, result: RunResult | None, stage: Stage | None) -> RenderableType:
    """A stage's (or the abort's) result, kept above the next stage."""
    what = f"Stage {stage.number} ({stage.title})" if stage else plan.title
    if result is None:
        return Text(f"{what}: not run\n", style="yellow")
    if result.ok:
        t = Text(f"{what}: done in {seconds(result.seconds)}", style="bold green")
        if result.rows_copied:
            t.append(f", {result.rows_copied:,} rows copied", style="green")
        checks = [o.verification for o in result.steps if o.verification]
        if not checks:
            return Text.assemble(t, "\n")
        # what was verified wraps under itself, not back at the margin (stage 2's is 5 lines)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for check in checks:
            grid.add_row(Text("  ✓", style="green"), Text(check, style="green"))
        return Group(t, grid, Text(""))
    else:
        t = Text(f"{what}: {result.outcome}: ", style="bold red")
        t.append(result.error or "no reason given")
        if result.state:
            t.append(f"\n  database state: {result.state}")
        t.append("\n  Run it again to resume from the first step not done.", style="dim")
    t.append("\n")
    return t
