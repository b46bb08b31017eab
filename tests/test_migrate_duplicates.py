"""Duplicates by error: the report, and the dedupe SQL run in a transaction rolled back."""

from __future__ import annotations

import pytest
from psycopg import sql

from tui.core.migrate import MigrateError
from tui.core.migrate.duplicates import dedupe_statements, find_duplicates
from tui.core.migrate.preflight import dependents
from tui.core.migrate.source import load_table

from .migrate_support import HOSTILE, PLAIN, Names, build_legacy

ROWS = 1500
# the fixture stores base row i again when i % 53 == 5: once or twice, alternately
EXPECTED_GROUPS = len(range(5, ROWS, 53))
EXPECTED_EXTRA = sum(1 + j % 2 for j in range(EXPECTED_GROUPS))


def _count(conn, n: Names, name: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(n.ident(name))).fetchone()[0]


def _dangling(conn, n: Names, referencing: str, column: str) -> int:
    return conn.execute(sql.SQL(
        "SELECT count(*) FROM {r} r WHERE r.{c} IS NOT NULL AND NOT EXISTS"
        " (SELECT FROM {t} t WHERE t.{id} = r.{c})").format(
        r=n.ident(referencing), c=sql.Identifier(column), t=n.ident(n.table),
        id=sql.Identifier(n.id))).fetchone()[0]


@pytest.mark.parametrize("names", [PLAIN, HOSTILE], ids=["plain", "hostile"])
def test_report_and_dedupe_rolled_back(db, names):
    n = names
    with db.connect() as conn:
        build_legacy(conn, n, rows=ROWS)
        table = load_table(conn, n.schema, n.table)
        deps = dependents(conn, table)
        key = (n.ts, n.pdm)
        report = find_duplicates(conn, table, key, n.tracer, n.id, deps.referencing_fks,
                                 sample_groups=3)
        assert report.columns == (n.ts, n.pdm, n.tracer)
        assert (report.groups, report.rows_to_delete) == (EXPECTED_GROUPS, EXPECTED_EXTRA)
        assert len(report.sample) == 3
        first = report.sample[0]
        assert len(first.rows) == 2  # base row 5, stored twice
        assert first.rows[0][n.id] < first.rows[1][n.id]
        assert {r[n.tracer] for r in first.rows} == {first.values[2]}
        # the fixture points one bonus and one ext row per group at the newest copy
        repoint = {(r.fk.table, r.fk.columns): r.rows for r in report.repoint}
        assert repoint == {(n.bonus, (n.id,)): EXPECTED_GROUPS, (n.ext, (n.id,)): EXPECTED_GROUPS,
                           (n.ext, ("orig",)): 0}
        assert report.blocking == []

        before = {name: _count(conn, n, name) for name in (n.table, n.bonus, n.ext)}
        statements = dedupe_statements(table, report.columns, n.id, deps.referencing_fks)
        conn.autocommit = False
        for st in statements:
            conn.execute(st)
        after = {name: _count(conn, n, name) for name in (n.table, n.bonus, n.ext)}
        assert after == {**before, n.table: before[n.table] - EXPECTED_EXTRA}
        assert _dangling(conn, n, n.bonus, n.id) == 0 and _dangling(conn, n, n.ext, "orig") == 0
        again = find_duplicates(conn, table, key, n.tracer, n.id, deps.referencing_fks)
        assert (again.groups, again.rows_to_delete, again.sample) == (0, 0, [])
        # the oldest copy is the one kept
        kept = conn.execute(sql.SQL("SELECT {id} FROM {t} WHERE {tr} = {v}").format(
            id=sql.Identifier(n.id), t=n.ident(n.table), tr=sql.Identifier(n.tracer),
            v=sql.Literal(first.values[2]))).fetchall()
        assert kept == [(first.rows[0][n.id],)]
        conn.rollback()
        conn.autocommit = True
        assert {name: _count(conn, n, name) for name in before} == before
        text = statements[-3].as_string(conn)  # before its check and the work table's drop
        assert text.startswith("DELETE FROM ")


def test_foreign_key_on_other_columns_blocks_the_dedupe(db):
    with db.connect() as conn:
        build_legacy(conn, rows=300)
        conn.execute("ALTER TABLE legacy.payment ADD UNIQUE (tracer, pay_id);"
                     "CREATE TABLE public.other (tr text, pid bigint,"
                     " FOREIGN KEY (tr, pid) REFERENCES legacy.payment (tracer, pay_id))")
        table = load_table(conn, "legacy", "payment")
        deps = dependents(conn, table)
        report = find_duplicates(conn, table, ("pay_ts", "pdm_id"), "tracer", "pay_id",
                                 deps.referencing_fks)
        assert [f.table for f in report.blocking] == ["other"]
        with pytest.raises(MigrateError, match="re-point them by hand"):
            dedupe_statements(table, report.columns, "pay_id", deps.referencing_fks)
        with pytest.raises(MigrateError, match="surrogate"):
            find_duplicates(conn, table, ("pay_ts", "pay_id"), None, "pay_id", [])
