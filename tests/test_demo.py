"""The demo server's lifetime: seeded once, reused, shared between consoles, reset, recovered.

The module seeds one small demo (PGPARTS_DEMO_SCALE=0.02) in a temporary cache directory; every
test starts and ends with that demo stopped and completely seeded.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tui.demo.localserver import LocalServer, embedded_bindir
from tui.demo.seed import DEMO_NOW_ENV, DEMO_SCALE_ENV
from tui.demo.server import (
    DEMO_DB,
    DEMO_SETTINGS,
    DemoError,
    DemoHandle,
    _prepare_root,
    demo_root,
    open_demo,
)

from .test_private_servers import psql_as

# Starting an existing cluster takes well under a second on an idle machine; the limit leaves
# room for a test run sharing two cores with other test processes.
REUSE_LIMIT_SECONDS = 5.0


@dataclass
class FirstStart:
    root: Path
    messages: list[str]
    started: bool
    dsn: str
    starting: list[str]  # what every start of the server says


def _starting(root: Path) -> list[str]:
    """The messages of a server start: where the cluster lives when it is not in the cache
    directory (as root with a cache the server's user cannot reach), then the start itself."""
    from tui.core.config import cache_dir

    moved = [] if root == cache_dir() / "demo" else [
        f"the demo cluster lives in {root} (the server's OS user "
        f"{pwd.getpwuid(root.joinpath('data').stat().st_uid).pw_name} cannot reach "
        f"{cache_dir() / 'demo'})"
    ]
    return [*moved, "starting PostgreSQL 18 …"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstStart]:
    """A demo of its own in a temporary cache directory, small and dated, removed afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPARTS_CACHE_DIR", str(tmp_path_factory.mktemp("demo-cache")))
        mp.setenv(DEMO_SCALE_ENV, "0.02")
        mp.setenv(DEMO_NOW_ENV, "2026-11-21")
        root = demo_root()
        try:
            handle, messages, _ = _opened()
            handle.stop()
            yield FirstStart(root, messages, handle.started, handle.dsn, _starting(root))
        finally:
            datadir = root / "data"
            if (datadir / "postmaster.pid").exists():  # a failed test may leave it running
                with contextlib.suppress(Exception):
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


def _gone(root: Path, timeout: float = 20) -> bool:
    """Whether the demo server has exited, waiting for it: stop() returns once the server took
    the request, and its shutdown finishes in the background."""
    deadline = time.monotonic() + timeout
    while _postmaster_pid(root) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _postmaster_pid(root: Path) -> int | None:
    try:
        return int((root / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def test_first_start_seeds(demo):
    assert demo.messages == [*demo.starting, "seeding demo data (first run) …"]
    assert demo.started and f"dbname={DEMO_DB}" in demo.dsn
    assert _gone(demo.root)  # stopped with its only console


def test_later_starts_reuse_and_consoles_share_the_server(demo):
    first, messages, elapsed = _opened()
    assert messages == demo.starting and first.started  # no seeding
    assert elapsed < REUSE_LIMIT_SECONDS, f"restarting the demo took {elapsed:.1f}s"
    assert _query(first, "SHOW server_version_num")[0][0].startswith("18")
    assert _query(first, "SELECT count(*) > 0 FROM account_balances") == [(True,)]

    # a second console joins the running server and leaves it running for the first
    second, messages, elapsed = _opened()
    assert messages == [] and not second.started and second.dsn == first.dsn
    assert elapsed < REUSE_LIMIT_SECONDS
    second.stop()
    assert _query(first, "SELECT 1") == [(1,)]

    # a console killed without stopping leaves its registration behind; it keeps nothing alive
    dead = subprocess.Popen(["true"])
    dead.wait()
    (demo.root / "clients" / f"{dead.pid}-deadbeef").touch()
    first.stop()
    first.stop()  # idempotent
    assert _gone(demo.root)
    assert list((demo.root / "clients").iterdir()) == []
    with pytest.raises(psycopg.OperationalError):
        _query(first, "SELECT 1")


def test_reset_rebuilds_even_while_a_console_is_connected(demo):
    first, _, _ = _opened()
    _query(first, "CREATE TABLE added_by_hand (x int)")
    with psycopg.connect(first.dsn, autocommit=True) as connected:
        second, messages, _ = _opened(reset=True)
        with pytest.raises(psycopg.OperationalError):
            connected.execute("SELECT 1")
    assert messages == ["rebuilding the demo data …"]
    assert _query(second, "SELECT to_regclass('added_by_hand')") == [(None,)]
    assert _query(second, "SELECT count(*) > 0 FROM control.payment_default") == [(True,)]
    second.stop()
    assert _postmaster_pid(demo.root) is not None  # the first console is still there
    first.stop()
    assert _gone(demo.root)


def test_crash_leftovers_do_not_break_start_up(demo):
    handle, _, _ = _opened()
    # a seed interrupted half-way leaves no completion mark: the next start rebuilds
    # (synchronous_commit is off on the demo server: make sure this commit survives the crash)
    _query(handle, f"SET synchronous_commit = on; COMMENT ON DATABASE {DEMO_DB} IS NULL")
    pid = _postmaster_pid(demo.root)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the server crashed, and the console with it
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    assert (demo.root / "data" / "postmaster.pid").exists()  # stale
    shutil.rmtree(demo.root / "clients")
    (demo.root / "clients").mkdir()

    again, messages, _ = _opened()
    assert messages == [*demo.starting, "seeding demo data (first run) …"]
    assert _query(again, "SELECT count(*) > 0 FROM account_balances") == [(True,)]
    again.stop()

    # a stale pid file naming a live process that is not PostgreSQL (the pid was reused)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pidfile = demo.root / "data" / "postmaster.pid"
        pidfile.write_text(f"{sleeper.pid}\n{demo.root / 'data'}\n0\n5432\n/tmp\n\n\n")
        last, messages, elapsed = _opened()
        assert messages == demo.starting
        assert elapsed < REUSE_LIMIT_SECONDS
        assert _query(last, "SELECT 1") == [(1,)]
        last.stop()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_leaving_does_not_wait_for_the_shutdown_and_a_quick_restart_does(demo):
    first, _, _ = _opened()
    # a checkpointer held still keeps the server in its shutdown as long as the test wants
    checkpointer = _query(
        first, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")[0][0]
    os.kill(checkpointer, signal.SIGSTOP)
    try:
        first.stop()
        assert first.server.status() == "stopping" and _postmaster_pid(demo.root) is not None
        with pytest.raises(psycopg.OperationalError):  # it took the request: nobody gets in
            _query(first, "SELECT 1")
        released = threading.Timer(1.0, os.kill, (checkpointer, signal.SIGCONT))
        released.start()
        again, messages, elapsed = _opened()  # waits for the old server, then starts afresh
        released.join()
    finally:
        with contextlib.suppress(ProcessLookupError):  # released already, and gone
            os.kill(checkpointer, signal.SIGCONT)
    assert messages == demo.starting and again.started
    assert 1.0 <= elapsed < 1.0 + REUSE_LIMIT_SECONDS
    assert _query(again, "SELECT 1") == [(1,)]
    again.stop()
    assert _gone(demo.root)


def test_a_cluster_that_no_longer_starts_is_rebuilt_by_reset(demo):
    assert _gone(demo.root)
    (demo.root / "data" / "global" / "pg_control").unlink()  # e.g. a power loss with fsync off
    with pytest.raises(DemoError, match="pg_control.*--demo-reset rebuilds"):
        open_demo()
    handle, messages, _ = _opened(reset=True)
    assert messages == [
        *demo.starting,
        "the demo server does not start: rebuilding it from scratch …",
        "seeding demo data (first run) …",
    ]
    assert _query(handle, "SELECT count(*) > 0 FROM control.payment") == [(True,)]
    handle.stop()


def test_a_console_killed_outright_does_not_leave_the_server_running(demo):
    """SIGKILL or a closed terminal skips stop(): the watchdog stops the server instead."""
    console = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom tui.demo.server import open_demo\n"
         "open_demo()\nprint('ready', flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert console.stdout is not None and console.stdout.readline() == "ready\n"
        assert _postmaster_pid(demo.root) is not None
        console.kill()
        console.wait()
        deadline = time.monotonic() + 20
        while _postmaster_pid(demo.root) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _postmaster_pid(demo.root) is None, "the server outlived its last console"
    finally:
        console.kill()
        console.wait()


def test_a_seed_made_for_another_date_or_scale_is_rebuilt(monkeypatch):
    """$PGPARTS_DEMO_NOW / $PGPARTS_DEMO_SCALE, when set, must match the seeded data."""
    from tui.demo.server import _marker, _mismatch

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


# -- access ---------------------------------------------------------------------------------------
def _socket_dir(handle: DemoHandle) -> Path:
    return Path(handle.dsn.split("host=", 1)[1].split(" ", 1)[0])


def _old_trusting_rules(root: Path) -> None:
    """What an older pgparts left: `trust` for every local user, no ident map."""
    datadir = root / "data"
    (datadir / "pg_hba.conf").write_text("local all all trust\n")
    (datadir / "pg_ident.conf").write_text("")


def test_only_the_starting_user_reaches_the_demo(demo):
    handle, _, _ = _opened()
    try:
        socket_dir = _socket_dir(handle)
        assert socket_dir.stat().st_mode & 0o777 == 0o700
        assert (socket_dir / ".s.PGSQL.5432").stat().st_mode & 0o777 == 0o700
        assert "trust" not in (demo.root / "data" / "pg_hba.conf").read_text()
        assert (demo.root / "data").stat().st_mode & 0o777 == 0o700
        assert (demo.root / "data" / "server.log").stat().st_mode & 0o077 == 0
        assert _query(handle, "SELECT current_user") == [("postgres",)]
        if os.geteuid() == 0:  # another OS user to try
            done = psql_as("nobody", handle.server.bindir, socket_dir)
            assert done.returncode != 0 and "Permission denied" in done.stderr, done.stderr
    finally:
        handle.stop()


def test_a_trusting_cluster_from_an_older_pgparts_is_tightened(demo, monkeypatch, tmp_path):
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    # stopped: the next start writes the current rules before the server comes up
    _old_trusting_rules(demo.root)
    handle, _, _ = _opened()
    assert "trust" not in (demo.root / "data" / "pg_hba.conf").read_text()
    _query(handle, "CREATE ROLE intruder LOGIN")

    # running: a console joining it tightens the socket directory and reloads the rules
    socket_dir = _socket_dir(handle)
    socket_dir.chmod(0o755)
    _old_trusting_rules(demo.root)
    _query(handle, "SELECT pg_reload_conf()")
    intruder = handle.dsn.replace("user=postgres", "user=intruder")
    deadline = time.monotonic() + 10
    while True:  # the postmaster reloads on its own time
        try:
            psycopg.connect(intruder, connect_timeout=5).close()
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the trusting rules never took effect"
            time.sleep(0.1)
    second, messages, _ = _opened()
    try:
        assert messages == [] and not second.started
        assert socket_dir.stat().st_mode & 0o777 == 0o700
        assert "trust" not in (demo.root / "data" / "pg_hba.conf").read_text()
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(intruder, connect_timeout=5).close()
            except psycopg.OperationalError as exc:
                assert "no password supplied" in str(exc)
                break
            assert time.monotonic() < deadline, "the tightened rules never took effect"
            time.sleep(0.1)
    finally:
        second.stop()
        handle.stop()
    assert _gone(demo.root)


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo moves to /var/tmp only for root")
def test_a_link_planted_where_the_demo_lives_is_refused(tmp_path, monkeypatch):
    """As root, the demo lives in /var/tmp under a predictable name (world-writable, and links
    there are followed unless fs.protected_symlinks is on): another user's link to a directory
    of root's must not make pgparts chmod that directory 0755 and fill it with the cluster."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    tmp_path.chmod(0o700)  # the server user cannot get through: the demo moves to /var/tmp
    monkeypatch.setenv("PGPARTS_CACHE_DIR", str(cache))
    root = demo_root()
    assert not str(root).startswith(str(cache)), root
    victim = tmp_path / "roots-own"
    victim.mkdir(mode=0o700)
    victim.chmod(0o700)
    root.symlink_to(victim)
    try:
        with pytest.raises(DemoError, match="link"):
            _prepare_root(root)
        assert (victim.stat().st_mode & 0o777) == 0o700
        assert list(victim.iterdir()) == []
    finally:
        root.unlink()
