"""The progress screen of a running plan: per-step status, rows, rate, ETA, lock waits, cancel.

The PlanRunner runs in a thread worker on its own connection. Its progress callback runs on that
thread and only posts messages (post_message is thread-safe); every widget update happens here,
on the event loop. Cancel asks the runner to cancel: the running statement is cancelled on the
server (a libpq cancel request, sent from another thread because it can take a moment) and the
running step's transaction rolls back. After a failure the screen says what the database holds
and what to do next (the plan's own description, read on a fresh connection by the runner).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from ..core.errors import first_line as _first_line
from ..core.plans import Outcome, Plan, PlanRunner, Progress, RunResult, RunState, StepStatus
from ..core.plans.engine.runner import Hook, step_label
from ..core.plans.registry import kind_named
from .footer_keys import COMPACT_BELOW, FooterKeys
from .format import bar, human_bytes, thousands

if TYPE_CHECKING:
    from .app import PgpartsApp


@dataclass
class PlanProgressed(Message):
    progress: Progress


@dataclass
class PlanFinished(Message):
    result: RunResult


# What a step shows for the runner's states while it is the current step.
_RUNNING_STATES = {
    RunState.CHECKING: "checking",
    RunState.RUNNING: "running",
    RunState.WAITING: "waiting for lock",
    RunState.RETRYING: "retrying",
    RunState.VERIFYING: "verifying",
    RunState.STEP_DONE: StepStatus.DONE,
    RunState.SKIPPED: StepStatus.SKIPPED,
    RunState.FAILED: StepStatus.FAILED,
    RunState.CANCELLED: StepStatus.CANCELLED,
}
STATUS_STYLE = {
    "pending": "dim",
    "checking": "cyan",
    "running": "bold cyan",
    "waiting for lock": "bold yellow",
    "retrying": "yellow",
    "verifying": "cyan",
    "done": "green",
    "skipped": "green dim",
    "failed": "bold red",
    "cancelled": "bold yellow",
}


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class StepsTable(DataTable):
    """The steps, keeping the one to show in view: the outcome that appears under the table
    when the plan ends makes it shorter after the step was scrolled to."""

    shown_row: int | None = None

    def show_row(self, row: int) -> None:
        self.shown_row = row
        self.move_cursor(row=row, column=0)  # the cursor itself is not drawn

    def on_resize(self, event: events.Resize) -> None:
        if self.shown_row is not None:
            self.call_after_refresh(self.move_cursor, row=self.shown_row, column=0)


class PlanProgressScreen(FooterKeys, Screen):
    """Runs `plan` once when shown; escape goes back when it has finished."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_plan", "cancel", show=True, id="plan-cancel",
                tooltip="cancel on the server; the running step rolls back"),
        Binding("escape", "back", "back", show=True),
        # q would quit the console under a running plan: refused here until the plan ends
        Binding("q", "quit_when_done", "quit", show=False),
    ]

    DEFAULT_CSS = """
    PlanProgressScreen #progress-head {
        height: auto;
        padding: 0 1;
    }
    PlanProgressScreen #progress-steps {
        height: 1fr;
        min-height: 5;
        border: round $panel-lighten-2;
    }
    PlanProgressScreen #progress-outcome-pane {
        height: auto;
        max-height: 50%;
        padding: 0 1;
    }
    """

    def __init__(self, plan: Plan, *, hook: Hook | None = None,
                 back_to: str = "the plan") -> None:
        super().__init__()
        self.plan = plan
        self.back_to = back_to  # what escape goes back to, as the last line says
        self.hook = hook
        self.runner: PlanRunner | None = None
        self.result: RunResult | None = None
        self.running = False
        self.cancelling = False
        self.progress: Progress | None = None
        self.step_status = ["pending"] * len(plan.steps)
        self.step_rows = [0] * len(plan.steps)
        # lock timeouts per step: (count, seconds), from increments of the runner's total
        self.step_lock_waits = [(0, 0.0)] * len(plan.steps)
        self._lock_wait_seen = 0.0
        self._rows_at_start: dict[int, int] = {}
        self._step_started: dict[int, float] = {}
        self._step_seconds: dict[int, float] = {}
        self._waiting_since: float | None = None
        self._started = 0.0

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="progress-head")
        table = StepsTable(id="progress-steps", cursor_type="none", zebra_stripes=True)
        yield table
        with VerticalScroll(id="progress-outcome-pane"):
            yield Static("", id="progress-outcome")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"applying: {self.plan.title}"
        table = self.query_one("#progress-steps", DataTable)
        # the step's title last: at 80 columns it is cut, the status and counts are not
        table.add_column("#", key="n")
        table.add_column("status", key="status", width=16)
        table.add_column("rows", key="rows", width=8)
        table.add_column("time", key="time", width=8)
        table.add_column("lock waits", key="locks", width=11)
        table.add_column("step", key="title")
        for i, step in enumerate(self.plan.steps, 1):
            table.add_row(str(i), Text("pending", style="dim"), "", "", "",
                          self._step_title(step.title), key=str(i))
        self.runner = PlanRunner(self.papp.target, self.plan, config=self.papp.config.plans,
                                 progress=self._on_progress, hook=self.hook)
        self.running = True
        self._started = time.monotonic()
        self._render_head()
        self.set_interval(0.5, self._tick)
        self._run(self.runner)

    @property
    def _wide(self) -> bool:
        return self.app.size.width >= COMPACT_BELOW

    def _step_title(self, title: str) -> Text:
        """At 80 columns the step column has about 20 cells: 'Build account_balanc' named no
        week. There the table's own name goes ('Build …_2026_08_02_consolidated'), as in the
        tree, so that the week shows before the cut. Text, not markup: names may hold [..]."""
        if self._wide:
            return Text(title)
        schema, _, name = self.plan.target.rpartition(".")
        if not name or '"' in self.plan.target:
            return Text(title)
        # the schema too: 'Primary key of legacy.payment_2019' was 'Primary key of lega'
        # on every row of a migration's stage 7
        qualified = rf"(?:{re.escape(schema)}\.)?" if schema else ""
        return Text(re.sub(rf"(?<![\w.]){qualified}{re.escape(name)}_", "…_", title))

    def on_resize(self, event: events.Resize) -> None:
        try:
            table = self.query_one("#progress-steps", DataTable)
        except NoMatches:
            return
        if table.row_count != len(self.plan.steps):
            return  # before on_mount added the steps
        for i, step in enumerate(self.plan.steps, 1):
            table.update_cell(str(i), "title", self._step_title(step.title))
        self._render_head()

    # -- the worker ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="plan", exit_on_error=False,
          description="applying a plan")
    def _run(self, runner: PlanRunner) -> None:
        result = runner.run()
        self.post_message(PlanFinished(result))

    def _on_progress(self, progress: Progress) -> None:
        """Called on the runner's thread (and its monitor's): post, never touch widgets."""
        self.post_message(PlanProgressed(progress))

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "plan" or event.state != WorkerState.ERROR:
            return
        # a bug in the runner: show it like a failed run; the runner rolled back what it could
        error = event.worker.error
        text = _first_line(error) if error else "unknown"
        self._finish(RunResult(Outcome.FAILED, list(self.runner.outcomes) if self.runner else [],
                               time.monotonic() - self._started,
                               f"internal error: {text}",
                               "unknown: check the plan screen before re-running"))

    # -- progress ------------------------------------------------------------------------------
    @on(PlanProgressed)
    def _progressed(self, message: PlanProgressed) -> None:
        if not self.running:
            return  # a late monitor tick after the end
        p = message.progress
        self.progress = p
        now = time.monotonic()
        i = p.step_index
        if p.state == RunState.WAITING:
            if self._waiting_since is None:
                self._waiting_since = now
        else:
            self._waiting_since = None
        if 1 <= i <= len(self.plan.steps):
            if i not in self._rows_at_start:
                self._rows_at_start[i] = p.rows_done
                self._step_started[i] = now
                self._show_step(i)
                # steps before this one that were still shown as running have finished
                for k in range(1, i):
                    if self.step_status[k - 1] not in ("done", "skipped", "failed", "cancelled"):
                        self._set_status(k, "done")
            status = _RUNNING_STATES.get(p.state)
            if status is not None:
                self._set_status(i, status)
            if status in ("done", "skipped"):
                self._step_seconds[i] = now - self._step_started.get(i, now)
            self.step_rows[i - 1] = max(p.rows_done - self._rows_at_start[i], 0)
            if p.lock_wait_seconds > self._lock_wait_seen + 1e-9:
                count, secs = self.step_lock_waits[i - 1]
                self.step_lock_waits[i - 1] = (count + 1,
                                               secs + p.lock_wait_seconds - self._lock_wait_seen)
                self._lock_wait_seen = p.lock_wait_seconds
            self._update_row(i)
        self._render_head()

    def _show_step(self, i: int) -> None:
        """Scroll step `i` into view: at 80x24 the table shows about five steps, and the one
        running (or the one that failed) was below them. The cursor itself is not drawn."""
        table = self.query_one("#progress-steps", StepsTable)
        if 1 <= i <= table.row_count:
            table.show_row(i - 1)

    def _set_status(self, i: int, status: str) -> None:
        self.step_status[i - 1] = status
        self._update_row(i)

    def _update_row(self, i: int) -> None:
        table = self.query_one("#progress-steps", DataTable)
        status = self.step_status[i - 1]
        key = str(i)
        table.update_cell(key, "status", Text(step_label(status),
                                              style=STATUS_STYLE.get(status, "")))
        rows = self.step_rows[i - 1]
        table.update_cell(key, "rows", thousands(rows) if rows else "")
        secs = self._step_seconds.get(i)
        if secs is None and status not in ("pending", "done", "skipped") and \
                i in self._step_started:
            secs = time.monotonic() - self._step_started[i]
        table.update_cell(key, "time", _seconds(secs) if secs is not None else "")
        count, waited = self.step_lock_waits[i - 1]
        live = ""
        if self._waiting_since is not None and self.progress is not None \
                and self.progress.step_index == i:
            live = f"wait {_seconds(time.monotonic() - self._waiting_since)}"
        shown = f"{count}× {_seconds(waited)}" if count else ""
        table.update_cell(key, "locks", " ".join(x for x in (shown, live) if x))

    def _tick(self) -> None:
        if not self.running:
            return
        if self.progress is not None and 1 <= self.progress.step_index <= len(self.plan.steps):
            self._update_row(self.progress.step_index)
        self._render_head()

    def _render_head(self) -> None:
        p = self.progress
        text = Text()
        text.append(f"{self.plan.title}\n", style="bold")
        elapsed = time.monotonic() - self._started if self.running else (
            self.result.seconds if self.result else 0.0)
        if self.result is not None:
            outcome = {Outcome.OK: ("done", "bold green"),
                       Outcome.CANCELLED: ("cancelled", "bold yellow"),
                       Outcome.BUSY: ("not started", "bold yellow")}.get(
                self.result.outcome, ("failed", "bold red"))
            text.append(outcome[0], style=outcome[1])
            text.append(f" after {_seconds(elapsed)}\n")
        elif self.cancelling:
            text.append("cancelling: the running statement is being cancelled on the server…\n",
                        style="bold yellow")
        elif p is None or p.step_index == 0:
            text.append("starting: connecting, taking the plan's advisory lock…\n", style="italic")
        else:
            text.append(f"step {p.step_index}/{p.step_count}: ", style="bold")
            text.append(p.step_title)
            text.append(f"  {p.state}", style=STATUS_STYLE.get(_RUNNING_STATES.get(p.state, ""),
                                                              ""))
            if p.attempt > 1:
                text.append(f" (attempt {p.attempt})", style="yellow")
            text.append("\n")
        if p is not None:
            # a plan that moves no rows (a check, a rename) has no "rows copied 0 of ~0" line
            if p.rows_total or p.rows_done or p.rows_skipped:
                self._rows_line(text, p)
            rate = f"{p.rate_rows:,.0f} rows/s" if p.rate_rows else "–"
            eta = _seconds(p.eta_seconds) if p.eta_seconds is not None and self.running \
                else "–"
            text.append(f"rate {rate} · ETA {eta} · elapsed {_seconds(elapsed)}")
            waits = p.lock_wait_seconds
            if self._waiting_since is not None and self.running:
                waiting = time.monotonic() - self._waiting_since
                text.append(" · ")
                text.append(f"waiting for a lock for {_seconds(waiting)}", style="bold yellow")
                text.append(f" (lock_timeout {self.papp.config.plans.lock_timeout_seconds:g} s)",
                            style="dim")
            text.append(f" · lock waits so far {_seconds(waits)}")
            if p.message and p.state != RunState.RUNNING and self.result is None:
                text.append(f"\n{p.message}", style="dim")
        else:
            text.append(f"elapsed {_seconds(elapsed)}")
        self.query_one("#progress-head", Static).update(text)


    def _rows_line(self, text: Text, p: Progress) -> None:
        total = p.rows_total
        # steps found already done count as done (their estimate), not as 0%
        done = p.rows_done + p.rows_skipped
        if self.result is not None and self.result.ok:
            done = max(done, total)  # every step done: estimates are not the last word
        text.append("rows copied ")
        text.append(f"{thousands(p.rows_done)} of ~{thousands(total)}", style="bold")
        if p.rows_skipped:
            text.append(f" (+~{thousands(p.rows_skipped)} done earlier)", style="dim")
        if total:
            pct = min(done / total, 1.0) * 100
            # at 80 columns a 20-cell bar pushed the bytes onto a line of their own
            text.append(f"  {bar(done, total, 20 if self._wide else 10)} {pct:.0f}%")
        if p.bytes_total:
            nbytes = min(p.bytes_done + p.bytes_skipped, p.bytes_total) \
                if done < total else p.bytes_total
            text.append(f"  ({human_bytes(nbytes)} of ~{human_bytes(p.bytes_total)})",
                        style="dim")
        text.append("\n")

    # -- the end -------------------------------------------------------------------------------
    @on(PlanFinished)
    def _finished(self, message: PlanFinished) -> None:
        self._finish(message.result)

    def _finish(self, result: RunResult) -> None:
        if self.result is not None:
            return
        self.result = result
        self.running = False
        self.cancelling = False
        self._waiting_since = None
        for out in result.steps:
            if 1 <= out.index <= len(self.plan.steps):
                self.step_status[out.index - 1] = out.status
                self.step_rows[out.index - 1] = out.rows
                self.step_lock_waits[out.index - 1] = (out.lock_timeouts, out.lock_wait_seconds)
                if out.status in ("done", "failed", "cancelled"):
                    self._step_seconds[out.index] = out.seconds
                self._update_row(out.index)
        self._render_head()
        self.query_one("#progress-outcome", Static).update(self._outcome_text(result))
        stopped = next((out.index for out in result.steps
                        if out.status in ("failed", "cancelled")), None)
        if stopped is not None:
            self._show_step(stopped)
        self.refresh_bindings()
        # the tree and the plan screen show the new layout
        self.papp.refresh_catalog()

    def _outcome_text(self, result: RunResult) -> Group:
        parts = []
        if result.ok:
            t = Text("Applied." if result.done_steps else
                     "Nothing to do: every step was already done.", style="bold green")
            try:
                report = kind_named(self.plan.kind).report(result, self.plan)[1:]
            except (LookupError, KeyError, TypeError, ValueError):
                report = []  # a plan of no registered kind: the steps say what happened
            for line in report:
                # the kinds' own hold lines ('longest ... hold', a move's '... held N ms (the
                # swap)'): said once below, for every kind alike
                if "ACCESS EXCLUSIVE" not in line:
                    t.append(f"\n{line.strip()}")
            holds = [o.hold_seconds for o in result.steps if o.hold_seconds is not None]
            if holds:
                t.append(f"\nLongest ACCESS EXCLUSIVE hold on {self.plan.target}: "
                         f"{max(holds) * 1000:.0f} ms.")
            verifications = [o.verification for o in result.steps if o.verification]
            for v in verifications:
                t.append(f"\n✓ {v}", style="green")
            t.append(f"\n\nescape: back to {self.back_to}", style="dim")
            parts.append(t)
            return Group(*parts)
        label = {Outcome.CANCELLED: "Cancelled",
                 Outcome.BUSY: "Not started"}.get(result.outcome, "Failed")
        failed = result.outcome == Outcome.FAILED
        t = Text(f"{label}: ", style="bold red" if failed else "bold yellow")
        t.append(result.error or "no reason given")
        parts.append(t)
        state = Text("\nDatabase state: ", style="bold")
        state.append(result.state or "unknown")
        parts.append(state)
        nxt = Text("\nWhat to do next: ", style="bold")
        if result.outcome == Outcome.BUSY:
            nxt.append("wait for the other plan to finish (see the journal, key j), then apply "
                       "again.")
        elif result.outcome == Outcome.CANCELLED:
            nxt.append("apply the same selection again to resume from the first step that "
                       "is not done.")
        else:
            nxt.append("fix the cause above (e.g. end the session holding the lock), then apply "
                       "the same selection again: steps already done are skipped. Every run is "
                       "in the journal (key j).")
        parts.append(nxt)
        parts.append(Text(f"\nescape: back to {self.back_to}", style="dim"))
        return Group(*parts)

    # -- keys ----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_plan":
            if not self.running:
                return False  # finished: nothing to cancel, the key leaves the footer
            return None if self.cancelling else True
        return True

    def action_cancel_plan(self) -> None:
        if not self.running or self.cancelling or self.runner is None:
            return
        self.cancelling = True
        self.refresh_bindings()
        self._render_head()
        runner = self.runner
        # cancel_safe() waits for the server's answer: never on the event loop
        threading.Thread(target=runner.cancel, name="plan-cancel", daemon=True).start()

    def action_back(self) -> None:
        if self.running:
            self.notify("the plan is running: press c to cancel it first (the running step "
                        "is rolled back)", severity="warning")
            return
        self.dismiss()

    def action_quit_when_done(self) -> None:
        if self.running:
            self.action_back()  # says why not
            return
        self.app.exit()

    def on_unmount(self) -> None:
        # the console is closing under a running plan: stop it cleanly rather than orphan it
        if self.running and self.runner is not None:
            threading.Thread(target=self.runner.cancel, daemon=True).start()
