"""The EXPLAIN report's own catalog read and the shortcuts that keep it fast at 10,000
partitions: the light tree read agrees with the full catalog loader on 18 and 15, nodes filled
from a template equal nodes built by the constructor, whole-day bounds formatted from the text
equal Bound.short(), plans are parsed without recursion, and the collector pause nests."""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Iterator

import pytest

from tui.core.bounds import parse_bound
from tui.core.catalog import load_forest
from tui.core.connection import connect
from tui.core.explain import ExplainSession, tree
from tui.core.explain.plan_tree import parse_plan
from tui.core.explain.pruning import _short_day_range
from tui.core.gcpause import paused_gc

from .conftest import Database, Server, create_database, drop_database
from .layouts import AWKWARD_SQL

# fields the light read fills; sizes and statistics are left unknown on purpose
SAME = ("oid", "root_oid", "parent_oid", "level", "path", "schema", "name", "relkind",
        "persistence", "parent_strategy", "strategy", "key_columns", "key_types",
        "key_expressions", "default_partition_oid", "leaf_count", "detach_pending")


@pytest.fixture(scope="module")
def awkward(pg: Server) -> Iterator[Database]:
    name = create_database(pg)
    database = Database(pg, name)
    database.execute(AWKWARD_SQL)
    yield database
    drop_database(pg, name)


def test_light_trees_agree_with_the_catalog(awkward: Database) -> None:
    with connect(awkward.target) as conn:
        full = load_forest(conn)
        light = tree.load_trees(conn, {r.oid for r in full.roots}, set())
        assert set(light.nodes) == set(full.nodes)
        assert [r.oid for r in light.roots] == sorted(r.oid for r in full.roots)
        for oid, node in light.nodes.items():
            other = full.nodes[oid]
            for name in SAME:
                assert getattr(node, name) == getattr(other, name), (other.qualified, name)
            assert [c.oid for c in node.children] == sorted(c.oid for c in other.children)
            # partitioned levels carry their bounds; leaves' bounds are read on demand
            assert node.bound_text == (other.bound_text if node.is_partitioned else None)
        tree.fill_bounds(conn, list(light.nodes.values()))
        for oid, node in light.nodes.items():
            assert node.bound_text == full.nodes[oid].bound_text


def test_trees_found_from_a_partition_name(awkward: Database) -> None:
    """The plan names partitions: one of them is enough to read its whole tree (the name
    has quotes, a space and non-ASCII characters)."""
    with connect(awkward.target) as conn:
        light = tree.load_trees(conn, set(), {("Odd Schema", 'Trading "Active" Ω')})
        roots = [r.qualified for r in light.roots]
        assert roots == ['"Odd Schema"."Activity ""Events""; Ω"']
        assert light.roots[0].leaf_count == 2
        assert tree.load_trees(conn, set(), {("public", "no_such_table")}).nodes == {}


