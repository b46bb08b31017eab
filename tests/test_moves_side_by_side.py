"""A big move builds the new tables' indexes, validates their keys and the referencing keys
(a step per referencing table) in steps tagged parallel, run on two sessions at once
(Step.parallel, Plan.sessions): steps of a group on different sessions, and a kill of the
session running a step of a group, while it runs or before it commits, leaves a database the
same command finishes with every row and reference kept."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config, PlansConfig
from tui.core.plans import Outcome, PlanRunner
from tui.core.plans.registry import kind_named
from tui.core.plans.steps import moves

from .plans.kinds.test_moves import per_bound
from .plans.scenarios import MOVE_SCENARIOS, REF, TABLE, ident, leftovers, spec

DIM = 'dïm ";x'
REF2 = 'ré f 2; "z'
FAST = PlansConfig(lock_timeout_seconds=0.3, lock_retries=2)
SCENARIO = MOVE_SCENARIOS["split"]


@pytest.fixture(autouse=True)
def side_by_side(monkeypatch):
    monkeypatch.setattr(moves, "PARALLEL_MIN_BYTES", 0)  # the scenario is tiny


def _build(db) -> tuple[dict, tuple[int, int]]:
    """The split scenario, a key of the table's own (to DIM) and a second referencing table."""
    with db.connect() as conn:
        SCENARIO.build(conn, db.dsn)
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(ident(DIM)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT DISTINCT id FROM {}").format(
            ident(DIM), ident(TABLE)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD FOREIGN KEY (id) REFERENCES {}").format(
            ident(TABLE), ident(DIM)))
        conn.execute(sql.SQL("CREATE TABLE {} (id int, k int, FOREIGN KEY (id, k)"
                             " REFERENCES {})").format(ident(REF2), ident(TABLE)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT id, k FROM {} WHERE k % 5 = 0").format(
            ident(REF2), ident(TABLE)))
        # a second key of the same table (other columns): validated in the same step
        # (VALIDATE's SHARE UPDATE EXCLUSIVE conflicts with itself)
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN id2 int, ADD COLUMN k2 int").format(
            ident(REF2)))
        conn.execute(sql.SQL("UPDATE {} SET id2 = id, k2 = k WHERE k % 10 = 0").format(
            ident(REF2)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD FOREIGN KEY (id2, k2) REFERENCES {}").format(
            ident(REF2), ident(TABLE)))
        refs = tuple(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(r))
                                  ).fetchone()[0] for r in (REF, REF2))
        return per_bound(conn), refs  # type: ignore[return-value]


def _plan(db):
    kind = kind_named("split")
    with db.connect() as conn:
        forest = load_forest(conn)
        return kind.build(conn, forest, kind.status(conn, forest, spec()),
                          kind.request(SCENARIO.values, spec()), Config(plans=FAST))


def _run(db, plan, **kw):
    return PlanRunner(db.target, plan, config=FAST, backoff_base=0.02, **kw).run()


def _check(db, before: dict, refs: tuple[int, int]) -> None:
    with db.connect() as conn:
        assert SCENARIO.fixed(conn) and per_bound(conn) == before and leftovers(conn) == []
        assert tuple(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(r))
                                  ).fetchone()[0] for r in (REF, REF2)) == refs


GROUPS = ("index", "outgoing-keys", "referencing-keys")


def test_each_group_runs_on_two_sessions(db):
    before, refs = _build(db)
    plan = _plan(db)
    assert plan.sessions == moves.SESSIONS == 2
    tags = [s.parallel for s in plan.steps if s.parallel]
    assert sorted(set(tags)) == sorted(GROUPS) and all(tags.count(g) == 2 for g in GROUPS), tags
    # no two steps of a group lock one table in the same conflicting mode
    for g in GROUPS:
        tables = [lk.relation for s in plan.steps if s.parallel == g for lk in s.locks
                  if lk.mode != "ROW SHARE"]
        assert len(tables) == len(set(tables)), (g, tables)
    referencing = [s for s in plan.steps if s.parallel == "referencing-keys"]
    assert sorted(len(s.statements) for s in referencing) == [1, 2], \
        [s.title for s in referencing]
    pids: dict[int, int] = {}

    def seen(event: str, step: int, _stmt: int, runner: PlanRunner) -> None:
        if event == "step":
            pids[step] = runner.backend_pid
            if plan.steps[step - 1].parallel:
                time.sleep(0.2)  # the other session takes the group's next step meanwhile

    result = _run(db, plan, hook=seen)
    assert result.ok, (result.error, result.state)
    for g in GROUPS:
        ran = {pids[i] for i, s in enumerate(plan.steps, 1) if s.parallel == g}
        assert len(ran) == 2, (g, ran)
    alone = {pids[i] for i, s in enumerate(plan.steps, 1) if not s.parallel and i in pids}
    assert len(alone) == 1  # every other step on the plan's own session
    _check(db, before, refs)


def test_a_session_killed_inside_a_group_then_the_same_command_finishes(make_db):
    first = make_db()
    _build(first)
    plan = _plan(first)
    group = {g: [i for i, s in enumerate(plan.steps, 1) if s.parallel == g] for g in GROUPS}
    # the second step of each group (the session that took it), while its statement runs or
    # before it commits, and the first index build's before its commit
    points = [("statement", group["index"][1], 1), ("before_commit", group["outgoing-keys"][1], 0),
              ("statement", group["referencing-keys"][1], 1),
              ("before_commit", group["index"][0], 0)]
    for n, point in enumerate(points):
        db = first if n == 0 else make_db()
        before, refs = _build(db)  # the first database again too: built afresh
        fired: list[bool] = []

        def kill(event: str, step: int, stmt: int, runner: PlanRunner, point=point,
                 fired=fired, dsn=db.dsn) -> None:
            if fired or (event, step, stmt) != point:
                return
            fired.append(True)
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("SELECT pg_terminate_backend(%s, 5000)", (runner.backend_pid,))

        result = _run(db, _plan(db), hook=kill)
        assert fired and result.outcome == Outcome.FAILED, (point, result.error)
        again = _run(db, _plan(db))
        assert again.ok, (point, again.error, again.state)
        _check(db, before, refs)

