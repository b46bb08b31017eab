"""merge, rebound and move-values on real servers: content identical per bound before and
after (order-independent checksums), a list partition holding NULL, a writer inserting,
updating and deleting in both partitions of a merge while rows reference the table, input
refused before any SQL, and the commands' shape."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config
from tui.core.plans.kind import PlanKindError
from tui.core.plans.registry import kind_named

from ..scenarios import (
    DEFAULT,
    HWEEK,
    HWEEK_MERGED,
    HWEEKS,
    LEAVES,
    LIST_A,
    LIST_C,
    LIST_DEFAULT,
    LIST_NEW,
    LIST_TABLE,
    MERGE_PLAIN,
    MERGED,
    MID,
    MOVE_SCENARIOS,
    REF,
    SCHEMA,
    TABLE,
    hweek,
    ident,
    leftovers,
    list_spec,
    list_values,
    merged_plain,
    spec,
    with_default_and_ref,
    with_hash_weeks,
    with_list_and_null,
)
from .test_moves import FAST, Writer, per_bound, run
from .test_remedies import cli


def plan_for(db, kind_name: str, values: dict, target: str | None = None):
    kind = kind_named(kind_name)
    target = target or spec()
    with db.connect() as conn:
        forest = load_forest(conn)
        return kind.build(conn, forest, None, kind.request(values, target), Config(plans=FAST))


def per_value(conn: psycopg.Connection) -> dict[str | None, tuple[int, str]]:
    """Count and digest of the list table's rows per key value (NULL included)."""
    rows = conn.execute(sql.SQL(
        "SELECT r, count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text)))"
        " FROM {} t GROUP BY r").format(ident(LIST_TABLE))).fetchall()
    return {r: (int(n), h) for r, n, h in rows}


def _bounds(conn: psycopg.Connection, target: str) -> dict[str, str]:
    return {c.name: c.bound_text for c in load_forest(conn).find(target).children}


def test_merge_and_rebound_keep_every_row_per_bound(db, capsys):
    with db.connect() as conn:
        with_default_and_ref(conn, db.dsn)
        before = per_bound(conn)
        refs = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(REF))).fetchone()[0]
    status, out, err = cli(capsys, "merge", spec(), LEAVES[0], LEAVES[1], "--dry-run",
                           "-d", db.dsn)
    assert status == 0, err
    # the default name follows the pattern; both sources captured, both detached in one swap
    assert 'part ";0_100é' in out, out
    assert out.count("DETACH PARTITION") == 2 and "NOT VALID" in out, out
    status, out, err = cli(capsys, "merge", spec(), LEAVES[1], LEAVES[0], "--name", MERGED,
                           "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    assert "(the swap)" in out + err
    with db.connect() as conn:
        assert merged_plain(conn)
        assert per_bound(conn) == before and leftovers(conn) == []
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(REF))
                            ).fetchone()[0] == refs
    # MERGED [0, 200) and MID [200, 300) are neighbours, but MID has sub-partitions
    values = {"left": MERGED, "right": MID, "at": "150"}
    with pytest.raises(PlanKindError, match="not sub-partitioned alike"):
        plan_for(db, "rebound", values)
    status, out, err = cli(capsys, "rebound", spec(), MERGED, DEFAULT, "--at", "150",
                           "--dry-run", "-d", db.dsn)
    assert status == 2 and "DEFAULT" in err and "\n" not in err.strip(), err
    with db.connect() as conn:
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(ident(MERGED),
                                                                    sql.Identifier(LEAVES[0])))
    result = run(db, plan_for(db, "split", {"partition": LEAVES[0], "at": ["100"],
                                            "name": [LEAVES[1]]}))
    assert result.ok, result.error
    result = run(db, plan_for(db, "rebound", {"left": LEAVES[1], "right": LEAVES[0],
                                              "at": "130"}))
    assert result.ok, result.error
    with db.connect() as conn:
        assert MOVE_SCENARIOS["rebound"].fixed(conn)
        assert per_bound(conn) == before and leftovers(conn) == []


