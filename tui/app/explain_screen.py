"""The EXPLAIN screen: a SQL editor, the pruning report per partitioned table, and the plan.

Opened with `e`. F5 runs EXPLAIN (the query is planned, not run). F6 runs EXPLAIN ANALYZE after
a confirmation that says the query will run: inside a transaction that is always rolled back,
under [explain] statement_timeout. Escape cancels a running EXPLAIN on the server (a libpq
cancel request), otherwise goes back to the tree. ctrl+up / ctrl+down walk the queries of this
console session; the text and the history survive leaving and re-opening the screen.

EXPLAIN runs in a thread worker on a connection of its own (`application_name` 'pgparts
explain'), kept while the screen is open; its results come back as a message. The core
(tui.core.explain) does the work: statement check, runner, plan parsing, pruning, advice. This
module only draws what it returns (explain_render.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar
from weakref import WeakKeyDictionary

import psycopg
from psycopg import errors as pg_errors
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static, TextArea, Tree
from textual.widgets.tree import TreeNode
from textual.worker import Worker, WorkerState

from ..core.connection import ConnectError, connect
from ..core.errors import first_line as _first_line
from ..core.explain import (
    ExplainCancelled,
    ExplainError,
    ExplainReport,
    ExplainSession,
    ExplainTimeout,
    StatementRefused,
    TableReference,
    check_statement,
)
from ..core.explain.plan_tree import PlanNode
from .explain_render import (
    AppendInfo,
    append_index,
    condition_label,
    node_label,
    render_report,
    scan_index,
    starting_query,
    summary_line,
)
from .footer_keys import FooterKeys

if TYPE_CHECKING:
    from .app import PgpartsApp

# Scanned partitions listed (with bounds) per table; `pgparts explain --json` lists them all.
BOUNDS_LIMIT = 20
NARROW_BELOW = 120  # columns: below, the pruning report and the plan are stacked
HISTORY_MAX = 100
CHUNK = 250  # plan nodes added per event-loop slice when an Append over thousands is expanded
_WRITES = {"INSERT", "UPDATE", "DELETE", "MERGE"}


def sql_language() -> str | None:
    """'sql' when tree-sitter and its SQL grammar are installed (textual[syntax]), else None:
    the editor then works as plain text."""
    found = importlib.util.find_spec("tree_sitter") and importlib.util.find_spec("tree_sitter_sql")
    return "sql" if found else None


@dataclass
class ExplainState:
    """What outlives the screen for one console session: the queries run and the last text."""

    history: list[str] = field(default_factory=list)
    draft: str | None = None

    def remember(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if text in self.history:
            self.history.remove(text)
        self.history.append(text)
        del self.history[:-HISTORY_MAX]


_STATES: WeakKeyDictionary[App, ExplainState] = WeakKeyDictionary()


def open_explain(app: PgpartsApp) -> Screen | None:
    """Factory for the command table: the EXPLAIN screen, starting from the last text of this
    session or from a query on the table selected in the tree."""
    if isinstance(app.screen, ExplainScreen):
        app.screen.focus_editor()
        return None
    state = _STATES.setdefault(app, ExplainState())
    text = state.draft if state.draft is not None else starting_query(app.selected_node,
                                                                       app.forest)
    return ExplainScreen(state, text)


@dataclass
class ExplainFinished(Message):
    """A run ended: a report, or why not (`kind`: refused / error / cancelled / timeout /
    connection) with PostgreSQL's message and, for a syntax error, where it points."""

    text: str
    analyze: bool
    report: ExplainReport | None = None
    error: str = ""
    kind: str = ""
    offset: int | None = None
    seconds: float = 0.0


