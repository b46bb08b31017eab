"""Executing a plan on a connection of its own, safely for a production table.

- Every statement runs under `lock_timeout` (config, default 2 s). A lock timeout or a deadlock is
  retried with backoff, a bounded number of times: within a transaction the statement is wrapped
  in a SAVEPOINT so completed copy work is kept ("statement" retry), or the whole short transaction
  is rolled back and started again ("step" retry) so no lock is held while backing off.
- A "give-way" step (a swap that locks the tables referencing the parent, then the parent,
  while a writer deleting a referenced row locks them the other way round) waits for each lock
  at most `give_way_timeout`: a fraction of the server's deadlock_timeout, so it rolls back
  before the deadlock detector would abort the writer, which then waits no longer than that.
  It retries with a backoff scaled down as much, until its waits add up to what
  lock_timeout x (lock_retries + 1) allows any step.
- `statement_timeout` per step (swaps get a few seconds: an ATTACH that unexpectedly scans must
  not sit on the parent's lock), none for copies.
- A "one_query" step (model.py) goes to the server as one multi-statement query, BEGIN to
  COMMIT: one round trip under its locks instead of one per statement. Its hold
  (StepOutcome.hold_seconds) is timed by the server's clock read in the same query, before
  the hold_from statement and after the COMMIT.
- cancel() from another thread cancels the running statements on the server (libpq cancel
  request), on every session of a parallel group, and stops before the next statement; the
  open transactions roll back. One gate orders a cancel against every statement's start and
  every COMMIT: once cancel() has passed it, no statement starts and no step commits; a step
  that passed it into its COMMIT first is not signalled, finishes and is reported committed.
  A statement whose backend was still idle when the signal came (it ignores it) is signalled
  again until it ends. Any error a step meets after a cancel was asked for reads "cancelled".
- Progress (rows, bytes, rate, ETA, lock waits) goes to a callback; a monitor connection tells
  "waiting for a lock" from "working" while a statement runs.
- A session-level advisory lock on the plan's target table keeps two consoles from running plans
  on the same table at once.
- Steps whose done() check is true are skipped, so re-running an interrupted plan resumes it.
- Steps next to each other with the same `parallel` tag are independent of each other: with
  `plan.sessions` > 1 they run at once, each on whichever of that many connections is free
  (the plan's own and sessions - 1 more, opened for the group and closed after it), each in
  its own transaction as always. A failure lets the steps already running end (commit or roll
  back on their own) and starts no other; the run then fails as it would have. A cancel stops
  them all (above) and the run ends "cancelled".
  A hook sees the connection of the step it is called for (`backend_pid`).
- Every run is journaled (journal.py): a record when it starts, one per step as it starts and
  ends, one at the end, so a killed run leaves a true record. A plan whose journal cannot be
  written does not start.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import errors, pq, sql

from ...config import PlansConfig
from ...connection import ConnectError, Target, connect
from ...errors import first_line
from . import journal
from .model import Plan, Step, VerificationFailed

# High 32 bits of the advisory lock key: 'pgps'. The low 32 bits are the target table's oid.
ADVISORY_CLASS = 0x70677073


class RunState(StrEnum):
    """What the runner is doing (Progress.state). str-valued: compares and serializes as text."""

    STARTING = "starting"
    CHECKING = "checking"
    RUNNING = "running"
    WAITING = "waiting for lock"
    RETRYING = "retrying"
    VERIFYING = "verifying"
    STEP_DONE = "step done"
    SKIPPED = "skipped"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """A step's outcome (StepOutcome.status, the journal's steps[].status)."""

    PENDING = "pending"
    RUNNING = "running"  # in the journal while the step runs; a killed run stops here
    DONE = "done"  # committed by this run
    SKIPPED = "skipped"  # its done-check passed: already done by an earlier run
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the journal's reading of a step whose run was killed


class Outcome(StrEnum):
    """How a run ended (RunResult.outcome, the journal's outcome)."""

    RUNNING = "running"  # in the journal until the run ends
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUSY = "busy"  # another plan held the table: nothing was done
    INTERRUPTED = "interrupted"  # the journal's reading of a run whose process died


# How each step status reads for people (CLI progress, journal, console)
STEP_LABEL = {StepStatus.SKIPPED: "already done"}


def step_label(status: str) -> str:
    return STEP_LABEL.get(status, str(status))  # type: ignore[call-overload]


class PlanError(Exception):
    """A plan stopped. `state` says what the database holds now and what to do next."""

    def __init__(self, message: str, state: str = "") -> None:
        super().__init__(message)
        self.state = state


class PlanBusy(PlanError):
    """Another session runs a plan on the same table."""


class PlanCancelled(PlanError):
    """The operator cancelled."""


class LockGaveUp(PlanError):
    """A lock could not be had within lock_timeout after every retry."""


@dataclass
class Progress:
    """A snapshot for the progress display."""

    step_index: int  # 1-based; 0 before the first step
    step_count: int
    step_title: str
    state: RunState
    rows_done: int = 0
    rows_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    # the estimates of the steps found already done (not copied by this run, not 0% either)
    rows_skipped: int = 0
    bytes_skipped: int = 0
    elapsed: float = 0.0
    rate_rows: float = 0.0  # rows per second copied by this run
    eta_seconds: float | None = None
    lock_wait_seconds: float = 0.0  # waited on locks so far (all steps)
    attempt: int = 1
    message: str = ""


@dataclass
class StepOutcome:
    index: int
    title: str
    status: StepStatus = StepStatus.PENDING
    seconds: float = 0.0
    rows: int = 0  # rows copied and committed (0 when the step rolled back)
    attempts: int = 0
    lock_timeouts: int = 0
    lock_wait_seconds: float = 0.0
    verification: str = ""
    hold_seconds: float | None = None  # from the step's hold_from statement to COMMIT
    # its statements and COMMIT went to the server as one query (Step.one_query)
    one_query: bool = False
    bytes_moved: int = 0  # progress counted for its copies (taken back when it rolls back)
    started: float = 0.0  # time.monotonic() when it began (steps of a group overlap)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "title": self.title, "status": self.status,
            "seconds": round(self.seconds, 3), "rows": self.rows, "attempts": self.attempts,
            "lock_timeouts": self.lock_timeouts,
            "lock_wait_seconds": round(self.lock_wait_seconds, 3),
            "verification": self.verification,
            "hold_seconds": None if self.hold_seconds is None else round(self.hold_seconds, 4),
            "one_query": self.one_query,
        }


