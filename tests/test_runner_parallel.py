"""The plan runner's parallel steps (Step.parallel, Plan.sessions) on a real server: a group
runs on two sessions at once, progress and the journal add up, a kill inside one step of the
group fails the run with every other step whole, and the same plan run again completes it."""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg import sql

from tui.core.plans import Plan
from tui.core.plans.engine import journal
from tui.core.plans.engine.model import Statement, Step
from tui.core.plans.engine.runner import Outcome, PlanRunner, StepStatus

from .test_plan_support import FAST_PLANS, run_plan

PARTS = 4
ROWS = 50


def _table(i: int) -> sql.Identifier:
    return sql.Identifier("public", f"par {i}")


def _setup(db) -> None:
    db.execute("CREATE TABLE public.par_log (step int, pid int, t0 timestamptz,"
               " t1 timestamptz)")
    for i in range(1, PARTS + 1):
        db.execute(sql.SQL("CREATE TABLE {} (v int)").format(_table(i)))


def _filled(i: int):
    def done(conn: psycopg.Connection) -> bool:
        return conn.execute(sql.SQL("SELECT count(*) = {} FROM {}").format(
            sql.Literal(ROWS), _table(i))).fetchone()[0]
    return done


def _plan(sessions: int = 2) -> Plan:
    steps = [Step("before", "alone, first", [Statement(sql.SQL("SELECT 1"))])]
    for i in range(1, PARTS + 1):
        steps.append(Step(
            f"fill {i}", "one of the group",
            [Statement(sql.SQL("INSERT INTO {} SELECT generate_series(1, {})").format(
                _table(i), sql.Literal(ROWS)), "copy", est_rows=ROWS, est_bytes=ROWS * 10),
             # long enough for the other session to start its step meanwhile
             Statement(sql.SQL("SELECT pg_sleep(0.3)")),
             Statement(sql.SQL("INSERT INTO public.par_log VALUES ({}, pg_backend_pid(),"
                               " now(), clock_timestamp())").format(sql.Literal(i)))],
            done=_filled(i), parallel="fill"))
    steps.append(Step("after", "alone, last", [Statement(sql.SQL("SELECT 1"))]))
    return Plan(kind="test", title="parallel", target="public.par_log", target_oid=1,
                steps=steps, sessions=sessions)


def _sessions_left(db, wait: float = 5.0) -> int:
    end = time.monotonic() + wait
    while True:
        n = db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                     " AND application_name LIKE 'pgparts%' AND pid <> pg_backend_pid()")[0][0]
        if n == 0 or time.monotonic() > end:
            return n
        time.sleep(0.05)


def test_a_group_runs_on_two_sessions_and_adds_up(db, monkeypatch, tmp_path):
    monkeypatch.setenv("PGPARTS_STATE_DIR", str(tmp_path))
    _setup(db)
    seen: list = []
    result = run_plan(db, _plan(), progress=seen.append, write_journal=True)
    assert result.ok, result.error
    log = db.query("SELECT step, pid, t0, t1 FROM public.par_log ORDER BY step")
    assert [r[0] for r in log] == list(range(1, PARTS + 1))
    assert len({r[1] for r in log}) == 2  # two sessions
    # at least two steps ran at the same time
    assert any(a[2] < b[3] and b[2] < a[3] for a in log for b in log if a[0] < b[0])
    assert result.rows_copied == PARTS * ROWS
    assert max(p.rows_done for p in seen) == PARTS * ROWS == seen[-1].rows_total
    entry = journal.read(limit=1)[0]
    assert entry["outcome"] == "ok" and entry["rows_copied"] == PARTS * ROWS
    assert [s["status"] for s in entry["steps"]] == ["done"] * (PARTS + 2)
    # no connection left behind (a closed session leaves pg_stat_activity a moment later)
    assert _sessions_left(db) == 0


def test_one_session_runs_the_group_in_order(db):
    _setup(db)
    assert run_plan(db, _plan(sessions=1)).ok
    log = db.query("SELECT step, pid, t0, t1 FROM public.par_log ORDER BY step")
    assert len({r[1] for r in log}) == 1
    assert all(a[3] <= b[2] for a, b in zip(log, log[1:], strict=False))


def test_killed_inside_a_parallel_step_then_run_again(db):
    _setup(db)
    fired: list[tuple[int, int]] = []

    def hook(event: str, step: int, stmt: int, runner) -> None:
        # the second step of the group, after its rows went in, before its commit: the
        # session killed is the one that runs it
        if event == "statement" and (step, stmt) == (3, 3) and not fired:
            fired.append((step, runner.backend_pid))
            db.execute("SELECT pg_terminate_backend(%s)", (runner.backend_pid,))

    result = run_plan(db, _plan(), hook=hook)
    assert fired and result.outcome == Outcome.FAILED, result.error
    assert result.steps[2].status == StepStatus.FAILED and result.steps[2].rows == 0
    assert result.steps[-1].status == StepStatus.PENDING  # nothing after the group ran
    # every step of the group is whole or absent: the killed one rolled back
    counts = [db.query(sql.SQL("SELECT count(*) FROM {}").format(_table(i)))[0][0]
              for i in range(1, PARTS + 1)]
    assert counts[1] == 0 and set(counts) <= {0, ROWS}
    assert result.rows_copied == ROWS * counts.count(ROWS)
    again = run_plan(db, _plan())
    assert again.ok, again.error
    assert [o.status for o in again.steps[1:PARTS + 1]].count(StepStatus.SKIPPED) == \
        counts.count(ROWS)
    assert [db.query(sql.SQL("SELECT count(*) FROM {}").format(_table(i)))[0][0]
            for i in range(1, PARTS + 1)] == [ROWS] * PARTS


