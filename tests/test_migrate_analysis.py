"""The migration's analysis in one statement (analysis.py): the same reports as the duplicates
and collisions analyses run one by one, under plain and hostile names, with a nullable key
column (each analysis then runs on its own) and with infinite timestamps."""

from __future__ import annotations

import pytest

from tui.core.migrate.analysis import analyse
from tui.core.migrate.collisions import find_collisions, rewrite_statement
from tui.core.migrate.duplicates import dedupe_statements, find_duplicates
from tui.core.migrate.preflight import dependents
from tui.core.migrate.source import load_table, partition_column

from .migrate_support import HOSTILE, OVER_60_COUNT, OVER_60_PDM, PLAIN, build_legacy


def _one_by_one(conn, table, pc, key, tiebreak, surrogate, fks):
    return (find_duplicates(conn, table, key, tiebreak, surrogate, fks, sample_groups=3),
            find_collisions(conn, table, pc, key, tiebreak, sample_groups=3))


@pytest.mark.parametrize("names", [PLAIN, HOSTILE], ids=["plain", "hostile"])
def test_one_statement_reports_what_each_analysis_reports(db, names):
    n = names
    with db.connect() as conn:
        build_legacy(conn, n, rows=600)
        table = load_table(conn, n.schema, n.table)
        pc = partition_column(table, n.ts)
        fks = dependents(conn, table).referencing_fks
        key = (n.pdm, n.ts)
        dup, col = analyse(conn, table, pc, key, n.tracer, n.id, fks, sample_groups=3)
        dup1, col1 = _one_by_one(conn, table, pc, key, n.tracer, n.id, fks)
        assert dup == dup1 and col == col1
        assert dup is not None and col is not None
        assert dup.groups > 0 and len(dup.sample) == 3 and all(len(g.rows) >= 2
                                                                 for g in dup.sample)
        assert [r.rows for r in dup.repoint] == [r.rows for r in dup1.repoint] and any(
            r.rows for r in dup.repoint)
        assert col.groups > 0 and [(g.prefix, g.size) for g in col.unfixable] == [
            ((OVER_60_PDM,), OVER_60_COUNT)]
        # no surrogate: no duplicate report; no tie-break: no collision report
        assert analyse(conn, table, pc, key, n.tracer, None, fks)[0] is None
        assert analyse(conn, table, pc, key, None, n.id, fks)[1] is None


def test_nullable_key_column_and_infinite_timestamps(db):
    """A nullable prefix: the duplicates compare only the NOT NULL columns, so each analysis
    runs on its own (same reports). Infinite timestamps: a minute that is infinity holds only
    itself, as before the range was added to the rows' look-up; nothing there is rewritten."""
    db.execute("""
        CREATE TABLE public.ev (id bigserial PRIMARY KEY, dev int, ts timestamptz NOT NULL,
                                tb text NOT NULL);
        CREATE INDEX ON public.ev (dev, ts);
        INSERT INTO public.ev (dev, ts, tb) VALUES
            (1, '2024-01-01 10:00:00+00', 'b'), (1, '2024-01-01 10:00:00+00', 'a'),
            (1, '2024-01-01 10:00:30+00', 'c'), (1, '2024-01-01 10:00:00+00', 'a'),
            (NULL, '2024-01-01 10:00:00+00', 'x'), (NULL, '2024-01-01 10:00:00+00', 'x'),
            (2, '2024-01-01 10:00:59+00', 'z');""")
    with db.connect() as conn:
        table = load_table(conn, "public", "ev")
        pc = partition_column(table, "ts")
        fks = dependents(conn, table).referencing_fks
        key = ("dev", "ts")
        got = analyse(conn, table, pc, key, "tb", "id", fks, sample_groups=5)
        assert got == _one_by_one(conn, table, pc, key, "tb", "id", fks)
        dup, col = got
        assert dup is not None and col is not None
        assert (dup.groups, dup.rows_to_delete) == (2, 2)  # (1, 10:00, a) and (NULL, 10:00, x)
        # (1, 10:00): a, a, b, c ranked 0, 0, 1, 2 (the duplicate shares its rank)
        assert (col.groups, col.rows_rewritten, col.unfixable) == (1, 2, [])
        with conn.transaction(force_rollback=True):
            # (psycopg cannot return infinite timestamps: they are left out of the reports)
            conn.execute("INSERT INTO public.ev (dev, ts, tb) VALUES (2, 'infinity', 'p'),"
                         " (2, 'infinity', 'q'), (2, '-infinity', 'r'), (2, '-infinity', 's')")
            conn.execute(rewrite_statement(table, pc, key, "tb"))
            for st in dedupe_statements(table, (*key, "tb"), "id", fks):
                conn.execute(st)
            assert conn.execute(
                "SELECT dev, ts::text, tb FROM public.ev ORDER BY ts, dev, tb").fetchall() == [
                (2, "-infinity", "r"), (2, "-infinity", "s"),
                (1, "2024-01-01 10:00:00+00", "a"), (None, "2024-01-01 10:00:00+00", "x"),
                (1, "2024-01-01 10:00:01+00", "b"), (1, "2024-01-01 10:00:02+00", "c"),
                (2, "2024-01-01 10:00:59+00", "z"), (2, "infinity", "p"),
                (2, "infinity", "q")]
        # every key column NOT NULL: the one-statement analysis, the same reports
        conn.execute("DELETE FROM public.ev WHERE dev IS NULL")
        conn.execute("ALTER TABLE public.ev ALTER dev SET NOT NULL")
        table = load_table(conn, "public", "ev")
        indexed = analyse(conn, table, pc, key, "tb", "id", fks, sample_groups=5)
        assert indexed == _one_by_one(conn, table, pc, key, "tb", "id", fks)
        # without the index on (dev, ts) the rows are found by hashing instead: the same
        conn.execute("DROP INDEX public.ev_dev_ts_idx")
        assert analyse(conn, table, pc, key, "tb", "id", fks, sample_groups=5) == indexed
