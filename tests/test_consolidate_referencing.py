"""Consolidation of a table other tables reference by foreign key: the swap drops those keys,
re-creates them NOT VALID and validates them after the swap, as the move kinds do."""

from __future__ import annotations

from psycopg import sql

from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import CONSOLIDATED, consolidation_status

from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
    consolidation_plan,
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
