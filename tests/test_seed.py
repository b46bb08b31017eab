"""The demo scenarios: names and shapes as the users described them, one of every finding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import FindingsConfig
from tui.core.findings import CODES, check_forest
from tui.demo.seed import (
    DEMO_NOW_ENV,
    OVER_60_COUNT,
    Layout,
    SeedError,
    demo_now_from_env,
    seed_scenarios,
    week_name,
    week_start,
)

from .conftest import SCENARIO_NOW, SCENARIO_SCALE, Database, _scenario_copy, drop_database

LAYOUT = Layout(SCENARIO_NOW, SCENARIO_SCALE)


@pytest.fixture(scope="module")
def scenarios(pg) -> Iterator[Database]:
    """One copy of the scenarios per version for this module's tests, which only read it."""
    name = _scenario_copy(pg)
    yield Database(pg, name)
    drop_database(pg, name)


def _sunday_midnight(ts: datetime) -> bool:
    ts = ts.astimezone(UTC)
    return ts.weekday() == 6 and (ts.hour, ts.minute, ts.second) == (0, 0, 0)


def test_week_start_is_the_sunday_on_or_before():
    assert week_start(date(2026, 11, 21)) == date(2026, 11, 15)  # a Saturday
    assert week_start(date(2026, 11, 22)) == date(2026, 11, 22)  # a Sunday
    assert week_start(date(2026, 11, 16)) == date(2026, 11, 15)  # a Monday


def test_account_balances_weeks(scenarios):
    with scenarios.connect() as conn:
        forest = load_forest(conn)
    root = forest.find("account_balances")
    assert root.strategy == "range" and root.key_columns == ("timestamp",)
    weeks = sorted(root.children, key=lambda n: n.bound.lower[0].as_datetime())
    assert len(weeks) == 20
    starts = [w.bound.lower[0].as_datetime() for w in weeks]
    for w, lo in zip(weeks, starts, strict=True):
        hi = w.bound.upper[0].as_datetime()
        assert _sunday_midnight(lo) and hi - lo == timedelta(weeks=1), w.name
    assert all(b == a + timedelta(weeks=1) for a, b in zip(starts, starts[1:], strict=False))

    oldest, *hashed = weeks
    assert oldest.name == f"account_balances_{starts[0]:%Y_%m_%d}_consolidated"
    assert oldest.relkind == "r" and oldest.rows > 0
    for w, lo in zip(hashed, starts[1:], strict=True):
        assert w.name == f"account_balances_{lo:%Y_%m_%d}"
        assert w.strategy == "hash" and w.key_columns == ("account_address",)
        assert sorted(c.name for c in w.children) == [f"{w.name}_hash_{r}" for r in range(4)]
        assert {(c.bound.modulus, c.bound.remainder) for c in w.children} == {
            (4, r) for r in range(4)
        }
    # exactly one week lies in the future, empty and never analyzed; the current one holds now
    future = [w for w, lo in zip(weeks, starts, strict=True) if lo > SCENARIO_NOW]
    assert [w.name for w in future] == [week_name(LAYOUT.future_week)]
    assert all(leaf.reltuples == -1 and leaf.n_live_tup == 0 for leaf in future[0].leaves())
    assert starts[-2] <= SCENARIO_NOW < starts[-1]
    # some weeks are past the 3-month consolidation age; older complete weeks hold more rows
    assert sum(lo < SCENARIO_NOW - timedelta(days=90) for lo in starts) >= 5
    complete = [w for w, lo in zip(hashed, starts[1:], strict=True)
                if lo + timedelta(weeks=1) <= SCENARIO_NOW and w.name != week_name(
                    LAYOUT.skewed_week)]
    assert complete[0].rows > complete[-1].rows > 0