def test_move_values_with_null_to_an_existing_and_a_new_partition(db, capsys):
    with db.connect() as conn:
        with_list_and_null(conn, db.dsn)
        before = per_value(conn)
    assert None in before and before[None][0] > 0
    status, out, err = cli(capsys, "move-values", list_spec(), LIST_A, LIST_C, "--values",
                           "NULL,b", "--dry-run", "-d", db.dsn)
    assert status == 0 and "get that unique index too" in out and "own indexes" not in out, out
    status, out, err = cli(capsys, "move-values", list_spec(), LIST_A, LIST_C, "--values",
                           "NULL,b", "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        assert list_values(conn, LIST_A) == {"a"}
        assert list_values(conn, LIST_C) == {"b", "c", "d", None}
        assert per_value(conn) == before and leftovers(conn) == []
        assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE r IS NULL").format(
            ident(LIST_C))).fetchone()[0] == before[None][0]
    # NULL on to a new partition; the source keeps the rest
    result = run(db, plan_for(db, "move_values", {"from_partition": LIST_C,
                                                  "to_partition": LIST_NEW,
                                                  "values": ["null", "d"]}, list_spec()))
    assert result.ok, result.error
    with db.connect() as conn:
        assert list_values(conn, LIST_NEW) == {None, "d"}
        assert list_values(conn, LIST_C) == {"b", "c"}
        assert per_value(conn) == before and leftovers(conn) == []
    # and merging the three list partitions back into one (the DEFAULT stays)
    result = run(db, plan_for(db, "merge", {"partitions": [LIST_NEW, LIST_A, LIST_C]},
                              list_spec()))
    assert result.ok, result.error
    with db.connect() as conn:
        assert list_values(conn, LIST_NEW) == {None, "a", "b", "c", "d"}
        assert set(_bounds(conn, list_spec())) == {LIST_NEW, LIST_DEFAULT}
        assert per_value(conn) == before and leftovers(conn) == []


def test_input_refused_before_any_sql(db):
    with db.connect() as conn:
        with_default_and_ref(conn, db.dsn)
        with_list_and_null_beside(conn)
        conn.execute(sql.SQL("CREATE TABLE {} (k int) PARTITION BY RANGE (k)").format(
            ident("other")))
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (0) TO (9)")
                     .format(ident("other_p"), ident("other")))
    long = "x" * 64
    cases = [
        ("merge", {"partitions": [LEAVES[0], MID]}, None, "not adjacent"),
        ("merge", {"partitions": [LEAVES[0]]}, None, "two or more"),
        ("merge", {"partitions": [LEAVES[0], DEFAULT]}, None, "DEFAULT"),
        ("merge", {"partitions": [LEAVES[0], "other_p"]}, None, "is a partition of"),
        ("merge", {"partitions": [LEAVES[0], LEAVES[0]]}, None, "named twice"),
        ("merge", {"partitions": [LEAVES[0], LEAVES[1]], "name": REF}, None, "exists already"),
        ("merge", {"partitions": [LEAVES[0], LEAVES[1]], "name": long}, None, "63"),
        ("rebound", {"left": LEAVES[0], "right": LEAVES[1], "at": "250"}, None, "outside"),
        ("rebound", {"left": LEAVES[0], "right": LEAVES[1], "at": "1O0"}, None,
         "not a valid integer"),
        ("rebound", {"left": LEAVES[0], "right": LEAVES[1], "at": "100"}, None, "already"),
        ("rebound", {"left": LEAVES[0], "right": MID, "at": "150"}, None, "not neighbours"),
        ("move_values", {"from_partition": LIST_A, "to_partition": LIST_C,
                         "values": ["c"]}, list_spec(), "not a value of the source"),
        ("move_values", {"from_partition": LIST_A, "to_partition": LIST_C,
                         "values": ["a,b,NULL"]}, list_spec(), "merge"),
        ("move_values", {"from_partition": LIST_A, "to_partition": REF,
                         "values": ["a"]}, list_spec(), "exists already"),
        ("move_values", {"from_partition": LIST_A, "to_partition": "other_p",
                         "values": ["a"]}, list_spec(), "is a partition of"),
        ("move_values", {"from_partition": LIST_A, "to_partition": LIST_A,
                         "values": ["a"]}, list_spec(), "both"),
        ("move_values", {"from_partition": LIST_A, "to_partition": long,
                         "values": ["a"]}, list_spec(), "63"),
        ("move_values", {"from_partition": LIST_A, "to_partition": LIST_C,
                         "values": ["a,,b"]}, list_spec(), "empty value"),
    ]
    for kind_name, values, target, words in cases:
        try:
            plan_for(db, kind_name, values, target)
        except PlanKindError as exc:
            assert words in str(exc) and "\n" not in str(exc), (values, str(exc))
        else:
            raise AssertionError(f"{kind_name} {values} was accepted")
    with db.connect() as conn:  # nothing was created
        assert conn.execute("SELECT to_regnamespace('pgparts')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgparts%'"
                            ).fetchone()[0] == 0
        # a partition's own unique index (not the replay's key) is said not to be rebuilt
        conn.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} (v)").format(
            sql.Identifier('own "u'), ident(LEAVES[0])))
    plan = plan_for(db, "merge", MERGE_PLAIN)
    assert any("own indexes" in n and 'own "u' in n for n in plan.facts.notes), plan.facts.notes


