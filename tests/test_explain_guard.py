"""`pgparts explain` runs one statement, a SELECT/INSERT/UPDATE/DELETE/MERGE (WITH forms, VALUES,
TABLE), in a transaction that is rolled back, READ ONLY unless a write is analyzed in a session
that may write, and leaves no session state behind. Checked on 18 and 15 against texts that a
second parser reads differently from PostgreSQL: Unicode spaces that are part of a name to the
server, dollar quotes, nested comments, E'' strings, ';' in names, strings and comments. Every
refused text exits 2 with one line and leaves the database unchanged (a table's rows, a role's
privileges, a sequence, a file a program would write); so does every accepted one.

The server is the last word: past the statement check (a hand-made Statement), the extended
query protocol still refuses several statements. pgparts' own catalog reads never run under the
user's search_path, even where an unprivileged role has planted functions and operators that
shadow pg_catalog's (CVE-2018-1058).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tui.cli import main
from tui.core.connection import Target, connect
from tui.core.explain import (
    ExplainError,
    ExplainRunner,
    ExplainSession,
    Statement,
    StatementRefused,
    check_statement,
)
from tui.core.explain.runner import _send_extended

from .conftest import Database, Server, create_database, drop_database

REPO = Path(__file__).resolve().parent.parent
# Unicode spaces that sqlglot's tokenizer skips and PostgreSQL's lexer reads as part of a name
SPACES = ["\u00a0", "\u2028", "\u2029", "\u0085", "\u1680", "\u2003", "\u200a", "\u202f",
          "\u205f", "\u3000"]
_roles = itertools.count()


@dataclass
class Guarded:
    db: Database
    role: str
    marker: Path  # COPY ... TO PROGRAM 'touch <marker>' would create it

    def state(self) -> tuple:
        """Everything the payloads below would change."""
        with psycopg.connect(self.db.dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT count(*) FROM public.y").fetchone()[0] \
                if conn.execute("SELECT pg_catalog.to_regclass('public.y')").fetchone()[0] \
                else None
            superuser = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles"
                                     " WHERE rolname = %s", (self.role,)).fetchone()[0]
            seq = conn.execute("SELECT last_value, is_called FROM public.s").fetchone()
        return rows, superuser, seq, self.marker.exists()

    def payloads(self) -> dict[str, str]:
        role = sql.Identifier(self.role).as_string()
        return {
            "delete": "delete from public.y",
            "drop": "drop table public.y",
            "alter_role": f"alter role {role} superuser",
            "copy_program": f"copy (select 1) to program 'touch {self.marker}'",
            "nextval": "select nextval('public.s')",
        }


BEFORE = (3, False, (1, False), False)

SETUP = """
CREATE TABLE public.y (id int);
INSERT INTO public.y VALUES (1), (2), (3);
CREATE TABLE public.p (k int NOT NULL, v text) PARTITION BY RANGE (k);
CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM (0) TO (10);
CREATE TABLE public.p2 PARTITION OF public.p FOR VALUES FROM (10) TO (20);
INSERT INTO public.p SELECT i % 20, 'v' FROM generate_series(1, 100) i;
CREATE SEQUENCE public.s;
-- claims IMMUTABLE, so the planner runs it while planning a plain EXPLAIN
CREATE FUNCTION public.bump() RETURNS bigint IMMUTABLE LANGUAGE plpgsql
  AS $$ BEGIN RETURN nextval('public.s'); END $$;
-- prepared statements are not transactional
CREATE FUNCTION public.prepare_one() RETURNS int LANGUAGE plpgsql
  AS $$ BEGIN EXECUTE 'PREPARE sneaky AS SELECT 1'; RETURN 1; END $$;