def test_account_balances_keys_and_indexes(scenarios):
    rows = scenarios.query(
        """SELECT pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = 'account_balances'::regclass AND contype = 'p'"""
    )
    assert rows == [('PRIMARY KEY (account_address, "timestamp", activity_id)',)]
    defs = {r[0] for r in scenarios.query(
        """SELECT regexp_replace(pg_get_indexdef(indexrelid), '^.* USING btree ', '')
           FROM pg_index WHERE indrelid = 'account_balances'::regclass AND NOT indisprimary"""
    )}
    assert defs == {'("timestamp")', "(activity_id)", "(account_address)",
                    '(account_address, "timestamp")', "(activity_id, account_address)"}
    # every leaf carries the five indexes plus the primary key, all valid
    counts = scenarios.query(
        """SELECT c.relname, count(*), bool_and(x.indisvalid)
           FROM pg_class c JOIN pg_index x ON x.indrelid = c.oid
           WHERE c.relname LIKE 'account\\_balances\\_%' AND c.relkind = 'r'
           GROUP BY c.relname"""
    )
    assert len(counts) == 19 * 4 + 1
    assert {(n, ok) for _name, n, ok in counts} == {(6, True)}
    activities = {r[0] for r in scenarios.query(
        "SELECT DISTINCT activity_id FROM account_balances")}
    assert activities == {"xrd_holding", "lsu_holding", "dex_swap", "lending"}
    sample = scenarios.query(
        "SELECT account_address, jsonb_typeof(data) FROM account_balances LIMIT 1")[0]
    assert sample[0].startswith("rdx1q") and sample[1] == "object"


def test_payment_partitions_and_default(scenarios):
    with scenarios.connect() as conn:
        forest = load_forest(conn)
    payment = forest.find("control.payment")
    assert payment.key_columns == ("pay_ts",)
    assert payment.key_types == ("timestamp(0) with time zone",)
    names = [c.name for c in payment.children]
    assert sorted(names) == sorted([
        "payment_2000_2019", "payment_2020_2021", "payment_2022", "payment_2023",
        "payment_2024", "payment_2025", "payment_2026", "payment_default",
    ])
    assert {c.schema for c in payment.children} == {"control"}
    oldest = forest.find("control.payment_2000_2019")
    assert oldest.bound.lower[0].special == "MINVALUE"
    assert forest.find("control.payment_2020_2021").bound.short() == "2020-01-01 → 2022-01-01"
    yearly = [c for c in payment.children if not c.is_default]
    assert max(yearly, key=lambda c: c.rows).name == "payment_2023"
    # stray rows from a clock a year ahead: beyond every partition, so in the DEFAULT
    stray = scenarios.query(
        "SELECT count(*), min(pay_ts) FROM control.payment_default")[0]
    assert stray[0] > 0 and stray[1] >= datetime(2027, 1, 1, tzinfo=UTC)
    assert forest.find("control.payment_default").rows == stray[0]
    key = scenarios.query(
        """SELECT pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = 'control.payment'::regclass AND contype = 'p'""")
    assert key == [("PRIMARY KEY (pay_ts, pdm_id)",)]


def test_payment_foreign_keys(scenarios):
    fks = scenarios.query(
        """SELECT conrelid::regclass::text, confrelid::regclass::text,
                  pg_get_constraintdef(oid)
           FROM pg_constraint
           WHERE contype = 'f' AND conparentid = 0
             AND (conrelid = 'control.payment'::regclass
                  OR confrelid = 'control.payment'::regclass)
           ORDER BY 1, 2, 3"""
    )
    referenced = sorted(r[1] for r in fks if r[0] == "control.payment")
    assert referenced == ["control.payment_rtp", "control.pdm", "control.tariff_info"]
    referencing = [(r[0], r[2]) for r in fks if r[1] == "control.payment"]
    assert sorted(t for t, _ in referencing) == [
        "control.bonus_disposable", "control.payment_bonus", "control.payment_ext",
        "control.payment_ext", "control.payment_recent",
    ]
    assert all("REFERENCES control.payment(pay_ts, pdm_id)" in d for _, d in referencing)
    ext = sorted(d.split(" REFERENCES")[0] for t, d in referencing if t == "control.payment_ext")
    assert ext == ["FOREIGN KEY (orig_pay_ts, orig_pdm_id)", "FOREIGN KEY (pay_ts, pdm_id)"]
    # referencing rows exist in several partitions, the big one included
    spread = scenarios.query(
        """SELECT count(DISTINCT p.tableoid) FROM control.payment_bonus b
           JOIN control.payment p USING (pay_ts, pdm_id)""")[0][0]
    assert spread >= 3
    assert scenarios.query("SELECT count(*) FROM control.payment_recent")[0][0] > 0


