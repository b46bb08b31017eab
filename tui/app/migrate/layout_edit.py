"""Editing the proposed partitions before Build: the layout in the layout file's form (TOML, as
`pgparts migrate --layout FILE` reads it) in a text area; ctrl+n reads it back, has the server
check the bounds and counts the rows per partition (tui.core.migrate.edit), in a thread worker.
A layout that cannot be used is said in one line under the text; the dialog stays open."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import psycopg
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea

from ...core.connection import ConnectError, Target, connect
from ...core.errors import first_line
from ...core.migrate import MigrateError
from ...core.migrate.edit import with_layout_text
from ...core.migrate.spec import MigrationSpec


@dataclass
class LayoutChecked(Message):
    spec: MigrationSpec | None
    warnings: list[str] = field(default_factory=list)
    error: str = ""


class LayoutEditScreen(ModalScreen[tuple[MigrationSpec, list[str]] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "use", "check and use", show=True, priority=True,
                id="migrate-layout-use"),
        Binding("escape", "cancel", "cancel", show=True, id="migrate-layout-cancel"),
    ]

    DEFAULT_CSS = """
    LayoutEditScreen {
        align: center middle;
    }
    LayoutEditScreen #layout-box {
        width: 100;
        max-width: 95%;
        height: 90%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    LayoutEditScreen #layout-text {
        height: 1fr;
    }
    LayoutEditScreen #layout-error {
        height: auto;
        color: $warning;
    }
    LayoutEditScreen #layout-buttons {
        height: auto;
        align-horizontal: right;
    }
    LayoutEditScreen #layout-buttons Button {
        margin-left: 2;
    }
    """

    def __init__(self, target: Target, spec: MigrationSpec, text: str) -> None:
        super().__init__()
        self.db_target = target
        self.spec = spec
        self.layout_source = text
        self.checking = False
        self.checks = 0  # finished checks (tests wait on them)

    def compose(self) -> ComposeResult:
        with Vertical(id="layout-box"):
            yield Static(Text.assemble(
                (f"Partitions of {self.spec.display}", "bold"),
                (" · bounds in UTC, `to` excluded; split, merge, rename; keep one "
                 "default = true", "dim")))
            yield TextArea(self.layout_source, id="layout-text", soft_wrap=False)
            yield Static("", id="layout-error")
            with Horizontal(id="layout-buttons"):
                yield Button("Check and use (^n)", id="layout-use", variant="primary",
                             compact=True)
                yield Button("Cancel (esc)", id="layout-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#layout-text", TextArea).focus()

    @on(Button.Pressed, "#layout-use")
    def _use_pressed(self, event: Button.Pressed) -> None:
        self.action_use()

    @on(Button.Pressed, "#layout-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        self.action_cancel()

    def action_use(self) -> None:
        if self.checking:
            return
        self.checking = True
        self.query_one("#layout-error", Static).update(
            Text("checking the bounds and counting the rows…", style="italic"))
        self._check(self.query_one("#layout-text", TextArea).text)

    @work(thread=True, exclusive=True, group="migrate-layout", exit_on_error=False,
          description="checking the layout")
    def _check(self, text: str) -> None:
        try:
            with connect(self.db_target, purpose="migrate") as conn:
                spec, warnings = with_layout_text(conn, self.spec, text)
        except (ConnectError, MigrateError, psycopg.Error) as exc:
            self.post_message(LayoutChecked(None, error=first_line(exc)))
            return
        self.post_message(LayoutChecked(spec, warnings))

    @on(LayoutChecked)
    def _checked(self, message: LayoutChecked) -> None:
        self.checking = False
        self.checks += 1
        if message.spec is None:
            self.query_one("#layout-error", Static).update(message.error)
            return
        self.dismiss((message.spec, message.warnings))

    def action_cancel(self) -> None:
        self.dismiss(None)
