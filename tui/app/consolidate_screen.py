"""The consolidation screen: status per week of one parent, a selection, and the plan preview.

Opened with `c` on a RANGE-partitioned table or one of its partitions (or a leaf below one). The
status and the plan are read in a thread worker on a connection of its own; the preview is
rebuilt (debounced) whenever the selection changes. Apply asks for confirmation (what will
change, in plain words), then for the table's name when the plan drops the detached originals,
then shows the progress screen. In read-only mode apply is shown disabled, with the reason.

Below `NARROW_BELOW` columns the head takes two lines and the table its short forms: names
without the parent's prefix ('…_2026_08_02'), 'hash ×4' for a status and its partitions, rows in
thousands, bounds as start and span ('2026-08-02 +1w').
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import psycopg
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from ..core.catalog import Forest, PartNode
from ..core.config import state_dir
from ..core.connection import ConnectError, connect
from ..core.errors import first_line as _first_line
from ..core.humanfmt import plural
from ..core.plans.consolidate import (
    CONSOLIDATED,
    HASH_PARTITIONED,
    LIST_PARTITIONED,
    ConsolidationError,
    ConsolidationStatus,
    build_consolidation_plan,
    consolidation_status,
    select_weeks,
)
from ..core.plans.engine.runner import Hook
from .compact import start_and_span
from .footer_keys import FooterKeys
from .format import human_bytes, human_rows, thousands
from .inflight import InFlight
from .plan_preview import PlanPreview, change_lines, consequence_lines, render_plan

if TYPE_CHECKING:
    from .app import PgpartsApp

CANDIDATES = (HASH_PARTITIONED, LIST_PARTITIONED)
STATUS_STYLE = {
    HASH_PARTITIONED: "yellow",
    LIST_PARTITIONED: "yellow",
    CONSOLIDATED: "green",
}
DEBOUNCE_SECONDS = 0.25
NARROW_BELOW = 120  # columns


def consolidation_target(forest: Forest, node: PartNode) -> tuple[PartNode, PartNode | None] | None:
    """The parent to consolidate for a tree node, and the week to preselect (if any).

    The nearest RANGE-partitioned table at or above `node`; the week is the child of that parent
    on the way down to `node` (a week selected directly, or the week of a selected leaf)."""
    chain = [node]
    while chain[-1].parent_oid is not None:
        parent = forest.nodes.get(chain[-1].parent_oid)
        if parent is None:
            break
        chain.append(parent)
    for i, candidate in enumerate(chain):
        if candidate.is_partitioned and candidate.strategy == "range":
            return candidate, (chain[i - 1] if i > 0 else None)
    return None


def open_consolidation(app: PgpartsApp) -> Screen | None:
    """Factory for the command table: a screen for the node under the tree cursor, or None
    after telling the operator why not."""
    node = app.selected_node
    if node is None or app.forest is None:
        app.notify("consolidate: select a partitioned table or one of its weeks in the tree",
                   severity="warning")
        return None
    found = consolidation_target(app.forest, node)
    if found is None:
        app.notify(f"consolidate: {node.qualified} is not under a RANGE-partitioned table",
                   severity="warning")
        return None
    parent, week = found
    return ConsolidateScreen(parent, week)


@dataclass
class ConsolidationLoaded(Message):
    generation: int
    status: ConsolidationStatus | None
    selection: list[str]
    preview: PlanPreview | None
    error: str = ""
    seconds: float = 0.0


class ConsolidateScreen(FooterKeys, Screen):
    """Status, selection and plan preview for one parent table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_week", "select", show=True, id="consolidate-toggle",
                tooltip="add or remove the week under the cursor"),
        Binding("o", "default_selection", "old weeks", show=True, id="consolidate-default",
                tooltip="select the weeks older than [plans] older_than, oldest first, "
                        "[plans] batch of them"),
        Binding("k", "toggle_keep", "keep", show=True, id="consolidate-keep",
                tooltip="keep the original partitions detached instead of dropping them"),
        # not "a": a refused apply would fall through to the app's auto-refresh key
        Binding("A", "apply", "apply", show=True, id="consolidate-apply",
                tooltip="apply the plan (asks for confirmation)"),
        Binding("S", "copy_sql", "copy SQL", show=False, id="consolidate-copy-sql",
                tooltip="copy the plan as a reviewable .sql script to the clipboard"),
        Binding("W", "save_sql", "save SQL", show=False, id="consolidate-save-sql",
                tooltip="write the plan's .sql script to a file (the path is shown)"),
        Binding("escape", "back", "back", show=True),
    ]

    DEFAULT_CSS = """
    ConsolidateScreen #cons-head {
        height: auto;
        padding: 0 1;
    }
    ConsolidateScreen #cons-status {
        height: 1fr;
        min-height: 6;
        border: round $panel-lighten-2;
    }
    ConsolidateScreen #cons-status:focus {
        border: round $accent;
    }
    ConsolidateScreen #cons-preview-pane {
        height: 2fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    ConsolidateScreen #cons-preview-pane:focus-within {
        border: round $accent;
    }
    ConsolidateScreen #cons-actions {
        height: auto;
        padding: 0 1;
    }
    ConsolidateScreen #cons-apply {
        margin-right: 2;
    }
    ConsolidateScreen #cons-reason {
        width: 1fr;
    }
    ConsolidateScreen.narrow #cons-status {
        min-height: 4;
    }
    ConsolidateScreen.narrow #cons-preview-pane {
        height: 1fr;
    }
    """

    AUTO_FOCUS = "#cons-status"

    def __init__(self, parent: PartNode, week: PartNode | None = None) -> None:
        super().__init__()
        self.parent_node = parent
        self.table_name = parent.qualified
        self.preselect = week.qualified if week is not None else None
        self.status: ConsolidationStatus | None = None
        self.selected_weeks: list[str] | None = None  # None: not chosen yet (default or preselect)
        self.keep_detached: bool | None = None  # None: [plans] keep_detached
        self.preview: PlanPreview | None = None
        self.error = ""
        self.planning = True
        self.loads = 0  # finished loads (tests wait on it)
        self._generation = 0
        self._debounce: Timer | None = None
        # passed to the PlanRunner of the next apply (tests slow a run down with it)
        self.runner_hook: Hook | None = None
        self.narrow = False
        self._with_notes = True  # the note column: only when a row has a note
        self._inflight = InFlight()  # the status/plan query, cancelled when the screen goes

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    @property
    def keep(self) -> bool:
        if self.keep_detached is None:
            return self.papp.config.plans.keep_detached
        return self.keep_detached

    # -- composition -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="cons-head")
        yield DataTable(id="cons-status", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="cons-preview-pane"):
            yield Static("", id="cons-plan")
        with Horizontal(id="cons-actions"):
            yield Button("Apply…", id="cons-apply", variant="warning", disabled=True,
                         compact=True)
            yield Static("", id="cons-reason")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"consolidation · {self.table_name}"
        self._add_columns()
        self.query_one("#cons-preview-pane").border_title = "plan preview"
        self._render_head()
        self._render_actions()
        self.reload()

    def _add_columns(self) -> None:
        table = self.query_one("#cons-status", DataTable)
        table.clear(columns=True)
        table.add_column(" ", key="sel", width=1)
        table.add_column("partition", key="partition")
        table.add_column("status", key="status")
        if not self.narrow:  # narrow: the count is in the status ('hash ×4')
            table.add_column("parts", key="parts")
        table.add_column("rows", key="rows")
        table.add_column("size", key="size")
        table.add_column("bound", key="bound")
        if self._with_notes:
            table.add_column("", key="note")

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW_BELOW
        if narrow != self.narrow:
            self.narrow = narrow
            self.set_class(narrow, "narrow")
            self._add_columns()
            self._render_head()
            self._render_table()

    # -- loading ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the status and rebuild the plan for the current selection."""
        self._generation += 1
        self.planning = True
        self._render_head()
        self._render_preview()
        self._render_actions()
        self._load(self._generation, self.selected_weeks, self.keep, self.preselect,
                   self.papp.forest)

    def _reload_soon(self) -> None:
        """Debounced: several toggles in a row build one plan."""
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

    @work(thread=True, exclusive=True, group="consolidate-plan", exit_on_error=False,
          description="reading the consolidation status and planning")
    def _load(self, generation: int, selection: list[str] | None, keep: bool,
              preselect: str | None, forest: Forest | None) -> None:
        app = self.papp
        started = time.perf_counter()
        config = app.config.plans
        try:
            with connect(app.target, purpose="consolidate-preview") as conn, \
                    self._inflight.track(conn):
                # the catalog the console already read: no second load per preview
                status = consolidation_status(conn, self.table_name, forest)
                if selection is None:
                    if preselect is not None and any(
                            w.node.qualified == preselect and w.status in CANDIDATES
                            for w in status.weeks):
                        selection = [preselect]
                    else:
                        now = app.fixed_now or _loaded_at(conn)
                        chosen = select_weeks(status, now=now,
                                              older_than=config.older_than, batch=config.batch)
                        selection = [w.node.qualified for w in chosen]
                known = {w.node.qualified for w in status.weeks if w.status in CANDIDATES}
                selection = [s for s in selection if s in known]
                preview = None
                if selection:
                    plan = build_consolidation_plan(conn, self.table_name, config=config,
                                                    weeks=selection, keep_detached=keep,
                                                    forest=forest)
                    preview = PlanPreview.build(plan, conn)
        except (ConsolidationError, ConnectError) as exc:
            self.post_message(ConsolidationLoaded(generation, None, selection or [], None,
                                                  _first_line(exc)))
            return
        except psycopg.Error as exc:
            self.post_message(ConsolidationLoaded(generation, None, selection or [], None,
                                                  f"reading the status failed: "
                                                  f"{_first_line(exc)}"))
            return
        self.post_message(ConsolidationLoaded(generation, status, selection, preview,
                                              seconds=time.perf_counter() - started))

    @on(ConsolidationLoaded)
    def _loaded(self, message: ConsolidationLoaded) -> None:
        if message.generation != self._generation:
            return  # the selection changed while this was read
        self.planning = False
        self.loads += 1
        self.error = message.error
        if message.status is not None:
            self.status = message.status
            self.selected_weeks = message.selection
            self.preview = message.preview
        elif self.selected_weeks is None:
            self.selected_weeks = message.selection
        self._render_all()

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "consolidate-plan" or event.state != WorkerState.ERROR:
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
        text.append(self.table_name if self.narrow else f"Consolidation of {self.table_name}",
                    style="bold")
        st = self.status
        if st is not None:
            counts: dict[str, int] = {}
            for w in st.weeks:
                counts[w.status] = counts.get(w.status, 0) + 1
            text.append(f"  {plural(len(st.weeks), 'partition')}: ")
            text.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
            if st.detached:
                text.append(f" · {plural(len(st.detached), 'detached original')} left",
                            style="yellow")
            if not self.narrow:
                text.append("  (rows and sizes: catalog estimates)", style="dim")
        cfg = self.papp.config.plans
        sel = self.selected_weeks or []
        text.append("\n")
        text.append(f"{len(sel)} selected", style="bold")
        if not self.narrow:
            text.append(f" (space: toggle · o: weeks older than {_age(cfg.older_than)}, "
                        f"oldest first, batch of {cfg.batch})")
        text.append(" · originals: ")
        text.append("kept detached" if self.keep else "dropped after verification",
                    style="bold")
        text.append(" (k)")
        if self.planning:
            text.append(" · planning…", style="italic")
        if self.error:
            text.append(f"\n{self.error}", style="bold red")
        for warning in self._plan_warnings():
            text.append(f"\n{warning}", style="yellow")
        self.query_one("#cons-head", Static).update(text)

    def _plan_warnings(self) -> list[str]:
        """What the plan builder warns about (e.g. a selected week that holds no rows yet)."""
        if self.preview is None:
            return []
        return [str(w) for w in self.preview.plan.details.get("warnings", [])]

    def _render_table(self) -> None:
        st = self.status
        table = self.query_one("#cons-status", DataTable)
        cursor_key = None
        if table.row_count and table.cursor_row >= 0:
            try:
                cursor_key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            except Exception:
                cursor_key = None
        table.clear()
        if st is None:
            return
        # an empty note column still takes its padding: at 80 columns, with 'consolidated'
        # in the status column, those two cells brought in a horizontal scrollbar
        with_notes = any(w.pending for w in st.weeks) or bool(st.detached)
        if with_notes != self._with_notes:
            self._with_notes = with_notes
            self._add_columns()
        selected = set(self.selected_weeks or [])
        narrow = self.narrow
        prefix = st.parent.name
        for w in st.weeks:
            name = w.node.qualified
            mark = Text("✓", style="bold green") if name in selected else Text(" ")
            note = w.pending
            shown = name
            if narrow and w.node.schema == st.parent.schema and w.name.startswith(prefix) \
                    and len(w.name) > len(prefix) + 1 and shown == w.name:
                shown = "…" + w.name[len(prefix):]
            status = w.status
            parts = str(w.subpartitions) if w.subpartitions else ""
            if narrow:
                status = _short_status(w.status, w.subpartitions)
                parts = ""
            bound = w.bound
            if narrow and w.lower is not None and w.upper is not None:
                bound = start_and_span(w.lower, w.upper) or bound
            cells = [
                mark, Text(shown, style="bold" if name in selected else ""),
                Text(status, style=STATUS_STYLE.get(w.status, "dim")),
                Text(parts, justify="right"),
                Text(human_rows(w.rows) if narrow else thousands(w.rows), justify="right"),
                Text(human_bytes(w.bytes), justify="right"),
                bound, Text(note, style="yellow")]
            if narrow:
                del cells[3]
            if not with_notes:
                del cells[-1]
            table.add_row(*cells, key=name)
        for d in st.detached:
            cells = [Text(" "), Text(d.to_json()["table"], style="dim"),
                     Text("detached" if narrow else "DETACHED", style="dim"), "", "",
                     Text(human_bytes(d.bytes), justify="right"), "",
                     Text(f"original of {d.replacement}", style="dim")]
            if narrow:
                del cells[3]
            table.add_row(*cells, key=f"detached:{d.oid}")
        target = cursor_key or (self.selected_weeks[0] if self.selected_weeks else None)
        if target is not None:
            try:
                table.move_cursor(row=table.get_row_index(target), animate=False)
            except Exception:
                pass

    def _render_preview(self) -> None:
        static = self.query_one("#cons-plan", Static)
        if self.planning and self.status is not None:
            weeks = len(self.selected_weeks or [])
            static.update(Text(f"planning… ({weeks} selected)" if weeks else "planning…",
                               style="italic"))
        elif self.preview is not None:
            static.update(render_plan(self.preview, self.status))
        elif self.status is not None and not self.selected_weeks:
            if self.status.note:  # nothing to select: say why rather than ask to select
                text = Text(self.status.note[:1].upper() + self.status.note[1:] + ".",
                            style="bold")
            else:
                text = Text("No partition selected. ", style="bold")
                text.append("Select HASH_PARTITIONED or LIST_PARTITIONED weeks with space, or "
                            "press o for the weeks older than the threshold.")
            if self.status.detached:
                text.append("\nDetached originals left by an earlier run are dropped by the "
                            "next applied plan unless originals are kept (k).", style="yellow")
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
            return "apply is disabled: " + self.error
        if self.preview is None or not self.preview.plan.steps:
            return "nothing to apply: select at least one week"
        return ""

    def _render_actions(self) -> None:
        reason = self.apply_refusal()
        button = self.query_one("#cons-apply", Button)
        button.disabled = bool(reason)
        button.tooltip = reason or "apply the plan (asks for confirmation)"
        text = Text()
        if reason:
            text.append(reason, style="yellow" if self.papp.read_only else "dim")
        elif self.preview is not None:
            text.append("A: apply ", style="bold")
            text.append(f"({len(self.preview.plan.steps)} steps; asks for confirmation"
                        + (", then for the table's name before dropping the originals)"
                           if self.preview.drops_originals else ")"), style="dim")
        self.query_one("#cons-reason", Static).update(text)

    # -- keys ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply":
            # read-only: listed in the footer, greyed out; the reason is shown beside the button
            return None if self.apply_refusal() else True
        return True

    def _cursor_week(self) -> str | None:
        table = self.query_one("#cons-status", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return key

    def action_toggle_week(self) -> None:
        name = self._cursor_week()
        st = self.status
        if name is None or st is None:
            return
        week = next((w for w in st.weeks if w.node.qualified == name), None)
        if week is None or week.status not in CANDIDATES:
            what = week.status if week is not None else "a detached original"
            self.notify(f"{name} is {what}: only HASH_PARTITIONED or LIST_PARTITIONED "
                        f"partitions can be consolidated", severity="warning", timeout=4)
            return
        sel = list(self.selected_weeks or [])
        if name in sel:
            sel.remove(name)
        else:
            sel.append(name)
        order = {w.node.qualified: i for i, w in enumerate(st.weeks)}
        self.selected_weeks = sorted(sel, key=lambda s: order.get(s, 0))
        self.preview = None
        self._reload_soon()
        self._render_all()

    @on(DataTable.RowSelected, "#cons-status")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_toggle_week()

    def action_default_selection(self) -> None:
        self.selected_weeks = None
        self.preselect = None
        self.preview = None
        self._reload_soon()
        self._render_all()

    def action_toggle_keep(self) -> None:
        self.keep_detached = not self.keep
        self.preview = None
        self._reload_soon()
        self._render_all()

    @on(Button.Pressed, "#cons-apply")
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
        notes = consequence_lines(plan)
        notes.append(f"{len(plan.steps)} steps; each runs under lock_timeout "
                     f"{self.papp.config.plans.lock_timeout_seconds:g} s with retries. "
                     f"Cancel (c) at any time: the running step rolls back.")
        self.app.push_screen(
            ConfirmModal(f"Apply to {plan.target} on {self.papp.target.describe()}?",
                         change_lines(plan, self.status), notes),
            callback=lambda yes: self._confirmed(preview, bool(yes)))

    def _confirmed(self, preview: PlanPreview, yes: bool) -> None:
        if not yes:
            self.notify("not applied", timeout=3)
            return
        if preview is not self.preview:  # re-planned under the dialog: confirm the new plan
            self.notify("the plan changed while the dialog was open; review it and apply again",
                        severity="warning")
            return
        if preview.drops_originals:
            from .confirm import TypeNameModal

            parent = self.parent_node
            originals = len(preview.plan.details.get("weeks", [])) + len(
                preview.plan.details.get("dropped_leftovers", []))
            self.app.push_screen(
                TypeNameModal(
                    f"Drop {plural(originals, 'original partition')} of {parent.qualified}?",
                    "After the swap and a check that every row of each original is in its "
                    "consolidated partition, the detached originals are dropped: this cannot "
                    "be undone. Press escape and k to keep them detached instead.",
                    parent.name, accepted=(parent.qualified,)),
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
                self.action_default_selection()

        self.app.push_screen(progress, callback=done)

    def action_copy_sql(self) -> None:
        if self.preview is None:
            self.notify("no plan to copy: select at least one week", severity="warning")
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
            self.notify("no plan to save: select at least one week", severity="warning")
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


def _short_status(status: str, parts: int) -> str:
    """'hash ×4', 'list ×3', 'consolidated': the status column at 80 columns."""
    if status == HASH_PARTITIONED:
        return f"hash ×{parts}"
    if status == LIST_PARTITIONED:
        return f"list ×{parts}"
    return status.lower()


def _loaded_at(conn: psycopg.Connection):
    """The server's clock: weeks are old relative to the database's now, like the catalog's."""
    row = conn.execute("SELECT now()").fetchone()
    return row[0]


def _age(delta) -> str:
    days = delta.days
    if days % 30 == 0 and days >= 30:
        months = days // 30
        return f"{months} month{'s' if months != 1 else ''}"
    if days % 7 == 0 and days >= 7:
        weeks = days // 7
        return f"{weeks} week{'s' if weeks != 1 else ''}"
    return f"{days} day{'s' if days != 1 else ''}"
