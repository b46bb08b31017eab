"""The console's one table of commands: keys, footer, help screen and command palette all read it.

A command is data: an id (also the Binding id, so user keymaps can rebind it), a key, a short
title for the footer, a one-line description for the help screen and the palette, and the
Textual action it runs on the app. Commands that change the database say so (`writes=True`); in
--read-only mode they stay listed but cannot run.

Screens owned by other parts of the console register with `screen="module:attribute"`: the
module is imported only when the command first runs, and the attribute is called with the app
(`factory(app) -> Screen`). See `PgpartsApp` in app.py for what a screen can read from the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.catalog import Forest, PartNode
from ..core.plans.kind import PlanKind
from ..core.plans.registry import PLAN_KINDS


@dataclass(frozen=True)
class ConsoleCommand:
    id: str
    key: str  # a Textual key name: "r", "ctrl+r", "slash", "question_mark"
    title: str  # short, for the footer
    description: str  # one line, for the help screen and the palette
    action: str = ""  # a Textual action on the app, e.g. "refresh"; derived when `screen` is set
    screen: str | None = None  # "package.module:factory", imported lazily
    writes: bool = False  # changes the database: disabled in --read-only mode
    main_only: bool = False  # acts on the partition tree: only while the main screen is shown
    footer: bool = True
    key_display: str | None = None
    priority: bool = False
    args: tuple[str, ...] = ()  # passed to the screen factory after the app
    plan_kind: str = ""  # a plan kind's command: the palette says whether it applies

    @property
    def app_action(self) -> str:
        if self.action:
            return self.action
        if self.screen:
            return f"open_screen({self.id!r})"
        raise ValueError(f"command {self.id!r} has neither an action nor a screen")

    @property
    def shown_key(self) -> str:
        if not self.key:
            return "palette"
        if self.key_display:
            return self.key_display
        return _KEY_NAMES.get(self.key, self.key)


_KEY_NAMES = {
    "slash": "/",
    "question_mark": "?",
    "ctrl+p": "^p",
    "ctrl+r": "^r",
}


def action_name(action: str) -> str:
    """'open_screen("explain")' -> 'open_screen'."""
    return action.split("(", 1)[0].strip()


# Keys of the plan kinds' commands; a kind not listed here is reached from the palette (ctrl+p).
PLAN_KIND_KEYS = {"consolidate": "c"}


def plan_commands() -> list[ConsoleCommand]:
    """One command per registered plan kind: it opens the plan screen of that kind for the
    table under the tree cursor (or the nearest table above it the kind applies to)."""
    out = []
    for kind in PLAN_KINDS:
        key = PLAN_KIND_KEYS.get(kind.name, "")
        title = kind.name.replace("_", " ")
        out.append(ConsoleCommand(
            kind.name, key, title,
            f"{kind.title} of the selected table (status, options, plan preview, apply)",
            screen="tui.app.plan_screen:open_plan", args=(kind.name,), writes=False,
            main_only=True, footer=bool(key), plan_kind=kind.name))
    return out


def not_here(kind: PlanKind, forest: Forest, node: PartNode) -> str:
    """Why `kind` has nothing to do at `node`, said so that the operator knows where to go: a
    kind acting on partitions (split, merge, move-values) does apply under a table whose
    partitions it takes, and 'does not apply to the table' sent people away from it."""
    if any(kind.applies_to(forest, child) for child in node.children):
        return f"select a partition of {node.qualified}"
    return f"does not apply to {node.qualified}"
