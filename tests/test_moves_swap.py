"""The move's swap is one query (Step.one_query): locks, the last replay, the change log checked
empty on the server, DETACH/ATTACH and the COMMIT in one round trip. Writes committed just
before it are replayed inside it, and the runner reports what the server did: the rows
replayed, the check, the parent's hold."""

from __future__ import annotations

from psycopg import sql

from tui.core.plans import PlanRunner

from .plans.kinds.test_moves import plan_for, run
from .plans.scenarios import MOVE_SCENARIOS, SPLIT_NEW, SPLIT_SOURCE, TABLE, ident, leftovers


def test_the_swap_replays_the_last_writes_in_its_one_query(db):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
    plan = plan_for(db, "split", scenario.values)
    swap = next(i for i, s in enumerate(plan.steps, 1) if s.title.startswith("Swap"))
    step = plan.steps[swap - 1]
    assert step.one_query and step.retry == "give-way"
    with db.connect() as conn:
        # the hold is timed from the parent's LOCK, taken after the referencing table's
        assert step.statements[step.hold_from - 1].render(conn) == sql.SQL(
            "LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(ident(TABLE)).as_string(conn)
        assert step.hold_from == 2
    t = ident(TABLE)
    written: list[bool] = []

    def write(event: str, i: int, j: int, _runner: PlanRunner) -> None:
        # after the last catch-up, before the swap's query: only the swap can replay these
        if (event, i, j) == ("statement", swap, 1) and not written:
            written.append(True)
            with db.connect() as c:
                c.execute(sql.SQL("INSERT INTO {} VALUES (90001, 120, 'new a'),"
                                  " (90002, 170, 'new b')").format(t))
                c.execute(sql.SQL("UPDATE {} SET v = 'changed' WHERE k IN (131, 181)")
                          .format(t))
                c.execute(sql.SQL("DELETE FROM {} WHERE k IN (134, 184)").format(t))

    result = run(db, plan, hook=write)
    assert result.ok, (result.error, result.state)
    out = result.steps[swap - 1]
    assert out.one_query and out.attempts == 1
    # each changed key deleted from the target it is in, its last image inserted: 6 keys
    # changed (2 inserted, 2 updated, 2 deleted), 4 of them present afterwards
    assert out.rows == 4 + 4, out.rows
    assert "change log fully replayed" in out.verification, out.verification
    assert "checked by the server" in out.verification
    assert out.hold_seconds is not None and 0 < out.hold_seconds <= out.seconds
    with db.connect() as conn:
        def rows(table: str) -> dict[int, str]:
            return dict(conn.execute(sql.SQL("SELECT k, v FROM {} WHERE k IN"
                                             " (120, 170, 131, 181, 134, 184)").format(
                ident(table))).fetchall())

        assert rows(SPLIT_SOURCE) == {120: "new a", 131: "changed"}
        assert rows(SPLIT_NEW) == {170: "new b", 181: "changed"}
        assert scenario.fixed(conn) and leftovers(conn) == []
