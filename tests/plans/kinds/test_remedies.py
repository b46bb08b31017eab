"""The remedy kinds on real servers: each scenario's findings are gone after `pgparts fix`
or the kind's own command, names are hostile, and index builds do not block a writer."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from psycopg import sql

from tui.cli import main
from tui.core.catalog import load_forest
from tui.core.config import Config, PlansConfig
from tui.core.plans import PlanRunner
from tui.core.plans.kind import Request
from tui.core.plans.registry import kind_named

from ..scenarios import (
    INDEX,
    LEAVES,
    SCENARIOS,
    TABLE,
    codes,
    count_rows,
    ident,
    spec,
    unique_missing,
)

FAST = PlansConfig(lock_timeout_seconds=0.5, lock_retries=2)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def plan_for(db, kind_name: str, **values):
    kind = kind_named(kind_name)
    with db.connect() as conn:
        forest = load_forest(conn)
        return kind.build(conn, forest, kind.status(conn, forest, spec()),
                          Request(values, spec()), Config(plans=FAST))


@pytest.mark.parametrize("kind_name", sorted(SCENARIOS))
def test_each_kind_removes_its_findings(db, capsys, kind_name):
    scenario = SCENARIOS[kind_name]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        assert scenario.codes <= codes(conn)
        rows = count_rows(conn)
    status, out, err = cli(capsys, kind_name, spec(), "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "Steps:" in out and "SQL:" in out
    status, out, err = cli(capsys, kind_name, spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        assert not (scenario.codes & codes(conn))
        assert count_rows(conn) == rows  # finalize: the rows of p1 left the parent with it
    # a second run has nothing left to do
    status, out, err = cli(capsys, kind_name, spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0 and "nothing to do" in err, (out, err)


def test_fix_plans_every_remedy_and_check_is_clean_after(db, capsys):
    with db.connect() as conn:
        SCENARIOS["index_fix"].build(conn, db.dsn)
        conn.execute(sql.SQL("INSERT INTO {} VALUES (5000, 50, 'x')").format(ident(TABLE)))
        found = codes(conn)
    assert {"never_analyzed", "index_missing", "index_invalid"} <= found
    status, out, err = cli(capsys, "fix", spec(), "--dry-run", "--json", "-d", db.dsn)
    assert status == 0, err
    plans = json.loads(out)
    assert sorted(p["kind"] for p in plans) == ["analyze", "index_fix"]
    status, out, err = cli(capsys, "fix", spec(), "--only", "never_analyzed", "--sql",
                           "-d", db.dsn)
    assert status == 0 and "ANALYZE " in out and "CREATE INDEX" not in out, err
    status, out, err = cli(capsys, "fix", "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    status, out, err = cli(capsys, "check", spec(), "-d", db.dsn)
    assert "never_analyzed" not in out and "lack an attached index" not in out, out
    assert "invalid" not in out, out
    status, out, err = cli(capsys, "fix", spec(), "--dry-run", "-d", db.dsn)
    assert status == 0 and out == "nothing to fix\n"


def test_range_gap_is_fixed_by_fill_gaps(db, capsys):
    with db.connect() as conn:
        SCENARIOS["analyze"].build(conn, db.dsn)
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (400) TO (500)")
                     .format(ident("gé p"), ident(TABLE)))
        assert "range_gap" in codes(conn)
    status, out, err = cli(capsys, "check", spec(), "-d", db.dsn)
    assert status == 2 and "1 gap between range partitions" in out, out
    status, out, err = cli(capsys, "fix", spec(), "--only", "range_gap", "--dry-run",
                           "-d", db.dsn)
    assert status == 0 and "fill the holes" in out and "not available yet" not in err, err
    status, out, err = cli(capsys, "fix", spec(), "--only", "range_gap", "--apply", "--yes",
                           "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        assert "range_gap" not in codes(conn)
    status, out, err = cli(capsys, "fix", "--only", "nonsense", "--dry-run", "-d", db.dsn)
    assert status == 2 and "unknown finding code" in err


def test_unique_constraint_missing_on_partitions(db, capsys):
    with db.connect() as conn:
        unique_missing(conn, db.dsn)
        assert "index_missing" in codes(conn)
    status, out, err = cli(capsys, "index_fix", spec(), "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        assert not ({"index_missing", "index_invalid"} & codes(conn))
        # the partitions' indexes back constraints of their own, attached to the parent's
        n = conn.execute(
            "SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " WHERE c.contype = 'u' AND c.conparentid <> 0").fetchone()[0]
        assert n == 5  # two plain partitions, the hash partition and its two leaves


def test_index_build_does_not_block_a_writer(db):
    with db.connect() as conn:
        SCENARIOS["index_fix"].build(conn, db.dsn)
    plan = plan_for(db, "index_fix", only="missing")
    stop = threading.Event()
    written: list[int] = []
    errors: list[str] = []
    slowest = [0.0]

    def writer() -> None:
        with psycopg.connect(db.dsn, autocommit=True) as c:
            i = 10_000
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    c.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(
                        ident(TABLE)), (i, i % 300, f"w{i}"))
                    written.append(i)
                except psycopg.Error as exc:
                    errors.append(str(exc))
                slowest[0] = max(slowest[0], time.monotonic() - t0)
                i += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        result = PlanRunner(db.target, plan, config=FAST, backoff_base=0.05).run()
    finally:
        stop.set()
        th.join(10)
    assert result.ok, (result.error, result.state)
    assert not errors and written
    assert slowest[0] < 2.0  # CREATE INDEX CONCURRENTLY never made the writer wait long
    with db.connect() as conn:
        assert "index_missing" not in codes(conn)
        found = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE id >= 10000").format(
            ident(TABLE))).fetchone()[0]
        assert found == len(written)
        # every leaf's new index holds every row: an index-only count agrees with the heap
        conn.execute("SET enable_seqscan = off")
        for leaf in LEAVES:
            n = conn.execute(sql.SQL("SELECT count(v) FROM {} WHERE v IS NOT NULL").format(
                ident(leaf))).fetchone()[0]
            m = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE v IS NOT NULL").format(
                ident(leaf))).fetchone()[0]
            assert n == m
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
            (ident(INDEX).as_string(conn),)).fetchone()
        assert valid is None or valid[0]


def test_interrupted_index_build_is_dropped_and_built_again(db):
    """A CREATE INDEX CONCURRENTLY that gave up waiting for an old transaction leaves an
    invalid index; the re-run drops it (the registry announced it) and builds it again."""
    with db.connect() as conn:
        SCENARIOS["index_fix"].build(conn, db.dsn)
    plan = plan_for(db, "index_fix", only="missing")
    holder = psycopg.connect(db.dsn)
    holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    holder.execute("SELECT 1")  # an open snapshot: CONCURRENTLY waits for it
    try:
        result = PlanRunner(db.target, plan, config=PlansConfig(lock_timeout_seconds=0.3,
                                                                lock_retries=1),
                            backoff_base=0.05).run()
    finally:
        holder.close()
    assert not result.ok and "lock" in result.error
    with db.connect() as conn:
        invalid = conn.execute(
            "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
            " WHERE NOT x.indisvalid AND c.relname LIKE %s", (LEAVES[0] + "%",)).fetchone()[0]
        assert invalid == 1  # the interrupted build's index
    again = plan_for(db, "index_fix", only="missing")
    result = PlanRunner(db.target, again, config=FAST, backoff_base=0.05).run()
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert "index_missing" not in codes(conn)
        left = conn.execute(
            "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE NOT x.indisvalid AND n.nspname = %s AND c.relname <> %s",
            (ident(TABLE).as_string(conn) and 'sé "q; x', 'bad ";é')).fetchone()[0]
        assert left == 0


def test_an_invalid_index_nobody_announced_is_not_dropped(db):
    """An invalid index pgparts did not announce is rebuilt (REINDEX), never dropped."""
    with db.connect() as conn:
        SCENARIOS["index_fix"].build(conn, db.dsn)
        before = conn.execute("SELECT oid FROM pg_class WHERE relname = %s",
                              ('bad ";é',)).fetchone()
    plan = plan_for(db, "index_fix", only="invalid")
    sqls = [st.sql.as_string(None) for s in plan.steps for st in s.statements]
    assert not any("DROP INDEX" in s for s in sqls)
    assert any("REINDEX INDEX CONCURRENTLY" in s for s in sqls)
    result = PlanRunner(db.target, plan, config=FAST, backoff_base=0.05).run()
    assert result.ok, result.error
    with db.connect() as conn:
        assert before is not None
        valid = conn.execute("SELECT x.indisvalid FROM pg_index x JOIN pg_class c"
                             " ON c.oid = x.indexrelid WHERE c.relname = %s",
                             ('bad ";é',)).fetchone()
        assert valid == (True,)
        # the parent's index built ON ONLY stays invalid until its partitions get theirs
        assert "index_missing" in codes(conn)
