"""[policy."schema.table"] against real servers: each policy finds its table the way `tree`
names it, and its findings thresholds hold for that table (and below it) and no other."""

from __future__ import annotations

from datetime import datetime, timezone

from tui.cli import main
from tui.core.catalog import load_forest
from tui.core.config import FindingsConfig, parse_config
from tui.core.findings import check_forest
from tui.core.policy import resolve_policies

NOW = datetime(2030, 1, 20, 12, 0, tzinfo=timezone.utc)

_LAYOUT = """
    CREATE SCHEMA "Sales";
    CREATE TABLE "Sales"."Big Orders" (k int NOT NULL, pad text) PARTITION BY RANGE (k);
    CREATE TABLE "Sales"."Big Orders_1" PARTITION OF "Sales"."Big Orders"
        FOR VALUES FROM (0) TO (10000);
    CREATE TABLE public.other (k int NOT NULL, pad text) PARTITION BY RANGE (k);
    CREATE TABLE public.other_1 PARTITION OF public.other FOR VALUES FROM (0) TO (10000);
    -- a two-level tree: the policy on the root holds for the level below unless it has its own
    CREATE TABLE public.tree (k int NOT NULL, h int NOT NULL, pad text) PARTITION BY RANGE (k);
    CREATE TABLE public.tree_a PARTITION OF public.tree FOR VALUES FROM (0) TO (10000)
        PARTITION BY HASH (h);
    CREATE TABLE public.tree_a0 PARTITION OF public.tree_a FOR VALUES WITH (modulus 2, remainder 0);
    CREATE TABLE public.tree_a1 PARTITION OF public.tree_a FOR VALUES WITH (modulus 2, remainder 1);
    CREATE TABLE public.tree_b PARTITION OF public.tree FOR VALUES FROM (10000) TO (20000)
        PARTITION BY HASH (h);
    CREATE TABLE public.tree_b0 PARTITION OF public.tree_b FOR VALUES WITH (modulus 2, remainder 0);
    CREATE TABLE public.tree_b1 PARTITION OF public.tree_b FOR VALUES WITH (modulus 2, remainder 1);
    INSERT INTO "Sales"."Big Orders" SELECT g, repeat('x', 100) FROM generate_series(0, 4999) g;
    INSERT INTO public.other SELECT g, repeat('x', 100) FROM generate_series(0, 4999) g;
    INSERT INTO public.tree SELECT g, g, repeat('x', 100) FROM generate_series(0, 4999) g;
    INSERT INTO public.tree SELECT g, g, repeat('x', 100) FROM generate_series(10000, 14999) g;
    ANALYZE "Sales"."Big Orders", public.other, public.tree;
"""


def _oversized_objects(found) -> set[str]:
    return {o for f in found if f.code == "oversized_partition" for o in f.objects}


def test_policy_thresholds_apply_to_their_table_only(db):
    db.execute(_LAYOUT)
    with db.connect() as conn:
        forest = load_forest(conn)
    small = 64 * 1024
    assert all(forest.find(n).total_bytes > small
               for n in ('"Sales"."Big Orders_1"', "other_1", "tree_a0", "tree_b0"))
    # the global limit is far above every partition: only the policies can make one oversized
    config = parse_config({"policy": {
        '"Sales"."Big Orders"': {"oversized": small},
        "tree": {"oversized": small},
        "public.tree_b": {"oversized": "1GB"},
    }})
    assert not _oversized_objects(check_forest(forest, FindingsConfig(), NOW))
    found = check_forest(forest, FindingsConfig(), NOW, policies=config.policies)
    assert _oversized_objects(found) == {
        '"Sales"."Big Orders_1"', "tree_a0", "tree_a1"}  # not other_1, not under tree_b
    [big] = [f for f in found if f.code == "oversized_partition" and f.table != "tree"]
    assert "64.0 KiB" in big.message
    [tree] = [f for f in found if f.code == "oversized_partition" and f.table == "tree"]
    assert "64.0 KiB" in tree.message

    # a skew threshold set on one table: the same layout, judged per table
    db.execute("INSERT INTO public.tree SELECT 1, 0, repeat('y', 100) "
               "FROM generate_series(1, 20000); ANALYZE public.tree_a;")
    with db.connect() as conn:
        forest = load_forest(conn)
    skewed = {f.table for f in check_forest(forest, FindingsConfig(), NOW)
              if f.code == "skewed_siblings"}
    assert skewed == {"tree_a"}
    relaxed = parse_config({"policy": {"tree_a": {"skew_factor": 1000}}})
    assert not [f for f in check_forest(forest, FindingsConfig(), NOW, relaxed.policies)
                if f.code == "skewed_siblings"]


def test_policy_names_resolve_like_tree(db):
    db.execute(_LAYOUT + """
        CREATE SCHEMA two;
        CREATE TABLE two.other (k int NOT NULL) PARTITION BY RANGE (k);
    """)
    with db.connect() as conn:
        forest = load_forest(conn)
    config = parse_config({"policy": {
        '"Sales"."Big Orders"': {"premake": 2},
        "other": {"premake": 2},  # public.other and two.other: ambiguous
        "nowhere": {"premake": 2},
        "other_1": {"premake": 2},  # a partition, not a partitioned table
        "TREE": {"premake": 2},  # unquoted: folds to tree
        "public.tree": {"premake": 3},  # the same table, qualified: this one wins
    }})
    resolved = resolve_policies(forest, config.policies)
    by_name = {forest.nodes[oid].qualified: p.key for oid, p in resolved.by_oid.items()}
    assert by_name == {'"Sales"."Big Orders"': '"Sales"."Big Orders"', "tree": "public.tree"}
    problems = "\n".join(resolved.problems)
    assert len(resolved.problems) == 4, problems
    assert "'other' is ambiguous (other, two.other)" in problems
    assert "'nowhere' names no partitioned table" in problems
    assert "'other_1' is a partition" in problems
    assert "'TREE' and 'public.tree' both name tree; 'public.tree' is used" in problems


def test_check_warns_about_policies_that_match_nothing(db18, tmp_path, capsys):
    db18.execute(_LAYOUT)
    config = tmp_path / "config.toml"
    config.write_text('[policy."public.nowhere"]\npremake = 2\n'
                      '[policy.\'"Sales"."Big Orders"\']\noversized = "64kB"\n')
    status = main(["check", "-d", db18.dsn, "--config", str(config)])
    out, err = capsys.readouterr()
    assert status == 1
    assert '"Sales"."Big Orders_1"' in out and "64.0 KiB" in out
    assert err == ("pgparts: warning: [policy] 'public.nowhere' names no partitioned table in "
                   "this database; it does nothing here\n")