def test_cancel_stops_every_session(db):
    _setup(db)
    holder: list = []

    def hook(event: str, step: int, stmt: int, runner) -> None:
        if event == "statement" and step == 2 and stmt == 2 and not holder:
            holder.append(step)
            runner.cancel()

    result = run_plan(db, _plan(), hook=hook)
    assert result.outcome == Outcome.CANCELLED, result.error
    assert result.steps[-1].status == StepStatus.PENDING
    assert run_plan(db, _plan()).ok


# -- cancel while a group runs: every session stopped, nothing commits after it ---------------
SLOW = "pg_sleep(10)"  # never waited out: the cancel ends it


def _sleeping(db, n: int, what: str = SLOW, wait: float = 10.0) -> None:
    """Poll until `n` plan sessions run `what` (a statement, or a COMMIT)."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if db.query("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    " AND application_name LIKE 'pgparts%%' AND query LIKE %s",
                    (f"%{what}%",))[0][0] >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{n} sessions never ran {what}")


def _counts(db) -> list[int]:
    return [db.query(sql.SQL("SELECT count(*) FROM {}").format(_table(i)))[0][0]
            for i in range(1, PARTS + 1)]


def _cancel_plan(slow: bool) -> Plan:
    """Group of four: 1 is quick; 2 sleeps in a statement of its transaction; 3 sleeps in its
    done-check (the copy's check compares checksums: it can take a while); 4 is queued."""
    plan = _plan(sessions=3)
    fill2 = plan.steps[2]
    fill2.statements[1] = Statement(sql.SQL("SELECT " + (SLOW if slow else "1")))
    checked: list[bool] = []

    def slow_done(conn: psycopg.Connection) -> bool:
        if slow and not checked:
            checked.append(True)
            conn.execute("SELECT " + SLOW)
        return _filled(3)(conn)

    plan.steps[3].done = slow_done
    for s in (plan.steps[1], plan.steps[3], plan.steps[4]):
        s.statements[1] = Statement(sql.SQL("SELECT 1"))
    return plan


def test_cancel_in_a_group_stops_every_session_and_commits_nothing_after(db, monkeypatch,
                                                                           tmp_path):
    monkeypatch.setenv("PGPARTS_STATE_DIR", str(tmp_path))
    _setup(db)
    asked: list[float] = []

    def hook(event: str, step: int, stmt: int, runner) -> None:
        # step 1 is about to commit when the cancel comes (the window between the runner's
        # last look at the cancel flag and its COMMIT): it must roll back, not commit
        if event == "before_commit" and step == 2 and not asked:
            _sleeping(db, 2)  # step 2's statement and step 3's done-check
            asked.append(time.monotonic())
            runner.cancel()

    t0 = time.monotonic()
    result = run_plan(db, _cancel_plan(slow=True), hook=hook, write_journal=True)
    took = time.monotonic() - t0
    assert asked and result.outcome == Outcome.CANCELLED, result.error
    assert took < 8  # both 10 s sleeps were cancelled on the server
    statuses = [o.status for o in result.steps]
    assert statuses == [StepStatus.DONE, StepStatus.CANCELLED, StepStatus.CANCELLED,
                        StepStatus.PENDING, StepStatus.PENDING, StepStatus.PENDING]
    assert _counts(db) == [0] * PARTS and result.rows_copied == 0
    assert "step 1 of 6 is committed by this run; steps 2-3 were rolled back" in result.state, \
        result.state
    entry = journal.read(limit=1)[0]
    assert entry["outcome"] == "cancelled"
    assert [s["status"] for s in entry["steps"]] == [str(s) for s in statuses]
    assert _sessions_left(db) == 0
    again = run_plan(db, _cancel_plan(slow=False))
    assert again.ok, again.error
    assert _counts(db) == [ROWS] * PARTS


def test_a_step_in_its_commit_when_the_cancel_comes_is_committed(db):
    """A COMMIT that has begun is not cancelled (a deferred trigger makes it last): the step
    is committed and said to be; the other session's step rolls back."""
    _setup(db)
    db.execute("CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
               " 'BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END'")
    db.execute(sql.SQL("CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON {} DEFERRABLE"
                       " INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.v = 1)"
                       " EXECUTE FUNCTION public.slow_commit()").format(_table(1)))
    plan = _cancel_plan(slow=True)
    plan.steps[3].done = _filled(3)  # two steps run: 1 (its COMMIT slow) and 2 (asleep)
    plan.sessions = 2
    runner = PlanRunner(db.target, plan, config=FAST_PLANS, backoff_base=0.05,
                        write_journal=False)

    def cancel_during_commit() -> None:
        _sleeping(db, 1)
        _sleeping(db, 1, "COMMIT")
        runner.cancel()

    watcher = threading.Thread(target=cancel_during_commit, daemon=True)
    watcher.start()
    result = runner.run()
    watcher.join(5)
    assert result.outcome == Outcome.CANCELLED, result.error
    assert [o.status for o in result.steps[:4]] == [
        StepStatus.DONE, StepStatus.DONE, StepStatus.CANCELLED, StepStatus.PENDING]
    assert result.steps[1].rows == ROWS == result.rows_copied
    assert _counts(db) == [ROWS, 0, 0, 0]
    assert "steps 1-2 of 6 are committed by this run; step 3 was rolled back" in result.state, \
        result.state