@dataclass
class RunResult:
    outcome: Outcome
    steps: list[StepOutcome]
    seconds: float
    error: str = ""
    state: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    journal_error: str = ""  # the journal could not be completed (the run itself went on)

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK

    @property
    def done_steps(self) -> list[StepOutcome]:
        """The steps this run committed."""
        return [o for o in self.steps if o.status == StepStatus.DONE]

    @property
    def already_done_steps(self) -> list[StepOutcome]:
        """The steps an earlier run had done (skipped by this one)."""
        return [o for o in self.steps if o.status == StepStatus.SKIPPED]

    @property
    def rows_copied(self) -> int:
        return sum(o.rows for o in self.done_steps)


ProgressCallback = Callable[[Progress], None]
# Test and UI hook: (event, step_index, statement_index, runner). Events: "step", "statement",
# "before_commit", "step_done". A one-query step has one "statement" event (1, before its query
# is sent) and no "before_commit": its COMMIT is part of that query.
Hook = Callable[[str, int, int, "PlanRunner"], None]

_RETRYABLE = (errors.LockNotAvailable, errors.DeadlockDetected)
_CANCELLED = "cancelled by the operator; the running step was rolled back"
# What the message of a step's server-side check (a DO block that raises) starts with
CHECK_PREFIX = "pgparts: "
# A one-query step's hold is timed by the server's clock, read in the query itself: before the
# hold_from statement and after the COMMIT (neither client nor network latency is in it)
_CLOCK = sql.SQL("SELECT pg_catalog.clock_timestamp()")
# A give-way step's lock timeout, as a fraction of deadlock_timeout: well below it, so the step
# gives up first even when the writer it collides with began waiting a few ms earlier (1 s by
# default: 200 ms, within the 250 ms a writer may stall)
GIVE_WAY_FRACTION = 0.2


def advisory_key(oid: int) -> int:
    return (ADVISORY_CLASS << 32) | (oid & 0xFFFFFFFF)