def test_legacy_payment_duplicates(scenarios):
    q = scenarios.query
    assert q("""SELECT relkind FROM pg_class WHERE oid = 'legacy.payment'::regclass""") == [
        ("r",)]
    assert q("""SELECT pg_get_constraintdef(oid) FROM pg_constraint
                WHERE conrelid = 'legacy.payment'::regclass AND contype = 'p'""") == [
        ("PRIMARY KEY (pay_id)",)]
    assert q("SELECT pg_get_serial_sequence('legacy.payment', 'pay_id') IS NOT NULL")[0][0]
    # duplicates by error: equal on (pdm_id, pay_ts, tracer)
    by_error = q("""SELECT count(*), coalesce(sum(n - 1), 0) FROM (
                      SELECT count(*) AS n FROM legacy.payment
                      GROUP BY pdm_id, pay_ts, tracer HAVING count(*) > 1) s""")[0]
    assert by_error[0] >= 3 and by_error[1] >= by_error[0]
    # duplicates by design: same machine and timestamp, different tracers
    by_design = q("""SELECT count(*) FROM (
                       SELECT 1 FROM legacy.payment GROUP BY pdm_id, pay_ts
                       HAVING count(DISTINCT tracer) > 1) s""")[0][0]
    assert by_design >= 3
    # and one machine-minute with more payments than a minute has seconds
    over_60 = q("""SELECT pdm_id, count(*) FROM legacy.payment
                   GROUP BY pdm_id, date_trunc('minute', pay_ts) HAVING count(*) > 60""")
    assert len(over_60) == 1 and over_60[0][1] == OVER_60_COUNT
    # model-5 machines have a one-minute clock
    assert q("""SELECT count(*) FROM legacy.payment p JOIN control.pdm m USING (pdm_id)
                WHERE m.model = 'model-5' AND extract(second FROM pay_ts) <> 0""")[0][0] == 0
    # foreign keys point at pay_id, and only at the copy a deduplication keeps
    fks = q("""SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
               WHERE contype = 'f' AND confrelid = 'legacy.payment'::regclass ORDER BY 1, 2""")
    assert [t for t, _ in fks] == [
        "legacy.payment_bonus", "legacy.payment_ext", "legacy.payment_ext"]
    assert all(d.endswith("REFERENCES legacy.payment(pay_id)") for _, d in fks)
    assert q("""SELECT count(*) FROM legacy.payment_bonus b JOIN legacy.payment p USING (pay_id)
                WHERE EXISTS (SELECT 1 FROM legacy.payment o
                              WHERE (o.pdm_id, o.pay_ts, o.tracer) = (p.pdm_id, p.pay_ts, p.tracer)
                                AND o.pay_id < p.pay_id)""")[0][0] == 0
    assert q("SELECT count(*) FROM legacy.payment_bonus")[0][0] > 0


def test_awkward_corners(scenarios):
    with scenarios.connect() as conn:
        forest = load_forest(conn)
    odd = forest.find('"Odd Schema"."Trading ""Active"" Ω"')
    assert odd.schema == "Odd Schema" and odd.name == 'Trading "Active" Ω'
    assert forest.parent(odd).name == "activity_events"
    unclassified = forest.find("activity_events_unclassified")
    assert [v.special for v in unclassified.bound.values] == ["NULL"]
    archived = [n for n in forest.find("metrics").children if n.schema == "archive"]
    assert len(archived) == 3
    assert odd.rows > 0 and unclassified.rows > 0


