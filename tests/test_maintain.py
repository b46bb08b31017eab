"""`pgparts maintain` against real servers: every policy in one run, idempotent, a locked table
skipped with exit 1 while the others run, one run at a time, pg_partman's tables left alone."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from tui.cli import main
from tui.commands.maintain import MAINTAIN_LOCK
from tui.demo.localserver import FAST_TEST_SETTINGS, LocalServer, LocalServerError, embedded_bindir

from .test_partman import partman_db  # noqa: F401  (the fixture)
from .test_plan_support import build_balances, current_week_start


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pgparts.toml"
    path.write_text('[plans]\nlock_timeout = "300ms"\nlock_retries = 2\n\n' + text)
    return str(path)


def layout(db) -> list[tuple]:
    """Every user relation: schema, name, kind, bound, whether attached."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(
            "SELECT n.nspname, c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid),"
            " c.relispartition, c.reltuples >= 0"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            " AND c.relkind IN ('r', 'p') ORDER BY 1, 2").fetchall()


POLICY = """
[policy."public.account_balances"]
premake = 2
consolidate_older_than = "8 weeks"
consolidate_batch = 1
retention = "100 weeks"
retention_action = "detach"
retention_schema = "archive"
"""


def test_maintain_twice_the_second_run_changes_nothing(db, capsys, tmp_path):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=20)
        conn.execute("CREATE SCHEMA archive")
    cfg = config(tmp_path, POLICY)
    status, out, err = cli(capsys, "maintain", "--dry-run", "--config", cfg, "-d", db.dsn)
    assert status == 0, err
    assert "account_balances: create_ahead: planned: would create 2 partitions" in out, out
    before = layout(db)
    status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
    assert status == 0, (out, err)
    lines = out.splitlines()
    assert [ln.split(": ")[1:3] for ln in lines] == [
        ["create_ahead", "ok"], ["consolidate", "nothing"], ["retention", "ok"],
        ["analyze", "ok"]], out
    assert "consolidate: nothing: nothing to consolidate: 3 older partitions left to " \
           "retention, which removes them next" in out, out
    first = layout(db)
    assert first != before
    # the created weeks are analyzed; the three 2024 weeks are archived, none consolidated
    # first (retention takes them right after)
    created = [r for r in first if r[0] == "public" and r[2] == "r"
               and r[1][len("account_balances_"):][:10] > f"{current_week_start():%Y_%m_%d}"]
    assert len(created) == 8 and all(r[5] for r in created)
    assert sorted(r[1] for r in first if r[0] == "archive" and r[4] is False) == [
        "account_balances_2024_01_07", "account_balances_2024_01_14",
        "account_balances_2024_01_21"]
    assert not [r for r in first if r[0] == "public" and "2024" in r[1]]  # hash leaves too
    status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn, "--json")
    assert status == 0, err
    doc = json.loads(out)
    assert {a["status"] for a in doc["actions"]} == {"nothing"}, doc
    assert layout(db) == first


def test_consolidation_leaves_the_weeks_retention_drops_right_after(db, capsys, tmp_path):
    current = current_week_start()
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=10, weeks=[
            current - timedelta(weeks=20), current - timedelta(weeks=12)])
    expired, kept = b.weeks
    cfg = config(tmp_path, """
[policy."public.account_balances"]
consolidate_older_than = "8 weeks"
consolidate_batch = 5
retention = "16 weeks"
retention_action = "drop"
""")
    status, out, err = cli(capsys, "maintain", "--dry-run", "--config", cfg, "-d", db.dsn)
    assert status == 0, err
    consolidate = next(ln for ln in out.splitlines() if ": consolidate: " in ln)
    assert kept in consolidate and expired not in consolidate, out
    status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
    assert status == 0, (out, err)
    names = {r[1] for r in layout(db) if r[0] == "public"}
    assert f"{kept}_consolidated" in names and kept not in names
    assert not {n for n in names if n.startswith(expired)}, names  # dropped, never copied


