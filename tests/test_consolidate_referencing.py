"""Consolidation of a table other tables reference by foreign key: the swap drops those keys,
re-creates them NOT VALID and validates them after the swap, as the move kinds do."""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg import sql

from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import (
    CONSOLIDATED,
    ConsolidationError,
    build_consolidation_plan,
    consolidation_status,
)

from .test_consolidate_resume import _kill_at
from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
    consolidation_plan,
    current_week_start,
    run_plan,
    week_checksums,
)


def _reference(conn, table: str = "transfers", key: str = "transfers_balance_fkey") -> None:
    """A table whose rows reference every row of the parent's oldest week."""
    t = sql.Identifier("public", table)
    conn.execute(sql.SQL(
        "CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " account_address varchar(255) NOT NULL, \"timestamp\" timestamptz NOT NULL,"
        " activity_id text NOT NULL, CONSTRAINT {k} FOREIGN KEY"
        " (account_address, \"timestamp\", activity_id) REFERENCES public.account_balances"
        " (account_address, \"timestamp\", activity_id) ON DELETE CASCADE)").format(
        t=t, k=sql.Identifier(key)))
    conn.execute(sql.SQL(
        "INSERT INTO {} (account_address, \"timestamp\", activity_id)"
        " SELECT account_address, \"timestamp\", activity_id FROM public.account_balances"
        " WHERE \"timestamp\" < {}").format(t, sql.Literal(OLD_WEEKS[1].isoformat())))


def _keys(conn) -> list[tuple[str, bool]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT conname, convalidated FROM pg_catalog.pg_constraint"
        " WHERE contype = 'f' AND conparentid = 0"
        " AND confrelid = 'public.account_balances'::pg_catalog.regclass"
        " ORDER BY conname").fetchall()]


def test_consolidates_a_referenced_table_keeping_rows_and_keys(db):
    with db.connect() as conn:
        b = build_balances(conn)
        _reference(conn)
        before = week_checksums(conn, b, OLD_WEEKS)
        referencing = conn.execute("SELECT count(*) FROM public.transfers").fetchone()[0]
        assert referencing == 240
    plan = consolidation_plan(db)
    result = PlanRunner(db.target, plan, config=FAST_PLANS).run()
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS) == before
        st = consolidation_status(conn, "account_balances")
        assert [w.status for w in st.weeks[:3]] == [CONSOLIDATED] * 3
        assert st.detached == []
        assert conn.execute("SELECT count(*) FROM public.transfers").fetchone()[0] == 240
        # the key is back, validated, and enforced against the new partitions
        assert _keys(conn) == [("transfers_balance_fkey", True)]
        conn.execute(sql.SQL("DELETE FROM public.account_balances WHERE \"timestamp\" < {}"
                             ).format(sql.Literal(OLD_WEEKS[1].isoformat())))
        assert conn.execute("SELECT count(*) FROM public.transfers").fetchone()[0] == 0


def test_two_keys_on_one_table_and_a_deferred_one(db):
    """A table with two keys on the parent (PostgreSQL names the per-partition entries by a
    rule that a placeholder keeps off the other key's name) and a deferred key."""
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40)
        _reference(conn, "Tränsfers; x", "first key")
        conn.execute(
            "ALTER TABLE public.\"Tränsfers; x\" ADD FOREIGN KEY"
            " (account_address, \"timestamp\", activity_id) REFERENCES public.account_balances"
            " DEFERRABLE INITIALLY DEFERRED")
        keys = _keys(conn)
        before = week_checksums(conn, b, OLD_WEEKS[:1])
    plan = consolidation_plan(db)
    assert any("re-created NOT VALID" in n for n in plan.facts.notes)
    titles = [s.title for s in plan.steps]
    assert titles.index(f"Swap {b.weeks[0]} for {b.weeks[0]}_consolidated") \
        < next(i for i, t in enumerate(titles) if t.startswith("Validate "))
    result = PlanRunner(db.target, plan, config=FAST_PLANS).run()
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:1]) == before
        assert _keys(conn) == keys and all(valid for _n, valid in keys)
        assert conn.execute("SELECT count(*) FROM public.\"Tränsfers; x\"").fetchone()[0] == 40
        # no placeholder CHECK left behind
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'c'"
                            " AND conrelid = 'public.\"Tränsfers; x\"'::pg_catalog.regclass"
                            ).fetchone()[0] == 0