def test_every_finding_is_on_show(scenarios):
    with scenarios.connect() as conn:
        forest = load_forest(conn)
    found = check_forest(forest, FindingsConfig(), now=SCENARIO_NOW)
    tables: dict[str, set[str]] = {}
    objects: dict[str, set[str]] = {}
    for f in found:
        tables.setdefault(f.code, set()).add(f.table)
        objects.setdefault(f.code, set()).update(f.objects)
    # the demo keeps every foreign key validated: tests/test_foreign_key_validation.py shows
    # foreign_key_not_valid
    assert set(tables) == set(CODES) - {"oversized_partition", "foreign_key_not_valid"}
    month = LAYOUT.metrics_missing_month
    assert tables["range_gap"] == {"metrics"}
    assert objects["range_gap"] == {
        f"metrics_{month.replace(month=month.month - 1):%Y_%m}",
        f"metrics_{month.replace(month=month.month + 1):%Y_%m}",
    }
    assert objects["default_has_rows"] == {"control.payment_default"}
    assert tables["no_future_partition"] == {"control.payment"}
    skewed = week_name(LAYOUT.skewed_week)
    assert objects["skewed_siblings"] >= {f"{skewed}_hash_2"}
    assert all(o.startswith(skewed) for o in objects["skewed_siblings"])
    future = week_name(LAYOUT.future_week)
    assert objects["never_analyzed"] == {f"{future}_hash_{r}" for r in range(4)}
    assert tables["index_missing"] == {"metrics"}
    assert len(objects["index_missing"]) == 7  # the rollout reached 6 of 13 months
    assert f"metrics_{LAYOUT.metrics_invalid_index_month:%Y_%m}" in objects["index_invalid"]
    # the half-detached partition survives the copy from the template (it is catalog state)
    assert objects["detach_pending"] == {f"audit_log_{LAYOUT.audit_pending_month:%Y_%m}"}

    # oversized needs more than a demo's worth of data at the default 1 GB: lower the limit
    limit = forest.find("control.payment_2023").total_bytes - 1
    small = check_forest(forest, FindingsConfig(oversized_bytes=limit), now=SCENARIO_NOW)
    oversized = {o for f in small if f.code == "oversized_partition" for o in f.objects}
    assert "control.payment_2023" in oversized
    assert not {o for o in oversized if o.startswith("control.")} - {"control.payment_2023"}


def test_seed_lays_out_dates_around_demo_now(db, monkeypatch):
    """Dates follow $PGPARTS_DEMO_NOW (a Wednesday in another year here); the rest is the same."""
    monkeypatch.setenv(DEMO_NOW_ENV, "2025-03-05")
    with db.connect() as conn:
        seed_scenarios(conn, scale=0.02)
        forest = load_forest(conn)
    now = datetime(2025, 3, 5, tzinfo=UTC)
    weeks = forest.find("account_balances").children
    lowers = sorted(w.bound.lower[0].as_datetime() for w in weeks)
    assert lowers[-1] == datetime(2025, 3, 9, tzinfo=UTC)  # next Sunday: the future week
    assert lowers[0] == datetime(2025, 3, 2, tzinfo=UTC) - timedelta(weeks=18)
    forest.find("account_balances_2025_03_09_hash_3")
    forest.find(f"account_balances_{lowers[0]:%Y_%m_%d}_consolidated")
    payment = {c.name for c in forest.find("control.payment").children}
    assert "payment_2025" in payment and "payment_2026" not in payment
    stray_min = db.query("SELECT min(pay_ts) FROM control.payment_default")[0][0]
    assert stray_min >= datetime(2026, 1, 1, tzinfo=UTC)
    codes = {f.code for f in check_forest(forest, FindingsConfig(), now=now)}
    assert codes == set(CODES) - {"oversized_partition", "foreign_key_not_valid"}


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01"])
def test_bad_demo_now_is_a_clear_error(monkeypatch, bad):
    monkeypatch.setenv(DEMO_NOW_ENV, bad)
    with pytest.raises(SeedError, match=DEMO_NOW_ENV):
        demo_now_from_env()


def test_demo_now_without_offset_is_utc(monkeypatch):
    monkeypatch.setenv(DEMO_NOW_ENV, "2026-11-21T10:30")
    assert demo_now_from_env() == datetime(2026, 11, 21, 10, 30, tzinfo=UTC)


def test_scenario_db_is_a_fresh_copy_of_its_own(scenario_db, scenarios):
    """Each scenario_db is its own copy of the template: finishing the half-done detach there
    (it survived the copy) leaves the other copies as seeded."""
    pending = f"audit_log_{LAYOUT.audit_pending_month:%Y_%m}"
    scenario_db.execute(
        sql.SQL("ALTER TABLE audit_log DETACH PARTITION {} FINALIZE").format(
            sql.Identifier(pending))
    )
    query = "SELECT count(*) FROM pg_inherits WHERE inhrelid = %s::regclass"
    assert scenario_db.query(query, (pending,)) == [(0,)]
    assert scenarios.query(
        "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass", (pending,)
    ) == [(True,)]
