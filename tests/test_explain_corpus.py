"""The pruning report against what PostgreSQL's own plans show, on 18 and 15.

Every case states the partitions it must scan, derived from the layout below (e.g. one week of
account_balances = 4 hash partitions), and the advice codes it must (and must not) carry. The
report's counts are also checked against an independent reading of the raw EXPLAIN JSON: the
distinct leaf relations the plan names, matched with pg_partition_tree's leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tui.core.connection import connect
from tui.core.explain import ExplainReport, ExplainSession

from .conftest import Database, Server, create_database, drop_database
from .layouts import AWKWARD_SQL

# account_balances: 2 consolidated weeks + 4 weeks x HASH(account_address) 4 = 18 leaves.
# control.payment: MINVALUE..2020, 2020-2021, 2022, 2023, 2024, DEFAULT = 6 leaves.
SCENARIO_SQL = r"""
CREATE TABLE account_balances ("timestamp" timestamptz NOT NULL,
  account_address varchar(255) NOT NULL, usd_value numeric(18,2) NOT NULL,
  activity_id text NOT NULL, data jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (account_address, "timestamp", activity_id)) PARTITION BY RANGE ("timestamp");
CREATE TABLE account_balances_2023_12_24_consolidated PARTITION OF account_balances
  FOR VALUES FROM ('2023-12-24') TO ('2023-12-31');
CREATE TABLE account_balances_2023_12_31_consolidated PARTITION OF account_balances
  FOR VALUES FROM ('2023-12-31') TO ('2024-01-07');
DO $$
DECLARE w date; h int;
BEGIN
  FOR w IN SELECT generate_series('2024-01-07'::date, '2024-01-28'::date, '7 days')::date LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF account_balances FOR VALUES FROM (%L) TO (%L)'
      ' PARTITION BY HASH (account_address)', 'account_balances_' || to_char(w, 'YYYY_MM_DD'),
      w, w + 7);
    FOR h IN 0..3 LOOP
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (modulus 4, remainder %s)',
        'account_balances_' || to_char(w, 'YYYY_MM_DD') || '_hash_' || h,
        'account_balances_' || to_char(w, 'YYYY_MM_DD'), h);
    END LOOP;
  END LOOP;
END $$;
CREATE INDEX ON account_balances ("timestamp");
INSERT INTO account_balances
  SELECT '2023-12-24'::timestamptz + (i % 840) * interval '1 hour', 'rdx1q' || (i % 50), i % 100,
         (ARRAY['xrd_holding','lsu_holding','dex_swap','lending'])[1 + i % 4], '{}'
  FROM generate_series(1, 4000) i ON CONFLICT DO NOTHING;
CREATE SCHEMA control;
CREATE TABLE control.payment (pay_ts timestamp(0) with time zone NOT NULL, pdm_id int NOT NULL,
  amount numeric, PRIMARY KEY (pay_ts, pdm_id)) PARTITION BY RANGE (pay_ts);
CREATE TABLE control.payment_2000_2019 PARTITION OF control.payment
  FOR VALUES FROM (MINVALUE) TO ('2020-01-01');
CREATE TABLE control.payment_2020_2021 PARTITION OF control.payment
  FOR VALUES FROM ('2020-01-01') TO ('2022-01-01');
CREATE TABLE control.payment_2022 PARTITION OF control.payment
  FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
CREATE TABLE control.payment_2023 PARTITION OF control.payment
  FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE control.payment_2024 PARTITION OF control.payment
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE control.payment_default PARTITION OF control.payment DEFAULT;
INSERT INTO control.payment
  SELECT '2019-06-01'::timestamptz + i * interval '3 hours', i, 1 FROM generate_series(1, 8000) i;
CREATE TABLE probe (ts timestamptz, acct text);
INSERT INTO probe VALUES ('2024-01-08', 'rdx1q1'), ('2024-01-20', 'rdx1q2');
CREATE VIEW recent_balances AS SELECT * FROM account_balances WHERE "timestamp" >= '2024-01-21';
ANALYZE;
"""

# AWKWARD_SQL plus a second partition for the expression and multi-column keys:
# events: 5 leaves (2024 -> LIST(kind) -> {trade: HASH(acct) x2, other DEFAULT}; 2025; DEFAULT).
AWKWARD_EXTRA = r"""
CREATE TABLE expr_keyed_b PARTITION OF expr_keyed
  FOR VALUES FROM ('2024-02-02', MINVALUE) TO ('2024-03-01', MAXVALUE);
