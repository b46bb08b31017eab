"""The swap gives way to writers that lock the parent before the tables referencing it (a
DELETE of a referenced row: the parent, then the referencing table for the key's action). The
swap locks them the other way round; were it to wait out deadlock_timeout, PostgreSQL would
abort one of the two and every writer would stall behind it. With the "give-way" retry its
lock waits end well before that: the writer waits a moment and commits, the swap retries."""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config, PlansConfig
from tui.core.plans import PlanRunner
from tui.core.plans.registry import kind_named

from .plans.scenarios import MOVE_SCENARIOS, REF, TABLE, ident, leftovers, spec

# the default lock_timeout, longer than deadlock_timeout (1 s): only giving way keeps the swap
# from waiting into the deadlock detector
PLANS = PlansConfig(lock_timeout_seconds=2.0, lock_retries=1)


class Deleter(threading.Thread):
    """Inserts a row into the partition being split and a row referencing it, then in one
    transaction reads the row (holding the parent), pauses, deletes it (the key cascades to the
    referencing table), commits; again and again."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.inside = threading.Event()  # between its read and its delete
        self.errors: list[str] = []
        self.longest = 0.0
        self.deleted = 0

    def _timed(self, c: psycopg.Connection, q: sql.Composable, args: tuple) -> None:
        t0 = time.monotonic()
        c.execute(q, args)
        self.longest = max(self.longest, time.monotonic() - t0)

    def run(self) -> None:
        t, ref = ident(TABLE), ident(REF)
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute("SET lock_timeout = '10s'")  # a wait shows as a stall, not an error
            i = 0
            while not self.stop.is_set():
                i += 1
                row = (20000 + i, 100 + i % 100)  # k in the source, [100, 200)
                try:
                    self._timed(c, sql.SQL("INSERT INTO {} VALUES (%s, %s, 'w')").format(t), row)
                    self._timed(c, sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(ref),
                                (20000 + i, *row))
                    with c.transaction():
                        self._timed(c, sql.SQL("SELECT 1 FROM {} WHERE id = %s AND k = %s")
                                    .format(t), row)
                        self.inside.set()
                        # longer than the swap's give-way wait (a fifth of deadlock_timeout):
                        # a swap that starts now must time out on the parent at least once,
                        # however the machine's load shifts the timing
                        time.sleep(0.4)
                        self._timed(c, sql.SQL("DELETE FROM {} WHERE id = %s AND k = %s")
                                    .format(t), row)
                    self.deleted += 1
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    self.inside.clear()
                time.sleep(0.04)


def test_the_swap_gives_way_to_a_writer_deleting_referenced_rows(db):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        deadlock = float(conn.execute("SELECT setting::float8 FROM pg_settings"
                                      " WHERE name = 'deadlock_timeout'").fetchone()[0]) / 1000
    kind = kind_named("split")
    with db.connect() as conn:
        forest = load_forest(conn)
        plan = kind.build(conn, forest, kind.status(conn, forest, spec()),
                          kind.request(scenario.values, spec()), Config(plans=PLANS))
    swap = next(i for i, s in enumerate(plan.steps, 1) if s.title.startswith("Swap"))
    assert plan.steps[swap - 1].retry == "give-way"
    writer = Deleter(db.dsn)

    def collide(event: str, step: int, _stmt: int, _runner: PlanRunner) -> None:
        # the swap's first attempt starts while the writer holds the parent and is about to
        # delete: the lock cycle happens for sure
        if (event, step) == ("step", swap):
            assert writer.inside.wait(10)

    writer.start()
    try:
        result = PlanRunner(db.target, plan, config=PLANS, backoff_base=0.02,
                            hook=collide).run()
    finally:
        time.sleep(1.0)  # deletes after the swap, into the new partitions
        writer.stop.set()
        writer.join(10)
    assert result.ok, (result.error, result.state)
    assert result.steps[swap - 1].lock_timeouts >= 1  # it did give way
    assert writer.errors == []  # no deadlock detected, no other error
    assert writer.deleted >= 2
    assert writer.longest < deadlock * 0.8, writer.longest
    with db.connect() as conn:
        assert scenario.fixed(conn)
        assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE id >= 20000").format(
            ident(TABLE))).fetchone()[0] == 0
        assert leftovers(conn) == []
