"""A one-query step (Step.one_query): its transaction, BEGIN to COMMIT, reaches the server as
one query. What the runner reports for it must be what happened: rows counted per statement,
the server-side checks as the verification line, the hold timed by the server's clock from the
hold_from statement to the COMMIT, and a failed check or an error anywhere leaves nothing
committed (and the connection usable)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import sql

from tui.core.config import PlansConfig
from tui.core.plans import Outcome, PlanRunner
from tui.core.plans.engine.model import Plan, Statement, Step

PLANS = PlansConfig(lock_timeout_seconds=0.3, lock_retries=1)
T = sql.Identifier("public", "t")


def _plan(conn: psycopg.Connection, *steps: Step) -> Plan:
    oid = conn.execute("SELECT 'public.t'::regclass::oid").fetchone()[0]
    return Plan("test", "one query", "public.t", oid, list(steps))


def _run(db, plan: Plan):
    return PlanRunner(db.target, plan, config=PLANS, write_journal=False,
                      backoff_base=0.02).run()


def _do_unless(cond: str, message: str) -> sql.Composed:
    body = f"BEGIN IF NOT ({cond}) THEN RAISE EXCEPTION '%', '{message}'; END IF; END"
    return sql.SQL("DO {}").format(sql.Literal(body))


def test_rows_checks_and_the_hold_are_what_the_server_did(db):
    with db.connect() as conn:
        conn.execute("CREATE TABLE public.t (x int)")
        step = Step(
            "Swap-like", "", retry="give-way", one_query=True, hold_from=2,
            statements=[
                # before the hold: the server's own time here is not part of it
                Statement(sql.SQL("SELECT pg_catalog.pg_sleep(0.4)")),
                Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(T), "lock"),
                Statement(sql.SQL("INSERT INTO {} SELECT pg_catalog.generate_series(1, 5)")
                          .format(T), "copy"),
                Statement(sql.SQL("DELETE FROM {} WHERE x > 3").format(T), "copy"),
                Statement(sql.SQL("SELECT pg_catalog.pg_sleep(0.05)")),
                Statement(_do_unless("(SELECT count(*) = 3 FROM public.t)",
                                     "pgparts: not three"), "verify", note="three rows"),
            ])
        plan = _plan(conn, step)
        assert plan.to_json(conn)["steps"][0]["one_query"] is True
        script = plan.to_sql(conn)
    assert "sends this transaction's statements and its COMMIT as one query" in script
    result = _run(db, plan)
    assert result.ok, result.error
    out = result.steps[0]
    assert out.one_query and out.to_json()["one_query"] is True
    assert out.attempts == 1 and out.rows == 5 + 2  # inserted, then deleted
    assert out.verification == "three rows (checked by the server before the commit)"
    assert out.seconds >= 0.45
    assert 0.05 <= out.hold_seconds < 0.4, out.hold_seconds  # from the LOCK, not the query
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.t").fetchone()[0] == 3


def test_a_failed_check_or_error_commits_nothing(db):
    with db.connect() as conn:
        conn.execute("CREATE TABLE public.t (x int)")

        def step(raised: str) -> Step:
            return Step("Checked", "", retry="give-way", one_query=True, statements=[
                Statement(sql.SQL("INSERT INTO {} VALUES (1)").format(T), "copy"),
                Statement(sql.SQL("CREATE TABLE public.u (y int)")),
                Statement(_do_unless("false", raised), "verify", note="never"),
                Statement(sql.SQL("INSERT INTO {} VALUES (2)").format(T), "copy")])

        refused, other = _plan(conn, step("pgparts: the log is not empty")), \
            _plan(conn, step("a trigger said no"))
    result = _run(db, refused)
    assert result.outcome == Outcome.FAILED
    assert result.error == "verification failed in step 'Checked': the log is not empty"
    result = _run(db, other)
    assert result.outcome == Outcome.FAILED
    assert "verification" not in result.error and "a trigger said no" in result.error
    assert result.steps[0].rows == 0 and result.steps[0].verification == ""
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.t").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('public.u')").fetchone()[0] is None


def test_a_server_refusal_is_not_called_a_lost_connection(db):
    """Class 55 errors (object not in prerequisite state: pending trigger events, a sequence's
    currval) are psycopg OperationalErrors too; the message is the server's, the connection
    is fine."""
    with db.connect() as conn:
        conn.execute("CREATE TABLE public.t (x int); CREATE SEQUENCE public.s")
        plan = _plan(conn, Step("Refused", "", retry="give-way", one_query=True, statements=[
            Statement(sql.SQL("INSERT INTO {} VALUES (1)").format(T), "copy"),
            Statement(sql.SQL("SELECT pg_catalog.currval('public.s')"))]))
    result = _run(db, plan)
    assert result.outcome == Outcome.FAILED
    assert "lost the connection" not in result.error
    assert "currval of sequence" in result.error and "not yet defined" in result.error


def test_python_checks_and_savepoint_retries_are_refused():
    with pytest.raises(ValueError, match="on the server"):
        Step("x", "", retry="give-way", one_query=True, statements=[
            Statement(sql.SQL("SELECT 1"), "verify", check=lambda row, c: "ok")])
    with pytest.raises(ValueError, match="retried as a whole"):
        Step("x", "", one_query=True, statements=[Statement(sql.SQL("SELECT 1"))])


def test_cancel_during_its_commit_work_is_rolled_back_and_said_so(db):
    """A cancel that stops the COMMIT's own work (a deferred trigger) leaves the connection
    idle, as one that stops the clock reading after a COMMIT that went through does: the
    step's done-check tells them apart, and this one rolled back."""
    db.execute("CREATE TABLE public.t (x int)")
    db.execute("CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
               " 'BEGIN PERFORM pg_catalog.pg_sleep(10); RETURN NULL; END'")
    db.execute("CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON public.t DEFERRABLE"
               " INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.slow_commit()")
    with db.connect() as conn:
        step = Step("Swap-like", "", retry="give-way", one_query=True, hold_from=1,
                    statements=[Statement(sql.SQL("INSERT INTO {} VALUES (1)").format(T),
                                          "copy")],
                    done=lambda c: c.execute("SELECT count(*) > 0 FROM public.t").fetchone()[0])
        plan = _plan(conn, step)
    runner = PlanRunner(db.target, plan, config=PLANS, write_journal=False)

    def cancel_in_the_commit() -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end and not db.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgparts plan'"
                " AND wait_event = 'PgSleep'")[0][0]:
            time.sleep(0.02)
        runner.cancel()

    watcher = threading.Thread(target=cancel_in_the_commit, daemon=True)
    watcher.start()
    result = runner.run()
    watcher.join(5)
    assert result.outcome == Outcome.CANCELLED, result.error
    assert result.steps[0].status == "cancelled" and result.steps[0].rows == 0
    assert db.query("SELECT count(*) FROM public.t")[0][0] == 0
