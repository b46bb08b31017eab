"""Health findings against real servers: each check triggers on a broken layout and stays quiet
on a sound one. The clock is passed in so time-based checks do not depend on today's date."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from tui.core.bounds import parse_bound
from tui.core.catalog import Forest, PartNode, _roll_up, load_forest
from tui.core.config import FindingsConfig
from tui.core.findings import (
    CODES,
    Finding,
    check_forest,
    findings_by_oid,
    worst_severity,
)

from .layouts import AWKWARD_SQL, leave_detach_pending

CONFIG = FindingsConfig()
NOW = datetime(2030, 1, 20, 12, 0, tzinfo=timezone.utc)


def _forest(db) -> Forest:
    with db.connect() as conn:
        return load_forest(conn)


def _of(findings: list[Finding], code: str, table: str | None = None) -> list[Finding]:
    return [f for f in findings if f.code == code and (table is None or f.table == table)]


def test_range_gap(db):
    db.execute("""
        CREATE TABLE gap (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE gap_1 PARTITION OF gap FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
        CREATE TABLE gap_2 PARTITION OF gap FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
        CREATE TABLE gap_4 PARTITION OF gap FOR VALUES FROM ('2024-04-01') TO ('2024-05-01');
        CREATE TABLE gap_6 PARTITION OF gap FOR VALUES FROM ('2024-06-01') TO ('2024-07-01');

        CREATE TABLE gapd (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE gapd_1 PARTITION OF gapd FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
        CREATE TABLE gapd_3 PARTITION OF gapd FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
        CREATE TABLE gapd_def PARTITION OF gapd DEFAULT;

        -- contiguous, with MINVALUE/MAXVALUE ends: no gap
        CREATE TABLE whole (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE whole_old PARTITION OF whole FOR VALUES FROM (MINVALUE) TO ('2024-01-01');
        CREATE TABLE whole_1 PARTITION OF whole FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
        CREATE TABLE whole_new PARTITION OF whole FOR VALUES FROM ('2024-02-01') TO (MAXVALUE);

        -- numeric bounds written differently but equal (2 = 2.0): compared as numbers, no gap
        CREATE TABLE num (k numeric NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE num_1 PARTITION OF num FOR VALUES FROM (1) TO (2.0);
        CREATE TABLE num_2 PARTITION OF num FOR VALUES FROM (2) TO (10);

        -- multi-column bounds compare as tuples
        CREATE TABLE mc (a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (a, b);
        CREATE TABLE mc_1 PARTITION OF mc FOR VALUES FROM (0, 0) TO (10, 0);
        CREATE TABLE mc_2 PARTITION OF mc FOR VALUES FROM (10, 0) TO (10, 5);
        CREATE TABLE mc_3 PARTITION OF mc FOR VALUES FROM (10, 5) TO (20, MAXVALUE);
        CREATE TABLE mcg (a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (a, b);
        CREATE TABLE mcg_1 PARTITION OF mcg FOR VALUES FROM (0, MINVALUE) TO (10, 0);
        CREATE TABLE mcg_2 PARTITION OF mcg FOR VALUES FROM (10, 1) TO (20, 0);
    """)
    found = check_forest(_forest(db), CONFIG, NOW)

    [gap] = _of(found, "range_gap", "gap")
    assert gap.severity == "critical"  # no DEFAULT: inserts into the gap fail
    assert "2 gaps" in gap.message
    assert "2024-03-01 → 2024-04-01" in gap.message and "2024-05-01 → 2024-06-01" in gap.message
    assert set(gap.objects) == {"gap_2", "gap_4", "gap_6"}

    [gapd] = _of(found, "range_gap", "gapd")
    assert gapd.severity == "warning"  # the DEFAULT catches the rows
    assert "gapd_def" in gapd.message and set(gapd.objects) == {"gapd_1", "gapd_3"}

    [mcg] = _of(found, "range_gap", "mcg")
    assert "10, 0 → 10, 1" in mcg.message
    for table in ("whole", "num", "mc"):
        assert not _of(found, "range_gap", table), table


def test_default_has_rows(db):
    db.execute("""
        CREATE TABLE pay (k int NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE pay_1 PARTITION OF pay FOR VALUES FROM (0) TO (100);
        CREATE TABLE pay_default PARTITION OF pay DEFAULT;
        INSERT INTO pay SELECT g FROM generate_series(1, 500) g;
        CREATE TABLE clean (k int NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE clean_1 PARTITION OF clean FOR VALUES FROM (0) TO (100);
        CREATE TABLE clean_default PARTITION OF clean DEFAULT;
        INSERT INTO clean SELECT g FROM generate_series(1, 99) g;
        ANALYZE;
    """)
    found = check_forest(_forest(db), CONFIG, NOW)
    [f] = _of(found, "default_has_rows")
    assert (f.severity, f.table, f.objects) == ("warning", "pay", ("pay_default",))
    assert "401 rows" in f.message  # 1..500: 1..99 fit pay_1, 100..500 fall to the DEFAULT


def test_default_rows_seen_before_analyze(db):
    """A DEFAULT analyzed while empty keeps reltuples 0; the live-tuple count still shows rows."""
    db.execute("""
        CREATE TABLE late (k int NOT NULL) PARTITION BY LIST (k);
        CREATE TABLE late_1 PARTITION OF late FOR VALUES IN (1);
        CREATE TABLE late_default PARTITION OF late DEFAULT;
        ANALYZE late;
        INSERT INTO late SELECT 2 FROM generate_series(1, 50);
    """)
    for _ in range(50):  # the statistics are flushed shortly after the inserting session ends
        forest = _forest(db)
        if forest.find("late_default").n_live_tup:
            break
        time.sleep(0.1)
    assert forest.find("late_default").reltuples == 0
    [f] = _of(check_forest(forest, CONFIG, NOW), "default_has_rows")
    assert f.objects == ("late_default",)


def test_no_future_partition(db):
    db.execute("""
        -- weekly, last week ends 2030-01-13, before NOW: critical, rows go to the DEFAULT
        CREATE TABLE past (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE past_1 PARTITION OF past FOR VALUES FROM ('2029-12-30') TO ('2030-01-06');
        CREATE TABLE past_2 PARTITION OF past FOR VALUES FROM ('2030-01-06') TO ('2030-01-13');
        CREATE TABLE past_default PARTITION OF past DEFAULT;
        -- the same without a DEFAULT: inserts fail
        CREATE TABLE pastnd (ts timestamp NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE pastnd_1 PARTITION OF pastnd FOR VALUES FROM ('2030-01-06') TO ('2030-01-13');
        -- weekly, covered until 2030-01-22 only: 1.5 days ahead, less than one week
        CREATE TABLE short (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE short_1 PARTITION OF short FOR VALUES FROM ('2030-01-08') TO ('2030-01-15');
        CREATE TABLE short_2 PARTITION OF short FOR VALUES FROM ('2030-01-15') TO ('2030-01-22');
        -- monthly by date, covered until April: fine
        CREATE TABLE monthly (d date NOT NULL) PARTITION BY RANGE (d);
        CREATE TABLE monthly_01 PARTITION OF monthly
          FOR VALUES FROM ('2030-01-01') TO ('2030-02-01');
        CREATE TABLE monthly_02 PARTITION OF monthly
          FOR VALUES FROM ('2030-02-01') TO ('2030-03-01');
        CREATE TABLE monthly_03 PARTITION OF monthly
          FOR VALUES FROM ('2030-03-01') TO ('2030-04-01');
        -- open-ended: MAXVALUE covers the future
        CREATE TABLE open (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE open_1 PARTITION OF open FOR VALUES FROM ('2020-01-01') TO (MAXVALUE);
        -- not time-keyed
        CREATE TABLE ints (k int NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE ints_1 PARTITION OF ints FOR VALUES FROM (0) TO (10);
        -- yearly, 2029 split monthly: the 2029 slice lies in the past and needs no future
        CREATE TABLE yearly (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE yearly_2029 PARTITION OF yearly
          FOR VALUES FROM ('2029-01-01') TO ('2030-01-01') PARTITION BY RANGE (ts);
        CREATE TABLE yearly_2029_12 PARTITION OF yearly_2029
          FOR VALUES FROM ('2029-12-01') TO ('2030-01-01');
        CREATE TABLE yearly_2030 PARTITION OF yearly
          FOR VALUES FROM ('2030-01-01') TO ('2031-01-01');
        CREATE TABLE yearly_2031 PARTITION OF yearly
          FOR VALUES FROM ('2031-01-01') TO ('2032-01-01');
    """)
    found = check_forest(_forest(db), FindingsConfig(runway_intervals=1), NOW)

    [past] = _of(found, "no_future_partition", "past")
    assert past.severity == "critical"
    assert "2030-01-13" in past.message and "past_default" in past.message
    assert set(past.objects) == {"past_2", "past_default"}
    [pastnd] = _of(found, "no_future_partition", "pastnd")
    assert pastnd.severity == "critical" and "fails" in pastnd.message
    [short] = _of(found, "no_future_partition", "short")
    assert short.severity == "warning" and short.objects == ("short_2",)
    assert "7 days" in short.message
    for table in ("monthly", "open", "ints", "yearly", "yearly_2029"):
        assert not _of(found, "no_future_partition", table), table

    # the runway is configurable: asking for 3 months makes the monthly table short of runway
    found = check_forest(_forest(db), FindingsConfig(runway_intervals=3), NOW)
    [monthly] = _of(found, "no_future_partition", "monthly")
    assert monthly.severity == "warning"


def test_oversized_partition(db):
    db.execute("""
        CREATE TABLE big (k int NOT NULL, pad text) PARTITION BY RANGE (k);
        CREATE TABLE big_1 PARTITION OF big FOR VALUES FROM (0) TO (10000);
        CREATE TABLE big_2 PARTITION OF big FOR VALUES FROM (10000) TO (20000);
        INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(0, 4999) g;
        INSERT INTO big SELECT g, 'x' FROM generate_series(10000, 10009) g;
        ANALYZE big;
    """)
    forest = _forest(db)
    limit = 128 * 1024
    assert forest.find("big_1").total_bytes > limit > forest.find("big_2").total_bytes
    found = check_forest(forest, FindingsConfig(oversized_bytes=limit), NOW)
    [f] = _of(found, "oversized_partition")
    assert (f.severity, f.table, f.objects) == ("warning", "big", ("big_1",))
    assert "128 KiB" in f.message
    assert not _of(check_forest(forest, CONFIG, NOW), "oversized_partition")  # default 1 GiB


def test_skewed_siblings(db):
    db.execute("""
        CREATE TABLE skew (k int NOT NULL) PARTITION BY HASH (k);
        CREATE TABLE skew_0 PARTITION OF skew FOR VALUES WITH (modulus 2, remainder 0);
        CREATE TABLE skew_1 PARTITION OF skew FOR VALUES WITH (modulus 2, remainder 1);
        INSERT INTO skew SELECT 1 FROM generate_series(1, 20000);
        INSERT INTO skew SELECT g FROM generate_series(2, 200) g;
        CREATE TABLE even (k int NOT NULL) PARTITION BY HASH (k);
        CREATE TABLE even_0 PARTITION OF even FOR VALUES WITH (modulus 2, remainder 0);
        CREATE TABLE even_1 PARTITION OF even FOR VALUES WITH (modulus 2, remainder 1);
        INSERT INTO even SELECT g FROM generate_series(1, 20000) g;
        -- skewed but tiny: not worth a warning
        CREATE TABLE tiny (k int NOT NULL) PARTITION BY HASH (k);
        CREATE TABLE tiny_0 PARTITION OF tiny FOR VALUES WITH (modulus 2, remainder 0);
        CREATE TABLE tiny_1 PARTITION OF tiny FOR VALUES WITH (modulus 2, remainder 1);
        INSERT INTO tiny SELECT 1 FROM generate_series(1, 500);
        ANALYZE;
    """)
    found = check_forest(_forest(db), CONFIG, NOW)
    [f] = _of(found, "skewed_siblings")
    assert (f.severity, f.table) == ("warning", "skew")
    assert set(f.objects) == {"skew_0", "skew_1"}
    assert "limit 1.5×" in f.message
    # a looser factor accepts the imbalance of an even spread but not the skewed table
    assert not _of(check_forest(_forest(db), FindingsConfig(skew_factor=1000), NOW),
                   "skewed_siblings")


def test_never_analyzed(db):
    db.execute("""
        CREATE TABLE na (k int NOT NULL) PARTITION BY LIST (k);
        CREATE TABLE na_1 PARTITION OF na FOR VALUES IN (1);
        CREATE TABLE na_2 PARTITION OF na FOR VALUES IN (2);
        CREATE TABLE na_3 PARTITION OF na FOR VALUES IN (3);
        ANALYZE na_1;
        CREATE TABLE done (k int NOT NULL) PARTITION BY LIST (k);
        CREATE TABLE done_1 PARTITION OF done FOR VALUES IN (1);
        ANALYZE done;
    """)
    found = check_forest(_forest(db), CONFIG, NOW)
    [f] = _of(found, "never_analyzed")  # one finding for the tree, listing both
    assert (f.severity, f.table, set(f.objects)) == ("info", "na", {"na_2", "na_3"})
    assert "2 partitions" in f.message


def test_index_missing_and_invalid(db):
    db.execute("""
        CREATE TABLE ix (k int NOT NULL, v int) PARTITION BY RANGE (k);
        CREATE TABLE ix_1 PARTITION OF ix FOR VALUES FROM (0) TO (10);
        CREATE TABLE ix_2 PARTITION OF ix FOR VALUES FROM (10) TO (20);
        CREATE INDEX ix_v ON ONLY ix (v);
        CREATE INDEX ix_1_v ON ix_1 (v);
        ALTER INDEX ix_v ATTACH PARTITION ix_1_v;
        CREATE TABLE ok (k int NOT NULL, v int) PARTITION BY RANGE (k);
        CREATE TABLE ok_1 PARTITION OF ok FOR VALUES FROM (0) TO (10);
        CREATE INDEX ON ok (v);
        INSERT INTO ok VALUES (1, 1), (2, 1);
    """)
    # a failed CREATE INDEX CONCURRENTLY leaves an invalid index behind
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY ok_1_v_uniq ON ok_1 (v)")
    found = check_forest(_forest(db), CONFIG, NOW)

    [missing] = _of(found, "index_missing")
    assert (missing.severity, missing.table, missing.objects) == ("warning", "ix", ("ix_2",))
    assert "ix_v on 1 of 2" in missing.message

    invalid = {f.table: f for f in _of(found, "index_invalid")}
    assert set(invalid) == {"ix", "ok"}
    assert "ix_v" in invalid["ix"].message and invalid["ix"].objects == ("ix",)
    assert "ok_1_v_uniq" in invalid["ok"].message and invalid["ok"].objects == ("ok_1",)

    # attaching the last index makes the parent index valid: both findings go away for ix
    db.execute("CREATE INDEX ix_2_v ON ix_2 (v); ALTER INDEX ix_v ATTACH PARTITION ix_2_v;")
    found = check_forest(_forest(db), CONFIG, NOW)
    assert not _of(found, "index_missing")
    assert [f.table for f in _of(found, "index_invalid")] == ["ok"]


def test_detach_pending(db):
    db.execute("""
        CREATE TABLE m (k int) PARTITION BY RANGE (k);
        CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);
        CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20);
    """)
    assert not _of(check_forest(_forest(db), CONFIG, NOW), "detach_pending")
    leave_detach_pending(db.dsn, "m", "m1")
    found = check_forest(_forest(db), CONFIG, NOW)
    [f] = _of(found, "detach_pending")
    assert (f.severity, f.table, f.objects) == ("critical", "m", ("m1",))
    assert "ALTER TABLE m DETACH PARTITION m1 FINALIZE" in f.message
    # the statement the message gives does finish the detach
    db.execute("ALTER TABLE m DETACH PARTITION m1 FINALIZE")
    assert not _of(check_forest(_forest(db), CONFIG, NOW), "detach_pending")


def test_awkward_layouts_and_helpers(db):
    """Odd names, expression keys and multi-level trees go through every check."""
    db.execute(AWKWARD_SQL)
    db.execute("INSERT INTO control.payment VALUES ('2030-06-01', 1, 1); ANALYZE;")
    forest = _forest(db)
    found = check_forest(forest, CONFIG, NOW)
    assert {f.code for f in found} <= set(CODES)
    [expr] = _of(found, "no_future_partition", "expr_keyed")  # a date expression key
    assert expr.severity == "critical"
    [pay] = _of(found, "default_has_rows", "control.payment")
    assert pay.objects == ("control.payment_default",)
    assert not _of(found, "range_gap")

    # most severe first
    ranks = [("critical", "warning", "info").index(f.severity) for f in found]
    assert ranks == sorted(ranks)
    by_oid = findings_by_oid(found)
    default_oid = forest.find("control.payment_default").oid
    assert pay in by_oid[default_oid] and pay in by_oid[forest.find("control.payment").oid]
    assert worst_severity(by_oid[default_oid]) == "critical"  # also named by no_future_partition
    assert worst_severity([pay]) == "warning"
    assert worst_severity([]) is None


# -- scale: a synthetic 10,000-partition forest (no database needed for pure Python checks) ---
def _node(oid: int, parent: PartNode | None, name: str, *, strategy: str | None = None,
          bound: str | None = None, reltuples: int = -1, key_types: tuple[str, ...] = ()
          ) -> PartNode:
    node = PartNode(
        oid=oid, root_oid=parent.root_oid if parent else oid,
        parent_oid=parent.oid if parent else None, level=parent.level + 1 if parent else 0,
        path=(*parent.path, oid) if parent else (oid,), schema="public", name=name,
        relkind="p" if strategy else "r", persistence="p", bound_text=bound,
        bound=parse_bound(bound), parent_strategy=parent.strategy if parent else None,
        strategy=strategy, key_columns=("ts",) if strategy == "range" else ("acct",),
        key_types=key_types, key_expressions=None, default_partition_oid=None,
        detach_pending=False, heap_bytes=0, toast_bytes=0, index_bytes=0, exact_sizes=False,
        reltuples=reltuples, n_live_tup=0, n_dead_tup=0, last_vacuum=None,
        last_autovacuum=None, last_analyze=None, last_autoanalyze=None,
    )
    if parent:
        parent.children.append(node)
    return node


def test_ten_thousand_partitions_are_checked_fast_and_aggregated():
    root = _node(1, None, "account_balances", strategy="range", key_types=("timestamptz",))
    nodes = {1: root}
    oid = 2
    start = datetime(1990, 1, 7, tzinfo=timezone.utc)  # 2,000 weeks: until late 2028
    for w in range(2000):
        lo, hi = start + timedelta(weeks=w), start + timedelta(weeks=w + 1)
        if w == 1000:
            continue  # one missing week: a gap
        week = _node(oid, root, f"w{w}", strategy="hash",
                     bound=f"FOR VALUES FROM ('{lo:%Y-%m-%d}') TO ('{hi:%Y-%m-%d}')")
        nodes[oid] = week
        oid += 1
        for r in range(4):
            # the first 1,000 weeks are analyzed and skewed (a hot key), the rest never analyzed
            rows = (30_000 if r == 0 else 1_000) if w < 1000 else -1
            nodes[oid] = _node(oid, week, f"w{w}_h{r}", reltuples=rows,
                               bound=f"FOR VALUES WITH (modulus 4, remainder {r})")
            oid += 1
    _roll_up(root)  # totals as the loader computes them
    forest = Forest([root], nodes, {}, 180000, NOW)
    t0 = time.perf_counter()
    found = check_forest(forest, CONFIG, NOW)
    elapsed = time.perf_counter() - t0
    assert len(nodes) == 1 + 1999 * 5
    assert elapsed < 2.0, elapsed
    [gap] = _of(found, "range_gap")
    assert "1 gap" in gap.message and gap.objects == ("w999", "w1001")
    assert len(_of(found, "no_future_partition")) == 1
    # 3,996 never-analyzed leaves: one finding for the tree, not one per leaf or per week
    [never] = _of(found, "never_analyzed")
    assert len(never.objects) == 999 * 4 and "and 3991 more" in never.message
    # 1,000 skewed weeks: one finding naming the first and counting the others
    [skew] = _of(found, "skewed_siblings")
    assert skew.table == "account_balances"
    assert skew.message.startswith("hash partitions of w0 are skewed by rows: w0_h0 has 30,000")
    assert "the same in 999 more tables under account_balances: w1, w2" in skew.message
    assert len(skew.objects) == 3000  # every skewed week with its largest and smallest partition
    assert len(found) == 4
