"""The catalog loader against real servers: scenario-like and awkward layouts."""

from __future__ import annotations

import dataclasses
import time

import psycopg
import pytest

from tui.core.catalog import PartNode, exact_row_count, load_forest, load_indexes
from tui.core.config import FindingsConfig
from tui.core.connection import connect
from tui.core.findings import check_forest

from .layouts import build_awkward, leave_detach_pending


@pytest.fixture
def awkward(db):
    build_awkward(db, payments=1000)
    return db


def test_loads_every_level_and_layout(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    names = {n.qualified for n in forest.walk()}
    roots = {r.qualified for r in forest.roots}
    assert roots == {
        "events", "control.payment", '"Odd Schema"."Activity ""Events""; Ω"', "expr_keyed",
        "multi_col", "lonely",
    }
    assert "archive.payment_2000_2019" in names
    assert '"Odd Schema"."Trading ""Active"" Ω"' in names
    long_name = "a" * 63
    assert any(n.name == long_name for n in forest.walk())

    events = forest.find("events")
    assert events.strategy == "range" and events.key_columns == ("ts",)
    y2024 = forest.find("events_2024")
    assert y2024.strategy == "list" and y2024.level == 1
    trade = forest.find("events_2024_trade")
    assert trade.strategy == "hash" and trade.level == 2 and trade.parent_strategy == "list"
    assert [v.special for v in trade.bound.values] == [None, None, "NULL"]
    h1 = forest.find("events_2024_trade_h1")
    assert (h1.level, h1.bound.modulus, h1.bound.remainder) == (3, 2, 1)
    assert h1.bound.short() == "hash 1/2"
    assert forest.find("events_2024_other").is_default
    assert forest.find("events").default_partition_oid == forest.find("events_default").oid

    old = forest.find("archive.payment_2000_2019")
    assert old.bound.lower[0].special == "MINVALUE"
    assert old.bound.short() == "-∞ → 2020-01-01"
    assert forest.find("control.payment_2022").persistence == "u"

    expr = forest.find("expr_keyed")
    assert expr.key_columns == ("region",)
    assert "AT TIME ZONE" in expr.key
    assert forest.find("multi_col").key == "RANGE (a, b)"
    lonely = forest.find("lonely")
    assert lonely.children == [] and lonely.rows == 0 and lonely.leaf_count == 0


def test_rows_and_sizes_roll_up(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
        events = forest.find("events")
        assert events.rows == 4000
        assert events.total_bytes == sum(leaf.total_bytes for leaf in events.leaves())
        assert events.total_bytes > 0
        assert forest.find("events_2024_trade").rows == sum(
            leaf.rows for leaf in forest.find("events_2024_trade").leaves()
        )
        assert exact_row_count(conn, forest.find("events_2024_trade")) == 3000
        payment = forest.find("control.payment")
        assert payment.rows == 1000
        exact = load_forest(conn, exact_sizes=True)
    ex_payment = exact.find("control.payment")
    assert ex_payment.exact_sizes
    # exact sizes also count the FSM/VM forks, which the estimate misses
    assert ex_payment.total_bytes >= payment.total_bytes > 0


def test_every_level_sums_its_partitions(awkward):
    """Totals at every partitioned level, not just the root: the node's own figures plus its
    direct partitions' totals; and loaded nodes are whole PartNodes (built without __init__)."""
    with awkward.connect() as conn:
        forest = load_forest(conn)
    fields = {f.name for f in dataclasses.fields(PartNode)}
    checked = 0
    for node in forest.walk():
        assert set(vars(node)) == fields, node.qualified
        assert dataclasses.replace(node) == node
        if node.is_leaf:
            assert (node.leaf_count, node.rows) == (1, node.own_rows_estimate)
            continue
        kids = node.children
        assert node.leaf_count == sum(1 for _ in node.leaves())
        assert node.rows == sum(c.rows for c in kids)
        assert node.total_table_bytes == node.table_bytes + sum(c.total_table_bytes for c in kids)
        assert node.total_index_bytes == node.index_bytes + sum(c.total_index_bytes for c in kids)
        assert node.total_toast_bytes == node.toast_bytes + sum(c.total_toast_bytes for c in kids)
        assert node.rows_known == all(c.rows_known for c in kids)
        checked += 1
    assert checked >= 8  # roots, sub-partitioned years and lists, the empty parent


def test_tree_first_then_its_indexes(awkward):
    """The console shows the tree before reading indexes; the health checks refuse a forest
    without them rather than report no index problem."""
    with awkward.connect() as conn:
        full = load_forest(conn)
        light = load_forest(conn, indexes=False)
        assert not light.indexes_loaded and light.indexes == {}
        assert all(n.indexes == [] for n in light.walk())
        with pytest.raises(ValueError, match="indexes were not read"):
            check_forest(light, FindingsConfig())
        load_indexes(conn, light)
    assert light.indexes_loaded and full.indexes_loaded
    assert light.indexes == full.indexes
    for node in full.walk():
        mine = sorted(i.name for i in light.nodes[node.oid].indexes)
        assert mine == sorted(i.name for i in node.indexes)
    payment = light.find("control.payment")
    assert [(i.relkind, i.is_primary) for i in payment.indexes] == [("I", True)]
    # every partition's primary key index is attached to the parent's
    leaves = list(payment.leaves())
    attached = {i.table_oid for i in light.indexes.values()
                if i.parent_index == payment.indexes[0].oid}
    assert {leaf.oid for leaf in leaves if leaf.parent_oid == payment.oid} <= attached
    assert [f.code for f in check_forest(light, FindingsConfig())] == \
        [f.code for f in check_forest(full, FindingsConfig())]


def test_find_reports_ambiguity_and_absence(awkward):
    awkward.execute(
        "CREATE TABLE archive.payment (pay_ts timestamptz NOT NULL) PARTITION BY RANGE (pay_ts)"
    )
    with awkward.connect() as conn:
        forest = load_forest(conn)
    with pytest.raises(LookupError, match="ambiguous"):
        forest.find("payment")
    with pytest.raises(LookupError, match="no partitioned table"):
        forest.find("nope")
    assert forest.find('"Odd Schema"."Trading ""Active"" Ω"').name == 'Trading "Active" Ω'


def test_reading_the_tree_does_not_wait_for_ddl_locks(awkward):
    """A session holding ACCESS EXCLUSIVE on the parent must not block the tree read."""
    holder = psycopg.connect(awkward.dsn)
    holder.execute("LOCK control.payment, control.payment_2022 IN ACCESS EXCLUSIVE MODE")
    try:
        with awkward.connect(lock_timeout="300ms") as conn:
            start = time.monotonic()
            forest = load_forest(conn)
            assert time.monotonic() - start < 2
        assert forest.find("control.payment_2022").bound is not None
    finally:
        holder.rollback()
        holder.close()


def test_detach_pending_partition_is_reported(awkward):
    """An interrupted DETACH ... CONCURRENTLY leaves inhdetachpending set."""
    awkward.execute(
        "CREATE TABLE m (k int) PARTITION BY RANGE (k);"
        "CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);"
        "CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20);"
    )
    leave_detach_pending(awkward.dsn, "m", "m1")
    with connect(awkward.target) as conn:
        forest = load_forest(conn)
    assert forest.find("m1").detach_pending
    assert not forest.find("m2").detach_pending
