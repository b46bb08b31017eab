"""The plan screen, one for every plan kind: the kind's status table (when it has a status), its
options, the plan preview, and apply with confirmation and progress.

Everything kind-specific comes from the kind's declaration (tui.core.plans.kind), reached through
the registry: the options become keys (a "flag" toggles, a "choice" cycles) or fields (text,
numbers, lists of names), and the kind's `selection` list option is the status table's selection
(space toggles a row, `o` goes back to the kind's default request). The status and the plan are
read in a thread worker on a connection of its own, from the catalog the console already loaded;
the preview is rebuilt (debounced) whenever the request changes. Apply asks for confirmation with
the plan's facts, then for the table's name when the plan drops something, then shows the
progress screen. In read-only mode apply is shown disabled, with the reason.

Below `NARROW_BELOW` columns the head takes two lines and the table its short forms (the kind's
`Cell.short`, rows in thousands, bounds as start and span).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static
from textual.worker import Worker, WorkerState

from ..core.catalog import Forest, PartNode
from ..core.config import state_dir
from ..core.connection import ConnectError, connect
from ..core.errors import first_line as _first_line
from ..core.humanfmt import plural
from ..core.names import quote_ident
from ..core.plans.engine.runner import Hook
from ..core.plans.kind import Cell, Option, PlanKind, PlanKindError, Request, StatusTable
from ..core.plans.registry import command_name, kind_named
from .compact import start_and_span
from .footer_keys import FooterKeys
from .format import human_bytes, human_rows, thousands
from .inflight import InFlight
from .plan_preview import PlanPreview, change_lines, render_plan
from .registry import not_here

if TYPE_CHECKING:
    from .app import PgpartsApp

TONE_STYLE = {"good": "green", "warn": "yellow", "dim": "dim"}
DEBOUNCE_SECONDS = 0.25
NARROW_BELOW = 120  # columns


def short_value(parent: PartNode, value: Any) -> Any:
    """A partition the kind prefilled as `schema.name`, as its name alone when that names it
    (the parent's schema, no other partition of that name): the kinds read both, and at 80
    columns a field showed 'control.payment_20' of control.payment_2023."""
    if isinstance(value, list):
        return [short_value(parent, v) for v in value]
    if not isinstance(value, str):
        return value
    hits = [c for c in parent.children if c.qualified == value]
    if len(hits) != 1 or hits[0].schema != parent.schema:
        return value
    if sum(1 for c in parent.children if c.name == hits[0].name) != 1:
        return value
    return quote_ident(hits[0].name)


def open_plan(app: PgpartsApp, kind_name: str, values: dict[str, Any] | None = None,
              title: str = "") -> Screen | None:
    """A plan screen of kind `kind_name` for the node under the tree cursor, or None after
    telling the operator why not. `values`: option values chosen beforehand (a remedy's)."""
    kind = kind_named(kind_name)
    node = app.selected_node
    if node is None or app.forest is None:
        app.notify(f"{command_name(kind)}: select a partitioned table in the tree",
                   severity="warning")
        return None
    actions = kind.actions_for(app.forest, node)
    if actions:
        # what the kind prefills for the node (its partition, the neighbour, the week)
        action = actions[0]
        return plan_screen_class(kind)(kind, action.table, list(action.preselect),
                                       {**action.values, **(values or {})}, title)
    found = kind.target_for(app.forest, node)
    if found is None:
        app.notify(f"{command_name(kind)}: {kind.title.lower()}: "
                   f"{not_here(kind, app.forest, node)}", severity="warning")
        return None
    parent, preselect = found
    values = dict(values or {})
    positional = [o for o in kind.options if o.positional]
    if positional and parent.parent_oid and parent.parent_oid in app.forest.nodes:
        # a kind acting on a partition (split TABLE PARTITION): the plan is the parent's,
        # the partition under the cursor its positional value
        values.setdefault(positional[0].name, parent.qualified)
        parent = app.forest.nodes[parent.parent_oid]
    return plan_screen_class(kind)(kind, parent, preselect, values, title)


_CLASSES: dict[str, type[PlanScreen]] = {}


def plan_screen_class(kind: PlanKind) -> type[PlanScreen]:
    """PlanScreen with the kind's option keys as bindings (so the footer, the help screen and
    user keymaps see them); one class per kind."""
    cls = _CLASSES.get(kind.name)
    if cls is None:
        extra: list[BindingType] = [
            Binding(o.key, f"option_key({o.name!r})", o.shown_label, show=True,
                    id=f"plan-{kind.name}-{o.name}".replace("_", "-"), tooltip=o.help)
            for o in kind.options if o.key and o.type in ("flag", "choice")]
        if kind.selection:
            extra = [
                Binding("space", "toggle_row", "select", show=True, id="plan-toggle",
                        tooltip="add or remove the row under the cursor"),
                Binding("o", "default_selection", "default", show=True, id="plan-default",
                        tooltip=kind.default_selection_help),
                *extra]
        cls = type(f"PlanScreen_{kind.name}", (PlanScreen,),
                   {"BINDINGS": [*extra, *PlanScreen.BINDINGS]})
        _CLASSES[kind.name] = cls
    return cls


@dataclass
class PlanLoaded(Message):
    generation: int
    status: Any
    table: StatusTable | None
    selection: list[str]
    preview: PlanPreview | None
    error: str = ""
    seconds: float = 0.0


def field_options(kind: PlanKind) -> list[Option]:
    """The options shown as fields: everything without a key but the selection."""
    return [o for o in kind.options
            if not (o.key and o.type in ("flag", "choice")) and o.name != kind.selection
            and o.type != "flag"]


class PlanScreen(FooterKeys, Screen):
    """Status, options and plan preview of one kind for one table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # not "a": a refused apply would fall through to the app's auto-refresh key
        Binding("A", "apply", "apply", show=True, id="plan-apply",
                tooltip="apply the plan (asks for confirmation)"),
        Binding("S", "copy_sql", "copy SQL", show=False, id="plan-copy-sql",
                tooltip="copy the plan as a reviewable .sql script to the clipboard"),
        Binding("W", "save_sql", "save SQL", show=False, id="plan-save-sql",
                tooltip="write the plan's .sql script to a file (the path is shown)"),
        Binding("escape", "back", "back", show=True, id="plan-back"),
    ]

    DEFAULT_CSS = """
    PlanScreen #plan-head {
        height: auto;
        padding: 0 1;
    }
    PlanScreen #plan-options {
        height: auto;
        padding: 0 1;
    }
    PlanScreen #plan-options Label {
        padding: 0 1 0 0;
    }
    PlanScreen #plan-options Input {
        width: 14;
        margin-right: 2;
    }
    PlanScreen #plan-options Input.roomy {
        /* they share what the other fields leave: at 80 columns a third each, wider ones
           hold two qualified names (merge's partitions) */
        width: 1fr;
        max-width: 56;
    }
    PlanScreen #plan-options Input.refused {
        background-tint: $error 30%;
    }
    PlanScreen #plan-form-error {
        height: auto;
        padding: 0 1;
        color: $text-error;
        text-style: bold;
    }
    PlanScreen #plan-status {
        height: 1fr;
        min-height: 6;
        border: round $panel-lighten-2;
        /* as the tree's: at 80 columns a wider bar pushed a consolidated row past the edge */
        scrollbar-size-vertical: 1;
    }
    PlanScreen #plan-status:focus {
        border: round $accent;
    }
    PlanScreen #plan-preview-pane {
        height: 2fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    PlanScreen #plan-preview-pane:focus-within {
        border: round $accent;
    }
    PlanScreen #plan-actions {
        height: auto;
        padding: 0 1;
    }
    PlanScreen #plan-apply {
        margin-right: 2;
    }
    PlanScreen #plan-reason {
        width: 1fr;
    }
    PlanScreen.narrow #plan-status {
        min-height: 4;
    }
    PlanScreen.narrow #plan-preview-pane {
        height: 1fr;
    }
    """

    def __init__(self, kind: PlanKind, parent: PartNode, preselect: list[str] | None = None,
                 values: dict[str, Any] | None = None, title: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.parent_node = parent
        self.table_name = parent.qualified
        self.heading = title or kind.title
        self.preselect = list(preselect or [])
        # option values the operator chose (None or absent: the kind's default request)
        self.values: dict[str, Any] = {k: short_value(parent, v)
                                       for k, v in (values or {}).items()}
        self.initial_values = dict(self.values)  # what the screen was opened with
        self.selection: list[str] | None = None  # None: not chosen yet (default or preselect)
        self.status: Any = None
        self.table: StatusTable | None = None
        self.preview: PlanPreview | None = None
        self.error = ""
        self.planning = True
        self.loads = 0  # finished loads (tests wait on it)
        self._generation = 0
        self._debounce: Timer | None = None
        # passed to the PlanRunner of the next apply (tests slow a run down with it)
        self.runner_hook: Hook | None = None
        self.narrow = False
        self._inflight = InFlight()  # the status/plan query, cancelled when the screen goes

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    # the consolidation screen's name for the selection
    @property
    def selected_weeks(self) -> list[str] | None:
        return self.selection

    # -- composition -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="plan-head")
        fields = field_options(self.kind)
        if fields:
            with Horizontal(id="plan-options"):
                for o in fields:
                    yield Label(o.shown_label)
                    chosen = self.values.get(o.name)
                    yield Input(", ".join(chosen) if isinstance(chosen, list) else
                                str(chosen or ""),
                                placeholder=self._default_text(o), id=f"plan-option-{o.name}",
                                tooltip=o.help, compact=True,
                                classes="roomy" if o.type == "repeat" or o.positional else "")
            # what is wrong with the request, under the fields it is about
            yield Static("", id="plan-form-error")
        if self.kind.has_status:
            yield DataTable(id="plan-status", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="plan-preview-pane"):
            yield Static("", id="plan-preview")
        with Horizontal(id="plan-actions"):
            yield Button("Apply…", id="plan-apply", variant="warning", disabled=True,
                         compact=True)
            yield Static("", id="plan-reason")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{command_name(self.kind)} · {self.table_name}"
        self.query_one("#plan-preview-pane").border_title = "plan preview"
        self.set_focus(self._focus_target())
        self._render_head()
        self._render_actions()
        self.reload()

    def _focus_target(self):
        tables = self.query("#plan-status")
        return tables.first() if tables else self.query_one("#plan-preview-pane")

    def _status_widget(self) -> DataTable | None:
        tables = self.query("#plan-status")
        return tables.first(DataTable) if tables else None

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW_BELOW
        if narrow != self.narrow:
            self.narrow = narrow
            self.set_class(narrow, "narrow")
            self._render_head()
            self._render_table(columns=True)

    # -- the request -----------------------------------------------------------------------------
    def request_values(self) -> dict[str, Any]:
        values = {k: v for k, v in self.values.items() if v is not None}
        if self.kind.selection and self.selection is not None:
            values[self.kind.selection] = list(self.selection)
        return values

    # -- loading ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the status and rebuild the plan for the current request."""
        self._generation += 1
        self.planning = True
        self._render_head()
        self._render_preview()
        self._render_actions()
        self._load(self._generation, self.request_values(), self.selection is None,
                   list(self.preselect), self.papp.forest)

    def _reload_soon(self) -> None:
        """Debounced: several changes in a row build one plan."""
        if self._debounce is not None:
            self._debounce.stop()
        self._generation += 1  # results of a load already running are stale now
        self.planning = True
        self._debounce = self.set_timer(DEBOUNCE_SECONDS, self._debounced)

    def _debounced(self) -> None:
        self._debounce = None
        self.reload()

    async def catalog_loaded(self, forest: Forest) -> None:
        """The app re-read the catalog (refresh key, or after a plan ran)."""
        if forest.nodes.get(self.parent_node.oid) is None:
            self.error = f"{self.table_name} no longer exists"
            self._render_all()
            return
        self.reload()

    @work(thread=True, exclusive=True, group="plan-preview", exit_on_error=False,
          description="reading the status and planning")
    def _load(self, generation: int, values: dict[str, Any], default: bool,
              preselect: list[str], forest: Forest | None) -> None:
        app = self.papp
        kind = self.kind
        started = time.perf_counter()
        selection: list[str] = []
        try:
            if forest is None:
                raise PlanKindError("the catalog is not loaded yet")
            with connect(app.target, purpose=f"{kind.name}-preview") as conn, \
                    self._inflight.track(conn):
                # the catalog the console already read: no second load per preview
                status = kind.status(conn, forest, self.table_name) if kind.has_status \
                    else None
                table = kind.status_table(status) if status is not None else None
                selectable = {r.key for r in table.rows if r.selectable} if table else set()
                if kind.selection and default and preselect and table is not None \
                        and all(p in selectable for p in preselect):
                    values = {**values, kind.selection: preselect}
                    default = False
                if kind.selection and not default and table is not None:
                    values[kind.selection] = [s for s in values.get(kind.selection, [])
                                              if s in selectable]
                request = self._request(forest, values)
                preview = None
                if kind.selection and not default and not values.get(kind.selection):
                    selection = []
                else:
                    plan = kind.build(conn, forest, status, request, app.config)
                    selection = kind.selected(plan)
                    preview = PlanPreview.build(plan, conn)
        except (PlanKindError, ConnectError) as exc:
            message = _first_line(exc)
            for o in kind.options:  # '--batch: ...' names the field as the screen does
                if message.startswith(f"{o.flag}: "):
                    message = f"{o.shown_label}: {message[len(o.flag) + 2:]}"
            self.post_message(PlanLoaded(generation, None, None, selection, None, message))
            return
        except psycopg.Error as exc:
            self.post_message(PlanLoaded(generation, None, None, selection, None,
                                         f"reading the status failed: {_first_line(exc)}"))
            return
        self.post_message(PlanLoaded(generation, status, table, selection, preview,
                                     seconds=time.perf_counter() - started))

    def _request(self, forest: Forest, values: dict[str, Any]) -> Request:
        """The kind's default request with the chosen values over it, each parsed and
        validated by the option's own code (a bad field: PlanKindError with its message)."""
        request = self.kind.default_request(forest, self.table_name, self.papp.config)
        chosen = self.kind.request(values, self.table_name)
        for name, value in chosen.values.items():
            if value is not None:
                request.values[name] = value
        request.target = self.table_name
        return request

    @on(PlanLoaded)
    def _loaded(self, message: PlanLoaded) -> None:
        if message.generation != self._generation:
            return  # the request changed while this was read
        self.planning = False
        self.loads += 1
        self.error = message.error
        if message.error:
            self.preview = None
        if message.status is not None or (not message.error and not self.kind.has_status):
            self.status = message.status
            self.table = message.table
            self.selection = message.selection
            self.preview = message.preview
        elif self.selection is None:
            self.selection = message.selection
        if self.loads == 1:
            self._focus_missing_field()
        self._render_all()

    def _focus_missing_field(self) -> None:
        """Opened with a field still empty that the request needs (split's `at`): the cursor
        goes there, where typing fills it. Tab went first to the prefilled partition field,
        whose text the first key then replaced. Enter gives the keys back to the screen."""
        about = self.error_option()
        if about is None or self.focused is not self.query_one("#plan-preview-pane"):
            return
        fields = self.query(f"#plan-option-{about.name}")
        if fields and not fields.first(Input).value:
            self.set_focus(fields.first(Input))

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "plan-preview" or event.state != WorkerState.ERROR:
            return
        self.planning = False
        self.loads += 1
        self.error = f"internal error: {_first_line(event.worker.error or Exception('unknown'))}"
        self._render_all()

    # -- drawing ---------------------------------------------------------------------------------
    def _render_all(self) -> None:
        self._render_table()
        self._render_head()
        self._render_preview()
        self._render_actions()
        self.refresh_bindings()

    def _render_head(self) -> None:
        text = Text(no_wrap=self.narrow, overflow="ellipsis")
        text.append(self.table_name if self.narrow else f"{self.heading}: {self.table_name}",
                    style="bold")
        if self.table is not None:
            text.append("  ")
            for piece, tone in self.table.headline:
                text.append(piece, style=TONE_STYLE.get(tone, ""))
            if not self.narrow:
                text.append("  (rows and sizes: catalog estimates)", style="dim")
        line = Text()
        if self.kind.selection:
            line.append(f"{len(self.selection or [])} selected", style="bold")
            if not self.narrow:
                line.append(" (space: toggle · o: the default selection)")
        for o in self.kind.options:
            if not (o.key and o.type in ("flag", "choice")):
                continue
            value = self._option_value(o)
            if line:
                line.append(" · ")
            line.append(f"{o.shown_label}: ")
            line.append(self._option_text(o, value), style="bold")
            line.append(f" ({o.key})")
        if self.planning:
            line.append(" · planning…" if line else "planning…", style="italic")
        if line:
            text.append("\n")
            text.append_text(line)
        if not self._render_form_error() and self.error:
            text.append(f"\n{self.error}", style="bold red")
        if self.preview is not None:
            for warning in self.preview.plan.details.get("warnings", []):
                text.append(f"\n{warning}", style="yellow")
        self.query_one("#plan-head", Static).update(text)

    def _render_form_error(self) -> bool:
        """The request's error under the fields, the field it names marked; False when the
        screen has no fields (the head says it then)."""
        lines = self.query("#plan-form-error")
        if not lines:
            return False
        about = self.error_option()
        for o in field_options(self.kind):
            # not Input's own -invalid: its validation resets that on every keystroke
            self.query_one(f"#plan-option-{o.name}", Input).set_class(
                about is not None and o.name == about.name, "refused")
        line = lines.first(Static)
        line.update(Text(self.error) if self.error else "")
        line.display = bool(self.error)
        return True

    def error_option(self) -> Option | None:
        """The option the error is about: its message starts with the option's name."""
        for o in self.kind.options:
            if self.error.startswith(f"{o.shown_label}: "):
                return o
        return None

    def _option_value(self, option: Option) -> Any:
        value = self.values.get(option.name)
        if value is None and self.papp.forest is not None:
            value = self.kind.default_request(self.papp.forest, self.table_name,
                                              self.papp.config).values.get(option.name)
        return value

    def _default_text(self, option: Option) -> str:
        """The placeholder of a field: what the field means when it is emptied, the value the
        kind's default request gives it (not the value the screen was opened with: merge's
        partitions would read "['a', 'b']" and promise what an empty field does not do)."""
        value = None
        if self.papp.forest is not None:
            value = self.kind.default_request(self.papp.forest, self.table_name,
                                              self.papp.config).values.get(option.name)
        if value is None or value == []:
            if option.positional:  # nothing stands in for it: the kind refuses an empty one
                return "a, b, …" if option.type == "list" else "required"
            return {"list": "all", "repeat": "a, b, …"}.get(option.type, "default")
        if isinstance(value, timedelta):
            return _age(value)
        if isinstance(value, list | tuple):
            return ", ".join(map(str, value))
        return str(value)

    def _option_text(self, option: Option, value: Any) -> str:
        if option.type == "flag":
            off, on_ = option.states or ("off", "on")
            return on_ if value else off
        return str(value) if value else "all"

    def _render_table(self, columns: bool = False) -> None:
        widget = self._status_widget()
        st = self.table
        if widget is None:
            return
        # a kind may leave a column out when no row fills it (consolidate's note column)
        shown = [c.key for c in st.columns if not (self.narrow and c.wide_only)] \
            if st is not None else []
        if self.kind.selection and st is not None:
            shown.insert(0, "sel")
        if columns or not widget.columns or \
                [k.value for k in widget.columns] != shown:
            widget.clear(columns=True)
            if st is not None:
                if self.kind.selection:
                    widget.add_column(" ", key="sel", width=1)
                for c in st.columns:
                    if not (self.narrow and c.wide_only):
                        widget.add_column(c.title, key=c.key)
                # rows added in the same frame as their columns are drawn with the header's
                # widths (a stale line cache): fill them once the columns are laid out
                self.call_after_refresh(self._fill_rows)
            return
        self._fill_rows()

    def _fill_rows(self) -> None:
        widget = self._status_widget()
        st = self.table
        if widget is None:
            return
        cursor_key = None
        if widget.row_count and widget.cursor_row >= 0:
            try:
                cursor_key = widget.coordinate_to_cell_key((widget.cursor_row, 0)).row_key.value
            except Exception:
                cursor_key = None
        widget.clear()
        if st is None:
            return
        selected = set(self.selection or [])
        for row in st.rows:
            cells: list[Any] = []
            if self.kind.selection:
                cells.append(Text("✓", style="bold green") if row.key in selected else Text(" "))
            for c in st.columns:
                if self.narrow and c.wide_only:
                    continue
                cell = row.cells.get(c.key, Cell(""))
                text = self._cell_text(cell, c.right)
                if c.key == st.columns[0].key and row.key in selected:
                    text.stylize("bold")
                cells.append(text)
            widget.add_row(*cells, key=row.key)
        target = cursor_key or (self.selection[0] if self.selection else None)
        if target is not None:
            try:
                widget.move_cursor(row=widget.get_row_index(target), animate=False)
            except Exception:
                pass

    def _cell_text(self, cell: Cell, right: bool) -> Text:
        narrow = self.narrow
        value = cell.value
        if cell.format == "rows":
            shown = human_rows(value) if narrow else thousands(value)
        elif cell.format == "count":
            shown = thousands(value)
        elif cell.format == "bytes":
            shown = human_bytes(value)
        elif cell.format == "bound":
            lower, upper, full = value
            shown = full
            if narrow and lower is not None and upper is not None:
                shown = start_and_span(lower, upper) or full
        else:
            shown = cell.short if narrow and cell.short is not None else str(value)
        return Text(shown, style=TONE_STYLE.get(cell.tone, ""),
                    justify="right" if right else "left")

    def _render_preview(self) -> None:
        static = self.query_one("#plan-preview", Static)
        if self.planning and (self.status is not None or not self.kind.has_status):
            n = len(self.selection or [])
            static.update(Text(f"planning… ({n} selected)" if n else "planning…",
                               style="italic"))
        elif self.table is not None and self.table.nothing and not self.selection and (
                self.preview is None or not self.preview.plan.steps):
            # nothing can be selected: say why rather than show an empty plan
            static.update(Text(self.table.nothing, style="bold"))
        elif self.preview is not None:
            static.update(render_plan(self.preview, self.kind.consequences(self.preview.plan)))
        elif self.table is not None and self.kind.selection and not self.selection:
            text = Text("No row selected. ", style="bold")
            text.append(self.table.empty)
            static.update(text)
        elif self.error:
            static.update(Text(self.error, style="red"))
        else:
            static.update(Text("reading the status…", style="italic"))

    def apply_refusal(self) -> str:
        """Why apply is not possible now, or '' when it is."""
        if self.papp.read_only:
            return "apply is disabled: the console runs in read-only mode (--read-only)"
        if self.planning:
            return "planning…"
        if self.error:
            if self.query("#plan-form-error"):  # said in full under the fields
                return "apply is disabled until the request above is fixed"
            return "apply is disabled: " + self.error
        if self.preview is None or not self.preview.plan.steps:
            if self.kind.selection:
                return "nothing to apply: select at least one row"
            return "nothing to apply: " + "; ".join(
                self.preview.plan.summary if self.preview else ["no plan"])
        return ""

    def _render_actions(self) -> None:
        reason = self.apply_refusal()
        button = self.query_one("#plan-apply", Button)
        button.disabled = bool(reason)
        button.tooltip = reason or "apply the plan (asks for confirmation)"
        text = Text()
        if reason:
            text.append(reason, style="yellow" if self.papp.read_only else "dim")
        elif self.preview is not None:
            text.append("A: apply ", style="bold")
            text.append(f"({len(self.preview.plan.steps)} steps; asks for confirmation"
                        + (", then for the table's name before dropping anything)"
                           if self.preview.destroys else ")"), style="dim")
        self.query_one("#plan-reason", Static).update(text)

    # -- keys ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply":
            # read-only: listed in the footer, greyed out; the reason is shown beside the button
            return None if self.apply_refusal() else True
        return True

    def _cursor_row(self) -> str | None:
        widget = self._status_widget()
        if widget is None or not widget.row_count:
            return None
        return widget.coordinate_to_cell_key((widget.cursor_row, 0)).row_key.value

    def action_toggle_row(self) -> None:
        key = self._cursor_row()
        st = self.table
        if key is None or st is None or not self.kind.selection:
            return
        row = next((r for r in st.rows if r.key == key), None)
        if row is None or not row.selectable:
            self.notify(row.refusal if row is not None else f"{key} cannot be selected",
                        severity="warning", timeout=4)
            return
        sel = list(self.selection or [])
        if key in sel:
            sel.remove(key)
        else:
            sel.append(key)
        order = {r.key: i for i, r in enumerate(st.rows)}
        self.selection = sorted(sel, key=lambda s: order.get(s, 0))
        self.preview = None
        self._reload_soon()
        self._render_all()

    @on(DataTable.RowSelected, "#plan-status")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_toggle_row()

    def action_default_selection(self) -> None:
        self.selection = None
        self.preselect = []
        self.preview = None
        self._reload_soon()
        self._render_all()

    def action_option_key(self, name: str) -> None:
        option = next(o for o in self.kind.options if o.name == name)
        value = self._option_value(option)
        if option.type == "flag":
            self.values[name] = not value
        else:  # a choice: cycle through "all" (None) and each choice
            cycle: list[Any] = [None, *option.choices]
            self.values[name] = cycle[(cycle.index(value) + 1) % len(cycle)] \
                if value in cycle else None
        self.preview = None
        self._reload_soon()
        self._render_all()

    @on(Input.Submitted)
    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed | Input.Submitted) -> None:
        name = (event.input.id or "").removeprefix("plan-option-")
        option = next((o for o in self.kind.options if o.name == name), None)
        if option is None:
            return
        if isinstance(event, Input.Submitted):
            # enter: done with the field; the screen's keys (A: apply) work again
            self.set_focus(self._focus_target())
        raw = event.value.strip()
        if option.type == "list":
            value: Any = raw.replace(",", " ").split() or None
        elif option.type == "repeat":  # values may hold spaces (timestamps): commas only
            value = [v.strip() for v in raw.split(",") if v.strip()] or None
        else:
            value = raw or None
        if value == self.values.get(name):
            return
        self.values[name] = value
        if name in self.kind.reset_with_selection:
            self.selection = None  # a new threshold: the default selection follows it
            self.preselect = []
        self.preview = None
        self._reload_soon()
        self._render_all()

    @on(Button.Pressed, "#plan-apply")
    def _apply_pressed(self, event: Button.Pressed) -> None:
        self.action_apply()

    def action_apply(self) -> None:
        reason = self.apply_refusal()
        if reason:
            self.notify(reason, severity="warning")
            return
        from .confirm import ConfirmModal

        preview = self.preview
        assert preview is not None
        plan = preview.plan
        notes = self.kind.consequences(plan)
        notes.append(f"{len(plan.steps)} steps; each runs under lock_timeout "
                     f"{self.papp.config.plans.lock_timeout_seconds:g} s with retries. "
                     f"Cancel (c) at any time: the running step rolls back.")
        self.app.push_screen(
            ConfirmModal(f"Apply to {plan.target} on {self.papp.target.describe()}?",
                         change_lines(preview), notes),
            callback=lambda yes: self._confirmed(preview, bool(yes)))

    def _confirmed(self, preview: PlanPreview, yes: bool) -> None:
        if not yes:
            self.notify("not applied", timeout=3)
            return
        if preview is not self.preview:  # re-planned under the dialog: confirm the new plan
            self.notify("the plan changed while the dialog was open; review it and apply again",
                        severity="warning")
            return
        facts = preview.plan.facts
        if facts.destroys:
            from .confirm import TypeNameModal

            parent = self.parent_node
            verified = not facts.loses_data
            what = {d.what for d in facts.destroys}
            noun = what.pop() if len(what) == 1 else "relation"
            body = ("Before each drop pgparts verifies that every row is kept elsewhere, but "
                    "the drop cannot be undone." if verified else
                    "What is dropped is kept nowhere else: this cannot be undone.")
            keep = [o for o in self.kind.options if o.type == "flag" and o.key]
            if keep:
                body += f" Press escape and {keep[0].key} to {keep[0].help} instead."
            self.app.push_screen(
                TypeNameModal(
                    f"Drop {plural(len(facts.destroys), noun)} of {parent.qualified}?",
                    body, parent.name, accepted=(parent.qualified,)),
                callback=lambda ok: self._run(preview) if ok else self.notify(
                    "not applied", timeout=3))
            return
        self._run(preview)

    def _run(self, preview: PlanPreview) -> None:
        from .plan_progress import PlanProgressScreen

        progress = PlanProgressScreen(preview.plan, hook=self.runner_hook)

        def done(_: object) -> None:
            # after a successful run the next batch is what the operator wants to see
            if progress.result is not None and progress.result.ok:
                if not self.kind.selection:
                    # the fields as the screen was opened: the values just applied (a
                    # boundary now at a partition's edge) would only be refused
                    self._reset_fields()
                self.action_default_selection()

        self.app.push_screen(progress, callback=done)

    def _reset_fields(self) -> None:
        self.values = dict(self.initial_values)
        for o in field_options(self.kind):
            chosen = self.values.get(o.name)
            field = self.query_one(f"#plan-option-{o.name}", Input)
            with self.prevent(Input.Changed):  # the screen replans once, below
                field.value = ", ".join(chosen) if isinstance(chosen, list) else \
                    str(chosen or "")

    def action_copy_sql(self) -> None:
        if self.preview is None:
            self.notify("no plan to copy", severity="warning")
            return
        script = self.preview.script
        self.app.copy_to_clipboard(script)
        # OSC 52: the terminal may ignore it (tmux without set-clipboard, many terminals by
        # default) and nobody can tell; W writes the same script to a file
        self.notify(f"the plan's SQL script ({script.count(chr(10)) + 1} lines) was sent to "
                    f"the terminal's clipboard; if it did not arrive, W saves it to a file",
                    timeout=6)

    def action_save_sql(self) -> None:
        if self.preview is None:
            self.notify("no plan to save", severity="warning")
            return
        try:
            path = save_script(self.preview.script, self.parent_node.name)
        except OSError as exc:
            self.notify(f"could not save the script: {exc}", severity="error", timeout=8)
            return
        self.notify(f"the plan's SQL script is in {path}", timeout=10)

    def action_back(self) -> None:
        self.dismiss()

    def on_unmount(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        # leaving or quitting while a plan is built: the build is not waited for
        self._inflight.cancel_all()


def save_script(script: str, table: str, directory: Path | None = None) -> Path:
    """Write `script` to <state dir>/scripts/pgparts-<table>-<UTC time>.sql; returns the path.
    The table name is reduced to letters, digits, '-' and '_' for the file name."""
    directory = directory or state_dir() / "scripts"
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in table)[:60] or "table"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = directory / f"pgparts-{safe}-{stamp}.sql"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"pgparts-{safe}-{stamp}-{n}.sql"
    path.write_text(script, encoding="utf-8")
    return path


def _age(delta: timedelta) -> str:
    """'3months', '2weeks', '10days': an age in the form the option's parser reads."""
    days = delta.days
    if days % 30 == 0 and days >= 30:
        return f"{days // 30}months"
    if days % 7 == 0 and days >= 7:
        return f"{days // 7}weeks"
    return f"{days}days"
