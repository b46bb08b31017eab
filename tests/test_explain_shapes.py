"""Exact counts on the plan shapes that put several references into one Append, on 18 and 15.

Each test first checks that the server really planned the shape it is about (one flattened
Append, an arm below a Gather, Subplans Removed on an Append shared by two tables, ...), then
the counts per reference.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import sql

from tui.core.explain import ExplainReport, ExplainSession
from tui.core.explain.plan_tree import PlanNode

from .conftest import Database

# ab: 3 partitions of 10 keys; xy: 2. t: 3, named t_p1..t_p3 (no clash with EXPLAIN's names);
# ab's partitions are named the way EXPLAIN numbers the scans of a reference (ab_1, ab_2, ...)
LAYOUT = """
CREATE TABLE public.ab (k int, v int) PARTITION BY RANGE (k);
CREATE TABLE public.ab_1 PARTITION OF public.ab FOR VALUES FROM (0) TO (10);
CREATE TABLE public.ab_2 PARTITION OF public.ab FOR VALUES FROM (10) TO (20);
CREATE TABLE public.ab_3 PARTITION OF public.ab FOR VALUES FROM (20) TO (30);
CREATE TABLE public.xy (k int, v int) PARTITION BY RANGE (k);
CREATE TABLE public.xy_1 PARTITION OF public.xy FOR VALUES FROM (0) TO (10);
CREATE TABLE public.xy_2 PARTITION OF public.xy FOR VALUES FROM (10) TO (20);
CREATE TABLE public.t (a int, b int) PARTITION BY RANGE (a);
CREATE TABLE public.t_p1 PARTITION OF public.t FOR VALUES FROM (0) TO (10);
CREATE TABLE public.t_p2 PARTITION OF public.t FOR VALUES FROM (10) TO (20);
CREATE TABLE public.t_p3 PARTITION OF public.t FOR VALUES FROM (20) TO (30);
INSERT INTO public.ab SELECT i % 30, i FROM generate_series(1, 30000) i;
INSERT INTO public.xy SELECT i % 20, i FROM generate_series(1, 20000) i;
INSERT INTO public.t SELECT i % 30, i % 30 FROM generate_series(1, 3000) i;
ANALYZE;
"""


def _session(db: Database, **settings: str) -> Iterator[ExplainSession]:
    db.execute(LAYOUT)
    for name, value in settings.items():  # for new sessions of this database
        db.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(db.name), sql.Identifier(name), sql.Literal(value)))
    conn = db.connect(user_search_path=True)
    try:
        yield ExplainSession(conn)
    finally:
        conn.close()


@pytest.fixture
def session(db: Database) -> Iterator[ExplainSession]:
    yield from _session(db)


@pytest.fixture
def parallel_session(db: Database) -> Iterator[ExplainSession]:
    yield from _session(db, parallel_setup_cost="0", parallel_tuple_cost="0",
                        min_parallel_table_scan_size="0", max_parallel_workers_per_gather="2")


def _refs(report: ExplainReport, table: str) -> list:
    return [r for r in report.references if r.table.qualified == table]


def _counts(report: ExplainReport, table: str) -> list[tuple[int, int, int, int]]:
    """(scanned, pruned at plan time, at start-up, total) of each reference, sorted."""
    return sorted((r.partitions_scanned, r.pruned_at_plan, r.pruned_at_startup,
                   r.partitions_total) for r in _refs(report, table))


def _appends(report: ExplainReport) -> list[PlanNode]:
    return [n for n in report.plan.walk() if n.is_append]


def _scans_below(node: PlanNode, prefix: str) -> list[str]:
    return [n.relation.name for n in node.walk() if n.is_scan and n.relation is not None
            and n.relation.name.startswith(prefix)]


def test_one_flattened_append_scanning_one_table_twice(session: ExplainSession) -> None:
    report = session.explain(
        "SELECT * FROM (SELECT * FROM ab UNION ALL SELECT * FROM xy UNION ALL SELECT * FROM ab)"
        " s WHERE k >= 10")
    (append,) = _appends(report)  # the shape: one Append holds both references of ab
    assert sorted(_scans_below(append, "ab_")) == ["ab_2", "ab_2", "ab_3", "ab_3"]
    assert _counts(report, "ab") == [(2, 1, 0, 3), (2, 1, 0, 3)]
    assert _counts(report, "xy") == [(1, 1, 0, 2)]
    for ref in _refs(report, "ab"):
        assert [p.node.name for p in ref.partitions] == ["ab_2", "ab_3"]


def test_flattened_references_that_scan_different_partitions(session: ExplainSession) -> None:
    # no partition comes twice: the arm of xy in between separates the references
    report = session.explain(
        "SELECT * FROM (SELECT * FROM ab WHERE k < 10 UNION ALL SELECT * FROM xy"
        " UNION ALL SELECT * FROM ab WHERE k >= 20) s")
    (append,) = _appends(report)
    assert sorted(_scans_below(append, "ab_")) == ["ab_1", "ab_3"]
    assert _counts(report, "ab") == [(1, 2, 0, 3), (1, 2, 0, 3)]
    assert sorted(p.node.name for r in _refs(report, "ab") for p in r.partitions) == \
        ["ab_1", "ab_3"]


def test_analyze_counts_each_reference_of_a_flattened_append(session: ExplainSession) -> None:
    report = session.explain(
        "SELECT * FROM (SELECT * FROM ab UNION ALL SELECT * FROM xy UNION ALL SELECT * FROM ab)"
        " s WHERE k >= 10", analyze=True)
    refs = _refs(report, "ab")
    assert len(refs) == 2
    assert all(r.partitions_scanned == 2 and r.never_executed == 0 for r in refs)


def test_parallel_append_flattened(parallel_session: ExplainSession) -> None:
    report = parallel_session.explain(
        "SELECT * FROM (SELECT * FROM ab UNION ALL SELECT * FROM xy UNION ALL SELECT * FROM ab)"
        " s WHERE k >= 10")
    parallel = [a for a in _appends(report) if a.raw.get("Parallel Aware")]
    assert parallel, "the planner did not choose a Parallel Append"
    assert _counts(report, "ab") == [(2, 1, 0, 3), (2, 1, 0, 3)]
    assert _counts(report, "xy") == [(1, 1, 0, 2)]


def test_parallel_arms_below_one_append(parallel_session: ExplainSession) -> None:
    # each arm aggregates in parallel: Append -> ... Gather (Merge) -> Parallel Append per arm
    report = parallel_session.explain(
        "SELECT k, count(*) FROM ab WHERE k >= 10 GROUP BY k UNION ALL"
        " SELECT k, count(*) FROM xy GROUP BY k UNION ALL"
        " SELECT k, count(*) FROM ab WHERE k >= 10 GROUP BY k")
    top = report.plan.root
    while not top.is_append:
        top = top.children[0]
    gathers = [n for n in report.plan.walk() if n.node_type.startswith("Gather")]
    assert len(gathers) >= 2, "the planner did not gather the arms in parallel"
    assert _counts(report, "ab") == [(2, 1, 0, 3), (2, 1, 0, 3)]
    assert _counts(report, "xy") == [(2, 0, 0, 2)]


def test_parent_and_one_of_its_partitions(session: ExplainSession) -> None:
    report = session.explain("SELECT * FROM t WHERE a >= (SELECT min(b) FROM t_p2)")
    (ref,) = report.references  # t_p2 named directly is no reference of t
    assert ref.table.qualified == "t" and ref.label == "t"
    assert ref.partitions_total == 3
    assert ref.partitions_scanned + ref.pruned_at_plan + ref.pruned_at_startup == 3
    assert {s.relation.name for s in report.plan.walk() if s.is_scan} >= {"t_p2"}


def test_partition_named_like_explains_numbering(session: ExplainSession) -> None:
    # EXPLAIN names the scans of ab's partitions ab_1, ab_2, ...: so are the partitions
    report = session.explain("SELECT * FROM ab WHERE k >= (SELECT min(k) FROM ab_2)")
    assert [r.table.qualified for r in report.references] == ["ab"]
    (ref,) = report.references
    assert ref.partitions_scanned + ref.pruned_at_plan + ref.pruned_at_startup == 3
    report = session.explain("SELECT * FROM ab_2 JOIN ab USING (k) WHERE ab.k < 20")
    assert _counts(report, "ab") == [(2, 1, 0, 3)]


def test_startup_pruning_on_an_append_of_two_tables(session: ExplainSession) -> None:
    stable = "(extract(epoch FROM now())::int % 1 + 15)"  # 15, known at executor start-up
    report = session.explain(
        f"SELECT k FROM (SELECT k FROM ab UNION ALL SELECT k FROM xy) s WHERE k >= {stable}")
    removed = [a.subplans_removed for a in _appends(report) if a.subplans_removed]
    assert removed == [2], "expected one Append losing a partition of each table"
    assert _counts(report, "ab") == [(2, 0, 1, 3)]
    assert _counts(report, "xy") == [(1, 0, 1, 2)]


def test_generic_plan_removing_subplans_of_two_tables(session: ExplainSession) -> None:
    report = session.explain(
        "SELECT k FROM (SELECT k FROM ab UNION ALL SELECT k FROM xy) s WHERE k = $1")
    assert report.raw.generic
    if session.runner.server_version < 160000:
        # PREPARE + EXECUTE with NULL: one Append whose every subplan, of both tables, is gone
        assert [a.subplans_removed for a in _appends(report)] == [5]
    # the generic plan keeps every partition of both (start-up pruning decides with values)
    assert _counts(report, "ab") == [(3, 0, 0, 3)]
    assert _counts(report, "xy") == [(2, 0, 0, 2)]


MERGE_JOIN = ("MERGE INTO ab USING (ab_2 JOIN xy USING (k)) q ON ab.k = q.k AND ab.k >= 10"
              " WHEN MATCHED THEN DELETE")


def test_merge_using_a_join(session: ExplainSession) -> None:
    report = session.explain(MERGE_JOIN)
    # ab (the target, 2 of 3), xy (2 of 2); ab_2 named directly is an ordinary table
    assert _counts(report, "ab") == [(2, 1, 0, 3)]
    assert _counts(report, "xy") == [(2, 0, 0, 2)]
    aliased = session.explain(MERGE_JOIN.replace("ab_2 JOIN", "ab_2 s JOIN"))
    assert _counts(aliased, "ab") == [(2, 1, 0, 3)]


def test_counts_do_not_depend_on_the_advice_parser(session: ExplainSession) -> None:
    # the same statement, written so that any parser reads it, gives the same counts
    plain = session.explain(
        "MERGE INTO ab USING (SELECT k FROM ab_2 WHERE k IN (SELECT k FROM xy)) q"
        " ON ab.k = q.k AND ab.k >= 10 WHEN MATCHED THEN DELETE")
    joined = session.explain(MERGE_JOIN)
    assert _counts(plain, "ab") == _counts(joined, "ab")


def test_partition_pruning_off(db: Database) -> None:
    sessions = _session(db, enable_partition_pruning="off")
    session = next(sessions)
    report = session.explain("SELECT * FROM ab WHERE k = 5")
    assert report.plan.settings.get("enable_partition_pruning") == "off"
    (ref,) = report.references
    assert ref.status == "full"
    assert [a.code for a in ref.advice] == ["pruning_disabled"]
    assert "enable_partition_pruning" in ref.advice[0].message
    sessions.close()


SUBPARTITIONED = """
CREATE TABLE public.m (a int, b text) PARTITION BY RANGE (a);
CREATE TABLE public.m_1 PARTITION OF public.m FOR VALUES FROM (0) TO (10) PARTITION BY LIST (b);
CREATE TABLE public.m_1_x PARTITION OF public.m_1 FOR VALUES IN ('x');
CREATE TABLE public.m_1_y PARTITION OF public.m_1 FOR VALUES IN ('y');
CREATE TABLE public.m_2 PARTITION OF public.m FOR VALUES FROM (10) TO (20);
"""


@pytest.mark.parametrize("query", [
    "SELECT * FROM m_1 WHERE b = 'y' UNION ALL SELECT * FROM m",
    "SELECT * FROM m UNION ALL SELECT * FROM m_1 WHERE b = 'y'",
    "SELECT * FROM m_1 JOIN m USING (a) WHERE m_1.b = 'y'",
])
def test_a_mid_level_partition_and_its_root(db: Database, session: ExplainSession,
                                            query: str) -> None:
    # EXPLAIN names m's scans m, m_1, m_2: m_1 is also the partition's own name
    db.execute(SUBPARTITIONED)
    report = session.explain(query)
    assert _counts(report, "m") == [(3, 0, 0, 3)]
    assert _counts(report, "m_1") == [(1, 1, 0, 2)]
    assert [p.node.name for p in _refs(report, "m_1")[0].partitions] == ["m_1_y"]
