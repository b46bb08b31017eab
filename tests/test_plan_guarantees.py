"""The plan runner's guarantees on real servers: concurrent writers lose nothing and stall no
longer than the lock timeout, a killed connection at any step resumes cleanly, lock contention
gives up cleanly, the advisory lock refuses a second runner, cancel really cancels."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from tui.core.config import PlansConfig
from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import (
    HASH_PARTITIONED,
    build_consolidation_plan,
    consolidation_status,
)
from tui.core.plans.engine.runner import advisory_key

from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
    consolidation_plan,
    current_week_start,
    run_plan,
    user_tables,
    week_checksums,
)


def _no_leftovers(conn, b) -> None:
    tables = user_tables(conn, "public")
    assert not any(w in tables for w in b.weeks), tables
    assert not any("2024" in t and "_hash_" in t for t in tables), tables
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgparts%'"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgparts%'"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgparts%'"
                        ).fetchone()[0] == 0  # the change counter's sequence


class Writer(threading.Thread):
    """Writes through the parent in autocommit transactions, timing each one.

    With `shadow`, every change is also applied to a plain shadow table in the same transaction,
    so the week's final content can be compared with what the writer committed.
    """

    def __init__(self, dsn: str, week_start, *, shadow: bool = False, mix: bool = False) -> None:
        super().__init__(daemon=True)
        self.dsn, self.week_start, self.shadow, self.mix = dsn, week_start, shadow, mix
        self.stop = threading.Event()
        self.committed: list[str] = []
        self.stalls: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            i = 0
            while not self.stop.is_set():
                i += 1
                key = f"writer-{i}"
                t0 = time.monotonic()
                try:
                    with conn.transaction():
                        self._write(conn, i, key)
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                    continue
                self.stalls.append(time.monotonic() - t0)
                self.committed.append(key)
                time.sleep(0.002)

    def _write(self, conn: psycopg.Connection, i: int, key: str) -> None:
        ts = f"{self.week_start.isoformat()} 00:00:00+00"
        targets = [("public", "account_balances")] + ([("public", "shadow")] if self.shadow else [])
        mix = self.mix  # read once: both tables get the same changes
        for t in targets:
            conn.execute(sql.SQL(
                "INSERT INTO {} VALUES ({}::timestamptz + make_interval(secs => {}), {}, 1,"
                " 'dex_swap', '{{}}')").format(
                sql.Identifier(*t), sql.Literal(ts), sql.Literal(i), sql.Literal(key)))
            if mix and i % 5 == 0:  # update and delete rows that existed before the run
                conn.execute(sql.SQL(
                    "UPDATE {} SET usd_value = usd_value + 1 WHERE account_address ="
                    " 'rdx1q' || md5({}::text)").format(sql.Identifier(*t), sql.Literal(i)))
            if mix and i % 7 == 0:
                conn.execute(sql.SQL(
                    "DELETE FROM {} WHERE account_address = 'rdx1q' || md5({}::text)").format(
                    sql.Identifier(*t), sql.Literal(i + 100)))


def test_writer_to_current_week_loses_nothing_and_never_stalls(db):
    with db.connect() as conn:
        b = build_balances(conn)
        before = week_checksums(conn, b, OLD_WEEKS)
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
    writer = Writer(db.dsn, current_week_start())
    writer.start()
    try:
        time.sleep(0.1)
        result = run_plan(db, plan)
        time.sleep(0.1)
    finally:
        writer.stop.set()
        writer.join()
    assert result.ok, (result.error, result.state)
    assert writer.errors == []
    assert len(writer.committed) > 20
    # never blocked longer than the plan's lock timeout (plus scheduling noise)
    assert max(writer.stalls) < FAST_PLANS.lock_timeout_seconds + 0.5
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS) == before
        rows = conn.execute("SELECT account_address FROM public.account_balances"
                            " WHERE account_address LIKE 'writer-%'").fetchall()
    assert sorted(r[0] for r in rows) == sorted(writer.committed)
    swaps = [o for o in result.steps if o.title.startswith("Swap")]
    assert len(swaps) == 3 and all(o.hold_seconds is not None for o in swaps)


def test_writer_to_the_week_being_consolidated_loses_nothing(db):
    week = OLD_WEEKS[0]
    with db.connect() as conn:
        b = build_balances(conn, weeks=[week])
        conn.execute("CREATE TABLE public.shadow (LIKE public.account_balances INCLUDING ALL)")
        conn.execute("INSERT INTO public.shadow SELECT * FROM public.account_balances")
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
    writer = Writer(db.dsn, week, shadow=True, mix=True)
    seen: list[int] = []

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        # let the writer get some changes in before every step, so they hit the week before
        # the copy, between copy and swap (through the mirror trigger), and after the swap
        if (event, step) == ("step", 4):
            # updates and deletes go through the mirror until the swap; afterwards the drop's
            # check (every row of the original is in the new partition) would rightly refuse
            writer.mix = False
        if event == "step":
            target = len(writer.committed) + 5
            deadline = time.monotonic() + 5
            while len(writer.committed) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(len(writer.committed))

    writer.start()
    try:
        result = run_plan(db, plan, hook=hook)
        time.sleep(0.05)
    finally:
        writer.stop.set()
        writer.join()
    assert result.ok, (result.error, result.state)
    assert writer.errors == []
    assert seen == sorted(seen) and seen[-1] - seen[0] >= 20
    with db.connect() as conn:
        got = conn.execute(
            "SELECT count(*), sum(hashtextextended(t::text, 0)) FROM public.account_balances t"
            " WHERE \"timestamp\" < '2024-01-14'").fetchone()
        want = conn.execute(
            "SELECT count(*), sum(hashtextextended(t::text, 0)) FROM public.shadow t").fetchone()
        assert got == want
        st = consolidation_status(conn, "account_balances")
        assert st.weeks[0].name == f"{b.weeks[0]}_consolidated"


KILL_POINTS = [
    ("step", 1, 0),  # before the build
    ("statement", 1, 6),  # in the middle of the copy (statement 1 is the registry guard)
    ("before_commit", 1, 0),  # copy done, not committed
    ("step", 2, 0),  # before ANALYZE
    ("statement", 3, 1),  # during verification
    ("statement", 4, 2),  # after DETACH, before ATTACH
    ("before_commit", 4, 0),  # swap done, not committed
    ("statement", 5, 2),  # during the drop's verification
    ("before_commit", 5, 0),  # dropped, not committed
    ("before_commit", 6, 0),  # change counter removed, not committed
]


@pytest.mark.parametrize("point", KILL_POINTS, ids=[f"{e}-{s}-{t}" for e, s, t in KILL_POINTS])
def test_killed_connection_then_rerun_finishes(db, point):
    week = OLD_WEEKS[0]
    with db.connect() as conn:
        b = build_balances(conn, weeks=[week], rows_per_week=120)
        before = week_checksums(conn, b, [week])
        plan = consolidation_plan(db)
    assert len(plan.steps) == 6

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if (event, step, stmt) == point:
            with psycopg.connect(db.dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (runner.backend_pid,))
                while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                    (runner.backend_pid,)).fetchone():
                    time.sleep(0.01)

    first = run_plan(db, plan, hook=hook)
    assert first.outcome == "failed" and "connection" in first.error
    assert first.state and "resume" in first.state
    with db.connect() as conn:  # consistent at every point: same rows through the parent
        assert week_checksums(conn, b, [week]) == before
    second = run_plan(db, consolidation_plan(db))
    assert second.ok, (second.error, second.state)
    with db.connect() as conn:
        assert week_checksums(conn, b, [week]) == before
        _no_leftovers(conn, b)
        st = consolidation_status(conn, "account_balances")
        assert st.weeks[0].name == f"{b.weeks[0]}_consolidated" and st.detached == []


def test_lock_held_on_parent_times_out_retries_and_gives_up_cleanly(db):
    week = OLD_WEEKS[0]
    with db.connect() as conn:
        b = build_balances(conn, weeks=[week], rows_per_week=120)
        before = week_checksums(conn, b, [week])
    plan = consolidation_plan(db)
    with psycopg.connect(db.dsn) as blocker:  # a long report reading the parent
        blocker.execute("SELECT count(*) FROM public.account_balances")
        t0 = time.monotonic()
        result = run_plan(db, plan)
        took = time.monotonic() - t0
        blocker.rollback()
    assert result.outcome == "failed"
    assert "could not get ACCESS EXCLUSIVE on account_balances" in result.error
    assert "after 3 attempts" in result.error
    swap = next(o for o in result.steps if o.title.startswith("Swap"))
    assert swap.lock_timeouts == 3 and swap.status == "failed"
    assert took < 3 * (FAST_PLANS.lock_timeout_seconds + 0.6) + 2
    assert "not yet swapped in" in result.state
    with db.connect() as conn:
        assert week_checksums(conn, b, [week]) == before
        st = consolidation_status(conn, "account_balances")
        assert st.weeks[0].status == HASH_PARTITIONED
        assert st.weeks[0].pending == "copy built, swap pending"
        assert st.ignored == []  # its own mirror and counter triggers are not look-alikes
    # the copy was kept and is finished by the next run (which skips the build)
    # selected: pending first
    result = run_plan(db, consolidation_plan(db, older_than=timedelta(days=3650)))
    assert result.ok, result.error
    assert [o.status for o in result.steps][:3] == ["skipped", "skipped", "done"]
    with db.connect() as conn:
        assert week_checksums(conn, b, [week]) == before
        _no_leftovers(conn, b)


def test_advisory_lock_refuses_a_second_runner(db):
    with db.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=8)
        oid = conn.execute("SELECT 'public.account_balances'::regclass::oid").fetchone()[0]
    plan = consolidation_plan(db)
    with psycopg.connect(db.dsn, autocommit=True, application_name="other console") as other:
        other.execute("SELECT pg_advisory_lock(%s)", (advisory_key(oid),))
        result = run_plan(db, plan)
    assert result.outcome == "busy"
    assert "another plan is running on account_balances" in result.error
    assert "other console" in result.error
    assert all(o.status == "pending" for o in result.steps)


def test_cancel_during_a_lock_wait_cancels_on_the_server(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=8)
    plan = consolidation_plan(db)
    config = PlansConfig(lock_timeout_seconds=30, lock_retries=1)
    runner = PlanRunner(db.target, plan, config=config, progress=lambda p: None)
    with psycopg.connect(db.dsn) as writer:  # an open transaction that wrote to the week
        writer.execute("INSERT INTO public.account_balances VALUES"
                       " ('2024-01-08', 'x', 1, 'a', '{}')")
        timer = threading.Timer(0.5, runner.cancel)
        timer.start()
        t0 = time.monotonic()
        result = runner.run()
        took = time.monotonic() - t0
        writer.rollback()
    assert result.outcome == "cancelled"
    assert took < 5  # not the 30 s lock timeout: the server-side wait was cancelled
    assert "nothing was changed" in result.state or "unchanged" in result.state
    with db.connect() as conn:
        assert f"{b.weeks[0]}_consolidated" not in user_tables(conn, "public")
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                            " 'pgparts plan'").fetchone()[0] == 0


def test_failed_verification_rolls_back_and_keeps_the_week(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40)
        before = week_checksums(conn, b, OLD_WEEKS[:1])
    plan = consolidation_plan(db)

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if (event, step) == ("step", 3):  # damage the copy behind the mirror's back
            with psycopg.connect(db.dsn, autocommit=True) as c:
                c.execute(sql.SQL("DELETE FROM {} WHERE ctid = '(0,1)'").format(
                    sql.Identifier(f"{b.weeks[0]}_consolidated")))

    progress = []
    result = run_plan(db, plan, hook=hook, progress=progress.append)
    assert result.outcome == "failed"
    assert "verification failed" in result.error and "39 (checksum" in result.error
    assert [o.status for o in result.steps] == ["done", "done", "failed", "pending", "pending",
                                                "pending"]
    assert any(p.state == "verifying" for p in progress)
    copied = [p for p in progress if p.rows_done]
    assert copied and copied[-1].rows_done == 40 and copied[-1].rate_rows > 0
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:1]) == before
        assert consolidation_status(conn, "account_balances").weeks[0].status == HASH_PARTITIONED


def test_build_lock_on_a_busy_week_is_bounded_by_the_lock_timeout(db):
    """The build's LOCK ... IN SHARE ROW EXCLUSIVE MODE waits for writers of the week: only for
    lock_timeout per attempt, then gives up cleanly with nothing built."""
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=8)
    plan = consolidation_plan(db)
    with psycopg.connect(db.dsn) as writer:  # an open write on the week
        writer.execute("INSERT INTO public.account_balances VALUES"
                       " ('2024-01-08', 'x', 1, 'a', '{}')")
        t0 = time.monotonic()
        result = run_plan(db, plan)
        took = time.monotonic() - t0
        writer.rollback()
    assert result.outcome == "failed"
    assert "lock not granted within 0.5 s after 3 attempts" in result.error
    assert result.steps[0].lock_timeouts == 3
    assert took < 3 * (FAST_PLANS.lock_timeout_seconds + 0.6) + 2
    with db.connect() as conn:
        assert f"{b.weeks[0]}_consolidated" not in user_tables(conn, "public")