"""


@pytest.fixture(scope="module")
def guarded(pg: Server) -> Iterator[Guarded]:
    role = f"guard_app_{os.getpid()}_{next(_roles)}"
    name = create_database(pg)
    database = Database(pg, name)
    folder = Path(tempfile.mkdtemp(prefix="pgparts-guard-"))
    folder.chmod(0o777)  # the server may run as another OS user
    database.execute(sql.SQL("CREATE ROLE {} NOSUPERUSER LOGIN").format(sql.Identifier(role)))
    database.execute(SETUP)
    guard = Guarded(database, role, folder / "ran")
    assert guard.state() == BEFORE
    yield guard
    drop_database(pg, name)
    with pg.admin() as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def session(guarded: Guarded) -> Iterator[ExplainSession]:
    conn = connect(guarded.db.target, user_search_path=True)
    yield ExplainSession(conn)
    conn.close()


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.startswith("pgparts: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _evil(space: str, payload: str) -> str:
    """One statement to a tokenizer that takes `space` for whitespace (the $$ ... $$ hides the
    rest), six to PostgreSQL, for which `a<space>$$` is one name."""
    return (f"select 1 as a{space}$$; commit; begin read write; {payload}; commit;"
            f" select 1 as b{space}$$")


# -- the reported bypass: ten Unicode spaces, several payloads ----------------------------------
@pytest.mark.parametrize("space", SPACES, ids=[f"U+{ord(s):04X}" for s in SPACES])
def test_unicode_space_bypass_is_refused_by_the_cli(guarded: Guarded, capsys, tmp_path,
                                                    space: str) -> None:
    for payload in guarded.payloads().values():
        evil = tmp_path / "evil.sql"
        evil.write_text(_evil(space, payload), encoding="utf-8")
        for mode in (["--read-only", "--require-pruning"], ["--analyze"], []):
            err = _one_line_error(*_cli(capsys, "-d", guarded.db.dsn, *mode, "-f", str(evil)))
            assert f"U+{ord(space):04X}" in err and "part of a name" in err
        assert guarded.state() == BEFORE


@pytest.mark.parametrize("space", SPACES, ids=[f"U+{ord(s):04X}" for s in SPACES])
def test_unicode_space_bypass_is_refused_by_the_session(guarded: Guarded,
                                                        session: ExplainSession,
                                                        space: str) -> None:
    for payload in guarded.payloads().values():
        for analyze in (False, True):
            with pytest.raises(StatementRefused, match="part of a name"):
                session.explain(_evil(space, payload), analyze=analyze)
    assert guarded.state() == BEFORE


def test_the_reported_command_line_exits_2(guarded: Guarded, tmp_path) -> None:
    """`pgparts explain --read-only --require-pruning -f evil.sql`, as a real process."""
    evil = tmp_path / "evil.sql"
    evil.write_text(_evil("\u00a0", "delete from public.y"), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "explain", "-d", guarded.db.dsn, "--read-only",
         "--require-pruning", "-f", str(evil)],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    _one_line_error(done.returncode, done.stdout, done.stderr)
    assert guarded.state() == BEFORE


# -- the check itself (no server) ----------------------------------------------------------------
def test_check_keeps_positions_and_reads_like_postgresql() -> None:
    # leading comments stay in the text sent, so the server's positions are the editor's
    assert check_statement("-- why\nSELECT 1;  -- done\n").text == "-- why\nSELECT 1"
    # a syntax error is PostgreSQL's parser's, at a character (not byte) offset; nothing is sent
    text = "SELECT 'Ω', 'é' AND AND 1"
    st = check_statement(text)
    assert st.syntax_error == ('syntax error at or near "AND"', text.index("AND AND") + 4)
    # $n inside strings, dollar quotes and comments are not parameters
    assert check_statement("SELECT '$9', $q$ $8 $q$, $2 /* $7 */").param_count == 2
    with pytest.raises(StatementRefused, match="SELECT INTO"):
        check_statement("SELECT 1 INTO public.z UNION SELECT 2")
    with pytest.raises(StatementRefused, match="found 2 statements"):
        check_statement("SELECT 1 AS \"a\u00a0\"; DELETE FROM public.y")


# -- the server refuses several statements, whatever the check said ----------------------------
def test_extended_protocol_refuses_several_statements(guarded: Guarded) -> None:
    """What the runner relies on: psycopg sends binary-result queries with the extended
    protocol (one Parse message), even without parameters."""
    with connect(guarded.db.target) as conn, conn.cursor() as cur, pytest.raises(
            psycopg.errors.SyntaxError,
            match="cannot insert multiple commands into a prepared statement"):
        _send_extended(cur, sql.SQL("SELECT 1; DELETE FROM public.y"))
    assert guarded.state() == BEFORE


@pytest.mark.parametrize("params", [0, 1], ids=["plain", "generic"])
@pytest.mark.parametrize("payload", ["delete", "drop", "alter_role", "copy_program", "nextval"])
def test_runner_past_the_check_still_runs_one_statement(guarded: Guarded, payload: str,
                                                        params: int) -> None:
    """A Statement that no check produced: several statements with a plain SELECT's kind (and
    with a $1: the generic plan's path, PREPARE on 15, EXPLAIN (GENERIC_PLAN) on 16+)."""
    text = (f"select 1 where $1::int = 1; {guarded.payloads()[payload]}; select 2"
            if params else f"select 1; {guarded.payloads()[payload]}; select 2")
    with connect(guarded.db.target, user_search_path=True) as conn:
        runner = ExplainRunner(conn)
        for analyze in ((False,) if params else (False, True)):
            with pytest.raises(ExplainError, match="cannot insert multiple commands"):
                runner.explain(Statement(text, "SELECT", params), analyze=analyze)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert guarded.state() == BEFORE


