"""The wizard's form: partition column, new primary key, tie-break, layout. The proposals come
from tui.core.migrate.report.proposals (keys from the unique indexes and the data, tie-breaks
from the statistics), read in a thread worker; every field is checked with a one-line message
under it, then `prepare` (preflight, layout, duplicates and collisions) runs in a worker and the
stages follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import psycopg
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, Static

from ...core.connection import ConnectError, connect
from ...core.errors import first_line
from ...core.humanfmt import count
from ...core.migrate import MigrateError
from ...core.migrate.migration import Choices, Prepared, prepare
from ...core.migrate.report import DEFAULT_TARGET_ROWS, INTERVALS, Proposals, proposals
from ...core.names import display_name
from ..footer_keys import FooterKeys
from ..inflight import InFlight

if TYPE_CHECKING:
    from ..app import PgpartsApp

ROWS = "rows"  # the layout choice "a target of rows per partition"


@dataclass
class ProposalsRead(Message):
    generation: int
    proposals: Proposals | None
    error: str = ""


@dataclass
class Prepared_(Message):
    prepared: Prepared | None
    error: str = ""


def parse_rows(text: str) -> int:
    """'30000000', '30,000,000', '30_000_000' -> 30000000; ValueError with a message."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if not cleaned.isdigit() or int(cleaned) < 1:
        raise ValueError("rows per partition: a whole number, 1 or more")
    return int(cleaned)