def test_template_nodes_equal_constructed_nodes(awkward: Database,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert tree._TEMPLATE is not None, "PartNode changed shape: the fast path is off"
    with connect(awkward.target) as conn:
        roots = {r[0] for r in conn.execute(
            "SELECT c.oid FROM pg_class c WHERE c.relkind = 'p' AND NOT c.relispartition")}
        fast = tree.load_trees(conn, roots, set())
        monkeypatch.setattr(tree, "_TEMPLATE", None)
        slow = tree.load_trees(conn, roots, set())
    assert set(fast.nodes) == set(slow.nodes)
    for oid, node in fast.nodes.items():
        other = slow.nodes[oid]
        for f in dataclasses.fields(node):
            mine, theirs = getattr(node, f.name), getattr(other, f.name)
            if f.name == "children":
                assert [c.oid for c in mine] == [c.oid for c in theirs]
            else:
                assert mine == theirs, f.name
    # every node has lists of its own, never one shared through the template
    lists = [id(n.children) for n in fast.nodes.values()] + \
        [id(n.indexes) for n in fast.nodes.values()]
    assert len(set(lists)) == len(lists)


@pytest.mark.parametrize("text", [
    "FOR VALUES FROM ('2024-01-07 00:00:00+00') TO ('2024-01-08 00:00:00+00')",
    "FOR VALUES FROM ('2024-01-07') TO ('2024-02-07')",
    "FOR VALUES FROM ('2024-01-07 00:00:00') TO ('2025-01-01 00:00:00')",
    "FOR VALUES FROM ('2024-01-07 00:00:00+01') TO ('2024-01-08 00:00:00+00')",
    "FOR VALUES FROM ('2024-01-07 12:30:00+00') TO ('2024-01-08 00:00:00+00')",
    "FOR VALUES FROM ('2024-01-07 00:00:00.5+00') TO ('2024-01-08 00:00:00+00')",
    "FOR VALUES FROM (MINVALUE) TO ('2024-01-08 00:00:00+00')",
    "FOR VALUES FROM ('2024-01-07', 'a') TO ('2024-01-08', 'b')",
    "FOR VALUES FROM ('0999-01-01') TO ('1000-01-01')",
    "FOR VALUES FROM ('2024-01-07 BC') TO ('2024-01-08')",
    "FOR VALUES FROM ('abc') TO ('abd')",
    "FOR VALUES FROM (0) TO (10)",
    "FOR VALUES WITH (modulus 4, remainder 1)",
    "FOR VALUES IN ('2024-01-07')",
    "DEFAULT",
])
def test_day_ranges_format_like_bound_short(text: str) -> None:
    fast = _short_day_range(text)
    assert fast is None or fast == parse_bound(text).short()  # type: ignore[union-attr]


def test_day_ranges_take_the_shortcut() -> None:
    assert _short_day_range(
        "FOR VALUES FROM ('2024-01-07 00:00:00+00') TO ('2024-01-08 00:00:00+00')"
    ) == "2024-01-07 → 2024-01-08"
    assert _short_day_range("FOR VALUES FROM ('2024-01-07') TO ('2024-02-07')") \
        == "2024-01-07 → 2024-02-07"


def test_deep_and_wide_plans_parse_without_recursion() -> None:
    """A plan deeper than Python's recursion limit, ending in an Append over 10,000 scans:
    parsing and walking are iterative, in the order of the document."""
    leaves = [{"Node Type": "Seq Scan", "Relation Name": f"t_{i}", "Schema": "public",
               "Alias": f"t_{i}", "Total Cost": i, "Plan Rows": 1, "Filter": "(v = 1)"}
              for i in range(10_000)]
    node: dict = {"Node Type": "Append", "Plans": leaves, "Subplans Removed": 0}
    for _ in range(3_000):
        node = {"Node Type": "Subquery Scan", "Plans": [node], "Total Cost": 1.5}
    plan = parse_plan([{"Plan": node, "Planning Time": 0.1}])
    nodes = list(plan.walk())
    assert len(nodes) == 3_000 + 1 + 10_000
    assert [n.node_type for n in nodes[2_999:3_001]] == ["Subquery Scan", "Append"]
    scans = nodes[3_001:]
    assert [s.relation.name for s in scans[:3]] == ["t_0", "t_1", "t_2"]  # type: ignore[union-attr]
    assert scans[-1].total_cost == 9_999.0 and scans[0].conditions == {"Filter": "(v = 1)"}
    assert scans[0].parent is nodes[3_000] and nodes[3_000].children[0] is scans[0]
    assert list(nodes[0].walk()) == nodes
    assert not plan.analyzed


def test_gc_pause_nests_across_threads_and_restores() -> None:
    assert gc.isenabled()
    inside: list[bool] = []
    release = threading.Event()
    entered = threading.Event()

    def worker() -> None:
        with paused_gc():
            entered.set()
            release.wait(5)
            inside.append(gc.isenabled())

    t = threading.Thread(target=worker)
    with paused_gc():
        t.start()
        entered.wait(5)
        with paused_gc():
            assert not gc.isenabled()
    assert not gc.isenabled()  # the worker's pause is still on
    release.set()
    t.join(5)
    assert inside == [False]
    assert gc.isenabled()

    gc.disable()  # a caller that turned the collector off keeps it off
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("limit", [None, 2])
def test_bounds_read_for_the_partitions_shown(awkward: Database, limit: int | None) -> None:
    """All bounds (--json) or only the first few per table
    (the console), each level's bound as the catalog has it."""
    with connect(awkward.target, user_search_path=True) as conn:
        full = load_forest(conn)
        report = ExplainSession(conn).explain(
            "SELECT * FROM events e JOIN control.payment p ON p.pdm_id = e.acct",
            bounds_limit=limit)
    assert {r.table.name for r in report.references} == {"events", "payment"}
    for ref in report.references:
        assert ref.status == "full"
        for i, p in enumerate(ref.partitions):
            shown = limit is None or i < limit
            levels = [report.forest.nodes[o] for o in p.node.path[1:]]  # type: ignore[union-attr]
            for level in levels:
                expected = full.nodes[level.oid].bound_text
                assert level.bound_text == expected if shown or level.is_partitioned \
                    else level.bound_text is None
            if shown:
                assert p.bounds == " / ".join(
                    parse_bound(full.nodes[n.oid].bound_text).short()  # type: ignore[union-attr]
                    for n in levels)