# -- a corpus of texts that parsers disagree on ---------------------------------------------------
REFUSED = [
    ("dollar_quote", "select $$;$$; delete from public.y"),
    ("dollar_tag_holding_dollars", "select $a$ $$ ; $$ $a$; delete from public.y"),
    ("nested_tags", "select $a$ $b$ ; $b$ $a$; delete from public.y"),
    ("e_string_backslash", "select E'\\\\'; delete from public.y"),
    ("standard_string_backslash", "select 'a\\'; delete from public.y; select '1'"),
    ("semicolon_in_name", "select 1 as \"a;b\"; delete from public.y"),
    ("semicolon_in_string", "select ';' ; delete from public.y"),
    ("line_comment_ends", "select 1 -- comment\n; delete from public.y"),
    ("nested_comment_closed", "select /* /* */ */ 1; delete from public.y"),
    ("commit_between", "select 1; commit; delete from public.y"),
    ("nul_character", "select 1\x00; delete from public.y"),
    ("zero_width_space", "select 1 as a\u200b$$; delete from public.y; select 1 as b\u200b$$"),
    ("nbsp_in_one_statement", "select 1 as a\u00a0b"),
    ("select_into", "select 1 as x into public.z"),
    ("data_modifying_cte_then_drop",
     "with d as (delete from public.y returning *) select * from d; drop table public.y"),
    ("explain_inside", "explain analyze delete from public.y"),
    ("copy_program", "copy (select 1) to program 'true'"),
    ("set_role", "set role postgres"),
    ("create_table_as", "create table public.z as select 1"),
    ("do_block", "do $$ begin delete from public.y; end $$"),
    ("call", "call public.nothing()"),
]
ACCEPTED = [
    ("line_comment_hides", "select 1 -- ; delete from public.y"),
    ("nested_comment_hides", "select /* /* */ ; delete from public.y; */ 1"),
    ("e_string_escaped_quote", "select E'\\'; delete from public.y; --'"),
    ("dollar_tag_with_nbsp", "select $a\u00a0$ ; delete from public.y; $a\u00a0$"),
    ("nested_tags_hide", "select $a$ $b$ ; delete from public.y; $b$ $a$"),
    ("quoted_name_with_nbsp", "select 1 as \"a\u00a0$$; delete from public.y; select $$\""),
    ("semicolons_in_string_and_name", "select ';delete from public.y;' as \"x;y\""),
    ("data_modifying_cte",
     "WITH d AS (DELETE FROM public.y RETURNING *) SELECT * FROM d JOIN public.p ON k = id"),
    ("trailing_semicolons", "select * from public.p where k = 3;;  \n"),
]


