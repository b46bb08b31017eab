"""A big move builds the new tables' indexes, validates their keys and the referencing keys in
two sessions side by side (Step.beside): each step on its lane's session, and a kill of the
session of either lane, while a step runs or before it commits, leaves a database the same
command finishes with every row and reference kept."""

from __future__ import annotations

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
    monkeypatch.setattr(moves, "BESIDE_MIN_BYTES", 0)  # the scenario is tiny


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


def test_each_lane_runs_on_its_own_session(db):
    before, refs = _build(db)
    plan = _plan(db)
    groups = {(s.beside, s.lane) for s in plan.steps if s.beside}
    assert groups == {(g, lane) for g in ("index", "outgoing-keys", "referencing-keys")
                      for lane in (0, 1)}, groups
    pids: dict[int, int] = {}

    def seen(event: str, step: int, _stmt: int, runner: PlanRunner) -> None:
        if event == "step":
            pids[step] = runner.backend_pid

    result = _run(db, plan, hook=seen)
    assert result.ok, (result.error, result.state)
    for group in ("index", "outgoing-keys", "referencing-keys"):
        by_lane = {s.lane: pids[i] for i, s in enumerate(plan.steps, 1) if s.beside == group}
        assert by_lane[0] != by_lane[1], (group, by_lane)
    alone = {pids[i] for i, s in enumerate(plan.steps, 1) if not s.beside and i in pids}
    assert len(alone) == 1  # every other step on the plan's own session
    _check(db, before, refs)


def test_a_lane_killed_then_the_same_command_finishes(make_db):
    first = make_db()
    _build(first)
    plan = _plan(first)
    # the side session (lane 1) of each group, and the plan's own while its peer runs
    points = []
    for i, s in enumerate(plan.steps, 1):
        if s.beside and s.lane == 1:
            points.append(("statement", i, 1) if s.beside != "outgoing-keys"
                          else ("before_commit", i, 0))
    points.append(("before_commit", next(i for i, s in enumerate(plan.steps, 1)
                                         if s.beside == "index" and s.lane == 0), 0))
    assert len(points) == 4
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

