"""A move's verification and its drop step, on real servers: one pass over the sources checks
every new bound and that each source row is taken by exactly one of them; the drop reads no
row and keeps a detached source unless pgparts' registry records it as verified by the move."""

from __future__ import annotations

import re
import threading
import time

import psycopg
from psycopg import sql

from tui.core.config import PlansConfig
from tui.core.moves import changelog as cl
from tui.core.names import display_name
from tui.core.plans import Outcome, PlanRunner
from tui.core.plans.engine.model import VerificationFailed
from tui.core.plans.steps import markers
from tui.core.plans.steps.moves import VERIFIED, verify_check, verify_sql

from ..scenarios import MOVE_SCENARIOS, SCHEMA, SPLIT_NEW, TABLE, ident, leftovers
from .test_moves import per_bound, plan_for, run

SRC = sql.Identifier("public", "vsrc")


def _targets(conn, lows: tuple[int, int]) -> list[cl.Target]:
    """Two targets: keys below 5, keys from `lows[1]` on, each filled with the source's rows
    of its own predicate (the first from `lows[0]`)."""
    out = []
    for i, pred in enumerate((sql.SQL("k >= {} AND k < 5").format(sql.Literal(lows[0])),
                              sql.SQL("k >= {}").format(sql.Literal(lows[1])))):
        t = sql.Identifier("public", f"vt{i}")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(t))
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {} WHERE {}").format(t, SRC, pred))
        out.append(cl.Target(t, pred, f"vt{i}"))
    return out


def _verify(conn, targets: list[cl.Target]) -> tuple[str | Exception, bool]:
    counts, agrees = verify_sql(SRC, ["k", "v"], targets)
    row = conn.execute(counts).fetchone()
    try:
        line: str | Exception = verify_check(targets, "public.vsrc")(row, conn)
    except VerificationFailed as exc:
        line = exc
    return line, conn.execute(agrees).fetchone()[0]


def test_one_pass_checks_every_bound_and_each_row_taken_once(db):
    with db.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.vsrc")
        conn.execute("CREATE TABLE public.vsrc AS SELECT g AS k, 'v' || g AS v"
                     " FROM generate_series(0, 9) g")
        line, agrees = _verify(conn, _targets(conn, (0, 5)))
        assert agrees and re.fullmatch(
            r"vt0: 5 rows, checksum -?\d+, equal to public.vsrc's; vt1: 5 rows, checksum -?\d+,"
            r" equal to public.vsrc's; each of public.vsrc's 10 rows in exactly one bound",
            str(line)), line
        # a row no bound takes (5): each target still equals the source's rows of its bound
        line, agrees = _verify(conn, _targets(conn, (0, 6)))
        assert not agrees and isinstance(line, VerificationFailed), line
        assert "take 9 of public.vsrc's 10 rows" in str(line), line
        # a row two bounds take (4)
        line, agrees = _verify(conn, _targets(conn, (0, 4)))
        assert not agrees and "take 11 of public.vsrc's 10 rows" in str(line), line
        # a row changed in a target
        targets = _targets(conn, (0, 5))
        conn.execute("UPDATE public.vt1 SET v = 'changed' WHERE k = 7")
        line, agrees = _verify(conn, targets)
        assert not agrees and str(line).startswith("vt1 holds 5 rows (checksum "), line
        conn.execute("DROP TABLE public.vsrc, public.vt0, public.vt1")


