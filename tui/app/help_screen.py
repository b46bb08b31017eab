"""The help screen: the keys of the screen it was opened from, then the console's commands.

Both parts are read from bindings, so the help stays true when keys change: the screen's own
BINDINGS (and, on the main screen, the partition tree's), then the command table's commands that
work on that screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

if TYPE_CHECKING:
    from .app import PgpartsApp

_KEY_GLYPHS = {
    "up": "↑", "down": "↓", "left": "←", "right": "→", "escape": "esc",
    "question_mark": "?", "slash": "/",
}


def key_text(app, binding: Binding) -> str:
    """How a key is written in the help: rebound by [console.keymap], else the binding's own
    display, else 'shift+←', 'f5'."""
    rebound = getattr(app, "keymap", {}).get(binding.id) if binding.id else None
    if rebound:
        return " / ".join(_glyphs(k) for k in rebound.split(","))
    if binding.key_display:
        return binding.key_display
    return _glyphs(binding.key)


def _glyphs(key: str) -> str:
    return "+".join(_KEY_GLYPHS.get(p, p) for p in key.split("+"))


def screen_keys(app, screen: Screen) -> list[tuple[str, str]]:
    """(key, what it does) for the screen's own bindings, and the tree's on the main screen;
    bindings of one action are shown together ('ctrl+↑ / ctrl+↓'), one description each."""
    from .main_screen import MainScreen
    from .tree_view import PartitionTree

    bindings: list[Binding] = []
    if isinstance(screen, MainScreen):
        bindings.extend(b for b in PartitionTree.BINDINGS if isinstance(b, Binding))
    bindings.extend(b for b in type(screen).BINDINGS if isinstance(b, Binding))
    rows: list[tuple[str, str]] = []
    seen: dict[str, tuple[int, bool]] = {}  # action -> (row, its key_display names all)
    for b in bindings:
        what = (b.tooltip or b.description or b.action).strip()
        if what[1:2].islower():  # 'Cursor to parent' -> 'cursor to parent'; not 'EXPLAIN'
            what = what[:1].lower() + what[1:]
        action = b.action.split("(")[0]
        if action in seen and b.key_display is None:
            i, shown_by_display = seen[action]
            key, text = rows[i]
            if not shown_by_display and key_text(app, b) not in key:
                rows[i] = (f"{key} / {key_text(app, b)}", text)
            continue
        seen[action] = (len(rows), b.key_display is not None)
        rows.append((key_text(app, b), what))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss_help", "close", show=True),
        Binding("question_mark", "dismiss_help", "close", show=False),
        Binding("q", "dismiss_help", "close", show=False),
    ]

    def __init__(self, origin: Screen | None = None) -> None:
        super().__init__()
        self.origin = origin

    def compose(self) -> ComposeResult:
        app: PgpartsApp = self.app  # type: ignore[assignment]
        origin = self.origin if self.origin is not None else app.screen
        table = Table.grid(padding=(0, 3))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        own = screen_keys(app, origin)
        if own:
            table.add_row(Text("this screen", style="bold underline"), "")
            for key, what in own:
                table.add_row(key, Text(what))
            table.add_row("", "")
            table.add_row(Text("console", style="bold underline"), "")
        from .main_screen import MainScreen

        for cmd in app.console_commands:
            if cmd.main_only and not isinstance(origin, MainScreen):
                continue  # acts on the tree: not from this screen
            description = Text(cmd.description)
            if not app.command_enabled(cmd):
                description.append("  (disabled: read-only)", style="yellow")
            table.add_row(app.shown_key(cmd), description)
        with VerticalScroll(id="help-body"):
            yield Static(Text("pgparts keys", style="bold"), id="help-title")
            yield Static(table)
            yield Static(Text("escape closes this help", style="dim"), id="help-hint")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
