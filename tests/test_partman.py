"""pg_partman 4.7 (Debian's postgresql-15-partman) on the PostgreSQL 15 test server: pgparts reads
part_config for the tables it manages, shows it in `tree`, and never calls any of its functions.

.ci/run installs the package when apt can; without the extension's files the tests skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui.cli import main
from tui.core.catalog import load_forest
from tui.core.partman import load_partman_config, read_partman

SHAREDIR = Path("/usr/share/postgresql/15/extension")
CONTROL = SHAREDIR / "pg_partman.control"


@pytest.fixture
def partman_db(db):
    if db.server.label != "pg15":
        pytest.skip("pg_partman is installed for the PostgreSQL 15 test server only")
    if not CONTROL.exists():
        pytest.skip(f"pg_partman is not installed ({CONTROL} is missing): "
                    f"apt-get install postgresql-15-partman")
    db.execute("""
        CREATE SCHEMA partman;
        CREATE EXTENSION pg_partman SCHEMA partman;
        CREATE SCHEMA "Odd";
        CREATE TABLE "Odd".events (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
        CREATE TABLE public.plain (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    """)
    # pg_partman 4.7: create_parent(p_parent_table, p_control, p_type, p_interval, ...)
    db.execute("SELECT partman.create_parent(p_parent_table => 'Odd.events', p_control => 'ts', "
               "p_type => 'native', p_interval => 'daily', p_premake => 3)")
    db.execute("UPDATE partman.part_config SET retention = '30 days', "
               "retention_keep_table = false WHERE parent_table = 'Odd.events'")
    return db


def test_part_config_is_read(partman_db):
    with partman_db.connect() as conn:
        forest = load_forest(conn)
        state = read_partman(conn)
        configs = load_partman_config(conn)
    events = forest.find('"Odd".events')
    assert state.installed and state.version.startswith("4.7") and state.schema == "partman"
    assert state.problem is None and state.unmatched == []
    assert set(configs) == set(state.configs) == {events.oid}
    config = configs[events.oid]
    assert (config.parent_table, config.control, config.partition_type) == (
        "Odd.events", "ts", "native")
    assert config.partition_interval == "1 day"
    assert (config.premake, config.retention, config.retention_keep_table) == (
        3, "30 days", False)
    assert config.automatic_maintenance == "on"
    assert config.describe() == ("native, interval 1 day on ts, premake 3, "
                                 "retention 30 days, dropped, automatic maintenance on")
    assert len(events.children) >= 7  # create_parent made the partitions around today


def test_tree_shows_partman(partman_db, capsys):
    assert main(["tree", "-d", partman_db.dsn, '"Odd".events', "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)
    assert nodes[0]["partman"]["premake"] == 3
    assert nodes[0]["partman"]["parent_table"] == "Odd.events"
    assert all(n["partman"] is None for n in nodes[1:])
    assert main(["tree", "-d", partman_db.dsn]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("pg_partman 4.7")
    assert 'manages "Odd".events: native, interval 1 day on ts, premake 3' in out
    assert "plain" in out and "manages plain" not in out


def test_pgparts_never_calls_partman(partman_db, capsys):
    """Count the calls of every function in the extension's schema around a pgparts run."""
    partman_db.execute(f'ALTER DATABASE "{partman_db.name}" SET track_functions = \'all\'')

    def calls() -> int:
        return int(partman_db.query_stats(
            "SELECT coalesce(pg_catalog.sum(calls), 0) FROM pg_catalog.pg_stat_user_functions "
            "WHERE schemaname = 'partman'")[0][0])

    # a call that counts, proving the counter works the same way (a session that ends)
    with partman_db.connect() as conn:
        conn.execute("SELECT partman.check_default(false)").fetchall()
    before = calls()
    assert before > 0
    for argv in (["tree"], ["tree", "--json"], ["check"], ["tree", '"Odd".events', "--growth"]):
        main([argv[0], "-d", partman_db.dsn, *argv[1:]])
    capsys.readouterr()
    assert calls() == before


def test_part_config_not_read_when_not_plain_or_not_readable(partman_db, capsys):
    partman_db.execute("CREATE ROLE partman_reader NOLOGIN")
    with partman_db.connect() as conn:
        conn.execute("SET ROLE partman_reader")
        state = read_partman(conn)
    assert state.installed and state.configs == {}
    assert state.problem == "no SELECT privilege on partman.part_config"

    # row-level security would run policy expressions: not read, and tree says so
    partman_db.execute("ALTER TABLE partman.part_config ENABLE ROW LEVEL SECURITY")
    with partman_db.connect() as conn:
        state = read_partman(conn)
    assert state.configs == {} and "not the extension's own plain table" in state.problem
    assert main(["tree", "-d", partman_db.dsn, '"Odd".events']) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("pg_partman 4.7") and "is installed, but partman.part_config" in last
