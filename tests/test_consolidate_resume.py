"""What users hit first: resuming after the swap committed, a kept original reported once (not a
failure of every later run), names typed the way `tree` reads them, future weeks, tables with
nothing to consolidate, the DEFAULT partition's scan under the parent's lock, and planning from
an already loaded forest."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.plans import PlanRunner
from tui.core.plans import consolidate as consolidate_module
from tui.core.plans.consolidate import (
    PLAIN,
    ConsolidationError,
    build_consolidation_plan,
    consolidation_status,
)

from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
    consolidation_plan,
    current_week_start,
    helper_objects,
    run_plan,
    user_tables,
    week_checksums,
)


def _kill_at(db, point):
    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if (event, step, stmt) == point:
            with psycopg.connect(db.dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (runner.backend_pid,))
                while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                    (runner.backend_pid,)).fetchone():
                    time.sleep(0.01)
    return hook


@pytest.mark.parametrize("point", [("statement", 5, 2), ("before_commit", 5, 0),
                                   ("before_commit", 6, 0)],
                         ids=["drop-check", "drop-commit", "counter-removal"])
def test_same_weeks_again_after_the_swap_committed_finishes(db, point):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=60)
        before = week_checksums(conn, b, OLD_WEEKS[:2])
    first = run_plan(db, consolidation_plan(db, weeks=[b.weeks[0]]), hook=_kill_at(db, point))
    assert first.outcome == "failed" and "resume" in first.state
    # the very same selection, although the week is now detached (or gone)
    plan = consolidation_plan(db, weeks=[b.weeks[0]])
    assert plan.details["weeks"] == []
    second = run_plan(db, plan)
    assert second.ok, (second.error, second.state)
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:2]) == before
        assert helper_objects(conn) == []
        assert b.weeks[0] not in user_tables(conn, "public")
        st = consolidation_status(conn, "account_balances")
        assert st.detached == [] and st.kept == [] and st.counters == []


def test_a_refused_drop_is_reported_once_and_fails_no_later_run(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=60)
    new = sql.Identifier("public", f"{b.weeks[0]}_consolidated")

    def delete_one() -> None:  # a writer deletes a row of the live partition after the swap
        db.execute(sql.SQL("DELETE FROM {} WHERE ctid = '(0,1)'").format(new))

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if (event, step) == ("step", 5):
            delete_one()

    first = run_plan(db, consolidation_plan(db, weeks=[b.weeks[0]]), hook=hook)
    assert first.outcome == "failed" and "1 of the 60 rows" in first.error
    assert f"kept {b.weeks[0]}" in first.state and "--drop-kept" in first.state
    # the next run on another week succeeds and does not retry the refused drop
    second = run_plan(db, consolidation_plan(db, weeks=[b.weeks[1]]))
    assert second.ok, (second.error, second.state)
    assert not any(o.title.startswith("Drop the detached " + b.weeks[0])
                   for o in second.steps)
    with db.connect() as conn:
        st = consolidation_status(conn, "account_balances")
        assert [d.name for d in st.kept] == [b.weeks[0]] and st.detached == []
        assert "1 of the 60 rows" in st.kept[0].refused
        assert helper_objects(conn) == []  # its change counter was removed by the second run
    # --drop-kept verifies again: still missing, still kept
    again = run_plan(db, consolidation_plan(db, drop_kept=[b.weeks[0]]))
    assert again.outcome == "failed" and "1 of the 60 rows" in again.error
    # once the row is back, it drops
    db.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} EXCEPT SELECT * FROM {}").format(
        new, sql.Identifier("public", b.weeks[0]), new))
    plan = consolidation_plan(db, drop_kept=[f'public."{b.weeks[0]}"'])
    assert [s.title for s in plan.steps] == [f"Drop the detached {b.weeks[0]}"]
    assert run_plan(db, plan).ok
    with db.connect() as conn:
        assert b.weeks[0] not in user_tables(conn, "public")
        assert consolidation_status(conn, "account_balances").kept == []
    with pytest.raises(ConsolidationError, match="not an original"):
        consolidation_plan(db, drop_kept=["nope"])


def test_week_names_are_read_like_tree_reads_them(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=4)
    for spec in (b.weeks[0], f'"{b.weeks[0]}"', b.weeks[0].upper(),
                 f"public.{b.weeks[0]}", f'"public"."{b.weeks[0]}"'):
        plan = consolidation_plan(db, weeks=[spec])
        assert [w["partition"] for w in plan.details["weeks"]] == [b.weeks[0]], spec
    with pytest.raises(ConsolidationError, match="no partition named"):
        consolidation_plan(db, weeks=[f'"{b.weeks[0].upper()}"'])  # quoted: the case is kept
    with pytest.raises(ConsolidationError, match="no partition named"):
        consolidation_plan(db, weeks=[f"other.{b.weeks[0]}"])


def test_a_future_week_is_refused(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=4)
        start = current_week_start() + timedelta(days=14)
        name = f"account_balances_{start:%Y_%m_%d}"
        conn.execute(sql.SQL(
            "CREATE TABLE {} PARTITION OF public.account_balances FOR VALUES FROM ({}) TO ({})"
            " PARTITION BY HASH (account_address)").format(
            sql.Identifier("public", name), sql.Literal(start.isoformat()),
            sql.Literal((start + timedelta(days=7)).isoformat())))
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (modulus 1,"
                             " remainder 0)").format(sql.Identifier("public", name + "_h"),
                                                     sql.Identifier("public", name)))
    with pytest.raises(ConsolidationError, match="starts in the future"):
        consolidation_plan(db, weeks=[name])
    # the current week is allowed, with a warning in the summary
    plan = consolidation_plan(db, weeks=[b.current])
    assert any("is not over yet" in line for line in plan.summary)


def test_plain_yearly_partitions_have_nothing_to_consolidate(db):
    db.execute("CREATE TABLE public.payment (id bigint, paid date NOT NULL)"
               " PARTITION BY RANGE (paid)")
    for year in range(2019, 2026):
        db.execute(sql.SQL("CREATE TABLE {} PARTITION OF public.payment"
                           " FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier("public", f"payment_{year}"), sql.Literal(f"{year}-01-01"),
            sql.Literal(f"{year + 1}-01-01")))
    db.execute("CREATE TABLE public.payment_default PARTITION OF public.payment DEFAULT")
    with db.connect() as conn:
        st = consolidation_status(conn, "payment")
        assert [w.status for w in st.weeks] == [PLAIN] * 7 + ["OTHER"]
        assert st.unit == "partition"
        assert st.note.startswith("nothing to consolidate: none of the 8 partitions of payment")
        plan = build_consolidation_plan(conn, "payment")
    assert plan.steps == [] and plan.summary[0] == st.note


def test_swap_does_not_scan_the_default_partition(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40, default_partition=True)
        conn.execute("INSERT INTO public.account_balances SELECT '2020-01-01'::timestamptz"
                     " + i * interval '1 minute', 'd' || i, 1, 'x', '{}'"
                     " FROM generate_series(1, 2000) i")  # rows in the DEFAULT
        before = week_checksums(conn, b, OLD_WEEKS[:1])
    plan = consolidation_plan(db)
    titles = [s.title for s in plan.steps]
    assert titles[3].startswith("Exclude") and titles[4].startswith("Validate")
    assert titles[5].startswith("Swap") and titles[6].startswith("Remove the helper CHECK")
    scans: list[int] = []
    count = "SELECT pg_stat_get_xact_numscans('public.account_balances_default'::regclass)"

    def hook(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        # the backend's scans not yet flushed to the statistics, in the swap's transaction:
        # before its DETACH, and before its COMMIT
        if (event, step, stmt) in (("statement", 6, 1), ("before_commit", 6, 0)):
            scans.append(runner._conn.execute(count).fetchone()[0])

    result = run_plan(db, plan, hook=hook)
    assert result.ok, (result.error, result.state)
    assert len(scans) == 2 and scans[1] == scans[0]  # no scan of the DEFAULT
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:1]) == before
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE"
                            " 'pgparts%'").fetchone()[0] == 0
        # the signal works: the same swap without the helper CHECK scans the DEFAULT
        with conn.transaction():
            first = conn.execute(count).fetchone()[0]
            part = f"public.{b.weeks[0]}_consolidated"
            bound = conn.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class"
                                 " WHERE oid = %s::regclass", (part,)).fetchone()[0]
            conn.execute(sql.SQL("ALTER TABLE public.account_balances DETACH PARTITION {}")
                         .format(sql.Identifier("public", f"{b.weeks[0]}_consolidated")))
            conn.execute(sql.SQL("ALTER TABLE public.account_balances ATTACH PARTITION {} {}")
                         .format(sql.Identifier("public", f"{b.weeks[0]}_consolidated"),
                                 sql.SQL(bound)))
            assert conn.execute(count).fetchone()[0] == first + 1
            raise psycopg.Rollback()
    hold = next(o.hold_seconds for o in result.steps if o.title.startswith("Swap"))
    assert hold is not None and hold < 2.0


def test_plan_from_a_loaded_forest_does_not_load_the_catalog_again(db, monkeypatch):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=4)
        forest = load_forest(conn)

        def refuse(_conn):
            raise AssertionError("the catalog was loaded again")

        monkeypatch.setattr(consolidate_module, "load_forest", refuse)
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS, forest=forest)
    assert [w["partition"] for w in plan.details["weeks"]] == [b.weeks[0]]
