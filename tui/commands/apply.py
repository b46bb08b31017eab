"""Applying a plan from the terminal, for every plan kind: confirmation (typing the target's
name when the plan drops anything, as the console asks), progress on stderr, Ctrl-C and SIGTERM as
an orderly cancel, and the final report.

Ctrl-C or SIGTERM cancels on the server and rolls the running step back; what is committed
stays consistent and a re-run resumes. Every run is journaled from its start
(tui.core.plans.engine.journal); without a writable journal the plan does not start.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

from ..context import CliError, Context
from ..core.humanfmt import count, plural
from ..core.plans import Outcome, Plan, PlanRunner, Progress, RunResult, RunState
from ..core.plans.engine import journal


def confirm(plan: Plan) -> bool:
    """Ask on the terminal. A plan that drops anything (originals verified elsewhere too)
    takes the target's name typed in full; anything else takes 'yes'."""
    if plan.summary:
        print("\n".join(plan.summary), file=sys.stderr)
    for d in plan.facts.destroys:
        print(f"drops {d.text()}" + ("" if d.verified else ": its data is kept nowhere else"),
              file=sys.stderr)
    print(f"{plural(len(plan.steps), 'step')}; review them with --dry-run.", file=sys.stderr)
    typed = plan.facts.needs_typed_confirmation
    prompt = (f"Apply to {plan.target}? Type its name ({plan.target}) to go on: " if typed
              else f"Apply to {plan.target}? Type 'yes' to go on: ")
    try:
        answer = input(prompt)
    except EOFError:
        return False
    if typed:
        return answer.strip() == plan.target
    return answer.strip().lower() in ("yes", "y")


class StderrProgress:
    """One line per state change, and a throttled line of copy progress."""

    def __init__(self) -> None:
        self._last_key: tuple = ()
        self._last_rows_at = 0.0

    def __call__(self, p: Progress) -> None:
        key = (p.step_index, p.state, p.attempt)
        now = time.monotonic()
        if key != self._last_key:
            self._last_key = key
            if p.state == RunState.CHECKING:
                return
            if p.state == RunState.SKIPPED:
                print(f"pgparts: [{p.step_index}/{p.step_count}] {p.step_title}: already done",
                      file=sys.stderr, flush=True)
                return
            text = f"[{p.step_index}/{p.step_count}] {p.step_title}: {p.state}"
            if p.state == RunState.STEP_DONE:
                text = f"[{p.step_index}/{p.step_count}] {p.step_title}: done"
            elif p.message and p.state != RunState.RUNNING:
                text += f" ({p.message})"
            print(f"pgparts: {text}", file=sys.stderr, flush=True)
        elif p.state == RunState.RUNNING and p.rows_done and now - self._last_rows_at >= 2:
            self._last_rows_at = now
            eta = f", ETA {p.eta_seconds:.0f} s" if p.eta_seconds is not None else ""
            earlier = f" (+~{count(p.rows_skipped)} done earlier)" if p.rows_skipped else ""
            print(f"pgparts:   {count(p.rows_done)}/{count(p.rows_total)} rows{earlier}, "
                  f"{p.rate_rows:,.0f} rows/s{eta}, {p.elapsed:.0f} s elapsed", file=sys.stderr,
                  flush=True)


Reporter = Callable[[RunResult, Plan], list[str]]


def apply_plan(plan: Plan, ctx: Context, *, noun: str, report_lines: Reporter) -> int:
    """Run the plan, report, and return the exit status (0 ok, 1 failed, 130 cancelled,
    143 ended by SIGTERM)."""
    # a plan that cannot be journaled does not start: if it were killed, nothing would tell
    # what it had changed
    try:
        journal.check_writable()
    except journal.JournalError as exc:
        raise CliError(f"{exc}; nothing was applied (set PGPARTS_STATE_DIR to a writable "
                       f"directory)") from None
    runner = PlanRunner(ctx.target, plan, config=ctx.config.plans, progress=StderrProgress())
    box: dict[str, RunResult] = {}
    finished = threading.Event()

    def work() -> None:
        try:
            box["r"] = runner.run()
        finally:
            finished.set()

    # Ctrl-C (and SIGTERM, from a service manager or `kill`) only sets a flag: a
    # KeyboardInterrupt raised inside Event.wait can leave the event's internal lock held, and
    # the runner's finished.set() would then hang forever. Both stop the run the same orderly
    # way: cancel on the server, roll the running step back, journal the outcome.
    interrupted: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda num, _frame: interrupted.append(num))
                for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    threading.Thread(target=work, name="plan-runner", daemon=True).start()
    cancelling = False
    try:
        while not finished.wait(0.2):
            if interrupted and not cancelling:
                cancelling = True
                print("pgparts: cancelling: the running statement is cancelled on the server "
                      "and its step rolled back", file=sys.stderr, flush=True)
                threading.Thread(target=runner.cancel, daemon=True).start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = box.get("r")
    if result is None:  # the runner thread died: a bug, not a user error
        raise CliError("the plan runner stopped unexpectedly", status=1)
    status = report(result, plan, noun=noun, report_lines=report_lines)
    if result.outcome == Outcome.CANCELLED and interrupted[:1] == [signal.SIGTERM]:
        return 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
    return status


def report(result: RunResult, plan: Plan, *, noun: str, report_lines: Reporter) -> int:
    if result.journal_error:
        print(f"pgparts: warning: {result.journal_error}; the journal entry of this run is "
              f"incomplete", file=sys.stderr)
    if result.outcome == Outcome.BUSY:
        raise CliError(result.error)
    if result.ok:
        if not result.done_steps:
            print(f"nothing to do: every step was already done ({plural(len(result.steps), 'step')}"
                  f" of {plan.target})")
            return 0
        print("\n".join(report_lines(result, plan)))
        return 0
    label = "cancelled" if result.outcome == Outcome.CANCELLED else "failed"
    print(f"pgparts: {noun} {label}: {result.error}", file=sys.stderr)
    if result.state:
        print(f"pgparts: database state: {result.state}", file=sys.stderr)
    return 130 if result.outcome == Outcome.CANCELLED else 1