CREATE TABLE multi_col_2 PARTITION OF multi_col FOR VALUES FROM (10, 0) TO (20, 0);
INSERT INTO events SELECT '2024-03-01'::timestamptz + i * interval '1 hour',
  (ARRAY['dex_swap','lending',NULL,'xrd_holding'])[1 + i % 4], i, i FROM generate_series(1, 400) i;
ANALYZE;
"""


@dataclass
class Case:
    id: str
    db: str  # "s" scenario, "a" awkward
    query: str
    expect: dict[str, tuple[int, int]]  # table -> (partitions scanned, total)
    codes: set[str] = field(default_factory=set)  # advice codes that must appear
    absent: set[str] = field(default_factory=set)  # advice codes that must not appear
    analyze: bool = False
    startup: dict[str, int] = field(default_factory=dict)  # table -> pruned at start-up
    never: dict[str, int] = field(default_factory=dict)  # table -> never executed (ANALYZE)
    refs: int | None = None  # number of references when a table appears more than once
    per_ref: list[int] | None = None  # partitions scanned by each reference, ascending


AB, PAY = "account_balances", "control.payment"
WEEK = "\"timestamp\" >= '2024-01-08' AND \"timestamp\" < '2024-01-09'"
LATE = "\"timestamp\" >= '2024-01-21'"  # the last two hash weeks: 8 leaves
NEG = {"no_key_predicate", "key_wrapped", "not_explained"}

CASES = [
    Case("time_and_account", "s",
         f"SELECT * FROM account_balances WHERE {WEEK} AND account_address = 'rdx1q1'",
         {AB: (1, 18)}, absent=NEG),
    Case("time_only", "s", f"SELECT * FROM account_balances WHERE {WEEK}",
         {AB: (4, 18)}, {"no_key_predicate"}),
    Case("account_only", "s", "SELECT * FROM account_balances WHERE account_address = 'rdx1q1'",
         {AB: (6, 18)}, {"no_key_predicate"}),
    Case("activity_only", "s", "SELECT * FROM account_balances WHERE activity_id = 'dex_swap'",
         {AB: (18, 18)}, {"no_key_predicate"}),
    Case("cast_to_date", "s",
         "SELECT * FROM account_balances WHERE \"timestamp\"::date = '2024-01-08'",
         {AB: (18, 18)}, {"key_wrapped"}),
    Case("date_function", "s",
         "SELECT * FROM account_balances WHERE date(\"timestamp\") = '2024-01-08'",
         {AB: (18, 18)}, {"key_wrapped"}),
    Case("date_trunc", "s",
         "SELECT * FROM account_balances WHERE date_trunc('week', \"timestamp\") = '2024-01-07'",
         {AB: (18, 18)}, {"key_wrapped"}),
    Case("extract_year", "s",
         "SELECT * FROM control.payment WHERE extract(year FROM pay_ts) = 2023",
         {PAY: (6, 6)}, {"key_wrapped"}),
    Case("stable_now", "s",
         "SELECT * FROM control.payment"
         " WHERE pay_ts >= now() - (now() - '2024-03-01'::timestamptz)",
         {PAY: (2, 6)}, {"stable_expression"}, startup={PAY: 4}),
    Case("stable_current_date", "s",
         "SELECT * FROM account_balances WHERE \"timestamp\" >= "
         "current_date - (current_date - '2024-01-21'::date)",
         {AB: (8, 18)}, {"stable_expression"}, startup={AB: 10}),
    Case("join_column", "s",
         "SELECT * FROM account_balances a JOIN probe p ON a.\"timestamp\" = p.ts",
         {AB: (18, 18)}, {"join_key"}),
    Case("join_nested_loop_analyze", "s",
         "SELECT * FROM probe p CROSS JOIN LATERAL (SELECT * FROM account_balances a"
         " WHERE a.\"timestamp\" = p.ts LIMIT 1) x",
         {AB: (18, 18)}, {"join_key"}, analyze=True, never={AB: 15}),
    Case("scalar_subquery", "s",
         "SELECT * FROM control.payment WHERE pay_ts >= (SELECT max(ts) FROM probe)",
         {PAY: (6, 6)}, {"stable_expression"}),
    Case("scalar_subquery_analyze", "s",
         "SELECT * FROM control.payment WHERE pay_ts >= (SELECT max(ts) FROM probe)",
         {PAY: (6, 6)}, {"stable_expression"}, analyze=True, never={PAY: 4}),
    Case("in_subquery", "s",
         "SELECT * FROM control.payment WHERE pay_ts IN (SELECT ts FROM probe)",
         {PAY: (6, 6)}, {"join_key"}),
    Case("hash_range", "s",
         f"SELECT * FROM account_balances WHERE {LATE} AND account_address > 'rdx1q1'",
         {AB: (8, 18)}, {"hash_non_equality"}),
    Case("hash_in_list", "s",
         f"SELECT * FROM account_balances WHERE {LATE}"
         " AND account_address IN ('rdx1q1', 'rdx1q3')", {AB: (4, 18)}, absent=NEG),
    Case("not_in", "s",
         f"SELECT * FROM account_balances WHERE {LATE}"
         " AND account_address NOT IN ('rdx1q1', 'rdx1q3')", {AB: (8, 18)}, {"not_in"}),
    Case("not_equal", "s",
         f"SELECT * FROM account_balances WHERE {LATE} AND account_address <> 'rdx1q1'",
         {AB: (8, 18)}, {"not_equal"}),
    Case("like", "s",
         f"SELECT * FROM account_balances WHERE {LATE} AND account_address LIKE 'rdx1q1%'",
         {AB: (8, 18)}, {"like_on_key"}),
    Case("lower", "s",
         f"SELECT * FROM account_balances WHERE {LATE} AND lower(account_address) = 'rdx1q1'",
         {AB: (8, 18)}, {"key_wrapped"}),
    Case("or_across_columns", "s",
         "SELECT * FROM account_balances WHERE \"timestamp\" >= '2024-01-28'"
         " OR account_address = 'x'", {AB: (18, 18)}, {"or_across_columns"}),
    Case("or_same_column", "s",
         "SELECT * FROM account_balances WHERE \"timestamp\" < '2023-12-31'"
         " OR \"timestamp\" >= '2024-01-28'", {AB: (5, 18)}, absent={"or_across_columns"}),
    Case("generic_params", "s",
         "SELECT * FROM account_balances WHERE \"timestamp\" >= $1 AND \"timestamp\" < $2",
         {AB: (18, 18)}, {"generic_plan"}),
    Case("generic_with_literal", "s",
         f"SELECT * FROM account_balances WHERE {LATE} AND account_address = $1",
         {AB: (8, 18)}, {"generic_plan"}),
    Case("contradiction", "s",
         "SELECT * FROM control.payment WHERE pay_ts < '2000-01-01' AND pay_ts > '2001-01-01'",
         {PAY: (0, 6)}, absent=NEG),
    Case("self_join", "s",
         "SELECT * FROM account_balances a JOIN account_balances b"
         " USING (account_address, \"timestamp\", activity_id)"
         " WHERE a.\"timestamp\" >= '2024-01-28' AND b.account_address = 'rdx1q3'",
         {AB: (6, 18)}, refs=2, per_ref=[1, 6]),  # a: week 28 hash 2; b: every hash_2
    Case("cte_inlined", "s",
         "WITH w AS (SELECT * FROM control.payment WHERE pay_ts >= '2024-01-01') SELECT * FROM w",
         {PAY: (2, 6)}, absent=NEG),
    Case("cte_materialized", "s",
         "WITH w AS MATERIALIZED (SELECT * FROM control.payment WHERE pay_ts >= '2024-01-01')"
         " SELECT * FROM w a JOIN w b USING (pdm_id)", {PAY: (2, 6)}, absent=NEG),
    Case("subquery_pushdown", "s",
         "SELECT * FROM (SELECT * FROM control.payment) s WHERE pay_ts >= '2024-01-01'",
         {PAY: (2, 6)}, absent=NEG),
    Case("view", "s", "SELECT count(*) FROM recent_balances", {AB: (8, 18)}, {"via_view"}),
    Case("delete", "s", "DELETE FROM control.payment WHERE pay_ts >= '2024-02-01'",
         {PAY: (2, 6)}, absent=NEG),
    Case("update", "s", f"UPDATE account_balances SET usd_value = 0 WHERE {WEEK}",
         {AB: (4, 18)}, {"no_key_predicate"}),
    Case("union_all_overlap", "s",
         "SELECT * FROM account_balances WHERE \"timestamp\" >= '2024-01-28' UNION ALL"
         " SELECT * FROM account_balances WHERE \"timestamp\" >= '2024-01-21'"
         " AND account_address = 'rdx1q1'", {AB: (5, 18)}, refs=2, per_ref=[2, 4]),
    Case("union_two_tables", "s",
         "SELECT pay_ts FROM control.payment WHERE pay_ts >= '2024-01-01' UNION ALL"
         " SELECT \"timestamp\" FROM account_balances WHERE \"timestamp\" >= '2024-01-28'",
         {PAY: (2, 6), AB: (4, 18)}),
    Case("order_by_merge_append", "s",
         "SELECT * FROM account_balances ORDER BY \"timestamp\" LIMIT 5", {AB: (18, 18)},
         {"no_key_predicate"}, refs=1),
    Case("between", "s",
         "SELECT * FROM control.payment WHERE pay_ts BETWEEN '2022-03-01' AND '2023-02-01'",
         {PAY: (2, 6)}, absent=NEG),
    Case("default_only", "s", "SELECT * FROM control.payment WHERE pay_ts >= '2030-01-01'",
         {PAY: (1, 6)}, absent=NEG),
    Case("insert_select", "s",
         "INSERT INTO probe SELECT pay_ts, 'x' FROM control.payment"
         " WHERE pay_ts >= '2023-01-01' AND pay_ts < '2023-02-01'", {PAY: (1, 6)}),
    Case("insert_values", "s",
         "INSERT INTO control.payment VALUES ('2024-05-01', 1, 1)", {}),
    Case("varchar_cast_is_fine", "s",
         f"SELECT * FROM account_balances WHERE {LATE} AND account_address::text = 'rdx1q1'",
         {AB: (2, 18)}, absent=NEG),
    Case("merge", "s",
         "MERGE INTO control.payment p USING probe q ON p.pay_ts = q.ts AND p.pdm_id = 1"
         " AND p.pay_ts >= '2024-01-01' WHEN MATCHED THEN DELETE", {PAY: (2, 6)}),
    # awkward layouts
    Case("multi_level_range_only", "a",
         "SELECT * FROM events WHERE ts >= '2024-03-01' AND ts < '2024-04-01'",
         {"events": (3, 5)}, {"no_key_predicate"}),
    Case("list_null", "a",
         "SELECT * FROM events WHERE ts >= '2024-03-01' AND ts < '2024-04-01' AND kind IS NULL",
         {"events": (2, 5)}, {"no_key_predicate"}),
    Case("list_default", "a",
         "SELECT * FROM events WHERE ts >= '2024-03-01' AND ts < '2024-04-01'"
         " AND kind = 'xrd_holding'", {"events": (1, 5)}, absent=NEG),
    Case("all_three_levels", "a",
         "SELECT * FROM events WHERE ts >= '2024-03-01' AND ts < '2024-04-01'"
         " AND kind = 'dex_swap' AND acct = 5", {"events": (1, 5)}, absent=NEG),
    Case("range_and_default", "a", "SELECT * FROM events WHERE ts >= '2025-06-01'",
         {"events": (2, 5)}, absent=NEG),
    Case("list_range", "a",
         "SELECT * FROM events WHERE ts >= '2024-03-01' AND ts < '2024-04-01' AND kind < 'b'",
         {"events": (1, 5)}, absent={"list_range"}),
    Case("hash_only_deep", "a", "SELECT * FROM events WHERE acct = 1",
         {"events": (4, 5)}, {"no_key_predicate"}),
    Case("mid_level_named", "a", "SELECT * FROM events_2024 WHERE acct = 3",
         {"events_2024": (2, 3)}, {"no_key_predicate"}),
    Case("leaf_named", "a", "SELECT * FROM events_2025", {}),
    Case("other_schema_partition", "a",
         "SELECT * FROM control.payment WHERE pay_ts < '2019-01-01'",
         {"control.payment": (1, 4)}, absent=NEG),
    Case("odd_names", "a",
         "SELECT * FROM \"Odd Schema\".\"Activity \"\"Events\"\"; Ω\""
         " WHERE activity_id = 'O''Brien'",
         {'"Odd Schema"."Activity ""Events""; Ω"': (1, 2)}, absent=NEG),
    Case("expression_key_matched", "a",
         "SELECT * FROM expr_keyed WHERE (created AT TIME ZONE 'UTC')::date = '2024-01-15'",
         {"expr_keyed": (1, 2)}, absent=NEG),
    Case("expression_key_bare_column", "a",
         "SELECT * FROM expr_keyed WHERE created >= '2024-01-15' AND created < '2024-01-16'",
         {"expr_keyed": (2, 2)}, {"key_wrapped"}),
    Case("multi_column_leading", "a", "SELECT * FROM multi_col WHERE a = 5",
         {"multi_col": (1, 2)}, absent=NEG),
    Case("multi_column_second_only", "a", "SELECT * FROM multi_col WHERE b = 5",
         {"multi_col": (2, 2)}, {"no_key_predicate"}),
    Case("no_partitions", "a", "SELECT * FROM lonely", {"lonely": (0, 0)}),
]


def _build(server: Server, script: str) -> Database:
    name = create_database(server)
    database = Database(server, name)
    database.execute(script)
    return database


@pytest.fixture(scope="module")
def corpus_dbs(pg: Server) -> Iterator[dict[str, ExplainSession]]:
    scenario = _build(pg, SCENARIO_SQL)
    awkward = _build(pg, AWKWARD_SQL + AWKWARD_EXTRA)
    conns = [connect(t, user_search_path=True) for t in (scenario.target, awkward.target)]
    yield {"s": ExplainSession(conns[0]), "a": ExplainSession(conns[1])}
    for c in conns:
        c.close()
    drop_database(pg, scenario.name)
    drop_database(pg, awkward.name)


def _plan_leaves(document, conn, table: str) -> set[tuple[str, str]]:
    """Independent reading: distinct leaves of `table` that the raw plan JSON names."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_partition_tree(%s::regclass) t"
        " JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE t.isleaf AND t.level > 0",
        (table if "." in table else f"public.{table}",)).fetchall()  # pgparts' safe search_path
    leaves = {(s, n) for s, n in rows}
    named: set[tuple[str, str]] = set()
    stack = [document[0]["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Node Type") != "ModifyTable" and "Relation Name" in node:
            named.add((node.get("Schema", "public"), node["Relation Name"]))
        stack.extend(node.get("Plans", []))
    return named & leaves


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus(corpus_dbs, case: Case) -> None:
    session = corpus_dbs[case.db]
    report: ExplainReport = session.explain(case.query, analyze=case.analyze)
    by_table: dict[str, list] = {}
    for ref in report.references:
        by_table.setdefault(ref.table.qualified, []).append(ref)
    assert set(by_table) == set(case.expect), report.to_json()
    version = session.runner.server_version
    for table, (scanned, total) in case.expect.items():
        refs = by_table[table]
        if case.refs is not None:
            assert len(refs) == case.refs
        if case.per_ref is not None:
            assert sorted(r.partitions_scanned for r in refs) == case.per_ref
        union = set().union(*(r.leaf_oids for r in refs))
        assert refs[0].partitions_total == total
        if case.never:
            executed = {p.node.oid for r in refs for p in r.partitions if p.executed}
            assert len(executed) == scanned - case.never[table] or scanned == total
            assert sum(r.never_executed or 0 for r in refs) == case.never[table]
            assert refs[0].partitions_executed == total - case.never[table]
        else:
            assert len(union) == scanned, report.to_json()
        generic_on_15 = report.raw.generic and version < 160000
        if not generic_on_15:  # there the plan names no partition (NULL arguments)
            independent = _plan_leaves(report.raw.document, session.conn, table)
            assert len(independent) == len(union)
            assert independent == {(p.node.schema, p.node.name) for r in refs
                                   for p in r.partitions}
        for r in refs:
            assert r.pruned_at_plan + r.pruned_at_startup + r.partitions_scanned == total \
                or total == 0
        if case.startup:
            assert sum(r.pruned_at_startup for r in refs) == case.startup[table]
        status_full = all(r.status == "full" for r in refs)
        assert status_full == (scanned == total and total > 0 and not case.never)
        if status_full:
            assert refs[0].verdict.startswith("no pruning: all ")
    codes = {a.code for r in report.references for a in r.advice}
    assert case.codes <= codes, (codes, report.to_json())
    assert not (case.absent & codes), (codes, report.to_json())
    # advice never contradicts the plan: 'no pruning' words only where nothing was pruned
    for r in report.references:
        if r.status != "full":
            assert not r.verdict.startswith("no pruning")


def test_json_shape(corpus_dbs) -> None:
    report = corpus_dbs["s"].explain(f"SELECT * FROM account_balances WHERE {WEEK}")
    (table,) = report.to_json()["tables"]
    assert table["table"] == "account_balances"
    assert (table["partitions_total"], table["partitions_scanned"], table["pruned_at_plan"],
            table["pruned_at_startup"], table["never_executed"]) == (18, 4, 14, 0, None)
    assert table["scanned"] == [f"account_balances_2024_01_07_hash_{i}" for i in range(4)]
    assert table["scanned_bounds"][0]["bounds"] == "2024-01-07 → 2024-01-14 / hash 0/4"
    assert table["verdict"] == "scans 4 of 18 partitions (14 pruned at plan time)"
    assert table["advice_codes"] == ["no_key_predicate"]
    assert "account_address" in table["advice"][0]


def test_rewrite_suggestions(corpus_dbs) -> None:
    s = corpus_dbs["s"]
    cases = {
        "SELECT * FROM account_balances WHERE \"timestamp\"::date = '2024-01-07'":
            "\"timestamp\" >= '2024-01-07' AND \"timestamp\" < '2024-01-08'",
        "SELECT * FROM account_balances WHERE date_trunc('week', \"timestamp\") = '2024-01-07'":
            "\"timestamp\" >= '2024-01-07' AND \"timestamp\" < '2024-01-14'",
        "SELECT * FROM control.payment WHERE extract(year FROM pay_ts) = 2023":
            "pay_ts >= '2023-01-01' AND pay_ts < '2024-01-01'",
    }
    for query, rewrite in cases.items():
        (ref,) = s.explain(query).references
        wrapped = [a for a in ref.advice if a.code == "key_wrapped"]
        assert wrapped and wrapped[0].suggestion == rewrite
        # the suggested rewrite really prunes
        fixed = query.split(" WHERE ")[0] + " WHERE " + rewrite
        (better,) = s.explain(fixed).references
        assert better.status == "pruned" and better.pruned_at_plan > 0


def test_generic_plan_same_on_both_versions(corpus_dbs) -> None:
    report = corpus_dbs["s"].explain(
        "SELECT * FROM control.payment WHERE pay_ts >= $1 AND pay_ts < '2023-01-01'")
    (ref,) = report.references
    assert report.raw.generic
    # plan time keeps the partitions below 2023 (MINVALUE..2020, 2020-2021, 2022)
    assert ref.partitions_scanned == 3 and ref.pruned_at_plan == 3
    assert [p.node.name for p in ref.partitions] == \
        ["payment_2000_2019", "payment_2020_2021", "payment_2022"]
    assert "generic_plan" in {a.code for a in ref.advice}
    assert ref.verdict.startswith("generic plan keeps 3 of 6")
