"""The exported `--sql` script run by psql -v ON_ERROR_STOP=1: its verifications raise, so a copy
that does not match stops it before the swap, and a live partition missing rows of the original
stops it before the DROP. It runs under the configured lock_timeout and a safe search_path."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from psycopg import sql

from tui.core.config import PlansConfig
from tui.core.plans.consolidate import build_consolidation_plan

from .test_plan_support import OLD_WEEKS, build_balances, user_tables, week_checksums

PSQL = next((p for p in ("/usr/lib/postgresql/15/bin/psql", "/usr/lib/postgresql/18/bin/psql",
                         shutil.which("psql") or "") if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(PSQL is None, reason="psql is not installed")
CONFIG = PlansConfig(lock_timeout_seconds=1.5)


def _split(script: str) -> tuple[str, list[str]]:
    """(the header with its SET lines, the steps' texts in order)."""
    parts = re.split(r"(?m)^(?=-- Step \d+/\d+: )", script)
    return parts[0], parts[1:]


def _psql(db, tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"part{len(list(tmp_path.iterdir()))}.sql"
    path.write_text(text)
    env = {**os.environ, "PGOPTIONS": "-c search_path=public"}  # the script must not care
    return subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.dsn, "-f",
                           str(path)], capture_output=True, text=True, env=env, timeout=120)


def _plan_script(db) -> str:
    with db.connect() as conn:
        return build_consolidation_plan(conn, "account_balances", config=CONFIG).to_sql(conn)


def test_script_header_and_checks(db):
    with db.connect() as conn:
        build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=10)
    script = _plan_script(db)
    header, steps = _split(script)
    assert "SET search_path = pg_catalog, pg_temp;" in header
    assert "SET lock_timeout = '1500ms';" in header and "'2s'" not in script
    assert "verified before commit by pgparts --apply only" not in script
    assert "hash_record_extended(" not in script.replace("pg_catalog.hash_record_extended(", "")
    assert " count(*)" not in script and " sum(" not in script
    # the build's LOCK runs under that lock_timeout: nothing resets it before
    assert "lock_timeout" not in steps[0]


def test_copy_that_does_not_match_stops_the_script_before_the_swap(db, tmp_path):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40)
        before = week_checksums(conn, b, OLD_WEEKS[:1])
    header, steps = _split(_plan_script(db))
    assert [s.split(":")[1].split()[0] for s in steps] == [
        "Build", "Analyze", "Verify", "Swap", "Drop", "Remove"]
    first = _psql(db, tmp_path, header + "".join(steps[:2]))
    assert first.returncode == 0, first.stderr
    new = sql.Identifier("public", f"{b.weeks[0]}_consolidated")
    db.execute(sql.SQL("DELETE FROM {} WHERE ctid = '(0,1)'").format(new))  # tamper
    rest = _psql(db, tmp_path, header + "".join(steps[2:]))
    assert rest.returncode == 3, (rest.stdout, rest.stderr)
    assert "has 40 rows" in rest.stderr and "has 39" in rest.stderr
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS[:1]) == before
        assert conn.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid = %s::regclass",
                            (f"public.{b.weeks[0]}",)).fetchone()[0] == 1  # still attached
        assert b.weeks[0] in user_tables(conn, "public")


def test_missing_rows_stop_the_script_before_the_drop(db, tmp_path):
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40)
    header, steps = _split(_plan_script(db))
    first = _psql(db, tmp_path, header + "".join(steps[:4]))  # build .. swap
    assert first.returncode == 0, first.stderr
    new = sql.Identifier("public", f"{b.weeks[0]}_consolidated")
    db.execute(sql.SQL("DELETE FROM {} WHERE ctid = '(0,1)'").format(new))  # live partition
    rest = _psql(db, tmp_path, header + "".join(steps[4:]))
    assert rest.returncode == 3, (rest.stdout, rest.stderr)
    assert "1 rows of" in rest.stderr and "is kept" in rest.stderr
    with db.connect() as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier("public", b.weeks[0]))).fetchone()[0] == 40
    # and untampered, the whole script runs through
    db.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} EXCEPT SELECT * FROM {}").format(
        new, sql.Identifier("public", b.weeks[0]), new))
    again = _psql(db, tmp_path, header + "".join(steps[4:]))
    assert again.returncode == 0, again.stderr
    with db.connect() as conn:
        assert b.weeks[0] not in user_tables(conn, "public")
