"""The maintain screen: what `pgparts maintain` would do now for the selected table's
`[policy]` (or for every policy), each action's plan in the preview pane, and apply.

The decision is tui.core.plans.maintain's, the same as the command's: the preview plans every
action on the catalog the console loaded (read-only, in a thread worker); apply confirms (and
asks for a table's name when an action drops something), then runs `Maintain` in a thread
worker exactly as `pgparts maintain --table T` would: each action planned again from a fresh
read of the catalog, run by the plan engine with the lock timeout, retries and journal. Each
action's result replaces its row: a table whose lock was not granted in time is skipped
(yellow) and the other tables still run. `enter` opens the action's own plan screen (the
kind's options, SQL, apply with the usual progress screen).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

import psycopg
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from ..core.catalog import Forest, PartNode
from ..core.connection import ConnectError, connect
from ..core.errors import first_line as _first_line
from ..core.humanfmt import plural
from ..core.plans import Progress
from ..core.plans.engine import journal
from ..core.plans.maintain import (
    FAILED,
    OK,
    PLANNED,
    SKIPPED,
    Action,
    Maintain,
    MaintainError,
    Planned,
    preview,
    spec_of,
)
from ..core.plans.registry import kind_named
from ..core.policy import resolve_policies
from .details_extra import period
from .footer_keys import FooterKeys
from .inflight import InFlight
from .plan_preview import PlanPreview, change_lines, render_plan

if TYPE_CHECKING:
    from .app import PgpartsApp

STATUS_STYLE = {OK: "green", PLANNED: "bold", "nothing": "dim", SKIPPED: "bold yellow",
                FAILED: "bold red", "running": "bold cyan"}


def open_maintain(app: PgpartsApp) -> Screen | None:
    """For the table under the cursor (or the nearest table above it) when it has a policy,
    else for every table with a policy."""
    forest, node = app.forest, app.selected_node
    if forest is None:
        app.notify("maintain: the catalog is not loaded yet", severity="warning")
        return None
    if not app.config.policies:
        app.notify("maintain: no [policy] in the config: nothing to maintain (see "
                   "config.example.toml)", severity="warning", timeout=6)
        return None
    by_oid = resolve_policies(forest, app.config.policies).by_oid
    table = None
    while node is not None:
        if node.oid in by_oid:
            table = node
            break
        node = forest.nodes.get(node.parent_oid) if node.parent_oid else None
    return MaintainScreen(table)


@dataclass
class Row:
    """One line of the table: a planned action, then (after apply) what the run did."""

    table: str
    action: str
    status: str
    message: str
    planned: Planned | None = None
    preview: PlanPreview | None = None


def what_of(row: Row) -> str:
    """The row's message without ' of TABLE': the table column names it, and at 80 columns
    the repeat pushed what would be done out of view ('would create 3 partitions of
    account'). The preview pane keeps the whole message."""
    return re.sub(rf" of {re.escape(row.table)}(?![\w.])", "", row.message)


@dataclass
class MaintainPreviewed(Message):
    generation: int
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class MaintainEmitted(Message):
    action: Action


@dataclass
class MaintainProgressed(Message):
    progress: Progress
    table: str  # the running plan's table and kind: which row it is
    action: str


@dataclass
class MaintainFinished(Message):
    status: int
    error: str = ""


class MaintainScreen(FooterKeys, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("A", "apply", "apply", show=True, id="maintain-apply",
                tooltip="run maintain for what is shown (asks for confirmation)"),
        Binding("enter", "open_action", "open plan", show=True, id="maintain-open",
                tooltip="the action's plan screen: options, SQL, apply"),
        Binding("t", "toggle_scope", "this/all", show=True, id="maintain-scope",
                tooltip="this table's policy or every policy"),
        Binding("c", "cancel_run", "cancel", show=False, id="maintain-cancel",
                tooltip="cancel the running action (its step rolls back); no other starts"),
        Binding("escape", "back", "back", show=True, id="maintain-back"),
        # q would quit the console under a running maintain: refused until it ends
        Binding("q", "quit_when_done", "quit", show=False),
    ]

    DEFAULT_CSS = """
    MaintainScreen #maintain-head {
        height: auto;
        padding: 0 1;
    }
    MaintainScreen #maintain-actions {
        /* as tall as its rows, up to a third of the screen: the preview gets the rest */
        height: auto;
        max-height: 33%;
        min-height: 4;
        border: round $panel-lighten-2;
        scrollbar-size-vertical: 1;
    }
    MaintainScreen #maintain-actions:focus {
        border: round $accent;
    }
    MaintainScreen #maintain-preview-pane {
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    MaintainScreen #maintain-reason {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, table: PartNode | None) -> None:
        super().__init__()
        self.table = table  # None: every table with a policy
        self.all_tables = table is None
        self.rows: list[Row] = []
        self.problems: list[str] = []
        self.error = ""
        self.planning = True
        self.running = False
        self.ran = False
        self.status: int | None = None  # the last run's status (0, 1, 2)
        self.loads = 0  # finished previews (tests wait on it)
        self.progress: Progress | None = None
        self.maintain: Maintain | None = None
        self._generation = 0
        self._skip_reload = False
        self._inflight = InFlight()

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    @property
    def scope(self) -> str:
        return "every table with a [policy]" if self.all_tables or self.table is None \
            else self.table.qualified

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="maintain-head")
        yield DataTable(id="maintain-actions", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="maintain-preview-pane"):
            yield Static("", id="maintain-preview")
        yield Static("", id="maintain-reason")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#maintain-actions", DataTable)
        table.add_column("table", key="table")
        table.add_column("action", key="action")
        table.add_column("status", key="status")
        table.add_column("what", key="what")
        self.query_one("#maintain-preview-pane").border_title = "plan preview"
        table.focus()
        self.reload()

    # -- the preview -----------------------------------------------------------------------------
    def reload(self) -> None:
        self._generation += 1
        self.planning = True
        self.ran = False
        self.status = None
        self._render_all()
        spec = None if self.all_tables or self.table is None else spec_of(self.table)
        self._load(self._generation, spec, self.papp.forest)

    async def catalog_loaded(self, forest: Forest) -> None:
        if self._skip_reload:  # the refresh after a run: its results stay on screen
            self._skip_reload = False
            return
        if not self.running:
            self.reload()

    @work(thread=True, exclusive=True, group="maintain-preview", exit_on_error=False,
          description="planning what maintain would do")
    def _load(self, generation: int, spec: str | None, forest: Forest | None) -> None:
        app = self.papp
        try:
            if forest is None:
                raise MaintainError("the catalog is not loaded yet")
            with connect(app.target, purpose="maintain-preview") as conn, \
                    self._inflight.track(conn):
                planned, problems = preview(conn, forest, app.config, spec)
                rows = []
                for item in planned:
                    shown = PlanPreview.build(item.plan, conn) \
                        if item.plan is not None and item.plan.steps else None
                    rows.append(Row(item.node.qualified, item.kind, item.status, item.message,
                                    item, shown))
        except (MaintainError, ConnectError) as exc:
            self.post_message(MaintainPreviewed(generation, error=_first_line(exc)))
            return
        except psycopg.Error as exc:
            self.post_message(MaintainPreviewed(
                generation, error=f"planning failed: {_first_line(exc)}"))
            return
        self.post_message(MaintainPreviewed(generation, rows, problems))

    @on(MaintainPreviewed)
    def _previewed(self, message: MaintainPreviewed) -> None:
        if message.generation != self._generation:
            return
        self.planning = False
        self.loads += 1
        self.rows = message.rows
        self.problems = message.problems
        self.error = message.error
        self._render_all()

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = f"internal error: {_first_line(event.worker.error or Exception('unknown'))}"
        if event.worker.group == "maintain-preview":
            self.planning = False
            self.loads += 1
            self.error = error
        elif event.worker.group == "maintain-run":
            self._finished(MaintainFinished(2, error))
        self._render_all()

    # -- drawing ---------------------------------------------------------------------------------
    def _render_all(self) -> None:
        self._render_head()
        self._render_rows()
        self._render_preview()
        self._render_reason()
        self.refresh_bindings()

    def _render_head(self) -> None:
        text = Text()
        text.append("Maintain: ", style="bold")
        text.append(self.scope, style="bold")
        if self.running:
            text.append("  running…", style="bold cyan")
        elif self.ran:
            text.append("  ran", style="bold")
        elif not self.planning:
            planned = sum(1 for r in self.rows if r.status == PLANNED)
            text.append(f"  {plural(planned, 'action')} to do now" if planned
                        else "  nothing to do now", style="dim")
        for problem in self.problems:
            text.append(f"\n{problem}", style="yellow")
        self.query_one("#maintain-head", Static).update(text)

    def _render_rows(self) -> None:
        table = self.query_one("#maintain-actions", DataTable)
        cursor = table.cursor_row
        table.clear()
        for i, row in enumerate(self.rows):
            status = row.status
            if status == "running" and self.progress is not None:
                p = self.progress
                status = f"running {p.step_index}/{p.step_count}"
            # names and messages are text, not markup (plain.py)
            table.add_row(Text(row.table), row.action,
                          Text(status, style=STATUS_STYLE.get(row.status, "")),
                          Text(what_of(row)), key=str(i))
        if self.rows:
            table.move_cursor(row=min(cursor, len(self.rows) - 1))

    def _current(self) -> Row | None:
        table = self.query_one("#maintain-actions", DataTable)
        if not self.rows or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowHighlighted, "#maintain-actions")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._render_preview()

    @on(DataTable.RowSelected, "#maintain-actions")
    def _selected(self, event: DataTable.RowSelected) -> None:
        # enter in the table: the table's own binding selects the row
        self.action_open_action()

    def _render_preview(self) -> None:
        static = self.query_one("#maintain-preview", Static)
        row = self._current()
        if self.planning:
            static.update(Text("planning…", style="italic"))
        elif self.error:
            static.update(Text(self.error, style="red"))
        elif not self.rows:
            static.update(Text("No table of this database has a [policy] with premake, "
                               "retention or consolidate_older_than.", style="bold"))
        elif row is None:
            static.update("")
        elif row.preview is not None and not self.ran:
            kind = kind_named(row.action)
            static.update(render_plan(row.preview, kind.consequences(row.preview.plan)))
        else:
            style = STATUS_STYLE.get(row.status, "")
            static.update(Text.assemble((f"{row.table}: {row.action}: {row.status}\n", style),
                                        row.message))

    def apply_refusal(self) -> str:
        if self.papp.read_only:
            return "apply is disabled: the console runs in read-only mode (--read-only)"
        if self.running:
            return "maintain is running (c: cancel)"
        if self.planning:
            return "planning…"
        if self.error:
            return "apply is disabled: " + self.error
        if self.ran:
            return "ran; r re-reads the catalog and plans again"
        if not any(r.status == PLANNED for r in self.rows):
            return "nothing to apply: maintain has nothing to do now"
        return ""

    def _render_reason(self) -> None:
        reason = self.apply_refusal()
        text = Text()
        if reason:
            text.append(reason, style="yellow" if self.papp.read_only else "dim")
        else:
            text.append("A: apply ", style="bold")
            text.append("(asks for confirmation) · enter: this action's plan screen",
                        style="dim")
        if self.ran and self.status is not None:
            text.append(f"  status {self.status}: ", style="bold")
            text.append(("ok", "one or more skipped", "something failed")[min(self.status, 2)],
                        style=("green", "yellow", "red")[min(self.status, 2)])
        self.query_one("#maintain-reason", Static).update(text)

    # -- keys ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply":
            return None if self.apply_refusal() else True
        if action == "cancel_run":
            return self.running
        if action == "toggle_scope":
            return None if self.running or self.table is None else True
        return True

    def action_toggle_scope(self) -> None:
        if self.running or self.table is None:
            return
        self.all_tables = not self.all_tables
        self.reload()

    def action_open_action(self) -> None:
        row = self._current()
        if row is None or row.planned is None or self.running:
            return
        from .plan_screen import plan_screen_class

        kind = kind_named(row.action)
        # the plan screen's fields hold text: an age as the config writes it ('12 weeks')
        values = {k: period(v) if isinstance(v, timedelta) else v
                  for k, v in row.planned.values.items() if v is not None}
        node = row.planned.node
        self.app.push_screen(plan_screen_class(kind)(
            kind, node, [], values, f"Maintain: {kind.title.lower()}"))

    def action_apply(self) -> None:
        reason = self.apply_refusal()
        if reason:
            self.notify(reason, severity="warning")
            return
        from .confirm import ConfirmModal

        lines: list[str] = []
        for row in self.rows:
            if row.status == PLANNED and row.preview is not None:
                lines += [f"{row.table}: {row.action}: {line}"
                          for line in change_lines(row.preview)]
        plans = self.papp.config.plans
        notes = [
            "Each action is planned again from a fresh read of the catalog when its turn "
            "comes, as `pgparts maintain` does, then ANALYZE of the partitions it created.",
            f"Each step runs under lock_timeout {plans.lock_timeout_seconds:g} s with "
            f"{plans.lock_retries} retries; a table whose lock is not granted is skipped, the "
            f"others still run. c cancels the running action (its step rolls back).",
        ]
        self.app.push_screen(
            ConfirmModal(f"Run maintain for {self.scope} on {self.papp.target.describe()}?",
                         lines, notes),
            callback=lambda yes: self._confirmed(bool(yes)))

    def _confirmed(self, yes: bool) -> None:
        if not yes:
            self.notify("not applied", timeout=3)
            return
        planned = [r for r in self.rows if r.status == PLANNED and r.preview is not None
                   and r.preview.destroys]
        dropping = sorted({r.table for r in planned})
        if dropping:
            from .confirm import TypeNameModal

            name = dropping[0].rsplit(".", 1)[-1] if len(dropping) == 1 else "maintain"
            accepted = (dropping[0],) if len(dropping) == 1 else ()
            lost = any(r.preview.plan.facts.loses_data for r in planned if r.preview)
            body = ("Retention with retention_action = \"drop\": what is dropped is kept "
                    "nowhere else; this cannot be undone." if lost else
                    "Before each drop pgparts verifies that every row is kept elsewhere, but "
                    "the drop cannot be undone.")
            self.app.push_screen(
                TypeNameModal(f"maintain drops partitions of {', '.join(dropping)}", body,
                              name, accepted=accepted),
                callback=lambda ok: self._start() if ok else self.notify("not applied",
                                                                          timeout=3))
            return
        self._start()

    def _start(self) -> None:
        try:
            journal.check_writable()
        except journal.JournalError as exc:
            self.notify(f"{exc}; nothing was applied", severity="error", timeout=8)
            return
        self.running = True
        self.ran = True
        self.progress = None
        for row in self.rows:
            # planned again when its turn comes: 'nothing' now may be work then (and back)
            if row.planned is not None and not row.planned.left_alone:
                row.status = "pending"
        spec = None if self.all_tables or self.table is None else spec_of(self.table)
        self.maintain = Maintain(self.papp.target, self.papp.config, self._emit, table=spec,
                                 progress=self._progress)
        self._render_all()
        self._run(self.maintain)

    # called on the worker's thread: messages only
    def _emit(self, action: Action) -> None:
        self.post_message(MaintainEmitted(action))

    def _progress(self, progress: Progress) -> None:
        maintain = self.maintain
        runner = maintain.runner if maintain is not None else None
        if runner is not None:
            plan = runner.plan
            self.post_message(MaintainProgressed(progress, plan.target, plan.kind))

    @work(thread=True, exclusive=True, group="maintain-run", exit_on_error=False,
          description="running maintain")
    def _run(self, maintain: Maintain) -> None:
        try:
            with connect(self.papp.target, purpose="maintain") as conn:
                status = maintain.run(conn)
        except (MaintainError, ConnectError) as exc:
            self.post_message(MaintainFinished(2, _first_line(exc)))
            return
        except psycopg.Error as exc:
            self.post_message(MaintainFinished(2, f"maintain failed: {_first_line(exc)}"))
            return
        self.post_message(MaintainFinished(status))

    @on(MaintainProgressed)
    def _progressed(self, message: MaintainProgressed) -> None:
        self.progress = message.progress
        row = next((r for r in self.rows if (r.table, r.action) == (message.table,
                                                                     message.action)
                    and r.status in ("pending", "running")), None)
        if row is None:  # the ANALYZE of what create_ahead made: not planned beforehand
            row = Row(message.table, message.action, "running", "")
            self.rows.append(row)
        row.status = "running"
        row.message = message.progress.step_title
        self._render_rows()

    @on(MaintainEmitted)
    def _emitted(self, message: MaintainEmitted) -> None:
        a = message.action
        if a.action == "table":  # the whole table: left alone (pg_partman), or cancelled
            rows = [r for r in self.rows if r.table == a.table]
            for r in rows:
                r.status, r.message = a.status, a.message
            if rows:
                self._render_all()
                return
        row = next((r for r in self.rows if (r.table, r.action) == (a.table, a.action)
                    and r.status in ("pending", "running")), None)
        if row is None:  # ANALYZE of what create_ahead made, a table left alone, the lock
            row = Row(a.table, a.action, a.status, a.message)
            self.rows.append(row)
        row.status, row.message = a.status, a.message
        if a.status != OK:
            # the table's later actions wait for the next run: say so on their rows
            for other in self.rows:
                if other.table == a.table and other.status == "pending" and a.status in (
                        SKIPPED, FAILED):
                    other.status, other.message = "nothing", "not run: an earlier action of " \
                        "this table did not finish"
        self.progress = None
        self._render_all()

    @on(MaintainFinished)
    def _finished_message(self, message: MaintainFinished) -> None:
        self._finished(message)

    def _finished(self, message: MaintainFinished) -> None:
        self.running = False
        self.status = message.status
        self.maintain = None
        for row in self.rows:
            if row.status in ("pending", "running"):
                row.status, row.message = "nothing", message.error or "not run"
        if message.error:
            self.rows.append(Row("-", "maintain", FAILED, message.error))
        summary = {0: "maintain: done", 1: "maintain: something was skipped",
                   2: "maintain: something failed"}[min(message.status, 2)]
        self.notify(summary, severity=("information", "warning", "error")[min(message.status, 2)],
                    timeout=6)
        self._skip_reload = True
        self.papp.refresh_catalog()
        self._render_all()

    def action_cancel_run(self) -> None:
        maintain = self.maintain
        if not self.running or maintain is None:
            return
        self.notify("cancelling: the running step rolls back", timeout=4)
        # stop() waits for the server's answer to the cancel request: never on the event loop
        threading.Thread(target=maintain.stop, name="maintain-cancel", daemon=True).start()

    def action_back(self) -> None:
        if self.running:
            self.notify("maintain is running: press c to cancel it first", severity="warning")
            return
        self.dismiss()

    def action_quit_when_done(self) -> None:
        if self.running:
            self.action_back()  # says why not
            return
        self.app.exit()

    def on_unmount(self) -> None:
        self._inflight.cancel_all()
        # the console is closing under a running maintain: stop it rather than orphan it
        if self.running and self.maintain is not None:
            threading.Thread(target=self.maintain.stop, daemon=True).start()
