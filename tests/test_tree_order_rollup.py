"""The tree's order and its findings roll-up are the same in `pgparts tree` and the console:
partitions by bound whatever order they were created in, trees by name; a parent's badge and a
tree's top line show the most severe finding below them."""

from __future__ import annotations

import json

from tui.app.app import PgpartsApp
from tui.cli import main
from tui.core.catalog import in_tree_order, load_forest, load_indexes
from tui.core.config import Config, FindingsConfig
from tui.core.connection import Target
from tui.core.findings import FindingCounts, check_forest, subtree_counts

from .test_app import tree_of, wait_loads, wait_until

# created out of bound order: the catalog returns them in creation order
OUT_OF_ORDER = """
CREATE TABLE zeta (k int) PARTITION BY RANGE (k);
CREATE TABLE zeta_1 PARTITION OF zeta FOR VALUES FROM (0) TO (10);
CREATE TABLE ord (k int) PARTITION BY RANGE (k);
CREATE TABLE ord_30 PARTITION OF ord FOR VALUES FROM (30) TO (40);
CREATE TABLE ord_100 PARTITION OF ord FOR VALUES FROM (100) TO (200);
CREATE TABLE ord_default PARTITION OF ord DEFAULT;
CREATE TABLE ord_20 PARTITION OF ord FOR VALUES FROM (20) TO (30);
CREATE TABLE ord_min PARTITION OF ord FOR VALUES FROM (MINVALUE) TO (20);
CREATE TABLE wk (ts timestamptz) PARTITION BY RANGE (ts);
CREATE TABLE wk_2024_01_14 PARTITION OF wk
  FOR VALUES FROM ('2024-01-14 00:00+00') TO ('2024-01-21 00:00+00');
CREATE TABLE wk_2024_01_07_consolidated PARTITION OF wk
  FOR VALUES FROM ('2024-01-07 00:00+00') TO ('2024-01-14 00:00+00');
CREATE TABLE alpha (k int) PARTITION BY LIST (k);
CREATE TABLE alpha_2 PARTITION OF alpha FOR VALUES IN (2);
CREATE TABLE alpha_1 PARTITION OF alpha FOR VALUES IN (1);
ANALYZE;
"""
ORD = ["ord_min", "ord_20", "ord_30", "ord_100", "ord_default"]
WK = ["wk_2024_01_07_consolidated", "wk_2024_01_14"]
ROOTS = ["alpha", "ord", "wk", "zeta"]

# an info finding on the root (a partition never analyzed), a warning one level down (rows in a
# DEFAULT partition of a week): collapsed, the root used to show only the info
ROLL_UP = """
CREATE TABLE ab (k int, s text) PARTITION BY RANGE (k);
CREATE TABLE ab_w1 PARTITION OF ab FOR VALUES FROM (0) TO (10) PARTITION BY LIST (s);
CREATE TABLE ab_w1_a PARTITION OF ab_w1 FOR VALUES IN ('a');
CREATE TABLE ab_w1_d PARTITION OF ab_w1 DEFAULT;
INSERT INTO ab SELECT 1, 'zz' FROM generate_series(1, 20);
ANALYZE ab_w1;
CREATE TABLE ab_w2 PARTITION OF ab FOR VALUES FROM (10) TO (20);
"""


def _forest(db):
    with db.connect() as conn:
        forest = load_forest(conn)
        load_indexes(conn, forest)
    return forest


def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_partitions_sort_by_bound_and_trees_by_name(db):
    db.execute(OUT_OF_ORDER)
    forest = _forest(db)
    assert [n.name for n in forest.find("ord").children] != ORD  # the catalog's order
    assert [n.name for n in in_tree_order(forest.find("ord").children)] == ORD
    assert [n.name for n in in_tree_order(forest.find("wk").children)] == WK
    assert [n.name for n in in_tree_order(forest.find("alpha").children)] == ["alpha_1",
                                                                              "alpha_2"]
    assert [n.name for n in in_tree_order(forest.roots)] == ROOTS


