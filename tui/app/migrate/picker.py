"""The wizard's first screen: the plain tables of the database with their sizes and row
estimates (catalog only), and the migrations recorded, marked with their last stage done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import psycopg
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ...core.connection import ConnectError, connect
from ...core.errors import first_line
from ...core.migrate import MigrateError
from ...core.migrate.tables import PlainTable, migratable_tables
from ...core.names import display_name
from ..footer_keys import FooterKeys
from ..format import human_bytes, thousands

if TYPE_CHECKING:
    from ..app import PgpartsApp


@dataclass
class TablesRead(Message):
    tables: list[PlainTable] = field(default_factory=list)
    problem: str = ""
    error: str = ""


class MigratePickerScreen(FooterKeys, Screen):
    """enter on a table: a new migration's form, or the recorded migration where it stands."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "pick", "migrate it", show=True, id="migrate-pick"),
        Binding("escape", "back", "back", show=True, id="migrate-back"),
    ]

    DEFAULT_CSS = """
    MigratePickerScreen #migrate-picker-head {
        height: auto;
        padding: 0 1;
    }
    MigratePickerScreen #migrate-tables {
        height: 1fr;
        border: round $panel-lighten-2;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[PlainTable] = []
        self.loaded = False
        self.reads = 0  # lists read (tests wait on it)
        self.error = ""

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text("reading the tables…", style="italic"), id="migrate-picker-head")
        yield DataTable(id="migrate-tables", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "migrate a table · pick it"
        table = self.query_one("#migrate-tables", DataTable)
        table.add_column("table", key="table")
        table.add_column("size", key="size")
        table.add_column("rows (est.)", key="rows")
        table.add_column("migration", key="migration")
        table.focus()
        self._read()

    @work(thread=True, exclusive=True, group="migrate-tables", exit_on_error=False,
          description="reading the plain tables")
    def _read(self) -> None:
        try:
            with connect(self.papp.target, purpose="migrate") as conn:
                found = migratable_tables(conn)
        except (ConnectError, psycopg.Error, MigrateError) as exc:
            self.post_message(TablesRead(error=first_line(exc)))
            return
        self.post_message(TablesRead(found.tables, found.problem))

    @on(TablesRead)
    def _tables_read(self, message: TablesRead) -> None:
        # back from a migration the list is read again: the cursor stays on the table it was
        # on (the first row under the cursor is another table, and enter would pick it)
        was = self.selected()
        self.tables, self.error, self.loaded = message.tables, message.error, True
        self.reads += 1
        widget = self.query_one("#migrate-tables", DataTable)
        widget.clear()
        for i, t in enumerate(self.tables):
            widget.add_row(
                display_name(t.schema, t.name),
                Text(human_bytes(t.bytes), justify="right"),
                Text(thousands(t.rows) if t.rows is not None else "never analyzed",
                     justify="right", style="" if t.rows is not None else "dim"),
                Text(f"{t.migration} done" if t.migration else "",
                     style="bold yellow" if t.migration else ""),
                key=str(i))
        if was is not None:
            row = next((i for i, t in enumerate(self.tables)
                        if (t.schema, t.name) == (was.schema, was.name)), None)
        else:
            # opened anew: on the migration in progress, what one comes back for
            row = next((i for i, t in enumerate(self.tables) if t.migration), None)
        if row is not None:
            widget.move_cursor(row=row)
        head = Text()
        if message.error:
            head.append(f"could not read the tables: {message.error}", style="red")
        elif not self.tables:
            head.append("No plain table in this database: nothing to migrate.", style="bold")
        else:
            head.append("Pick the plain table to turn into a partitioned one (enter). ",
                        style="bold")
            head.append("Sizes and rows are catalog estimates; a table with a migration "
                        "recorded continues where it stands.", style="dim")
        if message.problem:
            head.append(f"\nmigrations in progress cannot be shown: {message.problem}",
                        style="yellow")
        self.query_one("#migrate-picker-head", Static).update(head)

    @on(DataTable.RowSelected, "#migrate-tables")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_pick()

    def selected(self) -> PlainTable | None:
        widget = self.query_one("#migrate-tables", DataTable)
        if not self.tables or not widget.row_count:
            return None
        return self.tables[widget.cursor_row]

    def action_pick(self) -> None:
        table = self.selected()
        if table is None:
            return
        if table.migration:
            from .wizard import MigrateWizardScreen

            self.app.push_screen(MigrateWizardScreen(table.schema, table.name))
        else:
            from .form import MigrateFormScreen

            self.app.push_screen(MigrateFormScreen(table.schema, table.name))

    def action_back(self) -> None:
        self.dismiss()

    def on_screen_resume(self) -> None:
        if self.loaded:  # back from a migration: its stage (or its absence) changed
            self._read()
