"""The scriptable commands (`tree`, `check`) and every error a user can cause on the command line.

User errors must print exactly one line on stderr and exit 2, never a traceback. Most cases run
in-process through tui.cli.main; a few run `python -m tui.cli` to prove the real process behaves.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tui.cli import main
from tui.context import CliError, Context
from tui.demo.localserver import FAST_TEST_SETTINGS, LocalServer, embedded_bindir

from .layouts import build_awkward

REPO = Path(__file__).resolve().parent.parent
NODE_KEYS = {
    "schema", "name", "parent", "level", "strategy", "key", "bound", "is_default", "total_bytes",
    "table_bytes", "index_bytes", "toast_bytes", "rows_estimate", "relkind", "detach_pending",
    "last_analyze", "last_vacuum",
}
FINDING_KEYS = {"severity", "code", "message", "table", "objects", "table_oid", "object_oids"}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_user_error(result: tuple[int, str, str], *fragments: str) -> str:
    status, _out, err = result
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pgparts: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def run_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *argv],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


@pytest.fixture
def awkward(db18):
    build_awkward(db18)
    return db18


# -- tree ----------------------------------------------------------------------------------------
def test_tree_text(awkward, capsys):
    status, out, err = run_cli(capsys, "tree", "-d", awkward.dsn)
    assert status == 0 and err == ""
    lines = out.splitlines()
    # the trees by name, as in the console ('Activity' sorts before 'events': capitals first)
    roots = [ln.split()[0] for ln in lines[:-1] if ln[0] not in "├└│ "]
    assert roots == sorted(roots, key=lambda q: q.rsplit(".", 1)[-1].strip('"'))
    events = next(ln for ln in lines if ln.startswith("events "))
    assert events.split()[:3] == ["events", "RANGE", "(ts)"]
    assert "4,000 rows" in events and "!! no_future_partition" in events
    trade = next(ln for ln in lines if "events_2024_trade " in ln)
    assert "│  ├─ events_2024_trade" in trade and "IN (dex_swap, lending, NULL)" in trade
    assert "by HASH (acct)" in trade and "3,000 rows" in trade
    assert any("└─ events_2024_other" in ln and "DEFAULT" in ln and "! default_has_rows" in ln
               for ln in lines)
    assert any("archive.payment_2000_2019" in ln and "-∞ → 2020-01-01" in ln for ln in lines)
    assert any('"Odd Schema"."Trading ""Active"" Ω"' in ln for ln in lines)
    assert any("control.payment_2022" in ln and "(unlogged)" in ln for ln in lines)
    assert lines[-1].startswith("21 relations, 13 leaf partitions; sizes estimated")

    # a partition never analyzed makes the total a lower bound
    awkward.execute("CREATE TABLE events_2026 PARTITION OF events"
                    " FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    out = run_cli(capsys, "tree", "-d", awkward.dsn, "events")[1]
    lines = out.splitlines()
    assert "≥4,000 rows" in lines[0]
    assert any("events_2026 " in ln and "? rows" in ln for ln in lines)


def test_tree_json_shape_and_subtree(awkward, capsys):
    status, out, _ = run_cli(capsys, "tree", "-d", awkward.dsn, "--json")
    assert status == 0
    nodes = json.loads(out)
    assert len(nodes) == 21
    # one relation per line, for grep and line-by-line readers
    lines = out.splitlines()
    assert lines[0] == "[" and lines[-1] == "]"
    assert [json.loads(line.rstrip(",")) for line in lines[1:-1]] == nodes
    for node in nodes:
        assert set(node) >= NODE_KEYS, NODE_KEYS - set(node)
    seen: set[str] = set()
    for node in nodes:  # tree order: every parent comes before its partitions
        assert node["parent"] is None or node["parent"] in seen
        seen.add(node["qualified"])
    by_name = {n["qualified"]: n for n in nodes}
    events = by_name["events"]
    assert (events["parent"], events["level"], events["strategy"], events["key"]) == (
        None, 0, "range", "RANGE (ts)")
    assert events["bound"] is None and events["rows_estimate"] == 4000
    assert events["total_bytes"] == events["table_bytes"] + events["index_bytes"] > 0
    h1 = by_name["events_2024_trade_h1"]
    assert (h1["parent"], h1["level"], h1["strategy"], h1["key"], h1["relkind"]) == (
        "events_2024_trade", 3, None, None, "r")
    assert h1["bound"] == "FOR VALUES WITH (modulus 2, remainder 1)"
    assert h1["last_analyze"].startswith("20") and h1["last_vacuum"] is None
    assert by_name["control.payment_default"]["is_default"] is True
    assert by_name["control.payment_default"]["schema"] == "control"
    odd = by_name['"Odd Schema"."Trading ""Active"" Ω"']
    assert (odd["schema"], odd["name"]) == ("Odd Schema", 'Trading "Active" Ω')

    status, out, _ = run_cli(capsys, "tree", "-d", awkward.dsn, "--json", "events_2024")
    sub = json.loads(out)
    assert [n["name"] for n in sub] == [
        "events_2024", "events_2024_trade", "events_2024_trade_h0", "events_2024_trade_h1",
        "events_2024_other",
    ]
    assert sub[0]["parent"] == "events"  # the subtree keeps its place in the tree

    long_name = '"Odd Schema".' + "a" * 63
    status, out, _ = run_cli(capsys, "tree", "-d", awkward.dsn, "--json", "--exact-sizes",
                             long_name)
    [leaf] = json.loads(out)
    assert leaf["exact_sizes"] is True and leaf["table_bytes"] >= 0


def test_tree_of_empty_database(db18, capsys):
    assert run_cli(capsys, "tree", "-d", db18.dsn) == (0, "no partitioned tables\n", "")
    assert run_cli(capsys, "tree", "-d", db18.dsn, "--json") == (0, "[]\n", "")


def test_unknown_and_malformed_table_names(awkward, capsys):
    assert_user_error(run_cli(capsys, "tree", "-d", awkward.dsn, "nope"), "'nope'")
    assert_user_error(run_cli(capsys, "check", "-d", awkward.dsn, "nope"), "'nope'")
    assert_user_error(run_cli(capsys, "tree", "-d", awkward.dsn, '"unterminated'),
                      "unterminated")
    awkward.execute("CREATE TABLE archive.events (ts timestamptz) PARTITION BY RANGE (ts)")
    assert_user_error(run_cli(capsys, "tree", "-d", awkward.dsn, "events"), "ambiguous")


def test_exact_sizes_give_up_on_a_held_lock(db18, capsys):
    """The default tree read ignores DDL locks; --exact-sizes waits at most lock_timeout."""
    db18.execute("""
        CREATE TABLE busy (k int) PARTITION BY RANGE (k);
        CREATE TABLE busy_1 PARTITION OF busy FOR VALUES FROM (0) TO (10);
    """)
    holder = psycopg.connect(db18.dsn)
    holder.execute("LOCK busy_1 IN ACCESS EXCLUSIVE MODE")
    try:
        status, out, _ = run_cli(capsys, "tree", "-d", db18.dsn)
        assert status == 0 and "busy_1" in out
        assert_user_error(run_cli(capsys, "tree", "-d", db18.dsn, "--exact-sizes"),
                          "waited too long for a lock", "--exact-sizes")
    finally:
        holder.rollback()
        holder.close()


# -- check ---------------------------------------------------------------------------------------
def test_check_exit_codes_and_output(db, capsys):
    """0: nothing to act on (info only), 1: warnings, 2: critical; on both servers."""
    db.execute("""
        CREATE TABLE fine (k int NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE fine_1 PARTITION OF fine FOR VALUES FROM (0) TO (10);
        CREATE TABLE fine_2 PARTITION OF fine FOR VALUES FROM (10) TO (20);
    """)
    status, out, err = run_cli(capsys, "check", "-d", db.dsn)
    assert (status, err) == (0, "")
    assert out.startswith("INFO      fine  2 partitions of fine never analyzed")
    db.execute("ANALYZE fine")
    assert run_cli(capsys, "check", "-d", db.dsn) == (0, "no findings in 1 partition tree\n", "")

    db.execute("""
        CREATE TABLE dflt (k int NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE dflt_1 PARTITION OF dflt FOR VALUES FROM (0) TO (10);
        CREATE TABLE dflt_default PARTITION OF dflt DEFAULT;
        INSERT INTO dflt VALUES (1), (50);
        ANALYZE dflt;
    """)
    status, out, _ = run_cli(capsys, "check", "-d", db.dsn)
    assert status == 1
    assert out.splitlines() == [
        "WARNING   dflt  DEFAULT partition dflt_default of dflt holds about 1 row (8.0 KiB); "
        "give them a partition of their own: every new partition must scan the DEFAULT under "
        "an ACCESS EXCLUSIVE lock"
    ]

    db.execute("""
        CREATE TABLE holes (k int NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE holes_1 PARTITION OF holes FOR VALUES FROM (0) TO (10);
        CREATE TABLE holes_3 PARTITION OF holes FOR VALUES FROM (20) TO (30);
        ANALYZE holes;
    """)
    status, out, _ = run_cli(capsys, "check", "-d", db.dsn, "--json")
    assert status == 2
    found = json.loads(out)
    assert [(f["severity"], f["code"], f["table"]) for f in found] == [
        ("critical", "range_gap", "holes"), ("warning", "default_has_rows", "dflt")]
    for f in found:
        assert set(f) == FINDING_KEYS
    assert found[0]["objects"] == ["holes_1", "holes_3"]

    # a subtree: only what concerns it
    assert run_cli(capsys, "check", "-d", db.dsn, "fine")[0] == 0
    status, out, _ = run_cli(capsys, "check", "-d", db.dsn, "--json", "dflt_default")
    assert status == 1 and [f["code"] for f in json.loads(out)] == ["default_has_rows"]


def test_check_uses_config_thresholds(db18, tmp_path, capsys):
    db18.execute("""
        CREATE TABLE big (k int NOT NULL, pad text) PARTITION BY RANGE (k);
        CREATE TABLE big_1 PARTITION OF big FOR VALUES FROM (0) TO (100000);
        INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g;
        ANALYZE big;
    """)
    assert run_cli(capsys, "check", "-d", db18.dsn)[0] == 0
    config = tmp_path / "c.toml"
    config.write_text('[findings]\noversized = "100kB"\n')
    status, out, _ = run_cli(capsys, "check", "-d", db18.dsn, "--config", str(config))
    assert status == 1
    assert out.startswith("WARNING   big  1 partition of big over 100 KiB: big_1 (")


def test_names_with_newlines_stay_on_one_line(db18, capsys):
    db18.execute("""
        CREATE TABLE "two
lines" (k int NOT NULL) PARTITION BY RANGE (k);
        CREATE TABLE "two
lines_1" PARTITION OF "two
lines" FOR VALUES FROM (0) TO (10);
        CREATE TABLE "two
lines_3" PARTITION OF "two
lines" FOR VALUES FROM (20) TO (30);
    """)
    status, out, _ = run_cli(capsys, "check", "-d", db18.dsn)
    assert status == 2
    lines = out.splitlines()
    assert len(lines) == 2  # the gap (critical) and never analyzed (info)
    assert lines[0].startswith('CRITICAL  "two\\x0alines"  1 gap')
    out = run_cli(capsys, "tree", "-d", db18.dsn)[1]
    assert len(out.splitlines()) == 4
    status, out, _ = run_cli(capsys, "tree", "-d", db18.dsn, "--json")
    assert json.loads(out)[0]["name"] == "two\nlines"  # JSON keeps the real name


# -- the real process ----------------------------------------------------------------------------
def test_process_runs_and_errors_without_traceback(awkward, tmp_path):
    done = run_process("tree", "-d", awkward.dsn, "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 21

    done = run_process("check", "-d", awkward.dsn)
    assert done.returncode == 2  # events has no partition for the present
    assert done.stdout.startswith("CRITICAL  events  no partition of events covers the present")

    for argv in (("check", "-d", "host=127.0.0.1 port=1 connect_timeout=5"),
                 ("tree", "--config", str(tmp_path))):
        done = run_process(*argv)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stdout == ""


# -- connection errors ---------------------------------------------------------------------------
def test_connection_errors(db18, capsys):
    assert_user_error(run_cli(capsys, "tree", "-d", "host=127.0.0.1 port=1 connect_timeout=5"),
                      "cannot connect to", "127.0.0.1")
    missing = db18.server.conninfo("no_such_database")
    assert_user_error(run_cli(capsys, "check", "-d", missing),
                      'database "no_such_database" does not exist')
    assert_user_error(run_cli(capsys, "tree", "-d", "this is not a dsn"),
                      "malformed connection string")
    assert_user_error(run_cli(capsys, "tree", "-d", "host=x colour=blue"),
                      "malformed connection string", "colour")
    assert_user_error(run_cli(capsys, "tree", "-d", "postgresql://h/x?colour=blue"),
                      "malformed connection string", "colour")


@pytest.fixture(scope="module")
def scram_server() -> Iterator[LocalServer]:
    """A private server that asks every role but the superuser for a password."""
    root = Path(tempfile.mkdtemp(prefix="pgparts-scram-"))
    root.chmod(0o755)
    server = LocalServer(embedded_bindir(), root / "data", dict(FAST_TEST_SETTINGS))
    server.init()
    hba = server.datadir / "pg_hba.conf"
    hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n")
    owner = server.datadir.stat()
    os.chown(hba, owner.st_uid, owner.st_gid)
    server.start()
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as c:
            c.execute("CREATE ROLE app LOGIN PASSWORD 'right horse battery'")
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_password_authentication(scram_server, monkeypatch, tmp_path):
    # in a process of its own: late in a full run, SCRAM in the test process itself failed
    # with libpq's "could not generate nonce" (its bundled OpenSSL's random source)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    base = f"host={scram_server.socket_dir} port=5432 dbname=postgres user=app"

    def cli(dsn: str) -> tuple[int, str, str]:
        proc = run_process("tree", "-d", dsn)
        return proc.returncode, proc.stdout, proc.stderr

    assert_user_error(cli(f"{base} password=wrong"),
                      'password authentication failed for user "app"')
    assert_user_error(cli(base), "no password supplied")
    assert cli(f"{base} password='right horse battery'") == (0, "no partitioned tables\n", "")


# -- config errors -------------------------------------------------------------------------------
def test_config_errors(db18, tmp_path, capsys):
    dsn = db18.dsn
    assert_user_error(run_cli(capsys, "tree", "--profile", "nope"),
                      "unknown profile 'nope'", "none defined")
    good = tmp_path / "good.toml"
    good.write_text(f'[profiles.here]\ndsn = "{dsn}"\n')
    assert_user_error(run_cli(capsys, "tree", "--config", str(good), "--profile", "nope"),
                      "unknown profile 'nope'", "(profiles: here)")
    assert run_cli(capsys, "tree", "--config", str(good), "--profile", "here")[0] == 0
    assert_user_error(run_cli(capsys, "tree", "--config", str(tmp_path)),
                      "cannot read config file")
    assert_user_error(run_cli(capsys, "tree", "--config", str(tmp_path / "absent.toml")),
                      "does not exist")
    broken = tmp_path / "broken.toml"
    broken.write_text("[findings\noversized = 1\n")
    assert_user_error(run_cli(capsys, "check", "--config", str(broken), "-d", dsn),
                      "is not valid TOML")
    bad = tmp_path / "bad.toml"
    bad.write_text('[findings]\noversized = "enormous"\n')
    assert_user_error(run_cli(capsys, "check", "--config", str(bad), "-d", dsn),
                      "'findings.oversized'", "enormous")
    assert_user_error(run_cli(capsys, "tree", "--demo", "-d", dsn), "--demo")


def test_password_in_world_readable_config_warns(db18, tmp_path, capsys):
    config = tmp_path / "pw.toml"
    config.write_text(f'default_profile = "p"\n[profiles.p]\ndsn = "{db18.dsn} password=x"\n')
    config.chmod(0o644)
    status, out, err = run_cli(capsys, "tree", "--config", str(config))
    assert status == 0 and out == "no partitioned tables\n"  # trust auth ignores the password
    assert err.startswith("pgparts: warning: ") and "chmod 600" in err
    assert len(err.strip().splitlines()) == 1
    config.chmod(0o600)
    assert run_cli(capsys, "tree", "--config", str(config))[2] == ""


# -- session settings and read-only mode ---------------------------------------------------------
def _context(**overrides) -> Context:
    values = dict(config=None, dsn=None, profile=None, read_only=False, demo=False,
                  demo_reset=False)
    values.update(overrides)
    return Context.from_args(argparse.Namespace(**values))


def _show(conn: psycopg.Connection, name: str) -> str:
    return conn.execute(f"SHOW {name}").fetchone()[0]  # noqa: S608 - fixed setting names


def test_session_settings(db18):
    dsn = db18.dsn + " options='-c work_mem=7MB -c TimeZone=America/New_York'"
    with _context(dsn=dsn) as ctx:
        conn = ctx.connect()
        try:
            assert _show(conn, "application_name") == "pgparts"
            assert _show(conn, "TimeZone") == "UTC"  # ours win over the DSN's
            assert _show(conn, "DateStyle").startswith("ISO")
            assert _show(conn, "jit") == "off"
            assert _show(conn, "lock_timeout") == "2s"
            assert _show(conn, "work_mem") == "7MB"  # the user's own options are kept
            assert _show(conn, "default_transaction_read_only") == "off"
            # CVE-2018-1058: nothing a user created can shadow a catalog function or operator
            assert _show(conn, "search_path") == "pg_catalog,pg_temp"
            assert conn.autocommit
            conn.execute("CREATE TABLE public.writable (k int)")
        finally:
            conn.close()


def test_pgoptions_from_the_environment_are_kept(db18, monkeypatch):
    """libpq ignores PGOPTIONS once a connection string has options; pgparts passes its own,
    so it merges the user's in first (ours still win)."""
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=9MB -c TimeZone=Asia/Tokyo")
    with _context(dsn=db18.dsn) as ctx, ctx.connect() as conn:
        assert _show(conn, "work_mem") == "9MB"
        assert _show(conn, "TimeZone") == "UTC"


def test_pgtz_and_pgdatestyle_do_not_change_the_session(db18, monkeypatch):
    """libpq sends PGTZ/PGDATESTYLE after the connection's options; pgparts' UTC and ISO stay."""
    monkeypatch.setenv("PGTZ", "Pacific/Chatham")
    monkeypatch.setenv("PGDATESTYLE", "German")
    with _context(dsn=db18.dsn) as ctx, ctx.connect() as conn:
        assert _show(conn, "TimeZone") == "UTC"
        assert _show(conn, "DateStyle").startswith("ISO")


def test_read_only_mode(db18, tmp_path):
    with _context(dsn=db18.dsn, read_only=True) as ctx:
        conn = ctx.connect()
        try:
            assert _show(conn, "default_transaction_read_only") == "on"
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE nope (k int)")
        finally:
            conn.close()
        with pytest.raises(CliError) as info:
            ctx.require_writable("consolidate")
        assert info.value.status == 2 and "--read-only" in str(info.value)
    # a read-only profile is read-only without the flag
    config = tmp_path / "ro.toml"
    config.write_text(f'[profiles.ro]\ndsn = "{db18.dsn}"\nread_only = true\n')
    with _context(config=str(config), profile="ro") as ctx:
        assert ctx.read_only
        with ctx.connect() as conn:
            assert _show(conn, "default_transaction_read_only") == "on"
    with _context(dsn=db18.dsn) as ctx:
        ctx.require_writable("consolidate")  # allowed


def test_a_mistyped_command_is_said_to_be_one(capsys):
    """`pgparts mantain` read as a connection string said 'malformed connection string:
    missing "=" after "***"', hiding the typo; and `pgparts mantain --dry-run` printed the
    console's usage. The word is not repeated (it might have been a password)."""
    for argv in (["mantain"], ["mantain", "--dry-run"], ["Split"]):
        line = assert_user_error(run_cli(capsys, *argv), "not a command nor a connection string")
        assert "did you mean" in line and argv[0] not in line.split("?")[0], line
    line = assert_user_error(run_cli(capsys, "xyzzy"), "the commands are", "tree")
    assert "xyzzy" not in line and "did you mean" not in line, line


def test_an_empty_plan_ends_its_line(db18, capsys):
    """A dry run with nothing to do ends with a newline, as every other dry run does."""
    db18.execute("CREATE TABLE public.t (d int) PARTITION BY RANGE (d);"
                 " CREATE TABLE public.t_1 PARTITION OF public.t FOR VALUES FROM (0) TO (10);")
    status, out, err = run_cli(capsys, "fill-gaps", "-d", db18.dsn, "public.t", "--dry-run")
    assert status == 0, err
    assert out.endswith("Steps: none, nothing would run.\n"), out


def test_a_missing_or_malformed_argument_is_one_line(capsys):
    """argparse printed its usage (five lines for split) before the error; now one line, as
    every error a user can cause, naming the command and where the usage is."""
    for argv, fragments in (
            (["split"], ["split: the following arguments are required: table, PARTITION",
                         "pgparts split --help"]),
            (["split", "t", "p", "--at"], ["split: argument --at: expected one argument"]),
            (["migrate", "t", "--by", "c", "--key", "c", "--interval", "decade", "--dry-run"],
             ["migrate: argument --interval: invalid choice: 'decade'"]),
            (["split", "t", "p", "--at", "1", "--dry-run", "--apply"],
             ["argument --apply: not allowed with argument --dry-run"]),
            (["--bogus"], ["pgparts: unrecognized arguments: --bogus (pgparts --help"])):
        assert_user_error(run_cli(capsys, *argv), *fragments)


def test_a_move_dry_run_has_one_blank_line_between_sections(db, capsys):
    """A move's plan has no summary: its dry run printed two blank lines between 'Plan:' and
    'Changes:'."""
    db.execute("CREATE TABLE public.t (d int PRIMARY KEY) PARTITION BY RANGE (d);"
               " CREATE TABLE public.t_1 PARTITION OF public.t FOR VALUES FROM (0) TO (10);"
               " INSERT INTO public.t SELECT generate_series(0, 9);")
    status, out, err = run_cli(capsys, "split", "-d", db.dsn, "public.t", "t_1", "--at", "5",
                               "--dry-run")
    assert status == 0, err
    assert out.startswith("Plan: ") and "\nChanges:\n" in out, out
    assert "\n\n\n" not in out, out
