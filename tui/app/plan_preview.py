"""What the console shows of a plan before it runs, for every plan kind: the neutral description
(tui.core.plans.engine.describe: steps, SQL, locks, estimates, verification, and the plan's
typed facts) drawn with Rich, and the sentences of the confirmation dialog.

The description is made on the planning worker's connection (psycopg's as_string needs one) and
kept in a `PlanPreview`, so nothing here touches the database and the widgets only draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from ..core.humanfmt import plural
from ..core.plans import Plan
from ..core.plans.engine.describe import PlanDescription, describe
from .format import thousands


@dataclass
class PlanPreview:
    """A plan with its description rendered, ready to draw."""

    plan: Plan
    description: PlanDescription

    @classmethod
    def build(cls, plan: Plan, conn: psycopg.Connection) -> PlanPreview:
        return cls(plan, describe(plan, conn))

    @property
    def script(self) -> str:
        """The whole plan as a reviewable .sql script (what `--sql` prints)."""
        return self.description.script

    @property
    def destroys(self) -> bool:
        """The plan drops something (its facts say so): the operator types the name first."""
        return bool(self.plan.facts.destroys)

    # the consolidation tests' name for it
    drops_originals = destroys


def change_lines(preview: PlanPreview) -> list[str]:
    """What applying changes, one line each, from the plan's facts."""
    d = preview.description
    lines = list(d.changes) or list(d.summary)
    lines += [f"drop {line}" for line in d.destroys]
    return lines


def render_plan(preview: PlanPreview, consequences: list[str] | None = None) -> RenderableType:
    """The preview pane: what changes (facts), then each step with its locks, estimate,
    verification and SQL."""
    d = preview.description
    parts: list[RenderableType] = [Text(f"Plan: {d.title}", style="bold")]
    changes = Table.grid(padding=(0, 1))  # wrapped lines stay indented under their bullet
    changes.add_column(no_wrap=True)
    changes.add_column()
    for line in change_lines(preview):
        if line.startswith("  "):  # an item of the line above ('split X into:')
            changes.add_row("", Text(f"◦ {line.strip()}"))
        else:
            changes.add_row(" •", Text(line))  # names are text, not markup
    for line in consequences or []:
        changes.add_row(" ·", Text(line, style="dim"))
    parts.append(changes)
    # each note indented as a whole: a wrapped line went on at the pane's left edge
    for line in d.figures:
        parts.append(Padding(Text(line, style="bold green"), (0, 0, 0, 2)))
    for line in d.notes:
        note = Text()
        label, sep, rest = line.partition(": ")
        if sep and len(label) < 40:
            note.append(f"{label}: ", style="bold")
            note.append(rest, style="dim")
        else:
            note.append(line, style="dim")
        parts.append(Padding(note, (0, 0, 0, 2)))
    parts.append(Padding(Text(f"{plural(len(d.steps), 'step')} · ~{thousands(d.rows)} rows · "
                              f"~{d.seconds:.1f} s estimated", style="dim"), (0, 0, 0, 2)))
    for step in d.steps:
        # the title wraps under itself, not under its number
        t = Text(step.title, style="bold cyan")
        mode = "one transaction" if step.transactional else "no transaction"
        if step.transactional and step.isolation != "read committed":
            mode += f", {step.isolation}"
        t.append(f"  ({mode})", style="dim")
        title = Table.grid(padding=(0, 1))
        title.add_column(no_wrap=True)
        title.add_column()
        title.add_row(Text(f"{step.index:>2}.", style="bold cyan"), t)
        parts += [Text(""), title]
        body = Text()
        body.append(f"{step.explanation}\n")
        for mode_, relation, blocks in step.lock_parts:
            body.append("lock ", style="dim")
            body.append(f"{mode_} on {relation}", style="yellow")
            if blocks:
                body.append(f": {blocks}", style="dim")
            body.append("\n")
        if step.estimate:
            body.append(f"estimate: {step.estimate}\n", style="dim")
        if step.verification:
            body.append(f"verified before commit: {step.verification}\n", style="green")
        body.rstrip()
        parts.append(Padding(body, (0, 0, 0, 4)))
        code = "\n".join(
            (f"-- {note}\n" if note else "") + text.rstrip().rstrip(";") + ";"
            for note, text in step.sql)
        if code:
            parts.append(Padding(Syntax(code, "sql", theme="ansi_dark", word_wrap=True,
                                        background_color="default"), (0, 0, 0, 4)))
    return Group(*parts)