@pytest.mark.parametrize("text", [t for _, t in REFUSED], ids=[i for i, _ in REFUSED])
def test_tricky_texts_refused(guarded: Guarded, session: ExplainSession, capsys, tmp_path,
                              text: str) -> None:
    query = tmp_path / "q.sql"
    query.write_text(text, encoding="utf-8")
    for mode in ([], ["--analyze"], ["--read-only", "--analyze"]):
        _one_line_error(*_cli(capsys, "-d", guarded.db.dsn, *mode, "-f", str(query)))
    for analyze in (False, True):
        with pytest.raises(StatementRefused):
            session.explain(text, analyze=analyze)
    assert guarded.state() == BEFORE


@pytest.mark.parametrize("text", [t for _, t in ACCEPTED], ids=[i for i, _ in ACCEPTED])
def test_tricky_texts_accepted_change_nothing(guarded: Guarded, session: ExplainSession,
                                              capsys, tmp_path, text: str) -> None:
    query = tmp_path / "q.sql"
    query.write_text(text, encoding="utf-8")
    for mode in ([], ["--analyze"]):
        code, out, err = _cli(capsys, "-d", guarded.db.dsn, *mode, "-f", str(query))
        assert code == 0, err
        assert out.startswith("EXPLAIN")
    for analyze in (False, True):
        assert session.explain(text, analyze=analyze).plan is not None
    assert guarded.state() == BEFORE


def test_backslashes_read_the_same_where_strings_are_not_standard(guarded: Guarded,
                                                                   make_db) -> None:
    """With standard_conforming_strings off a server reads 'x\\' as the start of a longer string:
    one SELECT to PostgreSQL's parser would be three statements to that server. The EXPLAIN
    transaction turns it on, and the extended protocol would refuse three anyway."""
    db = make_db()
    db.execute("CREATE TABLE public.y (id int); INSERT INTO public.y VALUES (1), (2), (3)")
    db.execute(sql.SQL("ALTER DATABASE {} SET standard_conforming_strings = off").format(
        sql.Identifier(db.name)))
    text = "select 'x\\' as \"'; delete from public.y; select '\", 1 as z --'"
    # what that server reads: three statements
    with psycopg.connect(db.dsn, autocommit=True) as conn, pytest.raises(
            psycopg.errors.SyntaxError, match="multiple commands"):
        conn.execute(text, binary=True)
    with connect(db.target, user_search_path=True) as conn:
        assert conn.execute("SHOW standard_conforming_strings").fetchone()[0] == "off"
        session = ExplainSession(conn)
        for analyze in (False, True):
            report = session.explain(text, analyze=analyze)
            assert report.plan.root.node_type == "Result"
    assert db.query("SELECT count(*) FROM public.y") == [(3,)]


# -- READ ONLY: what a rollback cannot undo, PostgreSQL refuses where it can ---------------------
def test_plain_explain_runs_read_only(guarded: Guarded, session: ExplainSession) -> None:
    """A function that claims to be immutable runs while the plan is made: in a READ ONLY
    transaction its nextval() is refused instead of advancing the sequence for good."""
    with pytest.raises(ExplainError, match=r"cannot execute nextval\(\) in a read-only"):
        session.explain("SELECT public.bump() FROM public.p WHERE k = 1")
    assert guarded.state() == BEFORE


def test_read_only_analyze_is_refused_by_the_server(guarded: Guarded, capsys) -> None:
    dsn = guarded.db.dsn
    for text, message in [
        ("INSERT INTO public.y VALUES (4)", "cannot execute INSERT in a read-only transaction"),
        ("DELETE FROM public.p WHERE k = 1", "cannot execute DELETE in a read-only transaction"),
        ("SELECT nextval('public.s')", "cannot execute nextval() in a read-only transaction"),
        ("SELECT setval('public.s', 40)", "cannot execute setval() in a read-only transaction"),
    ]:
        err = _one_line_error(*_cli(capsys, "-d", dsn, "--read-only", "--analyze", text))
        assert message in err
        # plain EXPLAIN of the same statement is fine in a read-only session
        code, out, err = _cli(capsys, "-d", dsn, "--read-only", text)
        assert code == 0, err
    assert guarded.state() == BEFORE


