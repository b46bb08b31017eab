"""Collisions by design: the report, and the rewrite run in a transaction rolled back."""

from __future__ import annotations

import pytest
from psycopg import sql

from tui.core.migrate import MigrateError
from tui.core.migrate.collisions import find_collisions, rewrite_statement
from tui.core.migrate.duplicates import dedupe_statements
from tui.core.migrate.preflight import dependents
from tui.core.migrate.source import load_table, partition_column

from .migrate_support import (
    HOSTILE,
    OVER_60_COUNT,
    OVER_60_MINUTE,
    OVER_60_PDM,
    PLAIN,
    build_legacy,
)

ROWS = 1500
# the fixture's model-5 machines (pdm % 5 == 2) add 1 + i % 3 rows at base row i's timestamp
# when i % 7 == 0; base row i belongs to pdm 1 + (i * 7919) % 25
_GROUPS = [i for i in range(ROWS) if (1 + (i * 7919) % 25) % 5 == 2 and i % 7 == 0]
EXPECTED_GROUPS = len(_GROUPS)
EXPECTED_REWRITTEN = sum(1 + i % 3 for i in _GROUPS)  # the base row keeps :00


def _colliding_keys(conn, n) -> list[tuple]:
    return conn.execute(sql.SQL(
        "SELECT {pdm}, {ts} FROM {t} GROUP BY 1, 2 HAVING count(*) > 1").format(
        pdm=sql.Identifier(n.pdm), ts=sql.Identifier(n.ts), t=n.ident(n.table))).fetchall()


@pytest.mark.parametrize("names", [PLAIN, HOSTILE], ids=["plain", "hostile"])
def test_report_and_rewrite_rolled_back(db, names):
    n = names
    with db.connect() as conn:
        build_legacy(conn, n, rows=ROWS)
        table = load_table(conn, n.schema, n.table)
        pc = partition_column(table, n.ts)
        key = (n.ts, n.pdm)
        report = find_collisions(conn, table, pc, key, n.tracer, sample_groups=2)
        assert report.groups == EXPECTED_GROUPS
        assert report.rows_rewritten == EXPECTED_REWRITTEN
        assert [(g.prefix, g.minute, g.size) for g in report.unfixable] == [
            ((OVER_60_PDM,), OVER_60_MINUTE, OVER_60_COUNT)]
        group, rewrites = report.sample[0]
        assert len(report.sample) == 2 and group.size == len(rewrites) >= 2
        assert [r.new.second for r in rewrites] == list(range(group.size))
        assert all(r.old == group.minute for r in rewrites)
        assert [r.tiebreak for r in rewrites] == sorted(r.tiebreak for r in rewrites)

        deps = dependents(conn, table)
        before = conn.execute(sql.SQL("SELECT count(*), sum({a}) FROM {t}").format(
            a=sql.Identifier(n.amount), t=table.ident)).fetchone()
        conn.autocommit = False
        cur = conn.execute(rewrite_statement(table, pc, key, n.tracer))
        assert cur.rowcount == EXPECTED_REWRITTEN
        for st in dedupe_statements(table, (*key, n.tracer), n.id, deps.referencing_fks):
            conn.execute(st)
        # unique on the new key now, except the group that cannot be fixed, left as it was
        assert _colliding_keys(conn, n) == [(OVER_60_PDM, OVER_60_MINUTE)]
        assert conn.execute(sql.SQL("SELECT count(*) FROM {t} WHERE {ts} = {m}").format(
            t=table.ident, ts=sql.Identifier(n.ts), m=sql.Literal(OVER_60_MINUTE))).fetchone()[0] \
            >= OVER_60_COUNT
        again = find_collisions(conn, table, pc, key, n.tracer)
        assert (again.groups, again.rows_rewritten) == (0, 0)
        assert len(again.unfixable) == 1
        conn.rollback()
        conn.autocommit = True
        assert conn.execute(sql.SQL("SELECT count(*), sum({a}) FROM {t}").format(
            a=sql.Identifier(n.amount), t=table.ident)).fetchone() == before
        assert len(_colliding_keys(conn, n)) > EXPECTED_GROUPS


def test_plain_timestamp_key_without_prefix_and_refusals(db):
    db.execute("""
        CREATE TABLE public.ev (ts timestamp NOT NULL, tb text NOT NULL, d date NOT NULL);
        INSERT INTO public.ev VALUES ('2024-01-01 10:00', 'b', '2024-01-01'),
            ('2024-01-01 10:00', 'a', '2024-01-01'), ('2024-01-01 10:00:30', 'c', '2024-01-01'),
            ('2024-01-01 11:00', 'z', '2024-01-01');""")
    with db.connect() as conn:
        table = load_table(conn, "public", "ev")
        pc = partition_column(table, "ts")
        report = find_collisions(conn, table, pc, ("ts",), "tb")
        assert (report.groups, report.rows_rewritten, report.unfixable) == (1, 2, [])
        assert [(r.tiebreak, r.new.second) for r in report.sample[0][1]] == [
            ("a", 0), ("b", 1), ("c", 2)]
        with conn.transaction(force_rollback=True):
            conn.execute(rewrite_statement(table, pc, ("ts",), "tb"))
            assert conn.execute("SELECT tb, ts::text FROM public.ev ORDER BY tb").fetchall() == [
                ("a", "2024-01-01 10:00:00"), ("b", "2024-01-01 10:00:01"),
                ("c", "2024-01-01 10:00:02"), ("z", "2024-01-01 11:00:00")]
        with pytest.raises(MigrateError, match="timestamp partition column"):
            find_collisions(conn, table, partition_column(table, "d"), ("d",), "tb")
        with pytest.raises(MigrateError, match="must contain the partition column"):
            find_collisions(conn, table, pc, ("tb",), "d")
