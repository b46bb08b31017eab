"""Consolidation against real servers: status, selection, content kept, resume, weird names."""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg import sql

from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import (
    CONSOLIDATED,
    HASH_PARTITIONED,
    LIST_PARTITIONED,
    ConsolidationError,
    build_consolidation_plan,
    consolidation_status,
)
from tui.core.plans.engine import journal

from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
    user_tables,
    week_checksums,
)


def _parent_index_adoption(conn, schema: str, table: str) -> tuple[int, int]:
    """(indexes on the table, how many of them are attached to a parent index)."""
    row = conn.execute(
        "SELECT count(*), count(i.inhparent) FROM pg_index x"
        " LEFT JOIN pg_inherits i ON i.inhrelid = x.indexrelid"
        " WHERE x.indrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n"
        "   ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s)",
        (schema, table)).fetchone()
    return row[0], row[1]


def test_status_and_selection(db):
    with db.connect() as conn:
        b = build_balances(conn)
        st = consolidation_status(conn, "account_balances")
        assert [w.name for w in st.weeks] == [*b.weeks, b.current]
        assert {w.status for w in st.weeks} == {HASH_PARTITIONED}
        assert all(w.subpartitions == 4 for w in st.weeks)
        assert st.weeks[0].rows == 240
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS, batch=2)
        assert [w["partition"] for w in plan.details["weeks"]] == b.weeks[:2]
        # the current week is never old enough
        plan = build_consolidation_plan(conn, "account_balances", batch=10,
                                        older_than=timedelta(days=1))
        assert [w["partition"] for w in plan.details["weeks"]] == b.weeks
        with pytest.raises(ConsolidationError, match="no partition named"):
            build_consolidation_plan(conn, "account_balances", weeks=["nope"])
        with pytest.raises(ConsolidationError, match="not a partitioned table|no partitioned"):
            build_consolidation_plan(conn, "account_balances_2024_01_07_hash_0")


def test_consolidates_hash_weeks_keeping_every_row(db):
    with db.connect() as conn:
        b = build_balances(conn)
        before = week_checksums(conn, b, OLD_WEEKS)
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
    result = PlanRunner(db.target, plan, config=FAST_PLANS).run()
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS) == before
        st = consolidation_status(conn, "account_balances")
        assert [(w.name, w.status) for w in st.weeks] == [
            *((f"{w}_consolidated", CONSOLIDATED) for w in b.weeks), (b.current, HASH_PARTITIONED)]
        assert st.detached == []
        tables = user_tables(conn, "public")
        assert not any(t in tables for t in b.weeks)
        assert not any("_hash_" in t and "2024" in t for t in tables)
        # every parent index (PK + 5) was adopted, none built twice
        assert _parent_index_adoption(conn, "public", f"{b.weeks[0]}_consolidated") == (6, 6)
        # no helper left behind
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgparts%'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = "
                            "'pgparts_bound_check'").fetchone()[0] == 0
        assert conn.execute(
            "SELECT pg_stat_get_last_analyze_time(%s::regclass) IS NOT NULL",
            (f"public.{b.weeks[0]}_consolidated",)).fetchone()[0]
    assert result.details["bytes_after"] > 0
    entry = journal.read(limit=1)[0]
    assert entry["outcome"] == "ok" and entry["plan"] == "consolidate"
    assert entry["target"] == "account_balances" and entry["rows_copied"] == 720
    assert entry["db_user"] and entry["os_user"]
    assert entry["details"]["bytes_before"] > 0 and entry["details"]["bytes_after"] > 0


def test_keep_detached_then_drop_on_rerun(db):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], default_partition=True)
        before = week_checksums(conn, b, OLD_WEEKS[:1])
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS,
                                        keep_detached=True)
    assert PlanRunner(db.target, plan, config=FAST_PLANS).run().ok
    with db.connect() as conn:
        st = consolidation_status(conn, "account_balances")
        assert [d.name for d in st.detached] == [b.weeks[0]]
        assert week_checksums(conn, b, OLD_WEEKS[:1]) == before
        # no helper stays on the live partition while the original waits to be dropped
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgparts%'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgparts%'"
                            ).fetchone()[0] == 0
        # the detached original still holds its rows, with its hash partitions
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            b.week_ident(b.weeks[0]))).fetchone()[0] == 240
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
        assert [s.title for s in plan.steps] == [f"Drop the detached {b.weeks[0]}"]
    result = PlanRunner(db.target, plan, config=FAST_PLANS).run()
    assert result.ok, result.error
    assert "no change counter" in result.steps[0].verification  # compared in full
    with db.connect() as conn:
        assert consolidation_status(conn, "account_balances").detached == []
        assert b.weeks[0] not in user_tables(conn, "public")


def test_list_partitioned_weeks_and_weird_names(db):
    schema, parent = 'Ödd "Schema"', 'Account Balances; "Ω"'
    with db.connect() as conn:
        b = build_balances(conn, schema=schema, parent=parent, sub="list",
                           weeks=OLD_WEEKS[:2], rows_per_week=120)
        st = consolidation_status(conn, b.spec)
        assert st.weeks[0].status == LIST_PARTITIONED and st.weeks[0].subpartitions == 2
        before = week_checksums(conn, b, OLD_WEEKS[:2])
        plan = build_consolidation_plan(conn, b.spec, config=FAST_PLANS)
        script = plan.to_sql(conn)
    assert 'LOCK TABLE "Ödd ""Schema"""."Account Balances; ""Ω""_2024_01_07"' in script
    result = PlanRunner(db.target, plan, config=FAST_PLANS).run()
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:2]) == before
        names = {w.name: w.status for w in consolidation_status(conn, b.spec).weeks}
        assert names[f"{parent}_2024_01_07_consolidated"] == CONSOLIDATED
        assert user_tables(conn, schema) == {
            parent, f"{parent}_2024_01_07_consolidated", f"{parent}_2024_01_14_consolidated",
            b.current, f"{b.current}_holding", f"{b.current}_trading"}


def test_name_too_long_is_refused(db):
    with db.connect() as conn:
        build_balances(conn, parent="b" * 45, weeks=OLD_WEEKS[:1], rows_per_week=4)
        with pytest.raises(ConsolidationError, match="bytes; PostgreSQL keeps only 63"):
            build_consolidation_plan(conn, "b" * 45)