class MigrateFormScreen(FooterKeys, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "next", "continue", show=True, id="migrate-form-next",
                tooltip="check the choices, count, and go to the stages"),
        Binding("escape", "back", "back", show=True, id="migrate-form-back"),
    ]

    DEFAULT_CSS = """
    MigrateFormScreen #form-head {
        height: auto;
        padding: 0 1;
    }
    MigrateFormScreen #form-body {
        height: 1fr;
        padding: 0 1;
    }
    MigrateFormScreen .form-row {
        height: auto;
    }
    MigrateFormScreen .form-row Label {
        width: 16;
    }
    MigrateFormScreen .form-row Input, MigrateFormScreen .form-row Select {
        width: 1fr;
    }
    MigrateFormScreen .form-hint {
        color: $text-muted;
        padding-left: 16;
    }
    MigrateFormScreen .form-error {
        color: $warning;
        padding-left: 16;
    }
    MigrateFormScreen #form-actions {
        height: auto;
        margin-top: 1;
    }
    MigrateFormScreen #form-status {
        width: 1fr;
        padding-left: 2;
    }
    """

    def __init__(self, schema: str, name: str) -> None:
        super().__init__()
        self.schema, self.name_ = schema, name
        self.table_display = display_name(schema, name)
        self._column_options: list[tuple[str, str]] = []
        self.proposals: Proposals | None = None
        self.loads = 0  # finished proposal reads (tests wait on it)
        self.busy = True
        self.error = ""
        self._generation = 0
        self._filling = False  # the fields are being set from proposals, not by the operator
        self._inflight = InFlight()

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"Migrate {self.table_display}: choose how to partition it",
                          style="bold"), id="form-head")
        with VerticalScroll(id="form-body"):
            with Horizontal(classes="form-row"):
                yield Label("partition by")
                yield Select([], id="form-column", compact=True, allow_blank=True,
                             prompt="reading the columns…")
            yield Static("", id="form-hint-column", classes="form-hint")
            yield Static("", id="form-error-column", classes="form-error")
            with Horizontal(classes="form-row"):
                yield Label("new primary key")
                yield Input(id="form-key", compact=True, placeholder="col, col")
            yield Static("", id="form-hint-key", classes="form-hint")
            yield Static("", id="form-error-key", classes="form-error")
            with Horizontal(classes="form-row"):
                yield Label("tie-break")
                yield Input(id="form-tiebreak", compact=True, placeholder="none")
            yield Static("", id="form-hint-tiebreak", classes="form-hint")
            yield Static("", id="form-error-tiebreak", classes="form-error")
            with Horizontal(classes="form-row"):
                yield Label("layout")
                yield Select([(f"one partition per {p}", p) for p in INTERVALS]
                             + [("rows per partition (quiet periods merged)", ROWS)],
                             value="year", id="form-layout", compact=True, allow_blank=False)
            with Horizontal(classes="form-row"):
                yield Label("rows/partition")
                yield Input(f"{DEFAULT_TARGET_ROWS:,}", id="form-rows", compact=True,
                            disabled=True)
            yield Static("", id="form-error-rows", classes="form-error")
            # stage 8 is offered, not imposed (as `pgparts migrate --insert-trigger`)
            yield Checkbox("stage 8: a trigger fixes collisions at insert time",
                           id="form-trigger", compact=True)
            yield Static("a new row colliding on the key moves to a free second of its minute, "
                         "ranked by the tie-break (timestamp column and tie-break needed)",
                         id="form-hint-trigger", classes="form-hint")
            yield Static("", id="form-error-trigger", classes="form-error")
            with Horizontal(id="form-actions"):
                yield Button("Continue (^n)", id="form-next", variant="primary", compact=True,
                             disabled=True)
                yield Static("", id="form-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"migrate {self.table_display} · choices"
        for field_ in ("column", "key", "tiebreak", "rows", "trigger"):
            self._say(field_, "")
        self._status("reading the columns and proposing a key (probing the data)…")
        self._load(None)

    # -- proposals --------------------------------------------------------------------------------
    def _load(self, column: str | None) -> None:
        self._generation += 1
        self.busy = True
        self._render_button()
        self._read(self._generation, column)

    @work(thread=True, exclusive=True, group="migrate-form", exit_on_error=False,
          description="proposing the key and tie-break")
    def _read(self, generation: int, column: str | None) -> None:
        try:
            with connect(self.papp.target, purpose="migrate") as conn, \
                    self._inflight.track(conn):
                found = proposals(conn, self.schema, self.name_, column)
        except (ConnectError, MigrateError, psycopg.Error) as exc:
            self.post_message(ProposalsRead(generation, None, first_line(exc)))
            return
        self.post_message(ProposalsRead(generation, found))

    @on(ProposalsRead)
    def _proposals_read(self, message: ProposalsRead) -> None:
        if message.generation != self._generation:
            return
        self.loads += 1
        self.busy = False
        if message.proposals is None:
            self._status(message.error, error=True)
            self._render_button()
            return
        p = self.proposals = message.proposals
        self._filling = True
        select = self.query_one("#form-column", Select)
        options = [(f"{name}  ({type_})", name) for name, type_ in p.columns]
        if options != self._column_options:
            self._column_options = options
            select.set_options(options)
        select.value = p.column
        self.query_one("#form-key", Input).value = ", ".join(p.key)
        self.query_one("#form-tiebreak", Input).value = p.tiebreak or ""
        self._filling = False
        self.query_one("#form-hint-column", Static).update(
            "timestamp, timestamptz, date or integer columns")
        self.query_one("#form-hint-key", Static).update(self._key_hint(p))
        tb = p.tiebreaks[0] if p.tiebreaks else None
        self.query_one("#form-hint-tiebreak", Static).update(
            f"proposed: {tb.column} ({tb.reason}); it ranks rows colliding in one minute"
            if tb else "no column to propose: colliding rows cannot be ranked")
        self._status("enter or ^n: check the choices and count")
        self._render_button()

    @staticmethod
    def _key_hint(p: Proposals) -> str:
        def one(k) -> str:
            what = ", ".join(k.columns)
            if k.holds_surrogate:
                return f"{what} (holds {p.surrogate}: keeps every duplicate)"
            return what + (" (unique)" if k.unique else " (not unique yet)" if k.unique is False
                           else "")
        return "proposals: " + " · ".join(one(k) for k in p.keys[:3])

    @on(Select.Changed, "#form-column")
    def _column_changed(self, event: Select.Changed) -> None:
        if self._filling or self.proposals is None or event.value == Select.BLANK:
            return
        if event.value != self.proposals.column:
            self._say("column", "")
            self._status("proposing a key for this column…")
            self._load(str(event.value))

    @on(Select.Changed, "#form-layout")
    def _layout_changed(self, event: Select.Changed) -> None:
        self.query_one("#form-rows", Input).disabled = event.value != ROWS
        self._say("rows", "")

    # -- checking ---------------------------------------------------------------------------------
    def _say(self, field_: str, text: str) -> None:
        widget = self.query_one(f"#form-error-{field_}", Static)
        widget.update(text)
        widget.display = bool(text)

    def _status(self, text: str, error: bool = False) -> None:
        self.error = text if error else ""
        self.query_one("#form-status", Static).update(
            Text(text, style="bold red" if error else "dim"))

    def _render_button(self) -> None:
        self.query_one("#form-next", Button).disabled = self.busy or self.proposals is None

    def choices(self) -> Choices | None:
        """The form's choices, or None after saying under each wrong field what is wrong."""
        p = self.proposals
        if p is None:
            return None
        names = {c.name for c in p.table.columns}
        column = str(self.query_one("#form-column", Select).value)
        key = tuple(k.strip() for k in self.query_one("#form-key", Input).value.split(",")
                    if k.strip())
        tiebreak = self.query_one("#form-tiebreak", Input).value.strip() or None
        layout = str(self.query_one("#form-layout", Select).value)
        trigger = self.query_one("#form-trigger", Checkbox).value
        errors = {"column": "", "key": "", "tiebreak": "", "rows": "", "trigger": ""}
        if column not in dict(p.columns):
            errors["column"] = "choose a timestamp, date or integer column"
        unknown = [k for k in key if k not in names]
        if not key:
            errors["key"] = f"name the key's columns, comma-separated; it must hold {column}"
        elif unknown:
            errors["key"] = f"no column {unknown[0]!r} in {self.table_display}"
        elif column not in key:
            errors["key"] = f"the new key must hold the partition column {column}"
        elif len(set(key)) != len(key):
            errors["key"] = "a column is named twice"
        if tiebreak is not None and tiebreak not in names:
            errors["tiebreak"] = f"no column {tiebreak!r} in {self.table_display}"
        elif tiebreak is not None and tiebreak in key:
            errors["tiebreak"] = "the tie-break ranks rows equal on the key: not a key column"
        target = None
        if layout == ROWS:
            try:
                target = parse_rows(self.query_one("#form-rows", Input).value)
            except ValueError as exc:
                errors["rows"] = str(exc)
        elif column in dict(p.columns) and not any(
                c.name == column and c.type_name in ("timestamptz", "timestamp", "date")
                for c in p.table.columns):
            errors["rows"] = ("an integer column is laid out by ranges: choose rows per "
                              "partition")
        timestamp = any(c.name == column and c.type_name in ("timestamptz", "timestamp")
                        for c in p.table.columns)
        if trigger and (tiebreak is None or not timestamp):
            errors["trigger"] = ("stage 8 needs a timestamp partition column and a tie-break: "
                                 "uncheck it or choose them")
        for field_, text in errors.items():
            self._say(field_, text)
        if any(errors.values()):
            return None
        return Choices(self.schema, self.name_, column, key, tiebreak,
                       interval=None if layout == ROWS else layout, target_rows=target,
                       insert_trigger=trigger)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.action_next()

    @on(Button.Pressed, "#form-next")
    def _next_pressed(self, event: Button.Pressed) -> None:
        self.action_next()

    def action_next(self) -> None:
        if self.busy:
            return
        c = self.choices()
        if c is None:
            self._status("check the fields marked above", error=True)
            return
        self.busy = True
        self._render_button()
        layout = c.interval or f"up to {count(c.target_rows or 0)} rows"
        self._status(f"counting rows per period, duplicates and collisions ({layout})…")
        self._prepare(c)

    @work(thread=True, exclusive=True, group="migrate-form", exit_on_error=False,
          description="counting for the migration")
    def _prepare(self, c: Choices) -> None:
        try:
            with connect(self.papp.target, purpose="migrate") as conn, \
                    self._inflight.track(conn):
                prep = prepare(conn, c)
        except (ConnectError, MigrateError, psycopg.Error) as exc:
            self.post_message(Prepared_(None, first_line(exc)))
            return
        self.post_message(Prepared_(prep))

    @on(Prepared_)
    def _prepared(self, message: Prepared_) -> None:
        self.busy = False
        self._render_button()
        if message.prepared is None:
            self._status(message.error, error=True)
            return
        from .wizard import MigrateWizardScreen

        self._status("")
        self.app.switch_screen(MigrateWizardScreen(self.schema, self.name_,
                                                   prepared=message.prepared))

    def action_back(self) -> None:
        self.dismiss()

    def on_unmount(self) -> None:
        self._inflight.cancel_all()
