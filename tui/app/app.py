"""The pgparts console: one App, a main screen with the live partition tree, and a command table.

Registering a screen (EXPLAIN, consolidation, plans, ...): add one `ConsoleCommand` to
`CONSOLE_COMMANDS` below with `screen="tui.app.your_module:factory"`. The module is imported the
first time the key is pressed; `factory(app)` must return a Screen (a Screen class taking the app
works), or None after telling the user why not (app.notify). From the app a screen can read:

- `app.target`, `app.config`, `app.read_only` (refuse writes when true; `writes=True` commands
  are already disabled then),
- `app.forest` (the last loaded `Forest`, or None before the first load), `app.findings`,
- `app.selected_node` (the `PartNode` under the tree cursor, or None),
- `app.refresh_catalog()` to re-read the catalog after changing the database.

Screens open their own connections in their own thread workers (`tui.core.connection.connect(
app.target, purpose=...)`); the catalog connection belongs to the catalog worker alone.
"""

from __future__ import annotations

import importlib
import time
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from ..core.catalog import Forest, PartNode, exact_row_count, load_forest, load_indexes
from ..core.config import Config
from ..core.connection import ConnectError, Target, connect
from ..core.errors import first_line as _first_line
from ..core.findings import FindingCounts, check_forest, findings_by_oid, subtree_counts
from ..core.plans.registry import kind_named
from ..core.plans.remedies import remedy_kinds
from .format import postgres_version
from .inflight import InFlight
from .messages import CatalogFailed, CatalogLoaded, FindingsReady, RowCountDone
from .node_actions import ActionsMenu, NodeActionCommands
from .plain import escape, highlight, plain
from .registry import ConsoleCommand, action_name, not_here, plan_commands

# The one table of commands. Footer, help screen (?), command palette (ctrl+p) and key bindings
# are all derived from it; keep ids stable (user keymaps refer to them).
CONSOLE_COMMANDS: list[ConsoleCommand] = [
    ConsoleCommand("filter", "slash", "filter", "Filter the tree by name (matches at any depth)",
                   action="filter", main_only=True),
    ConsoleCommand("refresh", "r", "refresh", "Re-read the catalog; keeps expansion and cursor",
                   action="refresh"),
    ConsoleCommand("sort", "s", "sort", "Sort partitions by bound, then size, then name",
                   action="cycle_sort", main_only=True, footer=False),
    ConsoleCommand("count-rows", "x", "count", "Count the rows of the selected node exactly "
                   "(count(*), under a statement timeout)", action="count_rows", main_only=True,
                   footer=False),
    ConsoleCommand("exact-sizes", "X", "exact sizes", "Toggle exact sizes (pg_table_size; takes "
                   "a brief lock per partition) vs catalog estimates", action="toggle_exact_sizes",
                   main_only=True, footer=False),
    *plan_commands(),
    ConsoleCommand("actions", "m", "actions", "Actions on the selected partition (a menu of the "
                   "plan kinds that apply to it or to its table; the chosen one's plan screen "
                   "opens with the partition, or it and a neighbour, filled in)",
                   screen="tui.app.node_actions:open_actions", main_only=True, footer=False),
    ConsoleCommand("fix", "f", "fix", "Fix the selected table's findings: preview the plan of "
                   "their remedy (" + ", ".join(k.replace("_", " ") for k in remedy_kinds())
                   + "), then apply",
                   screen="tui.app.fixes:open_fix", main_only=True,
                   # the details pane names the key beside each finding it fixes; the footer
                   # keeps its room for quit at 80 columns
                   footer=False),
    ConsoleCommand("maintain", "M", "maintain", "What pgparts maintain would do now for the "
                   "selected table's [policy] (or every policy): preview each plan, then apply",
                   screen="tui.app.maintain_screen:open_maintain", main_only=True, footer=False),
    ConsoleCommand("migrate", "w", "migrate", "Migrate a plain table to a partitioned one, "
                   "stage by stage (the wizard: pick it, choose key and layout, run each stage)",
                   screen="tui.app.migrate:open_wizard", main_only=True, footer=False),
    ConsoleCommand("journal", "j", "journal", "History of applied plans (the journal)",
                   screen="tui.app.journal_screen:JournalScreen"),
    ConsoleCommand("explain", "e", "explain", "EXPLAIN a query: partitions it scans, why, "
                   "and the plan", screen="tui.app.explain_screen:open_explain"),
    ConsoleCommand("auto-refresh", "a", "auto", "Toggle periodic refresh "
                   "([console] auto_refresh, 30s if unset)", action="toggle_auto_refresh",
                   footer=False),
    ConsoleCommand("reconnect", "ctrl+r", "reconnect", "Open a new connection and reload",
                   action="reconnect"),
    ConsoleCommand("help", "question_mark", "help", "Show the keys and what they do",
                   action="help"),
    ConsoleCommand("palette", "ctrl+p", "commands", "Open the command palette",
                   action="command_palette", footer=False),
    ConsoleCommand("quit", "q", "quit", "Quit pgparts", action="quit"),
]