class PlanRunner:
    """Runs one plan. Create it, call run() (blocking); cancel() may come from another thread."""

    def __init__(
        self,
        target: Target,
        plan: Plan,
        *,
        config: PlansConfig | None = None,
        progress: ProgressCallback | None = None,
        hook: Hook | None = None,
        write_journal: bool = True,
        monitor: bool = True,
        backoff_base: float = 0.25,
    ) -> None:
        self.target = target
        self.plan = plan
        self.config = config or PlansConfig()
        self._progress_cb = progress
        self._hook = hook
        self._write_journal = write_journal
        self._monitor_enabled = monitor and progress is not None
        self._backoff_base = backoff_base
        self._cancel = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._workers: list[psycopg.Connection] = []  # a parallel group's extra connections
        self._lock = threading.Lock()
        # orders cancel() against each statement's start and each COMMIT (see the docstring)
        self._gate = threading.Lock()
        self._busy: dict[int, psycopg.Connection] = {}  # sessions running a statement
        self._emit_lock = threading.RLock()  # progress comes from several threads
        self._main_pid: int | None = None
        self._local = threading.local()  # the connection's pid of a parallel group's thread
        self.outcomes = [StepOutcome(i, s.title, one_query=s.one_query)
                         for i, s in enumerate(plan.steps, 1)]
        self._started = 0.0
        self._copy_started: float | None = None
        self._rows_done = 0
        self._bytes_done = 0
        self._rows_skipped = 0
        self._bytes_skipped = 0
        self._lock_wait = 0.0
        self._give_way: float | None = None
        self._current = Progress(0, len(plan.steps), "", RunState.STARTING)
        self._record: journal.RunRecord | None = None
        self._rows_total = sum(
            st.est_rows for s in plan.steps for st in s.statements if st.kind == "copy"
        )
        self._bytes_total = sum(
            st.est_bytes for s in plan.steps for st in s.statements if st.kind == "copy"
        )

    @property
    def backend_pid(self) -> int | None:
        """The server process of the plan's connection; in a parallel group's thread, of the
        connection that thread runs its step on (a hook kills the session of its step)."""
        return getattr(self._local, "pid", None) or self._main_pid

    @backend_pid.setter
    def backend_pid(self, pid: int | None) -> None:
        self._main_pid = pid

    # -- control from other threads ------------------------------------------------------------
    def cancel(self, *, patience: float = 30.0) -> None:
        """Stop: cancel the running statements on the server, then roll back. Blocks until
        every statement running when it was called has ended (at most `patience` s)."""
        with self._gate:
            self._cancel.set()
        end = time.monotonic() + patience
        while True:
            with self._gate:
                conns = list(self._busy.values())
            if not conns:
                return
            for conn in conns:
                # a backend idle when the signal came ignores it: a statement sent just
                # before the cancel can reach the server after it, so the busy ones are
                # signalled again (no new statement starts: no later one is hit)
                if not conn.closed:
                    with contextlib.suppress(Exception):
                        conn.cancel_safe(timeout=10.0)
            if time.monotonic() > end:
                return
            time.sleep(0.1)

    @contextlib.contextmanager
    def _statement(self, conn: psycopg.Connection) -> Any:
        """Around anything a step runs on the server: none starts after a cancel, and a
        cancel reaches those that run."""
        with self._gate:
            self._check_cancel()
            self._busy[id(conn)] = conn
        try:
            yield
        finally:
            with self._gate:
                self._busy.pop(id(conn), None)

    def _may_commit(self) -> None:
        """The last thing inside a step's transaction: past this, its COMMIT is not cancelled
        (cancel() does not signal a session outside _statement); after a cancel, it rolls
        back instead."""
        with self._gate:
            self._check_cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- progress --------------------------------------------------------------------------------
    def _emit(self, **changes: Any) -> None:
        with self._emit_lock:
            self._emit_locked(**changes)

    def _lock_timed_out(self, out: StepOutcome, t0: float) -> float:
        """Count a lock wait that ended in a timeout (since `t0`); the seconds waited."""
        waited = time.monotonic() - t0
        with self._emit_lock:
            self._lock_wait += waited
        out.lock_wait_seconds += waited
        out.lock_timeouts += 1
        return waited

    def _progress_add(self, rows: int, nbytes: int) -> None:
        with self._emit_lock:
            self._rows_done += rows
            self._bytes_done += nbytes

    def _emit_locked(self, **changes: Any) -> None:
        p = self._current
        for k, v in changes.items():
            setattr(p, k, v)
        p.elapsed = time.monotonic() - self._started if self._started else 0.0
        p.rows_done, p.rows_total = self._rows_done, self._rows_total
        p.bytes_done, p.bytes_total = self._bytes_done, self._bytes_total
        p.rows_skipped, p.bytes_skipped = self._rows_skipped, self._bytes_skipped
        p.lock_wait_seconds = self._lock_wait
        # rows a rolled-back step had copied are taken back: so is the rate they made
        p.rate_rows, p.eta_seconds = 0.0, None
        if self._copy_started is not None and self._rows_done > 0:
            spent = max(time.monotonic() - self._copy_started, 1e-6)
            p.rate_rows = self._rows_done / spent
            left = max(self._rows_total - self._rows_done - self._rows_skipped, 0)
            p.eta_seconds = left / p.rate_rows
        if self._progress_cb is not None:
            snapshot = Progress(**vars(p))
            with contextlib.suppress(Exception):  # a display error must not break the plan
                self._progress_cb(snapshot)

    def _call_hook(self, event: str, step: int, stmt: int) -> None:
        if self._hook is not None:
            self._hook(event, step, stmt, self)

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> RunResult:
        started_at = datetime.now(UTC)
        self._started = time.monotonic()
        result: RunResult
        db_user = ""
        monitor: _Monitor | None = None
        if self._write_journal:
            record = journal.RunRecord()
            try:
                record.start(self._journal_start(started_at))
            except journal.JournalError as exc:
                # a plan that cannot be journaled does not start: a killed run would leave no
                # trace of what it changed
                result = RunResult(Outcome.FAILED, self.outcomes, 0.0,
                                   f"{exc}; the plan was not started", "nothing was changed")
                self._emit(state=RunState.FAILED, message=result.error)
                return result
            self._record = record
        try:
            try:
                conn = self._connect()
            except ConnectError as exc:
                raise PlanError(str(exc), "nothing was changed") from None
            with self._lock:
                self._conn = conn
            self.backend_pid = conn.info.backend_pid
            db_user = conn.info.user
            try:
                self._take_advisory_lock(conn)
                if self._monitor_enabled:
                    monitor = _Monitor(self)
                    monitor.start()
                self._run_steps(conn)
                if self.plan.after is not None:
                    with contextlib.suppress(psycopg.Error):
                        self.plan.details.update(self.plan.after(conn))
            finally:
                # release the table's advisory lock before closing: a closed connection's
                # backend may live on for a moment, and the next plan on the table (pgparts fix
                # runs them back to back) would find the lock still held
                with contextlib.suppress(Exception):
                    if conn.info.transaction_status == 0:  # idle: not inside a failed step
                        conn.execute("SELECT pg_advisory_unlock(%s)",
                                     (advisory_key(self.plan.target_oid),))
                with contextlib.suppress(Exception):
                    conn.close()
                with self._lock:
                    self._conn = None
            result = RunResult(Outcome.OK, self.outcomes, time.monotonic() - self._started,
                               details=dict(self.plan.details))
            self._emit(state=RunState.DONE, message="plan complete")
        except PlanBusy as exc:
            result = RunResult(Outcome.BUSY, self.outcomes, time.monotonic() - self._started,
                               str(exc), exc.state)
        except PlanCancelled as exc:
            result = RunResult(Outcome.CANCELLED, self.outcomes,
                               time.monotonic() - self._started,
                               str(exc), self._state_after_failure())
            self._emit(state=RunState.CANCELLED, message=str(exc))
        except PlanError as exc:
            result = RunResult(Outcome.FAILED, self.outcomes, time.monotonic() - self._started,
                               str(exc), exc.state or self._state_after_failure())
            self._emit(state=RunState.FAILED, message=str(exc))
        finally:
            if monitor is not None:
                monitor.stop()
        result.details = {**self.plan.details, **result.details}
        if self._record is not None:
            self._record.end(self._journal_end(result, db_user))
            result.journal_error = self._record.error
        return result

    def _connect(self) -> psycopg.Connection:
        return connect(self.target,
                       lock_timeout=f"{int(self.config.lock_timeout_seconds * 1000)}ms",
                       statement_timeout="0", purpose="plan")

    def _take_advisory_lock(self, conn: psycopg.Connection) -> None:
        key = advisory_key(self.plan.target_oid)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if got and got[0]:
            return
        holder = conn.execute(
            "SELECT a.pid, a.application_name, a.usename, a.backend_start"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s"
            " AND l.granted LIMIT 1",
            (ADVISORY_CLASS, self.plan.target_oid & 0xFFFFFFFF),
        ).fetchone()
        who = (
            f" (backend pid {holder[0]}, {holder[1] or 'unknown application'}, user {holder[2]})"
            if holder else ""
        )
        raise PlanBusy(
            f"another plan is running on {self.plan.target}{who}; wait for it to finish",
            "nothing was changed",
        )

    def _run_steps(self, conn: psycopg.Connection) -> None:
        steps = self.plan.steps
        i = 1
        while i <= len(steps):
            tag = steps[i - 1].parallel
            end = i
            while end < len(steps) and tag and steps[end].parallel == tag:
                end += 1
            if end > i and self.plan.sessions > 1:
                self._run_parallel(conn, list(range(i, end + 1)))
                i = end + 1
                continue
            self._run_one(conn, i)
            i += 1

    def _run_one(self, conn: psycopg.Connection, i: int) -> None:
        """Step i (from 1) on `conn`: skipped when done, else run and journaled."""
        n = len(self.plan.steps)
        step = self.plan.steps[i - 1]
        outcome = self.outcomes[i - 1]
        self._check_cancel()
        self._emit(step_index=i, step_count=n, step_title=step.title,
                   state=RunState.CHECKING, attempt=1, message="")
        try:
            with self._statement(conn):
                already = step.is_done(conn)
        except (psycopg.errors.QueryCanceled, psycopg.OperationalError) as exc:
            self._raise_for(exc, None)
        except psycopg.Error as exc:
            raise PlanError(f"checking whether step '{step.title}' is done: "
                            f"{first_line(exc)}") from None
        if already:
            outcome.status = StepStatus.SKIPPED
            copies = [st for st in step.statements if st.kind == "copy"]
            with self._emit_lock:
                self._rows_skipped += sum(st.est_rows for st in copies)
                self._bytes_skipped += sum(st.est_bytes for st in copies)
            self._journal_step(outcome)
            self._emit(state=RunState.SKIPPED, message="already done")
            return
        outcome.status = StepStatus.RUNNING
        self._journal_step(outcome)
        self._call_hook("step", i, 0)
        t0 = outcome.started = time.monotonic()
        try:
            try:
                self._run_step(conn, i, step, outcome)
            except psycopg.Error as exc:  # from a check or a hook: not a statement of the plan
                if self.cancelled:
                    raise PlanCancelled(_CANCELLED) from None
                raise PlanError(first_line(exc)) from None
            except PlanError as exc:
                if self.cancelled and not isinstance(exc, PlanCancelled):
                    # an error caused by the cancel (a check's query cancelled, the session
                    # ended by it): the step stopped because it was asked to
                    raise PlanCancelled(_CANCELLED) from None
                raise
        except PlanError:
            outcome.status = StepStatus.CANCELLED if self.cancelled else StepStatus.FAILED
            outcome.seconds = time.monotonic() - t0
            if step.transactional:
                # rolled back: the rows it copied are gone with it
                self._progress_add(-outcome.rows, -outcome.bytes_moved)
                outcome.rows = outcome.bytes_moved = 0
            self._journal_step(outcome)
            raise
        outcome.seconds = time.monotonic() - t0
        outcome.status = StepStatus.DONE
        self._journal_step(outcome)
        self._emit(state=RunState.STEP_DONE, message=f"{step.title}: done")
        self._call_hook("step_done", i, 0)

    def _run_parallel(self, conn: psycopg.Connection, todo: list[int]) -> None:
        """Independent steps at once: the plan's connection and up to sessions - 1 more, each
        taking the next step not started. The first error stops the start of further steps;
        the steps running then end on their own, and the error is raised."""
        queue = list(todo)
        errors: list[BaseException] = []
        guard = threading.Lock()

        def work(c: psycopg.Connection, own: bool) -> None:
            if not own:
                self._local.pid = c.info.backend_pid
            while True:
                with guard:
                    if errors or not queue:
                        return
                    i = queue.pop(0)
                try:
                    self._run_one(c, i)
                except BaseException as exc:  # raised again in the plan's thread
                    with guard:
                        errors.append(exc)
                    return

        extra: list[psycopg.Connection] = []
        try:
            for _ in range(min(self.plan.sessions, len(todo)) - 1):
                try:
                    extra.append(self._connect())
                except ConnectError:
                    break  # fewer sessions: the steps still run, on those there are
            with self._lock:
                self._workers = extra
            threads = [threading.Thread(target=work, args=(c, False), daemon=True,
                                        name="plan-session") for c in extra]
            for t in threads:
                t.start()
            work(conn, True)
            for t in threads:
                t.join()
        finally:
            with self._lock:
                self._workers = []
            for c in extra:
                with contextlib.suppress(Exception):
                    c.close()
        if errors:
            raise errors[0]

    def _journal_step(self, outcome: StepOutcome) -> None:
        if self._record is not None:
            self._record.step(outcome.to_json())

    def _check_cancel(self) -> None:
        if self.cancelled:
            raise PlanCancelled("cancelled by the operator")

    def give_way_timeout(self, conn: psycopg.Connection) -> float:
        """The lock timeout of a give-way step: the configured lock_timeout, but at most
        GIVE_WAY_FRACTION of the server's deadlock_timeout (read once per run; a writer's own
        session has the same unless a superuser set it per role or database)."""
        if self._give_way is None:
            row = conn.execute("SELECT setting::pg_catalog.float8 FROM pg_catalog.pg_settings"
                               " WHERE name = 'deadlock_timeout'").fetchone()
            deadlock = float(row[0]) / 1000 if row else 1.0
            self._give_way = max(min(self.config.lock_timeout_seconds,
                                     deadlock * GIVE_WAY_FRACTION), 0.001)
        return self._give_way

    def _backoff(self, attempt: int, scale: float = 1.0) -> None:
        delay = min(self._backoff_base * (2 ** (attempt - 1)), 5.0) * scale
        delay *= 0.75 + random.random() * 0.5  # jitter: two waiting consoles do not lock-step
        end = time.monotonic() + delay
        while time.monotonic() < end:
            self._check_cancel()
            time.sleep(min(0.05, max(end - time.monotonic(), 0)))

    def _run_step(self, conn: psycopg.Connection, i: int, step: Step, out: StepOutcome) -> None:
        retries = self.config.lock_retries
        lock_timeout = self.config.lock_timeout_seconds
        short: float | None = None
        ratio = 1.0
        if step.retry == "give-way":
            short = self.give_way_timeout(conn)
            ratio = min(short / lock_timeout, 1.0)
            # as many short attempts as fit in the waits lock_timeout x (retries + 1) allows
            retries = max(int((retries + 1) / ratio + 1e-9) - 1, retries)
        attempt = 0
        while True:
            attempt += 1
            out.attempts = attempt
            self._emit(state=RunState.RUNNING, attempt=attempt)
            try:
                if step.one_query:
                    self._run_one_query(conn, i, step, out, short)
                elif step.transactional:
                    self._run_transaction(conn, i, step, out, short)
                else:
                    for j, st in enumerate(step.statements, 1):
                        self._run_statement(conn, i, j, st, out, savepoint=False,
                                            restart_step=step.retry == "step")
                return
            except _StepLockTimeout as exc:
                # "step" retry: the whole transaction was rolled back; copy progress with it
                self._progress_add(-out.rows, -out.bytes_moved)
                out.rows = out.bytes_moved = 0
                if attempt > retries:
                    raise LockGaveUp(self._gave_up_message(step, exc.waited, attempt, short)
                                     ) from None
                within = "the lock timeout" if short is None else \
                    f"{short * 1000:.0f} ms (giving way to writers)"
                self._emit(state=RunState.RETRYING,
                           message=f"lock not granted within {within}; retry {attempt}")
                # a give-way step's backoff grows per lock_timeout's worth of attempts and is
                # scaled down as much: its attempts wait as long in all as a step's would
                self._backoff(math.floor((attempt - 1) * ratio) + 1, ratio)

    def _gave_up_message(self, step: Step, waited: float, attempts: int,
                         short: float | None = None) -> str:
        locks = "; ".join(lk.describe() for lk in step.locks[:3]) or "its locks"
        within = f"{self.config.lock_timeout_seconds:g} s" if short is None else \
            f"{short:g} s each (giving way to writers before deadlock_timeout)"
        return (
            f"step '{step.title}' could not get {locks} within "
            f"{within} after {attempts} attempts; another "
            f"session holds a conflicting lock (see pg_locks / pg_stat_activity)"
        )

    def _run_transaction(self, conn: psycopg.Connection, i: int, step: Step,
                         out: StepOutcome, lock_timeout: float | None = None) -> None:
        hold_start: float | None = None
        try:
            with conn.transaction():
                if step.isolation != "read committed":
                    # must be the first statement of the transaction
                    conn.execute(sql.SQL("SET TRANSACTION ISOLATION LEVEL {}").format(
                        sql.SQL(step.isolation.upper())))
                if step.statement_timeout_seconds is not None:
                    conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                        sql.Literal(f"{int(step.statement_timeout_seconds * 1000)}ms")))
                if lock_timeout is not None:
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{max(int(lock_timeout * 1000), 1)}ms")))
                for j, st in enumerate(step.statements, 1):
                    if step.hold_from == j:
                        hold_start = time.monotonic()
                    self._run_statement(conn, i, j, st, out,
                                        savepoint=step.retry == "statement")
                if step.verify is not None:
                    self._check_cancel()
                    self._emit(state=RunState.VERIFYING, message=step.verify_note)
                    with self._statement(conn):
                        out.verification = step.verify(conn)
                self._check_cancel()
                self._call_hook("before_commit", i, 0)
                self._may_commit()
            if hold_start is not None:
                out.hold_seconds = time.monotonic() - hold_start
        except VerificationFailed as exc:
            raise PlanError(f"verification failed in step '{step.title}': {exc}") from None
        except (psycopg.errors.QueryCanceled, psycopg.OperationalError) as exc:
            self._raise_for(exc, step)

    def _run_one_query(self, conn: psycopg.Connection, i: int, step: Step, out: StepOutcome,
                       lock_timeout: float | None = None) -> None:
        """The step's transaction in one round trip: BEGIN, its statements and COMMIT as one
        multi-statement query on the autocommit connection. The server stops at the first
        error and aborts the transaction there (its locks are released then; the ROLLBACK sent
        afterwards only ends the aborted block)."""
        self._check_cancel()
        self._call_hook("statement", i, 1)
        self._check_cancel()
        begin: sql.Composable = sql.SQL("BEGIN")
        if step.isolation != "read committed":
            begin = sql.SQL("BEGIN ISOLATION LEVEL {}").format(sql.SQL(step.isolation.upper()))
        parts: list[sql.Composable] = [begin]
        if step.statement_timeout_seconds is not None:
            parts.append(sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(f"{int(step.statement_timeout_seconds * 1000)}ms")))
        if lock_timeout is not None:
            parts.append(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{max(int(lock_timeout * 1000), 1)}ms")))
        first = len(parts)  # the result index of the step's first statement
        probes: list[int] = []  # result indexes of the server's clock readings
        for j, st in enumerate(step.statements, 1):
            if step.hold_from == j:
                # the hold starts before the server starts this statement (a lock wait counts)
                probes.append(len(parts))
                parts.append(_CLOCK)
            parts.append(st.sql)
        parts.append(sql.SQL("COMMIT"))
        if probes:
            probes.append(len(parts))  # and ends after the COMMIT released the locks
            parts.append(_CLOCK)
        if any(st.kind == "copy" for st in step.statements) and self._copy_started is None:
            self._copy_started = time.monotonic()
        self._emit(state=RunState.RUNNING, message=f"{len(step.statements)} statements and "
                                                   f"the COMMIT sent as one query")
        t0 = time.monotonic()
        try:
            try:
                with self._statement(conn):
                    cur = conn.execute(sql.SQL(";\n").join(parts))
                results = [(cur.rowcount, cur.fetchone() if cur.description else None)]
                while cur.nextset():
                    results.append((cur.rowcount, cur.fetchone() if cur.description else None))
            except psycopg.errors.QueryCanceled:
                if conn.info.transaction_status == pq.TransactionStatus.INERROR:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                    raise
                # idle, not in the failed block: the cancel stopped either the COMMIT's own
                # work (deferred triggers: rolled back) or the clock reading after it
                # (committed). The server does not say which; the step's done-check does.
                if not self.cancelled or step.done is None or not self._committed(conn, step):
                    raise
                out.verification = "committed before the cancel reached it (its rows and " \
                                   "hold are not counted)"
                return
            except psycopg.Error:
                if conn.info.transaction_status == pq.TransactionStatus.INERROR:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
        except _RETRYABLE as exc:
            # the time includes the statements before the wait (a few ms): an upper bound
            waited = self._lock_timed_out(out, t0)
            raise _StepLockTimeout(waited) from exc
        except psycopg.errors.RaiseException as exc:
            text = exc.diag.message_primary or first_line(exc)
            if not text.startswith(CHECK_PREFIX):  # raised by something else (a trigger)
                raise PlanError(first_line(exc)) from None
            # a check of the step (a DO block) refused: nothing was committed
            raise PlanError(f"verification failed in step '{step.title}': "
                            f"{text.removeprefix(CHECK_PREFIX)}") from None
        except (psycopg.errors.QueryCanceled, psycopg.OperationalError) as exc:
            self._raise_for(exc, step)
        except psycopg.Error as exc:
            raise PlanError(f"{first_line(exc)}") from None
        if len(results) != len(parts):
            # cannot happen with one SQL statement per Statement; said rather than guessed
            out.verification = f"committed; {len(results)} results for {len(parts)} " \
                               f"statements: rows and hold not counted"
            return
        lines: list[str] = []
        mine = [r for k, r in enumerate(results[first:], first)
                if k not in probes and k < len(parts) - (2 if probes else 1)]
        for st, (count, _row) in zip(step.statements, mine, strict=True):
            if st.kind == "copy":
                moved = max(count, 0)
                nbytes = int(st.est_bytes * min(moved / st.est_rows, 1.0)) \
                    if st.est_rows else st.est_bytes
                self._progress_add(moved, nbytes)
                out.rows += moved
                out.bytes_moved += nbytes
            elif st.kind == "verify" and st.note:
                lines.append(f"{st.note} (checked by the server before the commit)")
        out.verification = "; ".join(lines)
        if probes:
            start, end = (results[k][1][0] if results[k][1] else None for k in probes)
            if start is not None and end is not None:
                out.hold_seconds = (end - start).total_seconds()

    @staticmethod
    def _committed(conn: psycopg.Connection, step: Step) -> bool:
        try:
            return step.is_done(conn)
        except psycopg.Error:
            return False  # not known: said rolled back, and a re-run's done-check decides

    def _run_statement(self, conn: psycopg.Connection, i: int, j: int, st: Any,
                       out: StepOutcome, *, savepoint: bool, restart_step: bool = False
                       ) -> None:
        retries = self.config.lock_retries
        attempt = 0
        while True:
            self._check_cancel()
            self._call_hook("statement", i, j)
            self._check_cancel()  # a cancel that came while the hook ran (the console's)
            attempt += 1
            if st.kind == "copy" and self._copy_started is None:
                self._copy_started = time.monotonic()
            self._emit(state=RunState.RUNNING, message=st.note or "")
            t0 = time.monotonic()
            try:
                with self._statement(conn):
                    if savepoint:
                        with conn.transaction():
                            cur = conn.execute(st.sql)
                    else:
                        cur = conn.execute(st.sql)
            except _RETRYABLE as exc:
                waited = self._lock_timed_out(out, t0)
                if not savepoint and (conn.info.transaction_status != 0 or restart_step):
                    # inside a transaction without a savepoint: only the whole step can retry;
                    # a non-transactional step with retry "step" starts again from its first
                    # statement (e.g. dropping what an interrupted CREATE INDEX CONCURRENTLY
                    # left before building again)
                    raise _StepLockTimeout(waited) from exc
                if attempt > retries:
                    raise LockGaveUp(self._gave_up_message_stmt(st, attempt)) from None
                self._emit(state=RunState.RETRYING,
                           message=f"lock not granted within the lock timeout; retry {attempt}")
                self._backoff(attempt)
                continue
            except (psycopg.errors.QueryCanceled, psycopg.OperationalError) as exc:
                self._raise_for(exc, None)
            except psycopg.Error as exc:
                raise PlanError(f"{first_line(exc)}") from None
            if st.check is not None:
                self._emit(state=RunState.VERIFYING, message=st.note or "")
                try:
                    # a statement returning no rows (UPDATE, DELETE) is checked on its row
                    # count: a data-modifying WITH would count them too, but PostgreSQL refuses
                    # it on a table with DO ALSO rules
                    row = cur.fetchone() if cur.description else (cur.rowcount,)
                    with self._statement(conn):  # a check may query
                        line = st.check(row, conn)
                except VerificationFailed as exc:
                    raise PlanError(f"verification failed: {exc}") from None
                out.verification = f"{out.verification}; {line}" if out.verification else line
            if st.kind == "copy":
                moved = max(cur.rowcount, 0)
                nbytes = (int(st.est_bytes * min(moved / st.est_rows, 1.0)) if st.est_rows
                          else st.est_bytes)
                self._progress_add(moved, nbytes)
                out.rows += moved
                out.bytes_moved += nbytes
                self._emit(state=RunState.RUNNING, message=st.note or "")
            return

    def _gave_up_message_stmt(self, st: Any, attempts: int) -> str:
        text = st.note or "a statement"
        return (
            f"{text}: lock not granted within {self.config.lock_timeout_seconds:g} s after "
            f"{attempts} attempts; another session holds a conflicting lock"
        )

    def _raise_for(self, exc: BaseException, step: Step | None) -> None:
        if isinstance(exc, _StepLockTimeout):
            raise exc
        if self.cancelled:
            raise PlanCancelled(_CANCELLED) from None
        if isinstance(exc, psycopg.errors.QueryCanceled):
            raise PlanError(f"statement timeout: {first_line(exc)}") from None
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None or sqlstate.startswith(("08", "57P")):
            # no answer from the server, or it ended the session (terminated, shut down)
            raise PlanError(f"lost the connection to the server: {first_line(exc)}") from None
        # the server refused a statement (e.g. "cannot ALTER TABLE ... pending trigger events",
        # an OperationalError class too): its own words, not a lost connection
        raise PlanError(first_line(exc)) from None

    # -- after a failure -------------------------------------------------------------------------
    def _state_after_failure(self) -> str:
        """Ask a fresh connection which steps are done: the runner's own may be dead."""
        try:
            conn = connect(self.target, purpose="plan-check")
        except ConnectError as exc:
            return f"could not check the database state: {exc}"
        try:
            done: list[int] = []
            for i, step in enumerate(self.plan.steps, 1):
                with contextlib.suppress(psycopg.Error):
                    if step.is_done(conn):
                        done.append(i)
            if self.plan.describe_state is not None:
                with contextlib.suppress(psycopg.Error):
                    return self.plan.describe_state(conn)
        finally:
            conn.close()
        total = len(self.plan.steps)
        # what this run saw commit is committed, whether or not the step has a done-check; a
        # step whose check holds but which this run did not commit may have had nothing to do
        # (an empty range to copy) rather than be committed earlier: it is not said to be
        committed = [o.index for o in self.outcomes if o.status == StepStatus.DONE]
        rest = [i for i in done if i not in committed]
        if not committed and not rest:
            return f"no step of the plan is committed ({total} to go); nothing was changed"
        said = [f"{_steps(committed)} of {total} {'is' if len(committed) == 1 else 'are'} "
                "committed by this run" if committed
                else f"no step of {total} was committed by this run"]
        if rest:
            said.append(f"{_steps(rest)} {'has' if len(rest) == 1 else 'have'} nothing left to "
                        "do (done earlier, or nothing to do there)")
        stopped = [o.index for o in self.outcomes
                   if o.status in (StepStatus.CANCELLED, StepStatus.FAILED)]
        # steps of a parallel group stop together: each is named
        if stopped and all(self.plan.steps[i - 1].transactional for i in stopped):
            said.append(f"{_steps(stopped)} {'was' if len(stopped) == 1 else 'were'} rolled "
                        "back")
        elif stopped:
            said.append(f"{_steps(stopped)} stopped before "
                        f"{'its' if len(stopped) == 1 else 'their'} end")
        return "; ".join(said) + "; run the same plan again to resume"

    def _journal_start(self, started_at: datetime) -> dict[str, Any]:
        try:
            os_user = getpass.getuser()
        except Exception:  # no passwd entry in some containers
            os_user = "?"
        return {
            "plan": self.plan.kind,
            "title": self.plan.title,
            "target": self.plan.target,
            "server": self.target.describe(),
            "started": started_at.isoformat(timespec="seconds"),
            "finished": None,
            "seconds": 0.0,
            "os_user": os_user,
            "db_user": "",
            "outcome": Outcome.RUNNING,
            "error": "",
            "state": "",
            "rows_copied": 0,
            "steps": [o.to_json() for o in self.outcomes],
            "details": dict(self.plan.details),
            # what the plan changes and drops, for every kind (the journal view reads these)
            "facts": self.plan.facts.to_json(),
        }

    def _journal_end(self, result: RunResult, db_user: str) -> dict[str, Any]:
        return {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(result.seconds, 3),
            "db_user": db_user,
            "outcome": result.outcome,
            "error": result.error,
            "state": result.state,
            "rows_copied": result.rows_copied,
            "steps": [o.to_json() for o in result.steps],
            "details": result.details,
        }


class _StepLockTimeout(Exception):
    def __init__(self, waited: float) -> None:
        super().__init__("lock timeout")
        self.waited = waited


class _Monitor:
    """Watches the plan's backend from a second connection: lock waits and ticking elapsed time."""

    def __init__(self, runner: PlanRunner, interval: float = 0.5) -> None:
        self.runner = runner
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plan-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            conn = connect(self.runner.target, purpose="plan-monitor")
        except ConnectError:
            return
        try:
            while not self._stop.wait(self.interval):
                pid = self.runner.backend_pid
                if pid is None:
                    continue
                row = conn.execute(
                    "SELECT wait_event_type, now() - query_start FROM pg_stat_activity"
                    " WHERE pid = %s", (pid,)
                ).fetchone()
                current = self.runner._current
                if row and row[0] == "Lock" and current.state == RunState.RUNNING:
                    self.runner._emit(state=RunState.WAITING)
                elif row and row[0] != "Lock" and current.state == RunState.WAITING:
                    self.runner._emit(state=RunState.RUNNING)
                else:
                    self.runner._emit()
        except psycopg.Error:
            pass
        finally:
            conn.close()


def _steps(nums: list[int]) -> str:
    return f"step {nums[0]}" if len(nums) == 1 else f"steps {_ranges(nums)}"


def _ranges(nums: list[int]) -> str:
    parts: list[str] = []
    start = prev = nums[0]
    for n in nums[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)