def with_list_and_null_beside(conn: psycopg.Connection) -> None:
    """The list table of with_list_and_null, next to the range one (same schema)."""
    from ..scenarios import ROWS

    t = ident(LIST_TABLE)
    conn.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, r text, v text)"
                         " PARTITION BY LIST (r)").format(t))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('a', 'b', NULL)")
                 .format(ident(LIST_A), t))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('c', 'd')")
                 .format(ident(LIST_C), t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g, (ARRAY['a', 'b', NULL, 'c'])[g % 4 + 1], 'v'"
                         " FROM generate_series(0, {}) g").format(t, sql.Literal(ROWS - 1)))


def test_merge_under_a_writer_in_both_partitions_with_references(db):
    """A writer inserts, updates and deletes in both partitions being merged (and elsewhere)
    while another inserts and deletes referencing rows: no write lost or applied twice, no
    referencing row lost, nobody waits beyond the lock timeout."""
    with db.connect() as conn:
        with_default_and_ref(conn, db.dsn)
        rows = {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT id, k, v FROM {}").format(ident(TABLE))).fetchall()}
        refs = {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT rid, id, k FROM {}").format(ident(REF))).fetchall()}
    plan = plan_for(db, "merge", MERGE_PLAIN)
    writers = [Writer(db.dsn, 21, "rows", rows), Writer(db.dsn, 22, "refs", refs)]
    for w in writers:
        w.start()
    time.sleep(0.2)
    result = run(db, plan)
    time.sleep(0.2)
    for w in writers:
        w.stop.set()
        w.join(10)
        assert w.error is None, w.error
        assert w.ops > 20, w.ops
        assert w.longest < 2.0, w.longest  # the plan's lock_timeout is 0.3 s
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert merged_plain(conn) and leftovers(conn) == []
        assert {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT id, k, v FROM {}").format(ident(TABLE))).fetchall()} == rows
        assert {r[0]: (r[1], r[2]) for r in conn.execute(sql.SQL(
            "SELECT rid, id, k FROM {}").format(ident(REF))).fetchall()} == refs
        assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE k < 100").format(
            ident(MERGED))).fetchone()[0] > 0


def test_commands_shape(capsys):
    for argv, words in ((("merge", "--help"), ["PARTITION [PARTITION ...]", "--name NEW"]),
                        (("rebound", "--help"), ["P1", "P2", "--at VALUE"]),
                        (("move-values", "--help"),
                         ["FROM_PARTITION", "TO_PARTITION", "--values V[,V]"])):
        with pytest.raises(SystemExit):
            cli(capsys, *argv)
        out = capsys.readouterr().out
        assert all(w in out for w in words), out
    assert SCHEMA  # the scenarios' hostile schema is what every test above runs in


def per_day(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Count and digest of the time table's rows per day: equal before and after a move."""
    rows = conn.execute(sql.SQL(
        "SELECT date_trunc('day', ts AT TIME ZONE 'UTC')::text, count(*),"
        " md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM {} t GROUP BY 1").format(
        ident(TABLE))).fetchall()
    return {d: (int(n), h) for d, n, h in rows}


def _leaves(conn: psycopg.Connection, name: str) -> dict[str, str]:
    node = next(c for c in load_forest(conn).find(spec()).children if c.name == name)
    return {c.name: c.bound_text for c in node.children}


def test_sub_partitioned_week_split_then_merged(db):
    """A week with 4 hash sub-partitions split in two (each half gets 4 hash sub-partitions
    named after it), their boundary moved, the halves merged back, then the next week merged
    in (the contract kills that merge at every step): every row and reference kept, the
    leaves named after their table, nothing named pgparts_* left."""
    with db.connect() as conn:
        with_hash_weeks(conn, db.dsn)
        before = per_day(conn)
        refs = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(REF))).fetchone()[0]
    week = hweek(HWEEKS[1])
    half = f"{week}_b"
    plan = plan_for(db, "split", {"partition": week, "at": ["2026-01-14 00:00+00"],
                                  "name": [half]})
    with db.connect() as conn:
        script = plan.to_sql(conn)
    assert "_b_h3" in "\n".join(plan.facts.changes) and "PARTITION BY HASH" in script
    result = run(db, plan)
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert per_day(conn) == before and leftovers(conn) == []
        assert sorted(_leaves(conn, week)) == [f"{week}_h{r}" for r in range(4)]
        assert sorted(_leaves(conn, half)) == [f"{half}_h{r}" for r in range(4)]
        assert _leaves(conn, half)[f"{half}_h2"] == "FOR VALUES WITH (modulus 4, remainder 2)"
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgparts%'"
                            " AND relnamespace <> 'pgparts'::regnamespace").fetchone()[0] == 0
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(REF))
                            ).fetchone()[0] == refs
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(f"{half}_h1"))
                            ).fetchone()[0] > 0
    # the boundary between the halves moved: both rebuilt with their 4 hash partitions
    result = run(db, plan_for(db, "rebound", {"left": half, "right": week,
                                              "at": "2026-01-15 00:00+00"}))
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert "2026-01-15" in _bounds(conn, spec())[week]
        assert sorted(_leaves(conn, half)) == [f"{half}_h{r}" for r in range(4)]
        assert per_day(conn) == before and leftovers(conn) == []
    # by default the merged week is named in the weeks' pattern after both weeks it covers
    plan = plan_for(db, "merge", {"partitions": [half, week]})
    assert plan.details["targets"][0]["name"] == f"{HWEEK}2026_01_11_2026_01_15"
    result = run(db, plan_for(db, "merge", {"partitions": [half, week], "name": week}))
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert sorted(_leaves(conn, week)) == [f"{week}_h{r}" for r in range(4)]
        assert per_day(conn) == before and leftovers(conn) == []
    result = run(db, plan_for(db, "merge", MOVE_SCENARIOS["merge"].values))
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert MOVE_SCENARIOS["merge"].fixed(conn)
        assert per_day(conn) == before and leftovers(conn) == []
    # a plain week and a hash-partitioned one are not merged
    with pytest.raises(PlanKindError, match="sub-partitioned alike"):
        plan_for(db, "merge", {"partitions": [hweek(HWEEKS[0]), HWEEK_MERGED]})


