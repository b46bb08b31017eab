"""The whole analysis on the demo's own legacy.payment (scenario 3), as the wizard will run it:
preflight, key, tie-break, duplicates, collisions, layout; the two data stages' SQL run in one
transaction rolled back leaves the new key unique but for the group that cannot be fixed."""

from __future__ import annotations

from datetime import UTC, datetime

from tui.core.migrate.collisions import find_collisions, rewrite_statement
from tui.core.migrate.duplicates import dedupe_statements, find_duplicates
from tui.core.migrate.keys import propose_keys, propose_tiebreak, surrogate_key
from tui.core.migrate.layout import propose_layout, validate_layout
from tui.core.migrate.preflight import preflight, rows_per_period
from tui.demo.seed import OVER_60_COUNT, OVER_60_PDM

from .conftest import SCENARIO_NOW


def test_legacy_payment_analysis(scenario_db):
    with scenario_db.connect() as conn:
        pf = preflight(conn, "legacy", "payment", "pay_ts", "year", exact=True)
        table, pc, deps = pf.table, pf.column, pf.dependents
        assert [p.start.year for p in pf.rows.periods] == [2019, 2020]
        assert sum(p.rows for p in pf.rows.periods) == pf.rows.total_rows > 0
        assert {(f.table, f.columns) for f in deps.referencing_fks} == {
            ("payment_bonus", ("pay_id",)), ("payment_ext", ("pay_id",)),
            ("payment_ext", ("orig_pay_id",))}
        assert {f.ref_table for f in deps.own_fks} == {"pdm", "tariff_info"}
        assert deps.sequences == [("legacy", "payment_pay_id_seq", "pay_id", "serial")]
        assert surrogate_key(table, deps) == "pay_id"

        keys = propose_keys(conn, table, pc, deps, probe=True)
        key = keys[0].columns
        assert key == ("pay_ts", "pdm_id") and keys[0].unique is False
        tiebreak = propose_tiebreak(conn, table, key, deps)[0].column
        assert tiebreak == "tracer"

        dups = find_duplicates(conn, table, key, tiebreak, "pay_id", deps.referencing_fks)
        assert dups.groups > 0 and dups.rows_to_delete >= dups.groups
        # the demo's references point at the copy the dedupe keeps
        assert [r.rows for r in dups.repoint] == [0, 0, 0]
        coll = find_collisions(conn, table, pc, key, tiebreak)
        assert coll.groups > 0
        assert [(g.prefix, g.size) for g in coll.unfixable] == [((OVER_60_PDM,), OVER_60_COUNT)]

        months = rows_per_period(conn, table, pc, "month", exact=True)
        layout = propose_layout(months, "payment", target_rows=pf.rows.total_rows // 3,
                                now=SCENARIO_NOW)
        assert layout[-1].name == "payment_default"
        assert layout[-2].lo >= datetime(2027, 1, 1, tzinfo=UTC)  # the future one
        check = validate_layout(conn, layout, pc, now=SCENARIO_NOW)
        assert check.ok and check.warnings == []

        rows_before = pf.rows.total_rows
        with conn.transaction(force_rollback=True):
            conn.execute(rewrite_statement(table, pc, key, tiebreak))
            for st in dedupe_statements(table, dups.columns, "pay_id", deps.referencing_fks):
                conn.execute(st)
            left = conn.execute(
                "SELECT pdm_id, count(*) FROM legacy.payment GROUP BY pdm_id, pay_ts"
                " HAVING count(*) > 1").fetchall()
            assert left == [(OVER_60_PDM, OVER_60_COUNT)]
            assert conn.execute("SELECT count(*) FROM legacy.payment").fetchone()[0] \
                == rows_before - dups.rows_to_delete
        assert conn.execute("SELECT count(*) FROM legacy.payment").fetchone()[0] == rows_before