@pytest.mark.parametrize("keep", [False, True], ids=["drop", "keep-detached"])
def test_a_run_stopped_before_the_validation_is_finished_by_the_next(db, keep):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:2], rows_per_week=40)
        _reference(conn)
        before = week_checksums(conn, b, OLD_WEEKS[:2])
    plan = consolidation_plan(db, weeks=[b.weeks[0]], keep_detached=keep)
    validate = next(i for i, s in enumerate(plan.steps) if s.title.startswith("Validate ")) + 1
    first = run_plan(db, plan, hook=_kill_at(db, ("before_commit", validate, 0)))
    assert first.outcome == "failed" and "resume" in first.state
    with db.connect() as conn:
        assert _keys(conn) == [("transfers_balance_fkey", False)]  # enforced, not validated
    plan = consolidation_plan(db, keep_detached=keep)
    assert plan.steps[0].title == "Validate transfers_balance_fkey on transfers"
    result = run_plan(db, plan)
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert _keys(conn) == [("transfers_balance_fkey", True)]
        assert week_checksums(conn, b, OLD_WEEKS[:2]) == before
        assert [w.status for w in consolidation_status(conn, "account_balances").weeks[:2]] \
            == [CONSOLIDATED] * 2
    # nothing left to validate: the next plan has no such step
    with db.connect() as conn:
        again = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS,
                                         keep_detached=keep)
        assert not any(s.title.startswith("Validate ") for s in again.steps)


def test_a_partitioned_referencing_table_is_refused_before_anything_runs(db):
    with db.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=20)
        conn.execute(
            "CREATE TABLE public.refs (account_address varchar(255), \"timestamp\" timestamptz,"
            " activity_id text, CONSTRAINT refs_fk FOREIGN KEY"
            " (account_address, \"timestamp\", activity_id) REFERENCES public.account_balances)"
            " PARTITION BY HASH (activity_id)")
        with pytest.raises(ConsolidationError) as err:
            build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
    assert "\n" not in str(err.value)
    assert "refs is partitioned and references the table (refs_fk)" in str(err.value)


def test_a_key_left_not_valid_stays_so(db):
    """A key someone added NOT VALID (here with a row it would refuse) is re-created as it was,
    not validated: the validation would fail after the swap, on every later run too."""
    with db.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=20)
        conn.execute("CREATE TABLE public.loose (account_address varchar(255),"
                     " \"timestamp\" timestamptz, activity_id text)")
        conn.execute("INSERT INTO public.loose VALUES ('nobody', '2024-01-08', 'x')")
        conn.execute("ALTER TABLE public.loose ADD CONSTRAINT loose_fk FOREIGN KEY"
                     " (account_address, \"timestamp\", activity_id)"
                     " REFERENCES public.account_balances NOT VALID")
    plan = consolidation_plan(db)
    assert not any(s.title.startswith("Validate ") for s in plan.steps)
    result = run_plan(db, plan)
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert _keys(conn) == [("loose_fk", False)]
        assert conn.execute("SELECT count(*) FROM public.loose").fetchone()[0] == 1


def test_the_exported_script_consolidates_a_referenced_table(db, tmp_path):
    from .test_consolidate_script import CONFIG, PSQL, _psql

    if PSQL is None:
        pytest.skip("psql is not installed")
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=20)
        _reference(conn)
        before = week_checksums(conn, b, OLD_WEEKS[:1])
        script = build_consolidation_plan(conn, "account_balances", config=CONFIG).to_sql(conn)
    assert "NOT VALID" in script and "VALIDATE CONSTRAINT" in script
    done = _psql(db, tmp_path, script)
    assert done.returncode == 0, done.stderr
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:1]) == before
        assert _keys(conn) == [("transfers_balance_fkey", True)]
        assert conn.execute("SELECT count(*) FROM public.transfers").fetchone()[0] == 20


def test_maintain_consolidates_a_referenced_table_and_reports_a_refused_one(db, capsys,
                                                                             tmp_path):
    from .test_maintain import cli, config, layout

    current = current_week_start()
    weeks = [current - timedelta(weeks=12)]
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=10, weeks=weeks)
        _reference(conn)
        o = build_balances(conn, parent="other_balances", rows_per_week=10, weeks=weeks)
        conn.execute(
            "CREATE TABLE public.refs (account_address varchar(255), \"timestamp\" timestamptz,"
            " activity_id text, CONSTRAINT refs_fk FOREIGN KEY"
            " (account_address, \"timestamp\", activity_id) REFERENCES public.other_balances)"
            " PARTITION BY HASH (activity_id)")
    cfg = config(tmp_path, "".join(f"""
[policy."public.{t}"]
consolidate_older_than = "8 weeks"
""" for t in ("account_balances", "other_balances")))
    status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
    assert status == 2, (out, err)
    refused = [ln for ln in (out + err).splitlines() if "refs_fk" in ln]
    assert len(refused) == 1 and "other_balances" in refused[0], (out, err)
    names = {r[1] for r in layout(db) if r[0] == "public"}
    assert f"{b.weeks[0]}_consolidated" in names and b.weeks[0] not in names
    assert o.weeks[0] in names and f"{o.weeks[0]}_consolidated" not in names
    with db.connect() as conn:
        assert _keys(conn) == [("transfers_balance_fkey", True)]
