"""The wizard's stages: where the migration stands, then the next stage's report (what it found),
its plan (what it will do and why, its SQL, its locks: the engine's description, drawn as the
plan screen draws it), confirmation, the progress screen, and its result; then the next stage.

Every stage is treated alike: `STAGES` gives its number, title and plan, `stage_report` what it
found, the plan's facts whether it drops something (then the name is typed). Where a migration
stands is read from the registry and the catalog (`standing`) each time the screen loads, so
opening the wizard on a migration begun earlier continues at its next stage. Abort (X) previews
the abort plan and runs it after confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import psycopg
from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from ...core.connection import ConnectError, connect
from ...core.errors import first_line
from ...core.humanfmt import plural
from ...core.migrate import MigrateError
from ...core.migrate.abort import abort_plan
from ...core.migrate.edit import layout_editable, layout_text
from ...core.migrate.migration import Prepared, wait_writers
from ...core.migrate.report import StageReport, blocking_before_start, stage_report
from ...core.migrate.spec import MigrationSpec
from ...core.migrate.stages import STAGES, standing
from ...core.names import display_name
from ...core.plans import Plan, RunResult
from ...core.plans.engine.runner import Hook
from ..footer_keys import FooterKeys
from ..inflight import InFlight
from ..plan_preview import PlanPreview, change_lines
from . import render
from .render import StageState

if TYPE_CHECKING:
    from ..app import PgpartsApp

WAIT_SECONDS = 60.0  # W: how long to wait for the sessions writing to the table


@dataclass
class StageLoaded(Message):
    generation: int
    state: StageState


@dataclass
class AbortPlanned(Message):
    preview: PlanPreview | None
    error: str = ""


@dataclass
class WritersWaited(Message):
    left: int
    error: str = ""


class MigrateWizardScreen(FooterKeys, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("A", "run_stage", "run stage", show=True, id="migrate-run",
                tooltip="run this stage (asks for confirmation)"),
        Binding("L", "edit_layout", "layout", show=True, id="migrate-layout",
                tooltip="edit the partitions (until Build; stage 4 records them)"),
        Binding("W", "wait_writers", "wait", show=True, id="migrate-wait",
                tooltip=f"wait up to {WAIT_SECONDS:g} s for the sessions writing to the table"),
        Binding("X", "abort", "abort", show=True, id="migrate-abort",
                tooltip="abort the migration: preview the abort plan, confirm, run it"),
        Binding("escape", "back", "back", show=True, id="migrate-wizard-back"),
    ]

    DEFAULT_CSS = """
    MigrateWizardScreen #wiz-head {
        height: auto;
        padding: 0 1;
    }
    MigrateWizardScreen #wiz-pane {
        height: 1fr;
        border: round $panel-lighten-2;
        padding: 0 1;
    }
    MigrateWizardScreen #wiz-actions {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, schema: str, name: str, *, prepared: Prepared | None = None) -> None:
        super().__init__()
        self.schema, self.table_name = schema, name
        self.table_display = display_name(schema, name)
        self.prepared = prepared  # a new migration's choices and counts (None: resume)
        self.state = StageState()
        self.planning = True
        self.loads = 0  # finished loads (tests wait on them)
        self.busy = ""  # what runs in the background besides loading (waiting, planning abort)
        self.ran_checks = False
        self.spec_override: MigrationSpec | None = None  # the layout edited here
        self.results: list[RenderableType] = []  # the last stage's (or abort's) result
        self.last_result: RunResult | None = None
        # passed to the PlanRunner of the next run (tests slow a run down with it)
        self.runner_hook: Hook | None = None
        self._generation = 0
        self._inflight = InFlight()

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="wiz-head")
        with VerticalScroll(id="wiz-pane"):
            yield Static(Text("reading where the migration stands…", style="italic"),
                         id="wiz-body")
        yield Static("", id="wiz-actions")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"migrate {self.table_display}"
        self.query_one("#wiz-pane").border_title = "stage"
        self.query_one("#wiz-pane").focus()
        self.reload()

    # -- loading ------------------------------------------------------------------------------
    def reload(self) -> None:
        self._generation += 1
        self.planning = True
        self._redraw()
        self._load(self._generation, self.ran_checks, self.spec_override)

    @work(thread=True, exclusive=True, group="migrate-stage", exit_on_error=False,
          description="reading where the migration stands")
    def _load(self, generation: int, ran_checks: bool,
              override: MigrationSpec | None) -> None:
        state = StageState()
        try:
            with connect(self.papp.target, purpose="migrate") as conn, \
                    self._inflight.track(conn):
                self._read(conn, state, ran_checks, override)
        except (ConnectError, MigrateError, psycopg.Error) as exc:
            state.error = first_line(exc)
        self.post_message(StageLoaded(generation, state))

    def _read(self, conn: psycopg.Connection, state: StageState, ran_checks: bool,
              override: MigrationSpec | None) -> None:
        st = standing(conn, self.schema, self.table_name)
        recorded = st.recorded
        state.spec = override or (recorded.spec if recorded else (
            self.prepared.spec if self.prepared else None))
        state.last_done = recorded.state if recorded else ""
        state.problems = list(st.problems)
        spec = state.spec
        if spec is None or state.problems:
            return
        # a stage that only reads (the checks of stage 1) leaves nothing in the catalog: it is
        # done once it ran here, or once a later stage recorded the migration (that stage ran
        # after it); at a new start it runs again
        state.done = {s.name: (bool(recorded) and s.done(conn, spec)) if s.applies
                      else (ran_checks or bool(recorded)) for s in STAGES}
        if layout_editable(conn, spec):
            state.layout = layout_text(conn, spec)
        fresh = recorded is None and not ran_checks
        # stage 8 is left out unless the migration chose it, as `pgparts migrate` does
        state.stage = next((s for s in STAGES if not state.done[s.name] and s.chosen(spec)
                            and (s.applies or fresh)), None)
        stage = state.stage
        if stage is None:
            return
        try:
            state.preview = PlanPreview.build(stage.plan(conn, spec), conn)
        except MigrateError as exc:
            state.unavailable = str(exc)
        prepared = self.prepared if recorded is None else None
        try:
            state.report = stage_report(conn, spec, stage.name, prepared)
        except MigrateError as exc:
            state.report = StageReport([f"could not count: {exc}"])
        # what the counts of a new migration found stops it before anything is recorded
        state.blocking = (blocking_before_start(prepared) if prepared is not None else []) \
            or list(state.report.blocking)

    @on(StageLoaded)
    def _loaded(self, message: StageLoaded) -> None:
        if message.generation != self._generation:
            return
        self.state = message.state
        self.planning = False
        self.loads += 1
        self._redraw()

    # -- drawing --------------------------------------------------------------------------------
    def body(self) -> list[RenderableType]:
        parts: list[RenderableType] = list(self.results)
        if self.planning:
            return [*parts, Text("reading where the migration stands and planning the next "
                                 "stage…", style="italic")]
        return parts + render.body(self.table_display, self.state)

    def run_refusal(self) -> str:
        """Why the stage cannot run now, or '' when it can."""
        s = self.state
        if self.papp.read_only:
            return "read-only mode (--read-only): stages cannot run"
        if self.planning:
            return "planning…"
        if self.busy:
            return self.busy
        if s.error or s.problems or s.spec is None:
            return "nothing can run"
        if s.stage is None:
            return "every stage is done"
        if s.blocking:
            return f"stage {s.stage.number} is stopped: see the top of the stage"
        if s.unavailable or s.preview is None:
            return f"stage {s.stage.number} cannot run: {s.unavailable or 'no plan'}"
        return ""

    def _redraw(self) -> None:
        self.query_one("#wiz-head", Static).update(render.head(self.table_display, self.state))
        self.query_one("#wiz-body", Static).update(Group(*self.body()))
        stage = self.state.stage
        if stage is not None:
            self.query_one("#wiz-pane").border_title = f"stage {stage.number}: {stage.title}"
        elif not self.planning:
            # after an abort (or the last stage) the stage it stood at is gone
            self.query_one("#wiz-pane").border_title = (
                "every stage done" if self.state.spec is not None and not self.state.error
                and not self.state.problems else "stage")
        reason = self.run_refusal()
        t = Text()
        if reason:
            t.append(reason, style="yellow" if self.papp.read_only else "dim")
        elif stage is not None:
            t.append(f"A: run stage {stage.number} ", style="bold")
            t.append("(asks for confirmation)", style="dim")
        if self.state.report.writers and not self.busy:
            t.append(f" · W: wait up to {WAIT_SECONDS:g} s for the writers", style="bold")
        if self.state.layout and not self.planning:
            t.append(" · L: edit the layout", style="dim")
        if self.state.spec is not None and self.state.last_done:
            t.append(" · X: abort", style="dim")
        self.query_one("#wiz-actions", Static).update(t)
        self.refresh_bindings()

    # -- keys ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_stage":
            return None if self.run_refusal() else True
        # wait and abort leave the footer when there is nothing to wait for or to abort
        if action == "wait_writers":
            return bool(self.state.report.writers) and (None if self.busy else True)
        if action == "edit_layout":
            return bool(self.state.layout) and (None if self.busy or self.planning else True)
        if action == "abort":
            if not self.state.last_done:
                return False
            return None if (self.papp.read_only or self.busy or self.planning) else True
        return True

    def action_run_stage(self) -> None:
        reason = self.run_refusal()
        if reason:
            self.notify(reason, severity="warning")
            return
        from ..confirm import ConfirmModal

        preview = self.state.preview
        stage = self.state.stage
        assert preview is not None and stage is not None
        notes = [f"{plural(len(preview.plan.steps), 'step')}; each runs under lock_timeout "
                 f"{self.papp.config.plans.lock_timeout_seconds:g} s with retries. Cancel (c) "
                 "at any time: the running step rolls back."]
        self.app.push_screen(
            ConfirmModal(f"Run stage {stage.number} ({stage.title}) on {preview.plan.target}?",
                         change_lines(preview), notes, yes_label="Run"),
            callback=lambda yes: self._confirmed(preview, bool(yes)))

    def _confirmed(self, preview: PlanPreview, yes: bool) -> None:
        if not yes:
            self.notify("not run", timeout=3)
            return
        if preview is not self.state.preview:
            self.notify("the stage was planned again while the dialog was open; review it",
                        severity="warning")
            return
        self._typed_then_run(preview, self._stage_ran)

    def _typed_then_run(self, preview: PlanPreview, after) -> None:
        """Run the plan; when its facts say it drops something, the name is typed first."""
        facts = preview.plan.facts
        if not facts.destroys:
            self._run(preview.plan, after)
            return
        from ..confirm import TypeNameModal

        gone = facts.destroys[0].name
        names = {d.name for d in facts.destroys} | {d.name.rsplit(".", 1)[-1]
                                                   for d in facts.destroys}
        body = ("What is dropped is kept nowhere else: this cannot be undone."
                if facts.loses_data else
                "Its rows were verified in the new table, but the drop cannot be undone.")
        self.app.push_screen(
            TypeNameModal(f"Drop {', '.join(d.name for d in facts.destroys)}?", body,
                          gone.rsplit(".", 1)[-1], accepted=tuple(names),
                          yes_label="Drop and run"),
            callback=lambda ok: self._run(preview.plan, after) if ok else self.notify(
                "not run", timeout=3))

    def _run(self, plan: Plan, after) -> None:
        from ..plan_progress import PlanProgressScreen

        progress = PlanProgressScreen(plan, hook=self.runner_hook, back_to="the wizard")
        self.app.push_screen(progress, callback=lambda _: after(plan, progress.result))

    def _stage_ran(self, plan: Plan, result: RunResult | None) -> None:
        stage = self.state.stage
        self.last_result = result
        self.results = [render.result_text(plan, result, stage)]
        if result is not None and result.ok and stage is not None and not stage.applies:
            self.ran_checks = True
        self.reload()

    # -- the layout ---------------------------------------------------------------------------
    def action_edit_layout(self) -> None:
        spec = self.state.spec
        if spec is None or not self.state.layout:
            return
        from .layout_edit import LayoutEditScreen

        self.app.push_screen(LayoutEditScreen(self.papp.target, spec, self.state.layout),
                             callback=self._layout_edited)

    def _layout_edited(self, edited: tuple[MigrationSpec, list[str]] | None) -> None:
        if edited is None:
            return
        spec, warnings = edited
        self.spec_override = spec
        t = Text(f"The layout changed: {plural(len(spec.partitions), 'partition')}; stage 4 "
                 "records it.", style="bold green")
        for w in warnings:
            t.append(f"\n  warning: {w}", style="yellow")
        t.append("\n")
        self.results = [t]
        self.reload()

    # -- waiting for writers ------------------------------------------------------------------
    def action_wait_writers(self) -> None:
        spec = self.state.spec
        if spec is None or not self.state.report.writers or self.busy:
            return
        self.busy = f"waiting up to {WAIT_SECONDS:g} s for the sessions writing to the table…"
        self._redraw()
        self._wait(spec)

    @work(thread=True, exclusive=True, group="migrate-wait", exit_on_error=False,
          description="waiting for writers")
    def _wait(self, spec: MigrationSpec) -> None:
        try:
            with connect(self.papp.target, purpose="migrate") as conn, \
                    self._inflight.track(conn):
                left = wait_writers(conn, spec, WAIT_SECONDS)
        except (ConnectError, MigrateError, psycopg.Error) as exc:
            self.post_message(WritersWaited(-1, first_line(exc)))
            return
        self.post_message(WritersWaited(left))

    @on(WritersWaited)
    def _waited(self, message: WritersWaited) -> None:
        self.busy = ""
        if message.error:
            self.notify(f"waiting failed: {message.error}", severity="error")
        elif message.left:
            self.notify(f"{message.left} session(s) still write to {self.table_display}: stop "
                        "them, or wait again", severity="warning", timeout=8)
        self.reload()

    # -- abort --------------------------------------------------------------------------------
    def action_abort(self) -> None:
        if not self.check_action("abort", ()):
            self.notify("nothing to abort: no migration of this table is recorded"
                        if not self.state.last_done else "not now", severity="warning")
            return
        self.busy = "planning the abort…"
        self._redraw()
        self._plan_abort()

    @work(thread=True, exclusive=True, group="migrate-abort", exit_on_error=False,
          description="planning the abort")
    def _plan_abort(self) -> None:
        try:
            with connect(self.papp.target, purpose="migrate") as conn, \
                    self._inflight.track(conn):
                preview = PlanPreview.build(abort_plan(conn, self.schema, self.table_name),
                                            conn)
        except (ConnectError, MigrateError, psycopg.Error) as exc:
            self.post_message(AbortPlanned(None, first_line(exc)))
            return
        self.post_message(AbortPlanned(preview))

    @on(AbortPlanned)
    def _abort_planned(self, message: AbortPlanned) -> None:
        self.busy = ""
        self._redraw()
        if message.preview is None:
            self.notify(f"abort: {message.error}", severity="error", timeout=8)
            return
        from ..confirm import ConfirmModal

        preview = message.preview
        lines = change_lines(preview) + [
            f"{s.title}: {s.explanation}" for s in preview.plan.steps]
        self.app.push_screen(
            ConfirmModal(f"Abort the migration of {self.table_display}?", lines,
                         ["The original table comes back as it was before the migration; "
                          "rows deleted as duplicates and seconds rewritten stay as they are."],
                         yes_label="Abort the migration"),
            callback=lambda yes: self._typed_then_run(preview, self._aborted) if yes
            else self.notify("not aborted", timeout=3))

    def _aborted(self, plan: Plan, result: RunResult | None) -> None:
        self.last_result = result
        if result is not None and result.ok:
            self.prepared = None  # the choices went with the record: a new start is a new form
            self.ran_checks = False
            self.spec_override = None
            self.results = [Text(f"Aborted: the migration of {self.table_display} is undone "
                                 "and forgotten.\n", style="bold green")]
        else:
            self.results = [render.result_text(plan, result, None)]
        self.reload()

    def action_back(self) -> None:
        self.dismiss()

    def on_unmount(self) -> None:
        self._inflight.cancel_all()
