"""The demo server's lifetime: seeded once, reused, shared between consoles, reset, recovered."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tui.core.demo import DEMO_DB, DemoHandle, demo_root, open_demo
from tui.core.seed import DEMO_NOW_ENV, DEMO_SCALE_ENV

# Starting an existing cluster takes well under a second on an idle machine; the limit leaves
# room for a test run sharing two cores with other test processes.
REUSE_LIMIT_SECONDS = 5.0


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A demo of its own in a temporary cache directory, small and dated, removed afterwards."""
    monkeypatch.setenv("PGPARTS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(DEMO_SCALE_ENV, "0.02")
    monkeypatch.setenv(DEMO_NOW_ENV, "2026-11-21")
    root = demo_root()
    yield root
    datadir = root / "data"
    if (datadir / "postmaster.pid").exists():  # a failed test may leave it running
        with contextlib.suppress(Exception):
            from tui.core.demo import DEMO_SETTINGS
            from tui.core.localserver import LocalServer, embedded_bindir

            LocalServer(embedded_bindir(), datadir, dict(DEMO_SETTINGS)).stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def _query(handle: DemoHandle, statement: str) -> list[tuple]:
    with psycopg.connect(handle.dsn, autocommit=True, connect_timeout=5) as c:
        cur = c.execute(statement)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _opened(**kw) -> tuple[DemoHandle, list[str], float]:
    messages: list[str] = []
    t0 = time.monotonic()
    handle = open_demo(progress=messages.append, **kw)
    return handle, messages, time.monotonic() - t0


def _postmaster_pid(root: Path) -> int | None:
    try:
        return int((root / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def test_first_start_seeds_then_reuse_share_stop_and_reset(demo_env):
    first, messages, _ = _opened()
    assert messages == ["starting PostgreSQL 18 …", "seeding demo data (first run) …"]
    assert first.started and f"dbname={DEMO_DB}" in first.dsn
    assert _query(first, "SHOW server_version_num")[0][0].startswith("18")
    assert _query(first, "SELECT count(*) > 0 FROM account_balances") == [(True,)]
    _query(first, "CREATE TABLE still_here (x int)")

    # a second console joins the running server and leaves it running for the first
    second, messages, elapsed = _opened()
    assert messages == [] and not second.started and second.dsn == first.dsn
    assert elapsed < REUSE_LIMIT_SECONDS
    second.stop()
    assert _query(first, "SELECT 1") == [(1,)]
    first.stop()
    first.stop()  # idempotent
    assert _postmaster_pid(demo_env) is None
    with pytest.raises(psycopg.OperationalError):
        _query(first, "SELECT 1")

    # a later start reuses the seeded database: fast, and nothing is rebuilt
    third, messages, elapsed = _opened()
    assert messages == ["starting PostgreSQL 18 …"] and third.started
    assert elapsed < REUSE_LIMIT_SECONDS, f"restarting the demo took {elapsed:.1f}s"
    assert _query(third, "SELECT to_regclass('still_here') IS NOT NULL") == [(True,)]

    # reset rebuilds the database from scratch, even while a console is connected to it
    with psycopg.connect(third.dsn, autocommit=True) as connected:
        fourth, messages, _ = _opened(reset=True)
        with pytest.raises(psycopg.OperationalError):
            connected.execute("SELECT 1")
    assert messages == ["rebuilding the demo data …"]
    assert _query(fourth, "SELECT to_regclass('still_here')") == [(None,)]
    assert _query(fourth, "SELECT count(*) > 0 FROM control.payment_default") == [(True,)]
    fourth.stop()
    assert _postmaster_pid(demo_env) is not None  # the third console is still there

    # a console killed without stopping leaves its registration behind; it keeps nothing alive
    dead = subprocess.Popen(["true"])
    dead.wait()
    (demo_env / "clients" / f"{dead.pid}-deadbeef").touch()
    third.stop()
    assert _postmaster_pid(demo_env) is None
    assert list((demo_env / "clients").iterdir()) == []


def test_crash_leftovers_do_not_break_start_up(demo_env):
    handle, _, _ = _opened()
    # a seed interrupted half-way leaves no completion mark: the next start rebuilds
    _query(handle, f"COMMENT ON DATABASE {DEMO_DB} IS NULL")
    pid = _postmaster_pid(demo_env)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the machine or the server crashed
    for _ in range(100):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    assert (demo_env / "data" / "postmaster.pid").exists()  # stale
    # the console that was using it is gone too: its registration must not keep anything alive
    shutil.rmtree(demo_env / "clients")
    (demo_env / "clients").mkdir()

    again, messages, _ = _opened()
    assert messages == ["starting PostgreSQL 18 …", "seeding demo data (first run) …"]
    assert _query(again, "SELECT count(*) > 0 FROM account_balances") == [(True,)]
    again.stop()

    # a stale pid file naming a live process that is not PostgreSQL (the pid was reused)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pidfile = demo_env / "data" / "postmaster.pid"
        pidfile.write_text(f"{sleeper.pid}\n{demo_env / 'data'}\n0\n5432\n/tmp\n\n\n")
        last, messages, elapsed = _opened()
        assert messages == ["starting PostgreSQL 18 …"]
        assert elapsed < REUSE_LIMIT_SECONDS
        assert _query(last, "SELECT 1") == [(1,)]
        last.stop()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_seed_made_for_another_date_or_scale_is_rebuilt(monkeypatch):
    """$PGPARTS_DEMO_NOW / $PGPARTS_DEMO_SCALE, when set, must match the seeded data."""
    from datetime import UTC, datetime

    from tui.core.demo import _marker, _mismatch

    mark = _marker(0.02, datetime(2026, 11, 21, tzinfo=UTC))
    monkeypatch.delenv(DEMO_NOW_ENV, raising=False)
    monkeypatch.delenv(DEMO_SCALE_ENV, raising=False)
    assert _mismatch(mark) is None  # nothing asked for: any complete seed will do
    monkeypatch.setenv(DEMO_NOW_ENV, "2026-11-21")
    monkeypatch.setenv(DEMO_SCALE_ENV, "0.02")
    assert _mismatch(mark) is None
    monkeypatch.setenv(DEMO_NOW_ENV, "2026-12-24")
    assert _mismatch(mark) == f"{DEMO_NOW_ENV} changed"
    monkeypatch.setenv(DEMO_NOW_ENV, "2026-11-21")
    monkeypatch.setenv(DEMO_SCALE_ENV, "1")
    assert _mismatch(mark) == f"{DEMO_SCALE_ENV} changed"