def test_a_locked_table_is_skipped_with_exit_1_and_the_others_still_run(db, capsys, tmp_path):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=5)
        build_balances(conn, schema="other", rows_per_week=5)
    cfg = config(tmp_path, '[policy."public.account_balances"]\npremake = 2\n\n'
                           '[policy."other.account_balances"]\npremake = 2\n')
    with psycopg.connect(db.dsn) as holder:
        holder.execute("LOCK TABLE public.account_balances IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
        elapsed = time.monotonic() - started
        holder.rollback()
    assert status == 1, (out, err)
    assert "other.account_balances: create_ahead: ok" in out, out
    assert "account_balances: create_ahead: skipped:" in out and "conflicting lock" in out, out
    assert "after 3 attempts" in out, out  # lock_retries = 2: waited, retried twice, gave up
    # waited at most the lock timeout per attempt (3 attempts of 0.3 s, plus backoff)
    assert elapsed < 8, elapsed
    status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
    assert status == 0 and "account_balances: create_ahead: ok" in out, out


def test_one_maintain_at_a_time(db, capsys, tmp_path):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=5)
    cfg = config(tmp_path, '[policy."account_balances"]\npremake = 1\n')
    with psycopg.connect(db.dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", MAINTAIN_LOCK)
        status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
    assert status == 1 and "another pgparts maintain is running" in out, out
    before = layout(db)
    assert not [r for r in before if r[1].endswith("_hash_0")
                and r[1][len("account_balances_"):][:10] > f"{current_week_start():%Y_%m_%d}"]


def test_partman_tables_are_left_alone(partman_db, capsys, tmp_path):  # noqa: F811
    cfg = config(tmp_path, '[policy."\\"Odd\\".events"]\npremake = 10\n')
    before = layout(partman_db)
    status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", partman_db.dsn)
    assert status == 0, (out, err)
    assert 'left alone: pg_partman manages it' in out, out
    assert layout(partman_db) == before
    status, out, err = cli(capsys, "maintain", "--dry-run", "--include-partman", "--config",
                           cfg, "-d", partman_db.dsn)
    assert status == 0 and "create_ahead: planned" in out, out


def test_unknown_table_and_read_only(db, capsys, tmp_path):
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE public.t (ts timestamptz) PARTITION BY RANGE (ts)"))
    cfg = config(tmp_path, '[policy."account_balances"]\npremake = 1\n')
    status, out, err = cli(capsys, "maintain", "--table", "t", "--config", cfg, "-d", db.dsn)
    assert status == 2 and "t has no [policy]" in err
    # the policy that names no table here is still said, before the refusal
    assert "[policy] 'account_balances' names no partitioned table" in err, err
    status, out, err = cli(capsys, "maintain", "--read-only", "--config", cfg, "-d", db.dsn)
    assert status == 2 and "read-only" in err


def test_a_standby_is_left_alone(tmp_path, capsys):
    """A cluster started with standby.signal is in recovery (hot standby, no upstream)."""
    root = Path(tempfile.mkdtemp(prefix="pgparts-standby-"))
    root.chmod(0o755)
    server = LocalServer(embedded_bindir(), root / "data", dict(FAST_TEST_SETTINGS))
    try:
        server.init()
        (server.datadir / "standby.signal").touch()
        server.start()
        cfg = config(tmp_path, '[policy."account_balances"]\npremake = 1\n')
        status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", server.conninfo())
    finally:
        with contextlib.suppress(LocalServerError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    assert status == 0, err
    assert "the server is a standby (in recovery): nothing to do here" in out, out


def test_a_table_whose_planning_waits_on_a_lock_is_skipped_and_the_others_still_run(
        db, capsys, tmp_path):
    """create_ahead reads the DEFAULT partition while planning: a lock held on it makes that
    read time out (the session's lock_timeout). That table is skipped with exit 1, the run goes
    on with the other table, and the next run does it."""
    with db.connect() as conn:
        build_balances(conn, rows_per_week=5, default_partition=True)
        build_balances(conn, schema="other", rows_per_week=5)
    cfg = config(tmp_path, '[policy."public.account_balances"]\npremake = 2\n\n'
                           '[policy."other.account_balances"]\npremake = 2\n')
    with psycopg.connect(db.dsn) as holder:
        holder.execute("LOCK TABLE public.account_balances_default IN ACCESS EXCLUSIVE MODE")
        status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
        holder.rollback()
    assert status == 1, (out, err)
    assert "other.account_balances: create_ahead: ok" in out, out
    line = next(ln for ln in out.splitlines() if ln.startswith("account_balances:"))
    assert "create_ahead: skipped: planning failed:" in line and "lock" in line, out
    assert "Traceback" not in err
    status, out, err = cli(capsys, "maintain", "--config", cfg, "-d", db.dsn)
    assert status == 0 and "\naccount_balances: create_ahead: ok" in "\n" + out, out