def test_the_drop_reads_no_row_and_keeps_a_source_not_recorded_verified(db):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        before = per_bound(conn)
    plan = plan_for(db, "split", scenario.values)
    drop = plan.steps[-1]
    assert drop.title.startswith("Drop ") and "verified before the swap" in drop.title
    with db.connect() as conn:
        text = "\n".join(st.render(conn) for st in drop.statements)
        new = sql.Identifier(SCHEMA, SPLIT_NEW).as_string(conn)
    assert "hashtextextended" not in text and "count(" not in text and new not in text, text
    assert [lk.relation for lk in drop.locks] == [g.name for g in plan.facts.destroys]

    def stop_at_drop(event: str, step: int, _stmt: int, runner) -> None:
        if event == "statement" and step == len(plan.steps):
            runner.cancel()

    assert run(db, plan, hook=stop_at_drop).outcome == Outcome.CANCELLED
    state = sql.SQL("UPDATE {} SET state = %s WHERE role = %s").format(markers.REGISTRY)
    with db.connect() as conn:
        conn.execute(state, ("copied", markers.MOVE_SOURCE_ROLE))
    refused = run(db, plan_for(db, "split", scenario.values))
    assert refused.outcome == Outcome.FAILED, refused.error
    assert "does not record" in refused.error and "it is kept" in refused.error, refused.error
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE"
                            " 'pgparts\\_moved\\_%' AND relkind = 'r'").fetchone()[0] == 1
        conn.execute(state, (VERIFIED, markers.MOVE_SOURCE_ROLE))
    done = run(db, plan_for(db, "split", scenario.values))
    assert done.ok, done.error
    assert "recorded as verified by this move" in done.steps[-1].verification
    with db.connect() as conn:
        assert scenario.fixed(conn) and per_bound(conn) == before and leftovers(conn) == []


def test_drain_verification_counts_the_defaults_rows(db):
    """The new bounds (the new DEFAULT's among them) checked in one pass over the DEFAULT."""
    scenario = MOVE_SCENARIOS["drain_default"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        before = per_bound(conn)
    result = run(db, plan_for(db, "drain-default", scenario.values))
    assert result.ok, result.error
    verified = next(o for o in result.steps if o.title.startswith("Verify new"))
    assert "rows in exactly one bound" in verified.verification, verified.verification
    with db.connect() as conn:
        assert scenario.fixed(conn) and per_bound(conn) == before and leftovers(conn) == []


def test_the_drop_gives_way_to_the_readers_of_a_table_its_keys_reference(db):
    """DROP TABLE of the detached source drops its foreign keys, which takes ACCESS EXCLUSIVE on
    the referenced table: while a transaction reads that table, the drop step's lock waits end
    at a fifth of deadlock_timeout (not at lock_timeout, 2 s) and it retries, so other readers
    queued behind it wait that long at most."""
    scenario = MOVE_SCENARIOS["split"]
    dim = ident('dïm ";x')
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        before = per_bound(conn)
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(dim))
        conn.execute(sql.SQL("INSERT INTO {} SELECT DISTINCT id FROM {}").format(
            dim, ident(TABLE)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD FOREIGN KEY (id) REFERENCES {}").format(
            ident(TABLE), dim))
    plan = plan_for(db, "split", scenario.values)
    drop = plan.steps[-1]
    assert drop.retry == "give-way"
    assert any(lk.mode == "ACCESS EXCLUSIVE" and lk.relation == display_name(
        SCHEMA, 'dïm ";x') for lk in drop.locks), drop.locks

    def stop_at_drop(event: str, step: int, _stmt: int, runner) -> None:
        if event == "statement" and step == len(plan.steps):
            runner.cancel()

    assert run(db, plan, hook=stop_at_drop).outcome == Outcome.CANCELLED
    config = PlansConfig(lock_timeout_seconds=2.0, lock_retries=1)
    finish = plan_for(db, "split", scenario.values)
    done: list = []
    with psycopg.connect(db.dsn) as holder, psycopg.connect(db.dsn, autocommit=True) as probe:
        holder.execute(sql.SQL("SELECT count(*) FROM {}").format(dim))  # ACCESS SHARE, held
        worker = threading.Thread(target=lambda: done.append(PlanRunner(
            db.target, finish, config=config, backoff_base=0.02).run()))
        worker.start()
        waits = []
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            t0 = time.monotonic()
            probe.execute(sql.SQL("SELECT count(*) FROM {}").format(dim))
            waits.append(time.monotonic() - t0)
            time.sleep(0.01)
        holder.rollback()
        worker.join()
    assert done[0].ok, done[0].error
    assert done[0].steps[-1].lock_timeouts >= 2  # it gave way, more than once
    assert max(waits) < 0.6, max(waits)  # lock_timeout (2 s) would have held it up 1.5 s
    with db.connect() as conn:
        assert scenario.fixed(conn) and per_bound(conn) == before and leftovers(conn) == []