def test_exported_merge_script_runs_under_psql(db, tmp_path):
    """`--sql` of a merge of two sub-partitioned weeks is what the runner runs: psql -v
    ON_ERROR_STOP=1 gives the same result."""
    from ...test_consolidate_script import PSQL, _psql

    if PSQL is None:
        pytest.skip("psql is not installed")
    scenario = MOVE_SCENARIOS["merge"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        before = per_day(conn)
        script = plan_for(db, "merge", scenario.values).to_sql(conn)
    done = _psql(db, tmp_path, script)
    assert done.returncode == 0, done.stderr
    with db.connect() as conn:
        assert scenario.fixed(conn) and per_day(conn) == before and leftovers(conn) == []


def test_merging_the_halves_of_a_year_names_it_after_the_year(db, capsys):
    """payment_2023 split at 2023-07-01 and merged back was named payment_2023_2023 (the
    first's token, then the last's start, the same year); one token is said once."""
    db.execute("CREATE TABLE public.pay (ts timestamptz PRIMARY KEY) PARTITION BY RANGE (ts);"
               " CREATE TABLE public.pay_2022 PARTITION OF public.pay"
               " FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');"
               " CREATE TABLE public.pay_2023 PARTITION OF public.pay"
               " FOR VALUES FROM ('2023-01-01') TO ('2023-07-01');"
               " CREATE TABLE public.pay_2023_h2 PARTITION OF public.pay"
               " FOR VALUES FROM ('2023-07-01') TO ('2024-01-01');")
    for sources, merged in ((("pay_2023", "pay_2023_h2"), "pay_2023"),
                            (("pay_2022", "pay_2023"), "pay_2022_2023")):
        status, out, err = cli(capsys, "merge", "-d", db.dsn, "public.pay", *sources,
                               "--dry-run")
        assert status == 0, err
        assert f"  {merged} FOR VALUES FROM ('" in out, out


def test_a_missing_value_is_said_about_its_option(db, capsys):
    """The console marks the field a refusal names first; these named the command line's
    flag in the middle of a sentence, so no field was marked."""
    db.execute("CREATE TABLE public.r (k int PRIMARY KEY) PARTITION BY RANGE (k);"
               " CREATE TABLE public.r_1 PARTITION OF public.r FOR VALUES FROM (0) TO (10);"
               " CREATE TABLE public.r_2 PARTITION OF public.r FOR VALUES FROM (10) TO (20);"
               " CREATE TABLE public.l (k text PRIMARY KEY) PARTITION BY LIST (k);"
               " CREATE TABLE public.l_a PARTITION OF public.l FOR VALUES IN ('a', 'b');")
    for argv, said in ((("split", "public.r", "r_1"), "--at: give at least one value"),
                       (("rebound", "public.r", "r_1", "r_2"), "--at: give the new boundary"),
                       (("move-values", "public.l", "l_a", "l_b"),
                        "--values: give the values to move")):
        status, _out, err = cli(capsys, *argv, "-d", db.dsn, "--dry-run")
        assert status == 2 and err.startswith(f"pgparts: {said}"), err
