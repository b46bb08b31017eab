"""Answers the pruning report must get right, on 18 and 15: a partition left detach-pending by an
interrupted DETACH ... CONCURRENTLY is not planned by PostgreSQL, so it is neither scanned nor
pruned (an unfiltered query is a full scan), and a HASH level without a condition asks for an
equality, never for a range (which cannot prune it)."""

from __future__ import annotations

import json

import pytest

from tui.cli import main
from tui.core.catalog import load_forest
from tui.core.connection import connect
from tui.core.explain import ExplainSession, tree

from .conftest import Database
from .layouts import leave_detach_pending

LAYOUT = """
CREATE TABLE public.m (k int, h int) PARTITION BY RANGE (k);
CREATE TABLE public.m1 PARTITION OF public.m FOR VALUES FROM (0) TO (10);
CREATE TABLE public.m2 PARTITION OF public.m FOR VALUES FROM (10) TO (20);
CREATE TABLE public.m3 PARTITION OF public.m FOR VALUES FROM (20) TO (30)
  PARTITION BY HASH (h);
CREATE TABLE public.m3_h0 PARTITION OF public.m3 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.m3_h1 PARTITION OF public.m3 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE public.m4 PARTITION OF public.m FOR VALUES FROM (30) TO (40);
INSERT INTO public.m SELECT i % 40, i FROM generate_series(1, 400) i;
"""


@pytest.fixture
def pending(db: Database) -> Database:
    db.execute(LAYOUT)
    leave_detach_pending(db.dsn, "m", "m1")
    return db


def _explain(db: Database, query: str):
    with connect(db.target, user_search_path=True) as conn:
        return ExplainSession(conn).explain(query)


def test_light_tree_marks_and_does_not_count_a_detach_pending_partition(pending) -> None:
    with connect(pending.target) as conn:
        full = load_forest(conn)
        light = tree.load_trees(conn, {full.find("m").oid}, set())
    m1 = next(n for n in light.nodes.values() if n.name == "m1")
    assert m1.detach_pending and full.find("m1").detach_pending
    assert not any(n.detach_pending for n in light.nodes.values() if n.name != "m1")
    root = next(n for n in light.nodes.values() if n.name == "m")
    # the planner sees m2, m3_h0, m3_h1, m4; the full catalog keeps counting m1
    assert root.leaf_count == 4 and full.find("m").leaf_count == 5


def test_unfiltered_query_is_a_full_scan(pending) -> None:
    (ref,) = _explain(pending, "SELECT * FROM public.m").references
    assert (ref.partitions_scanned, ref.partitions_total) == (4, 4)
    assert ref.pruned_at_plan == 0 and ref.status == "full"
    assert ref.detach_pending == 1
    assert ref.verdict == ("no pruning: all 4 partitions scanned; 1 partition detach-pending,"
                           " not counted")


def test_pruned_query_counts_without_the_pending_partition(pending) -> None:
    (ref,) = _explain(pending, "SELECT * FROM public.m WHERE k >= 30").references
    assert (ref.partitions_scanned, ref.partitions_total, ref.pruned_at_plan) == (1, 4, 3)
    assert ref.status == "pruned"
    assert ref.verdict.endswith("; 1 partition detach-pending, not counted")
    # the level of m kept m4 only: no advice that it did not prune
    assert "no_key_predicate" not in {a.code for a in ref.advice}


def test_cli_require_pruning_fails_on_the_demo_audit_log(scenario_db, capsys) -> None:
    """The demo's audit_log: four monthly partitions and one half-detached month."""
    code = main(["explain", "-d", scenario_db.dsn, "--require-pruning",
                 "SELECT * FROM public.audit_log"])
    out, err = capsys.readouterr()
    assert code == 1, out
    assert "[FULL] audit_log: no pruning: all 4 partitions scanned; 1 partition " \
           "detach-pending, not counted" in out
    assert "scanned in full: audit_log" in err
    code = main(["explain", "-d", scenario_db.dsn, "--json", "SELECT * FROM public.audit_log"])
    (table,) = json.loads(capsys.readouterr().out)["tables"]
    assert (table["partitions_total"], table["partitions_scanned"], table["detach_pending"],
            table["status"]) == (4, 4, 1, "full")


def test_hash_level_without_condition_asks_for_an_equality(pending) -> None:
    """m3 is HASH (h): a range of constants could never prune it."""
    (ref,) = _explain(pending, "SELECT * FROM public.m WHERE k >= 20 AND k < 30").references
    assert (ref.partitions_scanned, ref.partitions_total) == (2, 4)
    (advice,) = [a for a in ref.advice if a.code == "no_key_predicate"]
    assert advice.suggestion == "add an equality (or IN list) on h"
    assert "range" not in advice.suggestion
    # the advice works: an equality prunes the HASH level
    (better,) = _explain(pending, "SELECT * FROM public.m WHERE k >= 20 AND k < 30 AND h = 7"
                         ).references
    assert better.partitions_scanned == 1
