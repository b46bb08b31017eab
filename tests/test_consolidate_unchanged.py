"""The build verifies the copy; the verify and drop steps skip re-reading both tables only when
nothing can have changed them since. Every way of changing a table after that point (a write
through the parent after the swap, a write under session_replication_role = replica, TRUNCATE,
triggers disabled for a while) must bring back the full comparison, which then decides."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import (
    CONSOLIDATED,
    HASH_PARTITIONED,
    build_consolidation_plan,
    consolidation_status,
)

from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
    consolidation_plan,
    helper_objects,
    run_plan,
    user_tables,
    week_checksums,
)

UNCHANGED = "unchanged since the build verified them equal"
WEEK = OLD_WEEKS[0]


def _on_step(step: int, action):
    def hook(event: str, i: int, stmt: int, runner: PlanRunner) -> None:
        if (event, i) == ("step", step):
            action()
    return hook


def test_untouched_week_is_verified_once_in_the_build(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=[WEEK], rows_per_week=200)
        before = week_checksums(conn, b, [WEEK])
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
        script = plan.to_sql(conn)
    # the build compares both checksums after the copy, before the index builds
    build_sql = script.split("-- Step 2/")[0]
    compare = "SELECT o.n, o.h, c.n, c.h FROM (SELECT pg_catalog.count(*)"
    assert build_sql.index(compare) < build_sql.index("ADD PRIMARY KEY")
    result = run_plan(db, plan)
    assert result.ok, (result.error, result.state)
    build, _analyze, verify, _swap, drop, removal = result.steps
    assert build.rows == 200
    assert "200 rows copied, checksum" in build.verification
    assert UNCHANGED in verify.verification
    assert UNCHANGED in drop.verification and "every row of" in drop.verification
    assert removal.status == "done"
    assert all(o.hold_seconds is None for o in result.steps if o is not _swap)  # parent only
    with db.connect() as conn:
        assert week_checksums(conn, b, [WEEK]) == before
        assert helper_objects(conn) == []
        assert consolidation_status(conn, "account_balances").weeks[0].status == CONSOLIDATED


@pytest.mark.parametrize("write, drops", [
    ("INSERT INTO public.account_balances VALUES"
     " ('2024-01-08', 'late', 1, 'dex_swap', '{}')", True),
    ("DELETE FROM public.account_balances WHERE account_address = 'rdx1q' || md5('7')", False),
    ("UPDATE public.account_balances SET usd_value = usd_value + 1"
     " WHERE account_address = 'rdx1q' || md5('8')", False),
], ids=["insert", "delete", "update"])
def test_write_to_the_live_partition_after_the_swap_brings_back_the_full_check(db, write, drops):
    with db.connect() as conn:
        b = build_balances(conn, weeks=[WEEK], rows_per_week=120)
    # between the swap and the drop, an application writes to the consolidated week
    result = run_plan(db, consolidation_plan(db), hook=_on_step(5, lambda: db.execute(write)))
    drop = result.steps[4]
    assert UNCHANGED in result.steps[2].verification
    if drops:  # an insert keeps every row of the original in the partition
        assert result.ok, (result.error, result.state)
        assert "row write(s) counted since the copy" in drop.verification
        assert "all 120 rows of" in drop.verification
    else:
        assert result.outcome == "failed" and drop.status == "failed"
        assert "1 of the 120 rows" in result.error and "is kept" in result.error
    with db.connect() as conn:
        st = consolidation_status(conn, "account_balances")
        assert st.detached == []
        assert [d.name for d in st.kept] == ([] if drops else [b.weeks[0]])
        if not drops:  # the original is intact and reported as kept, with why
            assert "1 of the 120 rows" in st.kept[0].refused
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                b.week_ident(b.weeks[0]))).fetchone()[0] == 120
            assert f"pgparts_changes_{st.kept[0].oid}" in helper_objects(conn)
    if not drops:
        # the next apply does not fail on it again: it only removes the counter, whose proof
        # is no longer needed (a later --drop-kept compares in full)
        plan = consolidation_plan(db)
        assert [s.title.split()[0] for s in plan.steps] == ["Remove"]
        assert any("kept " + b.weeks[0] in line and "--drop-kept" in line
                   for line in plan.summary)
        assert run_plan(db, plan).ok
        with db.connect() as conn:
            assert helper_objects(conn) == []
            assert [d.name for d in consolidation_status(conn, "account_balances").kept] == [
                b.weeks[0]]


def test_delete_in_flight_on_the_live_partition_during_the_drop(db):
    """A delete on the live partition, not yet committed while the drop checks: its BEFORE
    trigger counted it already, so the drop compares in full, and like any snapshot it sees
    the row still there (as the comparison did before the counter existed). Removing the
    counter then waits for that writer, gives up cleanly, and the next run finishes it."""
    with db.connect() as conn:
        b = build_balances(conn, weeks=[WEEK], rows_per_week=60)
    other = psycopg.connect(db.dsn)
    try:
        def delete_uncommitted() -> None:
            other.execute("DELETE FROM public.account_balances"
                          " WHERE account_address = 'rdx1q' || md5('3')")

        first = run_plan(db, consolidation_plan(db), hook=_on_step(5, delete_uncommitted))
        drop, removal = first.steps[4:]
        assert drop.status == "done"
        assert "1 row write(s) counted" in drop.verification and UNCHANGED not in \
            drop.verification
        assert first.outcome == "failed" and removal.status == "failed"
        assert "could not get ACCESS EXCLUSIVE" in first.error
        other.commit()
    finally:
        other.close()
    with db.connect() as conn:
        assert helper_objects(conn)  # still on the live partition
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
    assert [s.title for s in plan.steps] == [
        f"Remove the change counter from {b.weeks[0]}_consolidated"]
    assert run_plan(db, plan).ok
    with db.connect() as conn:
        assert helper_objects(conn) == []
        assert conn.execute("SELECT count(*) FROM public.account_balances").fetchone()[0] == 59


def _leaf(b) -> sql.Identifier:
    return b.week_ident(f"{b.weeks[0]}_hash_0")


def _copy(b) -> sql.Identifier:
    return b.week_ident(f"{b.weeks[0]}_consolidated")


@pytest.mark.parametrize("case", ["truncate leaf", "truncate copy", "triggers disabled"])
def test_changes_that_bypass_row_triggers_are_caught_by_the_full_comparison(db, case):
    with db.connect() as conn:
        b = build_balances(conn, weeks=[WEEK], rows_per_week=80)
        before = week_checksums(conn, b, [WEEK])

    def tamper() -> None:  # after the build committed, before the verification
        with psycopg.connect(db.dsn, autocommit=True) as c:
            if case == "truncate leaf":
                c.execute(sql.SQL("TRUNCATE {}").format(_leaf(b)))
            elif case == "truncate copy":
                c.execute(sql.SQL("TRUNCATE {}").format(_copy(b)))
            else:  # a bulk fix with triggers off, then everything put back as it was
                c.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(_leaf(b)))
                c.execute(sql.SQL("DELETE FROM {} WHERE ctid = '(0,1)'").format(_leaf(b)))
                c.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER pgparts_changes,"
                                  " ENABLE ALWAYS TRIGGER pgparts_mirror").format(_leaf(b)))
        with psycopg.connect(db.dsn, autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM pg_sequences WHERE sequencename LIKE"
                             " 'pgparts_changes_%' AND last_value IS NOT NULL"
                             ).fetchone()[0] == 0  # the counter saw nothing

    result = run_plan(db, consolidation_plan(db), hook=_on_step(3, tamper))
    assert result.outcome == "failed", result.steps[2].verification
    assert "verification failed" in result.error and "checksum" in result.error
    assert [o.status for o in result.steps] == ["done", "done", "failed", "pending", "pending",
                                                "pending"]
    with db.connect() as conn:
        st = consolidation_status(conn, "account_balances")
        assert st.weeks[0].status == HASH_PARTITIONED and st.weeks[0].pending
        if case == "truncate copy":  # the week itself was not touched
            assert week_checksums(conn, b, [WEEK]) == before


def test_replica_role_writes_are_mirrored_and_counted(db):
    """session_replication_role = replica (logical replication's apply) skips ordinary
    triggers; the mirror and the counter are ALWAYS triggers, on every partition."""
    with db.connect() as conn:
        b = build_balances(conn, weeks=[WEEK], rows_per_week=80)

    def replica_write() -> None:
        with psycopg.connect(db.dsn, autocommit=True) as c:
            c.execute("SET session_replication_role = replica")
            for i in range(4):  # lands in every hash partition sooner or later
                c.execute("INSERT INTO public.account_balances VALUES"
                          " ('2024-01-09', %s, 1, 'dex_swap', '{}')", (f"replica-{i}",))
            c.execute("DELETE FROM public.account_balances"
                      " WHERE account_address = 'rdx1q' || md5('5')")

    with db.connect() as conn:
        before_rows = conn.execute("SELECT count(*) FROM public.account_balances").fetchone()[0]
    result = run_plan(db, consolidation_plan(db), hook=_on_step(3, replica_write))
    assert result.ok, (result.error, result.state)
    assert "row write(s) counted since the copy" in result.steps[2].verification
    assert "83 rows, checksum" in result.steps[2].verification
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.account_balances").fetchone()[0] == \
            before_rows + 3
        assert conn.execute("SELECT count(*) FROM public.account_balances WHERE account_address"
                            " LIKE 'replica-%'").fetchone()[0] == 4
        assert helper_objects(conn) == []
        assert f"{b.weeks[0]}_consolidated" in user_tables(conn, "public")


def test_writer_without_privileges_on_the_counter_is_not_refused(db):
    """The counter's function runs as its owner: an application role that may write to the
    parent, and nothing else, keeps writing to the consolidated week before the drop."""
    role = f"pgparts_app_{uuid.uuid4().hex[:8]}"
    with db.connect() as conn:
        build_balances(conn, weeks=[WEEK], rows_per_week=40)
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT INSERT, SELECT ON public.account_balances TO {}").format(
            sql.Identifier(role)))

    def app_insert() -> None:
        with psycopg.connect(db.dsn, autocommit=True) as c:
            c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            c.execute("INSERT INTO public.account_balances VALUES"
                      " ('2024-01-10', 'app', 1, 'dex_swap', '{}')")

    try:
        result = run_plan(db, consolidation_plan(db), hook=_on_step(5, app_insert))
        assert result.ok, (result.error, result.state)
        assert "1 row write(s) counted" in result.steps[4].verification
        assert db.query("SELECT count(*) FROM public.account_balances WHERE account_address = 'app'"
                        ) == [(1,)]
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_writer_with_privileges_on_the_parent_only_keeps_writing_to_the_week(db):
    """Between the build and the swap the mirror trigger writes to the new table with the
    writer's privileges: the new table gets the parent's and the week's grants, so an
    application role allowed on the parent only is not refused, and after the swap the new
    partition carries the same privileges for direct access."""
    role = f"pgparts_app_{uuid.uuid4().hex[:8]}"
    with db.connect() as conn:
        b = build_balances(conn, weeks=[WEEK], rows_per_week=40)
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE"
                             " ON public.account_balances TO {}")
                     .format(sql.Identifier(role)))

    def app_writes() -> None:  # after the build committed, before the swap
        with psycopg.connect(db.dsn, autocommit=True) as c:
            c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            c.execute("INSERT INTO public.account_balances VALUES"
                      " ('2024-01-10', 'app', 1, 'dex_swap', '{}')")
            c.execute("UPDATE public.account_balances SET usd_value = 2"
                      " WHERE account_address = 'app'")
            c.execute("DELETE FROM public.account_balances"
                      " WHERE account_address = 'rdx1q' || md5('3')")

    plan = consolidation_plan(db)
    with db.connect() as conn:
        assert any("GRANT" in st.render(conn) for st in plan.steps[0].statements)
        before = conn.execute("SELECT count(*) FROM public.account_balances").fetchone()[0]
    try:
        result = run_plan(db, plan, hook=_on_step(2, app_writes))
        assert result.ok, (result.error, result.state)
        assert db.query("SELECT usd_value FROM public.account_balances"
                        " WHERE account_address = 'app'") == [(2,)]
        assert db.query("SELECT count(*) FROM public.account_balances") == [(before,)]  # +1 -1
        privileges = db.query(
            "SELECT has_table_privilege(%s, %s, 'INSERT'), has_table_privilege(%s, %s, 'DELETE')",
            (role, f"{b.weeks[0]}_consolidated", role, f"{b.weeks[0]}_consolidated"))
        assert privileges == [(True, True)]
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
