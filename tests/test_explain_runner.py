"""Running EXPLAIN safely, on 18 and 15: statement checks, rollback, timeout, cancel, errors
with positions, parameters, read-only sessions, and the `pgparts explain` command."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from tui.cli import main
from tui.core.connection import Target, connect
from tui.core.explain import (
    ExplainCancelled,
    ExplainError,
    ExplainSession,
    ExplainTimeout,
    StatementRefused,
    check_statement,
)

from .conftest import Database, Server, create_database, drop_database

LAYOUT = r"""
CREATE SCHEMA control;
CREATE TABLE control.payment (pay_ts timestamptz NOT NULL, pdm_id int NOT NULL, amount numeric,
  PRIMARY KEY (pay_ts, pdm_id)) PARTITION BY RANGE (pay_ts);
CREATE TABLE control.payment_2023 PARTITION OF control.payment
  FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE control.payment_2024 PARTITION OF control.payment
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE control.payment_default PARTITION OF control.payment DEFAULT;
INSERT INTO control.payment
  SELECT '2023-06-01'::timestamptz + i * interval '1 hour', i, 1 FROM generate_series(1, 9000) i;
ANALYZE;
"""


@pytest.fixture(scope="module")
def payments(pg: Server) -> Iterator[Database]:
    name = create_database(pg)
    database = Database(pg, name)
    database.execute(LAYOUT)
    yield database
    drop_database(pg, name)


@pytest.fixture
def session(payments: Database) -> Iterator[ExplainSession]:
    conn = connect(payments.target, user_search_path=True)
    yield ExplainSession(conn)
    conn.close()


# -- statement checks (no server needed) ------------------------------------------------------
@pytest.mark.parametrize("text, fragment", [
    ("CREATE TABLE x (a int)", "CREATE cannot be explained"),
    ("drop table control.payment", "DROP cannot be explained"),
    ("ALTER TABLE control.payment DETACH PARTITION control.payment_2023", "ALTER"),
    ("TRUNCATE control.payment", "TRUNCATE"),
    ("VACUUM control.payment", "VACUUM"),
    ("COPY control.payment TO STDOUT", "COPY"),
    ("SET work_mem = '1GB'", "SET"),
    ("BEGIN", "BEGIN"),
    ("EXPLAIN SELECT 1", "without EXPLAIN"),
    ("SELECT 1; SELECT 2", "one statement at a time"),
    ("SELECT 1; DROP TABLE control.payment", "one statement at a time"),
    ("   ", "no query"),
    ("-- only a comment", "no query"),
])
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(StatementRefused, match=fragment):
        check_statement(text)


@pytest.mark.parametrize("text, kind, params", [
    ("SELECT 1;", "SELECT", 0),
    ("select ';' as semi ;  ", "SELECT", 0),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "WITH", 0),
    ("UPDATE t SET a = $1 WHERE b = $2", "UPDATE", 2),
    ("(SELECT 1) UNION (SELECT 2)", "SELECT", 0),
    ("VALUES (1)", "VALUES", 0),
    ("TABLE t", "TABLE", 0),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "MERGE", 0),
    ("SELECT $$a;b$$, $3", "SELECT", 3),
])
def test_accepted(text: str, kind: str, params: int) -> None:
    st = check_statement(text)
    assert (st.kind, st.param_count) == (kind, params)
    assert not st.text.endswith(";")


# -- against the server ------------------------------------------------------------------------
def test_syntax_error_points_at_the_position(session: ExplainSession) -> None:
    text = "SELECT *\nFROM control.payment WHERE\n  pay_ts > '2024-01-01' AND AND pdm_id = 1"
    with pytest.raises(ExplainError) as info:
        session.explain(text)
    err = info.value
    assert 'syntax error at or near "AND"' in err.message
    assert err.offset == text.index("AND AND") + 4
    assert (err.line, err.column) == (3, text.splitlines()[2].index("AND AND") + 5)
    assert session.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_analyze_of_delete_leaves_the_table_unchanged(session: ExplainSession,
                                                      payments: Database) -> None:
    before = payments.query("SELECT count(*) FROM control.payment")[0][0]
    report = session.explain("DELETE FROM control.payment WHERE pay_ts >= '2024-01-01'",
                             analyze=True)
    (ref,) = report.references
    assert (ref.partitions_scanned, ref.partitions_total) == (2, 3)
    deleted = sum(n.actual_rows or 0 for n in report.plan.walk() if n.is_scan)
    assert deleted > 0  # the DELETE really ran ...
    assert payments.query("SELECT count(*) FROM control.payment")[0][0] == before  # ... and is gone
    assert report.plan.execution_ms is not None


def test_cancel_a_slow_analyze_from_another_thread(session: ExplainSession,
                                                    payments: Database) -> None:
    outcome: dict[str, object] = {}

    def slow() -> None:
        try:
            session.explain("SELECT pg_sleep(30), * FROM control.payment"
                            " WHERE pay_ts >= '2024-06-01' LIMIT 1", analyze=True)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=slow)
    started = time.monotonic()
    worker.start()
    pid = session.conn.info.backend_pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait until the server is really running it
        rows = payments.query("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,))
        if rows and rows[0][0] == "PgSleep":
            break
        time.sleep(0.05)
    assert session.cancel()
    worker.join(10)
    assert not worker.is_alive()
    assert time.monotonic() - started < 8
    assert isinstance(outcome.get("error"), ExplainCancelled)
    # the console puts "cancelled: " in front of it: the message does not say it again
    assert outcome["error"].message == "the server stopped the query"
    # the connection is usable afterwards, outside any transaction
    assert session.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    report = session.explain("SELECT * FROM control.payment WHERE pay_ts >= '2024-01-01'")
    assert report.references[0].partitions_scanned == 2
    assert not session.cancel()  # nothing running: nothing to cancel


def test_statement_timeout(payments: Database) -> None:
    with connect(payments.target, user_search_path=True) as conn:
        session = ExplainSession(conn, timeout_seconds=0.3)
        started = time.monotonic()
        with pytest.raises(ExplainTimeout, match="statement_timeout"):
            session.explain("SELECT pg_sleep(5) FROM control.payment LIMIT 1", analyze=True)
        assert time.monotonic() - started < 4
        # SET LOCAL ended with the transaction: the session's own timeout is back
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1min"
        assert session.explain("SELECT 1 FROM control.payment").references


def test_read_only_session(payments: Database) -> None:
    with connect(Target(payments.dsn, read_only=True), user_search_path=True) as conn:
        session = ExplainSession(conn)
        # plain EXPLAIN of an UPDATE is fine in a read-only session ...
        report = session.explain("UPDATE control.payment SET amount = 2"
                                 " WHERE pay_ts >= '2024-01-01'")
        assert report.references[0].partitions_scanned == 2
        # ... ANALYZE would write: PostgreSQL refuses, and the message says so
        with pytest.raises(ExplainError, match="read-only transaction"):
            session.explain("UPDATE control.payment SET amount = 2", analyze=True)


def test_parameters(session: ExplainSession) -> None:
    with pytest.raises(ExplainError, match="needs values"):
        session.explain("SELECT * FROM control.payment WHERE pay_ts >= $1", analyze=True)
    report = session.explain("SELECT * FROM control.payment WHERE pay_ts >= $1::timestamptz")
    assert report.raw.generic and report.references[0].partitions_scanned == 3
    untyped = "SELECT * FROM control.payment WHERE $1 IS NULL"
    if session.runner.server_version < 160000:
        with pytest.raises(ExplainError, match="PostgreSQL 16"):
            session.explain(untyped)
    else:
        assert session.explain(untyped).references[0].partitions_scanned == 3
    # PREPARE is not transactional: nothing may be left behind
    assert session.conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0


# -- the command line --------------------------------------------------------------------------
def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_text_json_and_require_pruning(payments: Database, capsys, tmp_path,
                                           monkeypatch) -> None:
    dsn = payments.dsn
    code, out, _ = _run(capsys, "-d", dsn,
                        "SELECT * FROM control.payment WHERE pay_ts >= '2024-03-01'")
    assert code == 0
    assert "control.payment: scans 2 of 3 partitions (1 pruned at plan time)" in out
    assert "control.payment_2024" in out

    code, out, err = _run(capsys, "-d", dsn, "--json", "--require-pruning",
                          "SELECT * FROM control.payment WHERE amount = 1")
    assert code == 1
    (table,) = json.loads(out)["tables"]
    assert table["verdict"] == "no pruning: all 3 partitions scanned"
    assert table["advice_codes"] == ["no_key_predicate"]

    query = tmp_path / "q.sql"
    query.write_text("SELECT * FROM control.payment\n"
                     "WHERE pay_ts >= '2023-03-01' AND pay_ts < '2023-04-01';\n")
    code, out, _ = _run(capsys, "-d", dsn, "--require-pruning", "--json", "-f", str(query))
    assert code == 0
    assert json.loads(out)["tables"][0]["scanned"] == ["control.payment_2023"]

    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT * FROM control.payment"))
    code, out, err = _run(capsys, "-d", dsn, "--require-pruning", "-f", "-")
    assert code == 1 and "scanned in full: control.payment" in err

    code, out, _ = _run(capsys, "-d", dsn, "--analyze", "--json",
                        "DELETE FROM control.payment WHERE pay_ts >= '2024-01-01'")
    assert code == 0 and json.loads(out)["tables"][0]["never_executed"] == 0
    assert payments.query("SELECT count(*) FROM control.payment")[0][0] == 9000


@pytest.mark.parametrize("args, fragment", [
    (["TRUNCATE control.payment"], "TRUNCATE cannot be explained"),
    (["SELECT * FROM control.payment WHERE"], "syntax error at end of input (line 1"),
    (["SELECT * FROM nowhere"], 'relation "nowhere" does not exist'),
    ([], "no query"),
    (["SELECT 1", "-f", "x.sql"], "either as an argument or with -f"),
    (["-f", "/nonexistent/q.sql"], "cannot read /nonexistent/q.sql"),
    (["--analyze", "SELECT * FROM control.payment WHERE pay_ts = $1"], "needs values"),
])
def test_cli_errors_are_one_line(payments: Database, capsys, args: list[str],
                                 fragment: str) -> None:
    code, out, err = _run(capsys, "-d", payments.dsn, *args)
    assert code == 2 and out == ""
    assert err.startswith("pgparts: ") and err.count("\n") == 1
    assert fragment in err