class ExplainScreen(FooterKeys, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: the keys work while the editor has the focus
        Binding("f5", "explain", "explain", priority=True, id="explain-run",
                tooltip="EXPLAIN the query: planned, not run"),
        Binding("f6", "analyze", "analyze…", priority=True, id="explain-analyze",
                tooltip="EXPLAIN ANALYZE: runs the query (rolled back); asks first"),
        Binding("escape", "cancel_explain", "cancel", priority=True, id="explain-cancel",
                tooltip="cancel the running EXPLAIN on the server"),
        Binding("escape", "back", "back", priority=True, id="explain-back"),
        Binding("ctrl+up", "history(-1)", "history", key_display="^↑ ^↓",
                id="explain-history-back", tooltip="earlier queries of this session"),
        Binding("ctrl+down", "history(1)", "history", show=False, id="explain-history-forward"),
    ]

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        # the editor's own f6 (select line) comes first in Textual's order while it has the
        # focus, so the footer read 'f6 analyze… f5 explain' there and 'f5 … f6 …' elsewhere
        bindings = super().active_bindings
        if "f5" not in bindings:
            return bindings
        return {"f5": bindings["f5"], **{k: v for k, v in bindings.items() if k != "f5"}}

    DEFAULT_CSS = """
    ExplainScreen #explain-editor {
        height: 9;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    ExplainScreen #explain-editor:focus {
        border: round $accent;
    }
    ExplainScreen #explain-status {
        height: auto;
        max-height: 5;
        padding: 0 1;
    }
    ExplainScreen #explain-results {
        height: 1fr;
    }
    ExplainScreen #explain-report-pane {
        width: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    ExplainScreen #explain-report-pane:focus-within {
        border: round $accent;
    }
    ExplainScreen #explain-plan {
        width: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        scrollbar-size-vertical: 1;
    }
    ExplainScreen #explain-plan:focus {
        border: round $accent;
    }
    /* below NARROW_BELOW columns: the pruning report above the plan, each the full width */
    ExplainScreen.narrow #explain-editor {
        height: 6;
    }
    ExplainScreen.narrow #explain-results {
        layout: vertical;
    }
    ExplainScreen.narrow #explain-report-pane, ExplainScreen.narrow #explain-plan {
        width: 1fr;
        height: 1fr;
    }
    """

    AUTO_FOCUS = "#explain-editor"

    def __init__(self, state: ExplainState, text: str = "") -> None:
        super().__init__()
        self.state = state
        self.initial_text = text
        self.report: ExplainReport | None = None
        self.running = False
        self.running_analyze = False
        self.cancelling = False
        self.runs = 0  # finished runs, whatever their outcome (tests wait on it)
        self.last: ExplainFinished | None = None
        self._session: ExplainSession | None = None
        self._closing = False
        self._done = threading.Event()
        self._done.set()
        self._started = 0.0
        self._ticker: Timer | None = None
        self._history_pos: int | None = None
        self._history_draft = ""
        self._appends: dict[int, AppendInfo] = {}
        self._scans: dict[int, TableReference] = {}
        self._filled: set[int] = set()  # ids of tree nodes whose plan children are added

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    @property
    def editor(self) -> TextArea:
        return self.query_one("#explain-editor", TextArea)

    @property
    def plan_tree(self) -> Tree:
        return self.query_one("#explain-plan", Tree)

    # -- composition ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield TextArea.code_editor(
            self.initial_text, language=sql_language(), tab_behavior="focus",
            id="explain-editor", placeholder="SELECT … FROM a partitioned table …")
        yield Static("", id="explain-status")
        with Horizontal(id="explain-results"):
            with VerticalScroll(id="explain-report-pane"):
                yield Static("", id="explain-report")
            tree: Tree[PlanNode | None] = Tree("plan", id="explain-plan")
            tree.show_root = False
            tree.guide_depth = 2
            yield tree
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"EXPLAIN · {self.papp.target.describe()}"
        self.editor.border_title = "query"
        self.editor.border_subtitle = "F5 explain · F6 explain analyze"
        self.query_one("#explain-report-pane").border_title = "pruning"
        self.plan_tree.border_title = "plan"
        self.editor.move_cursor(self.editor.document.end)
        self._render_status()
        self.query_one("#explain-report", Static).update(_intro())

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW_BELOW, "narrow")

    def focus_editor(self) -> None:
        self.editor.focus()

    # -- running -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_explain":
            return self.running and not self.cancelling
        if action == "back":
            return not self.running
        if action in ("explain", "analyze"):
            return None if self.running else True
        return True

    async def action_explain(self) -> None:
        if self.running:
            return
        text = self.editor.text
        try:
            check_statement(text)  # refused before anything is sent (DDL, two statements, ...)
        except StatementRefused as exc:
            await self._show_result(ExplainFinished(text, False, error=str(exc), kind="refused"))
            return
        self.start(text, analyze=False)

    async def action_analyze(self) -> None:
        if self.running:
            return
        text = self.editor.text
        try:
            statement = check_statement(text)
        except StatementRefused as exc:
            await self._show_result(ExplainFinished(text, True, error=str(exc), kind="refused"))
            return
        if statement.has_params:
            await self._show_result(ExplainFinished(
                text, True, kind="refused",
                error=f"EXPLAIN ANALYZE runs the query, which needs values for "
                      f"${statement.param_count}: replace the parameters with values, or press "
                      "F5 to see the generic plan"))
            return
        from .confirm import ConfirmModal

        timeout = self.papp.config.explain.statement_timeout_seconds
        kind = statement.kind
        what = f"this {kind} " if kind in _WRITES else "the query "
        lines = [
            f"EXPLAIN ANALYZE will run {what.strip()} for real, to measure the actual rows and "
            "times of every plan node.",
            "It runs inside a transaction that is always rolled back: "
            + ("the rows it changes are put back." if kind in _WRITES or kind == "WITH"
               else "nothing it does is kept."),
            f"Statement timeout {timeout:g} s ([explain] statement_timeout); escape cancels it "
            "on the server.",
        ]
        notes = ["Until the rollback it holds the locks it takes (a write locks its rows).",
                 "A rollback does not undo everything: sequences advanced by nextval(), "
                 "setval() or serial and identity defaults stay advanced; what a function does "
                 "outside this transaction stays done (dblink_exec on another connection, "
                 "pg_cancel_backend() or pg_terminate_backend() of other sessions, "
                 "pg_reload_conf(), COPY ... TO PROGRAM or to a file). Advisory locks are "
                 "released afterwards; NOTIFY is sent only at commit, so never."]
        if self.papp.read_only:
            notes.append("Read-only session: the transaction is READ ONLY, so PostgreSQL "
                         "refuses writes, nextval() and setval(); dblink, signals to other "
                         "sessions and COPY ... TO PROGRAM are not writes and are not refused.")
        self.app.push_screen(
            ConfirmModal(f"Run the query on {self.papp.target.describe()}?", lines, notes,
                         yes_label="Run EXPLAIN ANALYZE"),
            callback=lambda yes: self._analyze_confirmed(text, bool(yes)))

    def _analyze_confirmed(self, text: str, yes: bool) -> None:
        if not yes:
            self.notify("EXPLAIN ANALYZE not run", timeout=3)
            return
        self.start(text, analyze=True)

    def start(self, text: str, *, analyze: bool) -> None:
        if self.running:
            self.notify("an EXPLAIN is running: escape cancels it", severity="warning")
            return
        self.state.remember(text)
        self._history_pos = None
        self.running, self.running_analyze, self.cancelling = True, analyze, False
        self._done.clear()
        self._started = time.monotonic()
        self._ticker = self.set_interval(0.25, self._render_status)
        self._render_status()
        self.refresh_bindings()
        self._run(text, analyze)

    @work(thread=True, group="explain", exit_on_error=False, description="EXPLAIN")
    def _run(self, text: str, analyze: bool) -> None:
        started = time.perf_counter()
        try:
            self.post_message(self._explain(text, analyze, started))
        finally:
            self._done.set()
            if self._closing:
                self._close_session()

    def _explain(self, text: str, analyze: bool, started: float) -> ExplainFinished:
        def failed(kind: str, error: str, offset: int | None = None) -> ExplainFinished:
            return ExplainFinished(text, analyze, None, error, kind, offset,
                                   time.perf_counter() - started)

        try:
            session = self._session_in_thread()
            report = session.explain(text, analyze=analyze, bounds_limit=BOUNDS_LIMIT)
        except StatementRefused as exc:
            return failed("refused", str(exc))
        except ExplainCancelled as exc:
            return failed("cancelled", exc.message)
        except ExplainTimeout as exc:
            return failed("timeout", exc.message)
        except ExplainError as exc:
            return failed("error", exc.one_line(), exc.offset)
        except ConnectError as exc:
            return failed("connection", _first_line(exc))
        except pg_errors.QueryCanceled:
            # the cancel reached the catalog read that follows the EXPLAIN
            return failed("cancelled", "the server stopped the query")
        except psycopg.OperationalError as exc:
            self._close_session()  # the next run reconnects
            return failed("connection", f"connection lost: {_first_line(exc)}")
        except psycopg.Error as exc:
            return failed("error", f"EXPLAIN failed: {_first_line(exc)}")
        return ExplainFinished(text, analyze, report, seconds=time.perf_counter() - started)

    def _session_in_thread(self) -> ExplainSession:
        session = self._session
        if session is not None and not session.conn.closed and not session.conn.broken:
            return session
        conn = connect(self.papp.target, purpose="explain", user_search_path=True)
        session = ExplainSession(
            conn, timeout_seconds=self.papp.config.explain.statement_timeout_seconds)
        self._session = session
        return session

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.conn.close()
            except Exception:
                pass

    @on(Worker.StateChanged)
    async def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "explain" or event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        await self._show_result(ExplainFinished("", self.running_analyze, kind="error",
                                          error=f"internal error: {_first_line(error)}"
                                          if error else "internal error"))

    # -- cancel ----------------------------------------------------------------------------------
    def action_cancel_explain(self) -> None:
        if not self.running or self.cancelling:
            return
        self.cancelling = True
        self._render_status()
        self.refresh_bindings()
        self._cancel_on_server(self._done)

    @work(thread=True, group="explain-cancel", exit_on_error=False,
          description="cancelling EXPLAIN")
    def _cancel_on_server(self, done: threading.Event) -> None:
        """cancel_safe() waits for the server's answer: never on the event loop. The statement
        may not have reached the server yet (connecting, reading the query): retry until it has,
        or until the run ends by itself."""
        while not done.is_set():
            session = self._session
            if session is not None and session.cancel():
                return
            done.wait(0.05)

    # -- results ---------------------------------------------------------------------------------
    @on(ExplainFinished)
    async def _finished(self, message: ExplainFinished) -> None:
        await self._show_result(message)

    async def _show_result(self, message: ExplainFinished) -> None:
        was_running = self.running
        self.running = self.cancelling = False
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if was_running:
            self.runs += 1
        self.last = message
        report_view = self.query_one("#explain-report", Static)
        if message.report is not None:
            self.report = message.report
            report_view.update(render_report(message.report, BOUNDS_LIMIT))
            await self._show_plan(message.report)
        else:
            self.report = None
            report_view.update(_failure_text(message))
            self.plan_tree.clear()
            self._filled.clear()
            if message.offset is not None:
                self._point_at(message.text, message.offset)
        self._render_status()
        self.refresh_bindings()

    def _point_at(self, text: str, offset: int) -> None:
        """Put the editor's cursor where PostgreSQL says the error is."""
        editor = self.editor
        if editor.text != text:
            return  # edited since: the position no longer means anything
        before = text[:offset]
        row = before.count("\n")
        column = offset - (before.rfind("\n") + 1)
        editor.move_cursor((row, column))
        editor.focus()

    def _render_status(self) -> None:
        text = Text()
        if self.papp.read_only:
            text.append(" READ-ONLY ", style="bold reverse yellow")
            text.append(" ")
        if self.running:
            mode = "EXPLAIN ANALYZE" if self.running_analyze else "EXPLAIN"
            elapsed = time.monotonic() - self._started
            if self.cancelling:
                text.append("cancelling on the server…", style="bold yellow")
            else:
                text.append(f"running {mode}… ", style="italic")
                text.append("escape cancels it on the server", style="dim")
            text.append(f"  {elapsed:.1f} s", style="dim")
        elif self.last is not None and self.last.report is not None:
            text.append_text(summary_line(self.last.report, self.last.seconds,
                                          timings=self.papp.show_load_time))
        elif self.last is not None:
            style = "bold yellow" if self.last.kind in ("cancelled", "timeout") else "bold red"
            title = _KIND_TITLE.get(self.last.kind, "error")
            if not self.last.error.lower().startswith(title.lower()):  # no 'cancelled: cancelled'
                text.append(title + ": ", style=style)
            text.append(self.last.error)
        else:
            text.append("F5 explains the query (planned, not run) · F6 runs EXPLAIN ANALYZE "
                        "(asks first; rolled back) · ctrl+↑/↓ earlier queries", style="dim")
        self.query_one("#explain-status", Static).update(text)

    # -- the plan tree ---------------------------------------------------------------------------
    async def _show_plan(self, report: ExplainReport) -> None:
        tree = self.plan_tree
        tree.clear()
        self._filled.clear()
        self._appends = append_index(report)
        self._scans = scan_index(report)
        self._add(tree.root, report.plan.root)
        tree.root.expand()
        tree.move_cursor(tree.root.children[0] if tree.root.children else None)

    def _add(self, parent: TreeNode, node: PlanNode, lazy: bool = False) -> TreeNode:
        """One plan node. An Append over partitions stays one collapsed line, and so does each
        of its members once it is expanded: what is below comes on demand (10,000 partitions
        are 10,000 lines, not 30,000)."""
        info = self._appends.get(id(node))
        label = node_label(node, info, self._scans.get(id(node)))
        expandable = bool(node.children or node.conditions)
        folded = lazy or info is not None
        item = parent.add(label, data=node, expand=not folded and expandable,
                          allow_expand=expandable)
        if not folded:
            self._fill(item, node)
        return item

    def _fill(self, item: TreeNode, node: PlanNode) -> None:
        self._filled.add(id(item))
        for name, value in node.conditions.items():
            item.add_leaf(condition_label(name, value))
        for child in node.children:
            self._add(item, child)

    @on(Tree.NodeExpanded, "#explain-plan")
    async def _expanded(self, event: Tree.NodeExpanded) -> None:
        item = event.node
        node = item.data
        if not isinstance(node, PlanNode) or id(item) in self._filled:
            return
        self._filled.add(id(item))
        for name, value in node.conditions.items():
            item.add_leaf(condition_label(name, value))
        members = node.is_append  # the partitions of an Append: one line each
        for i, child in enumerate(node.children, 1):
            self._add(item, child, lazy=members)
            if i % CHUNK == 0:
                await asyncio.sleep(0)  # thousands of partitions: keep the console responsive

    # -- history and leaving ---------------------------------------------------------------------
    def action_history(self, step: int) -> None:
        history = self.state.history
        if not history:
            self.notify("no earlier query in this session", timeout=2)
            return
        editor = self.editor
        if self._history_pos is None:
            self._history_draft = editor.text
            pos = len(history)
        else:
            pos = self._history_pos
        pos = max(0, min(len(history), pos + step))
        if pos < len(history) and history[pos] == editor.text.strip() \
                and 0 <= pos + step <= len(history):
            pos += step  # the entry shown already (the query just run): one further
        if pos == len(history):
            editor.text = self._history_draft
            self._history_pos = None
        else:
            editor.text = history[pos]
            self._history_pos = pos
        editor.move_cursor(editor.document.end)
        editor.focus()

    def action_back(self) -> None:
        self.dismiss()

    @on(TextArea.Changed, "#explain-editor")
    def _edited(self, event: TextArea.Changed) -> None:
        self.state.draft = event.text_area.text  # kept when the screen is left and re-opened

    def on_unmount(self) -> None:
        self._closing = True
        if self._ticker is not None:
            self._ticker.stop()
        if self.running:
            # leaving under a running EXPLAIN: stop it on the server; the worker closes the
            # connection when it returns
            done = self._done
            threading.Thread(target=self._cancel_then_close, args=(done,), daemon=True,
                             name="explain-cancel").start()
        else:
            self._close_session()

    def _cancel_then_close(self, done: threading.Event) -> None:
        while not done.is_set():
            session = self._session
            if session is not None and session.cancel():
                break
            done.wait(0.05)
        done.wait(30)
        self._close_session()


