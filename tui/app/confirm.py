"""Confirmation dialogs for changes to the database.

`ConfirmModal` states what will change and returns True only on an explicit yes; the safe answer
has the focus. `TypeNameModal` asks the operator to type a table's name before something is
dropped: its confirm button stays disabled until the text matches.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

_CSS = """
{cls} {{
    align: center middle;
}}
{cls} .confirm-box {{
    width: 100;
    max-width: 95%;
    height: auto;
    max-height: 90%;
    border: thick $warning;
    background: $surface;
    padding: 1 2;
}}
{cls} .confirm-title {{
    margin-bottom: 1;
}}
{cls} .confirm-scroll {{
    height: auto;
    max-height: 50vh;
}}
{cls} Input {{
    margin-top: 1;
}}
{cls} #typename-error {{
    height: auto;
    color: $warning;
}}
{cls} .confirm-buttons {{
    height: auto;
    margin-top: 1;
    align-horizontal: right;
}}
{cls} .confirm-buttons Button {{
    margin-left: 2;
}}
"""


class ConfirmModal(ModalScreen[bool]):
    """Yes/no about a change; `lines` say exactly what will change."""

    DEFAULT_CSS = _CSS.format(cls="ConfirmModal")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes", show=True),
        Binding("n", "answer(False)", "no", show=True),
        Binding("escape", "answer(False)", "cancel", show=True),
        # the focus stays on the safe button; what does not fit at 80x24 is still reachable
        Binding("down", "scroll_body('down')", "scroll", show=False),
        Binding("up", "scroll_body('up')", "scroll", show=False),
        Binding("pagedown", "scroll_body('page_down')", "scroll", show=False),
        Binding("pageup", "scroll_body('page_up')", "scroll", show=False),
        Binding("end", "scroll_body('end')", "scroll", show=False),
        Binding("home", "scroll_body('home')", "scroll", show=False),
    ]

    def __init__(self, title: str, lines: list[str], notes: list[str] | None = None,
                 yes_label: str = "Apply") -> None:
        super().__init__(classes="confirm-modal")
        self.title_text = title
        self.lines = lines
        self.notes = notes or []
        self.yes_label = yes_label
        self._answered = False

    def compose(self) -> ComposeResult:
        body = Text()
        for line in self.lines:
            if line.startswith("  "):  # an item of the line above ('split X into:')
                body.append("  ◦ ", style="bold")
                body.append(line.strip() + "\n")
                continue
            body.append("• ", style="bold")
            body.append(line + "\n")
        for note in self.notes:
            body.append("\n" + note, style="dim")
        with Vertical(classes="confirm-box"):
            yield Static(Text(self.title_text, style="bold"), classes="confirm-title")
            # a long list of changes scrolls; the buttons stay on screen at 80x24
            with VerticalScroll(classes="confirm-scroll"):
                yield Static(body, id="confirm-body")
            with Horizontal(classes="confirm-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="warning", id="confirm-yes",
                             compact=True)
                yield Button("Cancel (n)", variant="primary", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()  # the safe answer has the focus
        self.call_after_refresh(self._say_when_cut)

    def _say_when_cut(self) -> None:
        """On a small terminal the body scrolls: say so where the box ends, or the last
        paragraphs (what a rollback cannot undo) would go unseen."""
        scroll = self.query_one(".confirm-scroll", VerticalScroll)
        box = self.query_one(".confirm-box", Vertical)
        at_end = scroll.scroll_y >= scroll.max_scroll_y
        box.border_subtitle = "" if at_end else "more below: ↓ / pgdn"

    def action_scroll_body(self, how: str) -> None:
        scroll = self.query_one(".confirm-scroll", VerticalScroll)
        if how == "down":
            scroll.scroll_down(animate=False)
        elif how == "up":
            scroll.scroll_up(animate=False)
        elif how == "page_down":
            scroll.scroll_page_down(animate=False)
        elif how == "page_up":
            scroll.scroll_page_up(animate=False)
        elif how == "end":
            scroll.scroll_end(animate=False)
        else:
            scroll.scroll_home(animate=False)
        self.call_after_refresh(self._say_when_cut)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        if self._answered:  # a double key press must not dismiss twice
            return
        self._answered = True
        self.dismiss(yes)


class TypeNameModal(ModalScreen[bool]):
    """Confirm a destructive step by typing `name`; any of `accepted` also matches."""

    DEFAULT_CSS = _CSS.format(cls="TypeNameModal")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel", show=True),
    ]

    def __init__(self, title: str, explanation: str, name: str,
                 accepted: tuple[str, ...] = (), yes_label: str = "Drop and apply") -> None:
        super().__init__(classes="confirm-modal")
        self.title_text = title
        self.explanation = explanation
        self.expected = name
        self.accepted = {name, *accepted}
        self.yes_label = yes_label
        self._answered = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="confirm-box"):
            yield Static(Text(self.title_text, style="bold"), classes="confirm-title")
            body = Text(self.explanation + "\n\n")
            body.append("Type ")
            body.append(self.expected, style="bold")
            body.append(" to confirm:")
            yield Static(body, id="typename-body")
            yield Input(placeholder=self.expected, id="typename-input")
            yield Static("", id="typename-error")
            with Horizontal(classes="confirm-buttons"):
                yield Button(self.yes_label, variant="error", id="typename-yes", disabled=True,
                             compact=True)
                yield Button("Cancel (esc)", variant="primary", id="typename-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#typename-input", Input).focus()

    def matches(self, text: str) -> bool:
        return text.strip() in self.accepted

    @on(Input.Changed, "#typename-input")
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#typename-yes", Button).disabled = not self.matches(event.value)
        self.query_one("#typename-error", Static).update("")

    @on(Input.Submitted, "#typename-input")
    def _submitted(self, event: Input.Submitted) -> None:
        if self.matches(event.value):
            self._answer(True)
            return
        # said in the dialog, not in a toast: a toast outlives the dialog and the run after it
        said = "nothing was typed" if not event.value.strip() else \
            f"{event.value.strip()!r} is not the table's name"
        self.query_one("#typename-error", Static).update(
            Text(f"{said}: type {self.expected} exactly, or press escape"))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "typename-yes":
            if self.matches(self.query_one("#typename-input", Input).value):
                self._answer(True)
        else:
            self._answer(False)

    def action_cancel(self) -> None:
        self._answer(False)

    def _answer(self, yes: bool) -> None:
        if self._answered:
            return
        self._answered = True
        self.dismiss(yes)
