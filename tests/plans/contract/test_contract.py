"""The runner's guarantees, for every registered plan kind (tui.core.plans.registry).

Kill points come from each plan's own steps: the connection is killed before the first
statement of every step, and before the COMMIT of every transactional step (in a step sent as
one query with its COMMIT, while that query waits for a lock on the table, holding the locks
it took before); the same command run again (a fresh plan from the catalog, as an operator
would) must end in the same final state with no row lost. A lock held by another session
makes a run time out, retry and give up cleanly; a cancel stops it; both resume on the next
run. A kind without a scenario below fails test_every_kind_has_a_scenario: adding a kind means
adding its small scenario here.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config, PlansConfig
from tui.core.plans import Outcome, PlanRunner
from tui.core.plans.consolidate import CANDIDATE_STATUSES, consolidation_status
from tui.core.plans.registry import PLAN_KINDS, kind_named

from ...test_plan_support import OLD_WEEKS, build_balances
from ..scenarios import (
    MOVE_SCENARIOS,
    RETENTION,
    SCENARIOS,
    SCHEMA,
    codes,
    expired_weeks,
    leftovers,
    retention_done,
    spec,
)

FAST = PlansConfig(lock_timeout_seconds=0.3, lock_retries=1)


@dataclass(frozen=True)
class Contract:
    build: Callable[[psycopg.Connection, str], None]
    target: str
    schema: str
    fixed: Callable[[psycopg.Connection], bool]
    values: dict = field(default_factory=dict)  # the request's option values


def _remedy(kind: str) -> Contract:
    scenario = SCENARIOS[kind]
    return Contract(scenario.build, spec(), SCHEMA,
                    lambda conn: not (scenario.codes & codes(conn)))


def _balances(conn: psycopg.Connection, _dsn: str) -> None:
    build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40)


def _consolidated(conn: psycopg.Connection) -> bool:
    status = consolidation_status(conn, "account_balances")
    return not any(w.status in CANDIDATE_STATUSES for w in status.weeks
                   if w.upper is not None and w.lower is not None
                   and w.lower.date() == OLD_WEEKS[0])


CONTRACTS: dict[str, Contract] = {
    "consolidate": Contract(_balances, "account_balances", "public", _consolidated),
    **{k: _remedy(k) for k in SCENARIOS},
    "retention": Contract(expired_weeks, spec(), SCHEMA, retention_done),
    **{k: Contract(m.build, m.target or spec(), SCHEMA, m.fixed, m.values)
       for k, m in MOVE_SCENARIOS.items()},
}
# request values a kind needs beyond its defaults
# (create_ahead: one partition ahead, six steps with the DEFAULT's: each one is a kill point)
VALUES = {"retention": {"older_than": RETENTION}, "create_ahead": {"count": 1}}


def test_every_kind_has_a_scenario():
    assert {k.name for k in PLAN_KINDS} == set(CONTRACTS)


def _plan(db, kind_name: str):
    kind = kind_named(kind_name)
    c = CONTRACTS[kind_name]
    with db.connect() as conn:
        forest = load_forest(conn)
        request = kind.default_request(forest, c.target, Config(plans=FAST))
        request.values.update(kind.request(c.values, c.target).values if c.values else {})
        if kind_name == "consolidate":
            request.values["weeks"] = [OLD_WEEKS[0].strftime("account_balances_%Y_%m_%d")]
        request.values.update(VALUES.get(kind_name, {}))
        return kind.build(conn, forest, kind.status(conn, forest, c.target), request,
                          Config(plans=FAST))


def _rows(db, schema: str) -> str:
    """Every row of every plain table of the schema, as an order-independent digest."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,)).fetchall()
        digests: list[str] = []
        for (name,) in tables:
            digests += [r[0] for r in conn.execute(sql.SQL(
                "SELECT md5(t::text) FROM {} t").format(sql.SQL(name))).fetchall()]
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()


def _run(db, plan, **kw):
    return PlanRunner(db.target, plan, config=FAST, backoff_base=0.02, **kw).run()