def test_analyze_outside_read_only_advances_a_sequence(make_db, capsys) -> None:
    """What the documentation warns about: a rollback does not give sequence values back."""
    db = make_db()
    db.execute("CREATE SEQUENCE public.s")
    code, out, err = _cli(capsys, "-d", db.dsn, "--analyze", "SELECT nextval('public.s')")
    assert code == 0, err
    assert db.query("SELECT last_value, is_called FROM public.s") == [(1, True)]


# -- session state after every EXPLAIN -----------------------------------------------------------
def test_advisory_locks_do_not_outlive_the_explain(guarded: Guarded,
                                                   session: ExplainSession) -> None:
    pid = session.conn.info.backend_pid
    held = ("SELECT count(*) FROM pg_catalog.pg_locks"
            " WHERE locktype = 'advisory' AND pid = %s")
    session.explain("SELECT pg_advisory_lock(4242), pg_advisory_lock_shared(7, 8)",
                    analyze=True)
    assert guarded.db.query(held, (pid,)) == [(0,)]
    assert guarded.db.query("SELECT pg_try_advisory_lock(4242)") == [(True,)]
    with pytest.raises(ExplainError):  # a failing statement releases them as well
        session.explain("SELECT pg_advisory_lock(4243), 1 / (k - k) FROM public.p",
                        analyze=True)
    assert guarded.db.query(held, (pid,)) == [(0,)]


def test_read_only_session_releases_advisory_locks(guarded: Guarded) -> None:
    with connect(Target(guarded.db.dsn, read_only=True), user_search_path=True) as conn:
        ExplainSession(conn, read_only=True).explain("SELECT pg_advisory_lock(99)",
                                                     analyze=True)
        pid = conn.info.backend_pid
        assert guarded.db.query("SELECT count(*) FROM pg_catalog.pg_locks"
                                " WHERE locktype = 'advisory' AND pid = %s", (pid,)) == [(0,)]


def test_settings_and_prepared_statements_do_not_outlive_the_explain(
        session: ExplainSession) -> None:
    """set_config(..., false) in a rolled-back transaction is reverted; prepared statements are
    not transactional and are deallocated."""
    session.explain("SELECT set_config('search_path', 'public', false),"
                    " set_config('statement_timeout', '1ms', false), public.prepare_one()",
                    analyze=True)
    conn = session.conn
    assert conn.execute("SHOW search_path").fetchone()[0] == "pg_catalog, pg_temp"
    assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1min"
    assert conn.execute("SELECT count(*) FROM pg_catalog.pg_prepared_statements"
                        ).fetchone()[0] == 0
    # and the next EXPLAIN still plans under the user's own search_path
    report = session.explain("SELECT * FROM p WHERE k = 3")
    assert [p.node.name for p in report.references[0].partitions] == ["p1"]


# -- pgparts' own reads under a hostile search_path ----------------------------------------------
TROJANS = """
CREATE TABLE public.trojan_calls (what text);
CREATE FUNCTION public.trojan(what text) RETURNS void LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
  INSERT INTO public.trojan_calls VALUES (what);
  EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', {role});
END $$;
CREATE FUNCTION public.pg_get_expr(pg_node_tree, oid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trojan('pg_get_expr'); RETURN pg_catalog.pg_get_expr($1, $2); END $$;
CREATE FUNCTION public.quote_ident(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trojan('quote_ident'); RETURN pg_catalog.quote_ident($1); END $$;
CREATE FUNCTION public.format_type(oid, integer) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trojan('format_type'); RETURN pg_catalog.format_type($1, $2); END $$;
CREATE FUNCTION public.pg_partition_root(regclass) RETURNS regclass LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trojan('pg_partition_root'); RETURN pg_catalog.pg_partition_root($1); END $$;
CREATE FUNCTION public.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trojan('to_regclass'); RETURN pg_catalog.to_regclass($1); END $$;
CREATE FUNCTION public.trojan_oideq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.trojan('='); RETURN pg_catalog.oideq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.trojan_oideq);
CREATE TABLE public.events (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
CREATE TABLE public.events_2024 PARTITION OF public.events
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.events_2025 PARTITION OF public.events
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO public.events VALUES ('2024-06-01', 1), ('2025-06-01', 2);
"""