DEFAULT_AUTO_REFRESH_SECONDS = 30.0
# The key of commands that have none until [console.keymap] gives them one: a key name no
# terminal sends, so the binding exists (with its id) without taking a key.
UNBOUND = "pgparts_unbound"


def known_binding_ids() -> set[str]:
    """Every binding id [console.keymap] can rebind: the commands', and the screens' own."""
    from ..core.plans.registry import PLAN_KINDS
    from .explain_screen import ExplainScreen
    from .journal_screen import JournalScreen
    from .main_screen import MainScreen
    from .maintain_screen import MaintainScreen
    from .migrate.screens import SCREENS as MIGRATE_SCREENS
    from .plan_progress import PlanProgressScreen
    from .plan_screen import plan_screen_class
    from .tree_view import PartitionTree

    classes = [ExplainScreen, JournalScreen, MainScreen, MaintainScreen, PlanProgressScreen,
               PartitionTree, ActionsMenu,
               *(plan_screen_class(k) for k in PLAN_KINDS), *MIGRATE_SCREENS]
    ids = {c.id for c in CONSOLE_COMMANDS if c.id != "palette"}
    for cls in classes:
        ids |= {b.id for b in cls.BINDINGS if isinstance(b, Binding) and b.id}
    return ids


def display_key(key: str) -> str:
    """'question_mark' -> '?', 'ctrl+t' -> '^t', 'f2' -> 'f2'."""
    names = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc"}
    if key.startswith("ctrl+") and len(key) == 6:
        return "^" + key[5:]
    return names.get(key, key)