def test_cli_tree_prints_in_tree_order(db, capsys):
    db.execute(OUT_OF_ORDER)
    lines = _cli(capsys, "tree", "-d", db.dsn).splitlines()
    names = [ln.replace("├─ ", "").replace("└─ ", "").split()[0] for ln in lines[:-1]]
    assert names == ["alpha", "alpha_1", "alpha_2", "ord", *ORD, "wk", *WK, "zeta", "zeta_1"]
    assert lines[-1].startswith("14 relations, 10 leaf partitions; ")
    nodes = json.loads(_cli(capsys, "tree", "-d", db.dsn, "--json"))
    assert [n["name"] for n in nodes] == names
    one = _cli(capsys, "tree", "-d", db.dsn, "zeta").splitlines()
    assert one[-1].startswith("2 relations, 1 leaf partition; ")


async def test_console_tree_has_the_cli_order(db):
    db.execute(OUT_OF_ORDER)
    forest = _forest(db)
    app = PgpartsApp(Target(db.dsn, label="test"), Config(), read_only=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        assert [forest.nodes[n.data].name for n in tree.root.children] == ROOTS
        for name, order in (("ord", ORD), ("wk", WK)):
            node = tree.node_for(forest.find(name).oid)
            node.expand()
            await wait_until(pilot, lambda node=node, order=order: len(node.children) == len(order))
            assert [forest.nodes[c.data].name for c in node.children] == order


def test_findings_roll_up_per_subtree(db):
    db.execute(ROLL_UP)
    forest = _forest(db)
    findings = check_forest(forest, FindingsConfig())
    assert sorted((f.severity, f.code, f.table) for f in findings) == [
        ("info", "never_analyzed", "ab"), ("warning", "default_has_rows", "ab_w1")]
    counts = subtree_counts(forest, findings)
    ab, w1, w2 = (forest.find(n).oid for n in ("ab", "ab_w1", "ab_w2"))
    assert counts[ab] == FindingCounts(warning=1, info=1)
    assert counts[ab].worst == "warning" and counts[ab].describe() == "1 warning, 1 info"
    assert counts[w1] == FindingCounts(warning=1)
    assert counts[forest.find("ab_w1_d").oid] == FindingCounts(warning=1)
    assert counts[w2] == FindingCounts(info=1)
    assert forest.find("ab_w1_a").oid not in counts
    assert FindingCounts(critical=1, warning=2, info=3).describe() == \
        "1 critical, 2 warnings, 3 info"


def test_cli_top_line_shows_the_most_severe_finding_below(db, capsys):
    db.execute(ROLL_UP)
    lines = _cli(capsys, "tree", "-d", db.dsn).splitlines()
    assert lines[0].startswith("ab ")
    assert lines[0].endswith("! 1 warning, 1 info in this tree  i never_analyzed"), lines[0]
    w1 = next(ln for ln in lines if "ab_w1 " in ln)
    assert w1.endswith("! default_has_rows") and "in this tree" not in w1
    # the subtree of one table: its own top line
    sub = _cli(capsys, "tree", "-d", db.dsn, "ab_w1").splitlines()
    assert sub[0].endswith("! default_has_rows") and "in this tree" not in sub[0]


async def test_collapsed_parent_badge_shows_the_warning_below(db):
    db.execute(ROLL_UP)
    forest = _forest(db)
    app = PgpartsApp(Target(db.dsn, label="test"), Config(), read_only=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        root = tree.node_for(forest.find("ab").oid)
        assert not root.is_expanded
        label = root.label
        assert str(label).endswith(" ▲1●1"), str(label)
        assert label.cell_len <= 80 - 2  # within the pane at 80 columns
        badge = label.spans[-1]
        assert str(label)[badge.start:badge.end] == " ▲1●1" and badge.style == "yellow"
        root.expand()
        await wait_until(pilot, lambda: len(root.children) == 2)
        w1 = tree.node_for(forest.find("ab_w1").oid)
        w2 = tree.node_for(forest.find("ab_w2").oid)
        assert str(w1.label).endswith(" ▲1")  # its own finding
        assert str(w2.label).endswith(" ●1")  # a leaf: its own (named by the root's finding)
