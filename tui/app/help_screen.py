"""The help screen: every key of the console, read from the command table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from .app import PgpartsApp

_TREE_KEYS = [
    ("↑ ↓", "move"),
    ("enter / space", "expand or collapse"),
    ("shift+← / shift+→", "to parent / to the next ancestor"),
    ("shift+↑ / shift+↓", "previous / next sibling"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss_help", "close", show=True),
        Binding("question_mark", "dismiss_help", "close", show=False),
        Binding("q", "dismiss_help", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        app: PgpartsApp = self.app  # type: ignore[assignment]
        table = Table.grid(padding=(0, 3))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for cmd in app.console_commands:
            description = Text(cmd.description)
            if not app.command_enabled(cmd):
                description.append("  (disabled: read-only)", style="yellow")
            table.add_row(cmd.shown_key, description)
        table.add_row("", "")
        for key, what in _TREE_KEYS:
            table.add_row(key, what)
        with VerticalScroll(id="help-body"):
            yield Static(Text("pgparts keys", style="bold"), id="help-title")
            yield Static(table)
            yield Static(Text("escape closes this help", style="dim"), id="help-hint")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