def test_planted_functions_never_run_for_pgparts(make_db, capsys) -> None:
    """An unprivileged role owns schema public, which the database's search_path puts before
    pg_catalog, and shadows functions and `=` that catalog reads use. The superuser runs
    `pgparts explain`: the role stays unprivileged, the trojans are never called."""
    db = make_db()
    role = f"trojan_app_{os.getpid()}_{next(_roles)}"
    try:
        # private servers ask every role but the superuser for a password
        db.execute(sql.SQL("CREATE ROLE {} NOSUPERUSER LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(role)))
        db.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("ALTER DATABASE {} SET search_path = public, pg_catalog").format(
            sql.Identifier(db.name)))
        # private servers ask other roles for a password: plant as the role via SET ROLE
        with psycopg.connect(db.dsn, autocommit=True) as app:
            app.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            app.execute(sql.SQL(TROJANS).format(role=sql.Literal(role)))

        def superuser() -> bool:
            return db.query("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s",
                            (role,))[0][0]

        # armed: a catalog read under the database's search_path would run them
        with psycopg.connect(db.dsn) as conn:
            conn.execute("SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_class c"
                         " WHERE c.relispartition").fetchall()
            assert conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s",
                                (role,)).fetchone()[0]
            conn.rollback()
        assert not superuser()

        query = "SELECT * FROM events WHERE ts >= '2025-01-01'"  # the user's search_path
        for mode in ([], ["--json"], ["--analyze"], ["--analyze", "--json"]):
            code, out, err = _cli(capsys, "-d", db.dsn, *mode, query)
            assert code == 0, err
            if "--json" in mode:
                (table,) = json.loads(out)["tables"]
                assert table["table"] == "events" and table["scanned"] == ["events_2025"]
            else:
                assert "events: scans 1 of 2 partitions" in out
        code, out, err = _cli(capsys, "-d", db.dsn, "SELECT * FROM events WHERE v = $1::int")
        assert code == 0, err
        assert not superuser()
        assert db.query("SELECT count(*) FROM public.trojan_calls") == [(0,)]
    finally:
        with db.server.admin() as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db.name)))
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# -- the console's EXPLAIN screen: the same checks and the same session code ---------------------
async def test_console_refuses_the_bypass_and_releases_advisory_locks(db: Database) -> None:
    from tui.app.confirm import ConfirmModal

    from .test_app import wait_until
    from .test_app_explain import SIZE, SMALL_SQL, make_app, open_explain, report_text

    db.execute(SMALL_SQL)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_explain(pilot, app)
        editor = screen.query_one("#explain-editor")
        for key in ("f5", "f6"):
            editor.text = _evil("\u00a0", "delete from public.m")
            await pilot.press(key)
            await pilot.pause()
            assert screen.last.kind == "refused" and not screen.running
            assert "U+00A0 NO-BREAK SPACE" in report_text(screen)
        assert db.query("SELECT count(*) FROM public.m") == [(300,)]

        editor.text = "SELECT pg_advisory_lock(77), v FROM m WHERE k = 1"
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        before = screen.runs
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.runs > before)
        assert screen.report is not None, screen.last.error
        assert db.query("SELECT count(*) FROM pg_catalog.pg_locks l"
                        " JOIN pg_catalog.pg_stat_activity a USING (pid)"
                        " WHERE l.locktype = 'advisory'"
                        " AND a.application_name = 'pgparts explain'") == [(0,)]