_KIND_TITLE = {
    "refused": "not explained",
    "error": "PostgreSQL said",
    "cancelled": "cancelled",
    "timeout": "timed out",
    "connection": "connection",
}


def _failure_text(message: ExplainFinished) -> Text:
    style = "bold yellow" if message.kind in ("cancelled", "timeout") else "bold red"
    text = Text()
    text.append(_KIND_TITLE.get(message.kind, "error") + "\n", style=style)
    text.append(message.error + "\n")
    if message.offset is not None:
        text.append("\nThe cursor in the editor is at the position PostgreSQL points to.",
                    style="dim")
    elif message.kind == "cancelled":
        text.append("\nThe statement was stopped on the server and its transaction rolled "
                    "back.", style="dim")
    return text


def _intro() -> Text:
    text = Text()
    text.append("For every partitioned table the query reads: ", style="dim")
    text.append("the verdict ", style="bold")
    text.append("(", style="dim")
    text.append("✓ pruned", style="green")
    text.append(" · ", style="dim")
    text.append("◐ a level kept all its partitions", style="yellow")
    text.append(" · ", style="dim")
    text.append("✗ every partition scanned", style="red")
    text.append("), the counts, the partitions scanned with their bounds, and why a level "
                "does not prune, with a rewrite where one exists.\n\n", style="dim")
    text.append("The plan (right) folds each Append over partitions into one line; enter or "
                "space expands it.", style="dim")
    return text