class ConsoleCommands(Provider):
    """Every console command in the palette, with its key; write commands are marked in
    read-only mode, tree commands appear only on the main screen."""

    def _commands(self) -> list[tuple[ConsoleCommand, bool]]:
        app = self.app
        if not isinstance(app, PgpartsApp):
            return []
        # self.screen is the screen the palette was opened from
        return [(c, app.command_enabled(c)) for c in app.console_commands if c.id != "palette"
                if app.command_visible(c, self.screen)]

    def _display(self, cmd: ConsoleCommand, enabled: bool) -> tuple[str, str]:
        title = cmd.description.split(" (")[0]
        keyed = cmd.key or (isinstance(self.app, PgpartsApp) and cmd.id in self.app.keymap)
        shown = self.app.shown_key(cmd) if isinstance(self.app, PgpartsApp) else cmd.shown_key
        help_text = f"key {shown}" if keyed else "from the palette"
        if cmd.plan_kind:
            app = self.app
            node = app.selected_node if isinstance(app, PgpartsApp) else None
            forest = app.forest if isinstance(app, PgpartsApp) else None
            kind = kind_named(cmd.plan_kind)
            if node is not None and forest is not None:
                found = kind.target_for(forest, node)
                help_text += (f" · on {found[0].qualified}" if found is not None
                              else f" · {not_here(kind, forest, node)}")
        if not enabled:
            help_text += " · disabled in read-only mode"
        return title, help_text

    def _runner(self, cmd: ConsoleCommand):
        app = self.app

        async def run() -> None:
            await app.run_action(cmd.app_action)

        return run

    async def discover(self) -> Hits:
        for cmd, enabled in self._commands():
            title, help_text = self._display(cmd, enabled)
            yield DiscoveryHit(plain(title), self._runner(cmd), text=title,
                               help=escape(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd, enabled in self._commands():
            title, help_text = self._display(cmd, enabled)
            score = max(matcher.match(title), matcher.match(f"{cmd.id} {cmd.title}"))
            if score > 0:
                yield Hit(score, highlight(matcher, title), self._runner(cmd), text=title,
                          help=escape(help_text))


class PgpartsApp(App[int]):
    """The console. Database work runs in thread workers; results come back as messages."""

    TITLE = "pgparts"
    CSS_PATH = "pgparts.tcss"
    COMMANDS: ClassVar = App.COMMANDS | {ConsoleCommands, NodeActionCommands}
    # Bound on the app so the keys work on every screen that does not shadow them; the palette
    # key is Textual's own (App.COMMAND_PALETTE_BINDING).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(c.key or UNBOUND, c.app_action, c.title, show=c.footer and bool(c.key),
                key_display=c.key_display, id=c.id, priority=c.priority)
        for c in CONSOLE_COMMANDS
        if c.id != "palette"
    ]

    # Show the load time in the status line; off for reproducible screenshots and snapshots.
    show_load_time: bool = True
    # The time the catalog is read "as of" (health checks, ages, the weeks old enough to
    # consolidate); None: the server's clock. Set for snapshots of data laid out around a date.
    fixed_now: datetime | None = None

    def __init__(self, target: Target, config: Config, read_only: bool,
                 connection: psycopg.Connection | None = None) -> None:
        """`connection`: an open connection for the catalog worker (run_console connects before
        the app takes the terminal); without it the first load connects."""
        super().__init__()
        self.console_commands = list(CONSOLE_COMMANDS)
        self.target = target
        self.config = config
        self.read_only = read_only
        self.forest: Forest | None = None
        self.findings: list[Any] = []
        self.findings_by_oid: dict[int, list[Any]] = {}
        self.findings_error: str | None = None
        self.findings_loaded = False  # the findings match the current forest
        self.subtree_findings: dict[int, FindingCounts] = {}
        self.exact_rows: dict[int, tuple[int, float]] = {}  # oid -> (count, seconds)
        self.counting: set[int] = set()
        self.connection_error: str | None = None
        self.ever_connected = False
        self.catalog_loading = False
        self.catalog_loads = 0  # finished loads, successful or not (tests wait on it)
        self.last_load_seconds = 0.0
        self.exact_sizes = config.console.exact_sizes
        self.auto_refresh_seconds = config.console.auto_refresh_seconds
        self.auto_refresh_on = self.auto_refresh_seconds > 0
        self._reload_wanted = False
        self._reconnect_wanted = False
        self._auto_timer: Timer | None = None
        self._catalog_conn: psycopg.Connection | None = connection
        self._by_action: dict[tuple[str, str], ConsoleCommand] = {}
        self._inflight = InFlight()  # count(*) queries, cancelled when the console quits
        for cmd in self.console_commands:
            params = cmd.id if cmd.screen else ""
            self._by_action[(action_name(cmd.app_action), params)] = cmd
        self.sub_title = self._subtitle()
        # [console.keymap]: ids this console does not have are reported once it runs
        self.keymap = dict(config.console.keymap)
        self.keymap_unknown = sorted(set(self.keymap) - known_binding_ids())
        self.set_keymap({k: v for k, v in self.keymap.items()
                         if k not in self.keymap_unknown})

    def on_mount(self) -> None:
        if self.keymap_unknown:
            self.notify(f"[console.keymap]: no action with the id "
                        f"{', '.join(map(repr, self.keymap_unknown))}; the ids are listed in "
                        f"config.example.toml", severity="warning", timeout=10)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification is plain text: they carry table names and database messages, and
        a name like `t[/x]` read as markup would stop the console (see plain.py)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def shown_key(self, cmd: ConsoleCommand) -> str:
        """The command's key as the operator has it: rebound by [console.keymap] or its own."""
        keys = self.keymap.get(cmd.id)
        if keys:
            return " / ".join(display_key(k) for k in keys.split(","))
        return cmd.shown_key

    # -- composition ----------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        from .main_screen import MainScreen

        return MainScreen()

    def _subtitle(self) -> str:
        """'demo · PostgreSQL 18.1 · READ-ONLY': the target, its server once read, the mode."""
        parts = [self.target.describe()]
        if self.forest is not None:
            parts.append(f"PostgreSQL {postgres_version(self.forest.server_version)}")
        if self.read_only:
            parts.append("READ-ONLY")
        return " · ".join(parts)

    def on_unmount(self) -> None:
        self._inflight.cancel_all()  # quitting does not wait for a count(*) to finish
        conn, self._catalog_conn = self._catalog_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    # -- the command table ----------------------------------------------------------------------
    def command(self, command_id: str) -> ConsoleCommand:
        for cmd in self.console_commands:
            if cmd.id == command_id:
                return cmd
        raise KeyError(command_id)

    def command_enabled(self, cmd: ConsoleCommand) -> bool:
        return not (cmd.writes and self.read_only)

    def command_visible(self, cmd: ConsoleCommand, screen: Screen | None = None) -> bool:
        from .main_screen import MainScreen

        if cmd.main_only and not isinstance(screen or self.screen, MainScreen):
            return False
        return not (cmd.id == "reconnect" and self.connection_error is None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        param = str(parameters[0]) if parameters else ""
        cmd = self._by_action.get((action, param)) or self._by_action.get((action, ""))
        if cmd is None:
            return True
        if not self.command_visible(cmd):
            return False
        if not self.command_enabled(cmd):
            return None  # shown greyed out: the user learns the key exists but is refused
        return True

    def _refuse_if_read_only(self, cmd: ConsoleCommand) -> bool:
        if self.command_enabled(cmd):
            return False
        self.notify(f"{cmd.title}: changes the database; disabled in read-only mode",
                    severity="warning")
        return True

    async def action_open_screen(self, command_id: str) -> None:
        cmd = self.command(command_id)
        if self._refuse_if_read_only(cmd) or not cmd.screen:
            return
        module_name, _, attr = cmd.screen.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            self.notify(f"{cmd.title} is not available: {_first_line(exc)}", severity="error")
            return
        screen = factory(self, *cmd.args)
        if screen is not None:  # None: the factory told the user why not (e.g. wrong node)
            await self.push_screen(screen)

    def action_help(self) -> None:
        from .help_screen import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # -- the main screen's actions, dispatched from the app's bindings --------------------------
    def _main(self):
        """The main screen, also while a modal (help, palette) is above it."""
        from .main_screen import MainScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, MainScreen):
                return screen
        return None

    def action_filter(self) -> None:
        if (main := self._main()) is not None:
            main.open_filter()

    async def action_cycle_sort(self) -> None:
        if (main := self._main()) is not None:
            await main.cycle_sort()

    def action_count_rows(self) -> None:
        node = self.selected_node
        if node is None:
            self.notify("no table selected", severity="warning")
            return
        if node.oid in self.counting:
            return
        self.counting.add(node.oid)
        self._update_details()
        self._count_rows(node)

    def action_toggle_exact_sizes(self) -> None:
        self.exact_sizes = not self.exact_sizes
        self.notify("exact sizes (pg_table_size)" if self.exact_sizes else "catalog estimates")
        self.refresh_catalog()

    def action_toggle_auto_refresh(self) -> None:
        self.auto_refresh_on = not self.auto_refresh_on
        if self.auto_refresh_seconds <= 0:
            self.auto_refresh_seconds = DEFAULT_AUTO_REFRESH_SECONDS
        if self.auto_refresh_on:
            self.notify(f"auto-refresh every {self.auto_refresh_seconds:g}s")
            self._arm_auto_refresh()
        else:
            self.notify("auto-refresh off")
            if self._auto_timer is not None:
                self._auto_timer.stop()
                self._auto_timer = None
        self._update_status()

    def action_refresh(self) -> None:
        self.refresh_catalog()

    def action_reconnect(self) -> None:
        self._reconnect_wanted = True
        self.refresh_catalog()

    # -- state the screens read -----------------------------------------------------------------
    @property
    def selected_node(self) -> PartNode | None:
        main = self._main()
        oid = main.cursor_oid() if main is not None else None
        if oid is None or self.forest is None:
            return None
        return self.forest.nodes.get(oid)

    # -- loading the catalog --------------------------------------------------------------------
    def refresh_catalog(self) -> None:
        """Re-read the catalog in the background; a request during a load runs right after it."""
        if self.catalog_loading:
            self._reload_wanted = True
            return
        self.catalog_loading = True
        self._update_status()
        self._load_catalog(self.exact_sizes, self._reconnect_wanted)
        self._reconnect_wanted = False

    @work(thread=True, group="catalog", exclusive=True, exit_on_error=False,
          description="reading the partition catalog")
    def _load_catalog(self, exact_sizes: bool, reconnect: bool) -> None:
        started = time.perf_counter()
        conn = self._catalog_conn
        try:
            if conn is not None and (reconnect or conn.closed or conn.broken):
                self._catalog_conn = None
                conn.close()
                conn = None
            if conn is None:
                conn = connect(self.target, purpose="console")
                self._catalog_conn = conn
            # the tree first: its indexes are read once it is on screen
            forest = load_forest(conn, exact_sizes=exact_sizes, indexes=False)
            if self.fixed_now is not None:
                forest.loaded_at = self.fixed_now
        except ConnectError as exc:
            self.post_message(CatalogFailed(str(exc), lost=True))
            return
        except psycopg.OperationalError as exc:
            # the server went away or terminated us: drop the connection, offer reconnect
            self._catalog_conn = None
            if conn is not None:
                conn.close()
            self.post_message(CatalogFailed(f"connection lost: {_first_line(exc)}", lost=True))
            return
        except psycopg.Error as exc:
            self.post_message(CatalogFailed(f"catalog query failed: {_first_line(exc)}",
                                            lost=False))
            return
        self.post_message(CatalogLoaded(forest, time.perf_counter() - started))
        try:
            load_indexes(conn, forest)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._catalog_conn = None
                conn.close()
            self.post_message(FindingsReady(
                forest, [], f"reading the indexes failed: {_first_line(exc)}"))
            return
        findings, findings_error = self._check(forest)
        self.post_message(FindingsReady(forest, findings, findings_error))

    def _check(self, forest: Forest) -> tuple[list[Any], str | None]:
        try:
            return list(check_forest(forest, self.config.findings,
                                     policies=self.config.policies)), None
        except Exception as exc:  # a faulty check must not hide the tree
            return [], f"health checks failed: {_first_line(exc)}"

    @on(CatalogLoaded)
    async def _catalog_loaded(self, message: CatalogLoaded) -> None:
        self.ever_connected = True
        self.connection_error = None
        self.forest = message.forest
        self.sub_title = self._subtitle()
        self.last_load_seconds = message.seconds
        self.findings_loaded = False
        # an exact count belongs to the relation it was taken on: forget counts of dropped ones
        self.exact_rows = {o: v for o, v in self.exact_rows.items() if o in message.forest.nodes}
        self.refresh_bindings()
        for screen in self.screen_stack:
            handler = getattr(screen, "catalog_loaded", None)
            if handler is not None:
                await handler(message.forest)
        # only now: the tree shows the new forest when waiters see the load as finished
        self.catalog_loading = False
        self.catalog_loads += 1
        self._update_status()
        self._after_load()

    @on(FindingsReady)
    def _findings_ready(self, message: FindingsReady) -> None:
        if message.forest is not self.forest:
            return  # computed on a forest that a newer load replaced
        self._index_findings(message.findings)
        self.findings_error = message.error
        self.findings_loaded = True
        main = self._main()
        if main is not None:
            main.findings_changed()
        self._update_status()

    @on(CatalogFailed)
    def _catalog_failed(self, message: CatalogFailed) -> None:
        self.catalog_loading = False
        self.catalog_loads += 1
        if message.lost:
            self.connection_error = message.error
            self.refresh_bindings()
            self.notify(f"{message.error} — press ctrl+r to reconnect", severity="error",
                        timeout=8)
        else:
            self.notify(message.error, severity="error", timeout=8)
        main = self._main()
        if main is not None:
            main.catalog_failed(message)
        self._update_status()
        if not message.lost:
            self._after_load()
        elif self._reload_wanted:
            self._reload_wanted = False

    def _after_load(self) -> None:
        if self._reload_wanted:
            self._reload_wanted = False
            self.refresh_catalog()
            return
        self._arm_auto_refresh()

    def _arm_auto_refresh(self) -> None:
        """Non-overlapping polling: the next load is armed only after the previous one ended."""
        if self._auto_timer is not None:
            self._auto_timer.stop()
            self._auto_timer = None
        if self.auto_refresh_on and self.auto_refresh_seconds > 0 and not self.catalog_loading:
            self._auto_timer = self.set_timer(self.auto_refresh_seconds, self._auto_tick)

    def _auto_tick(self) -> None:
        self._auto_timer = None
        if self.auto_refresh_on and not self.catalog_loading and self.connection_error is None:
            self.refresh_catalog()

    def _index_findings(self, findings: list[Any]) -> None:
        self.findings = findings
        self.findings_by_oid = findings_by_oid(findings)
        # per node: the findings that concern it or anything below it, per severity
        forest = self.forest
        self.subtree_findings = subtree_counts(forest, findings) if forest is not None else {}

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """A bug in a worker must not leave the console waiting forever: report it in the UI."""
        worker = event.worker
        if event.state != WorkerState.ERROR:
            return
        error = f"internal error: {_first_line(worker.error) if worker.error else 'unknown'}"
        if worker.group == "catalog":
            self.post_message(CatalogFailed(error, lost=False))
        elif worker.group == "rows":
            self.counting.clear()
            self.notify(error, severity="error", timeout=8)
            self._update_details()

    # -- exact row counts -----------------------------------------------------------------------
    @work(thread=True, group="rows", exit_on_error=False, description="count(*)")
    def _count_rows(self, node: PartNode) -> None:
        started = time.perf_counter()
        try:
            with connect(self.target, purpose="count") as conn, self._inflight.track(conn):
                count = exact_row_count(
                    conn, node, timeout_seconds=self.config.explain.statement_timeout_seconds
                )
        except (ConnectError, psycopg.Error) as exc:
            self.post_message(RowCountDone(node.oid, None, _first_line(exc)))
            return
        self.post_message(RowCountDone(node.oid, count, None, time.perf_counter() - started))

    @on(RowCountDone)
    def _row_count_done(self, message: RowCountDone) -> None:
        self.counting.discard(message.oid)
        if message.count is None:
            self.notify(f"count(*) failed: {message.error}", severity="error", timeout=8)
        else:
            self.exact_rows[message.oid] = (message.count, message.seconds)
        main = self._main()
        if main is not None:
            main.row_counted(message.oid)

    # -- status ---------------------------------------------------------------------------------
    def _update_status(self) -> None:
        main = self._main()
        if main is not None:
            main.update_status()

    def _update_details(self) -> None:
        main = self._main()
        if main is not None:
            main.update_details()