def _finish(db, kind_name: str, rows_before: str) -> None:
    plan = _plan(db, kind_name)
    titles = [s.title for s in plan.steps]
    assert len(titles) == len(set(titles)), titles  # the re-run plans nothing twice
    result = _run(db, plan)
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert CONTRACTS[kind_name].fixed(conn)
        if kind_name in MOVE_SCENARIOS:  # no stray table, trigger, log or constraint
            assert leftovers(conn) == []
    assert _rows(db, CONTRACTS[kind_name].schema) == rows_before


def _kill_points(plan) -> list[tuple[str, int, int]]:
    points = []
    for i, step in enumerate(plan.steps, 1):
        points.append(("statement", i, 1))
        if step.one_query:
            points.append(("in_query", i, 0))
        elif step.transactional:
            points.append(("before_commit", i, 0))
    return points


def _kill_in_query(db, runner: PlanRunner, fired: list[bool]) -> None:
    """Hold ACCESS SHARE on the plan's table so that the step's query waits for its lock, kill
    the plan's backend while it waits (inside its transaction, holding what it locked before),
    then let go. The step gives way after a short wait and tries again: the next wait is
    caught."""
    holder = psycopg.connect(db.dsn)
    schema, name = holder.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE c.oid = %s", (runner.plan.target_oid,)).fetchone()
    holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
        sql.Identifier(schema, name)))
    pid = runner.backend_pid

    def kill() -> None:
        try:
            with psycopg.connect(db.dsn, autocommit=True) as c:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if c.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT"
                                 " granted)", (pid,)).fetchone()[0]:
                        fired.append(True)  # before: the run may end before it returns
                        c.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
                        return
                    time.sleep(0.002)
        finally:
            holder.rollback()
            holder.close()

    threading.Thread(target=kill, daemon=True).start()


def _killer(db, point: tuple[str, int, int]):
    fired: list[bool] = []
    armed: list[bool] = []

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if point[0] == "in_query":
            if not armed and (event, step, stmt) == ("statement", point[1], 1):
                armed.append(True)  # once: the step's retries call the hook again
                _kill_in_query(db, runner, fired)
            return
        if fired or (event, step, stmt) != point:
            return
        fired.append(True)
        with psycopg.connect(db.dsn, autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(%s, 5000)", (runner.backend_pid,))
    return hook, fired


@pytest.mark.parametrize("kind_name", sorted(CONTRACTS))
def test_killed_at_every_step_then_run_again(make_db, kind_name):
    c = CONTRACTS[kind_name]
    first = make_db()
    with first.connect() as conn:
        c.build(conn, first.dsn)
    points = _kill_points(_plan(first, kind_name))
    assert points
    for n, point in enumerate(points):
        db = first if n == 0 else make_db()
        if n:
            with db.connect() as conn:
                c.build(conn, db.dsn)
        before = _rows(db, c.schema)
        hook, fired = _killer(db, point)
        result = _run(db, _plan(db, kind_name), hook=hook)
        assert fired, point
        assert result.outcome == Outcome.FAILED, (point, result.error)
        assert result.state, point  # what the database holds now, in words
        _finish(db, kind_name, before)


@pytest.mark.parametrize("kind_name", sorted(CONTRACTS))
def test_lock_held_by_another_session_gives_up_cleanly_then_resumes(db, kind_name):
    c = CONTRACTS[kind_name]
    with db.connect() as conn:
        c.build(conn, db.dsn)
        target = load_forest(conn).find(c.target)
    before = _rows(db, c.schema)
    plan = _plan(db, kind_name)
    with psycopg.connect(db.dsn) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(target.ident))
        result = _run(db, plan)
        holder.rollback()
    assert result.outcome == Outcome.FAILED
    assert "lock" in result.error, result.error
    assert sum(o.lock_timeouts for o in result.steps) >= 2  # timed out, retried
    _finish(db, kind_name, before)


@pytest.mark.parametrize("kind_name", sorted(CONTRACTS))
def test_cancel_stops_then_resumes(db, kind_name):
    c = CONTRACTS[kind_name]
    with db.connect() as conn:
        c.build(conn, db.dsn)
    before = _rows(db, c.schema)
    plan = _plan(db, kind_name)
    last = len(plan.steps)

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if event == "statement" and step == last:
            runner.cancel()

    result = _run(db, plan, hook=hook)
    assert result.outcome == Outcome.CANCELLED, result.error
    _finish(db, kind_name, before)
