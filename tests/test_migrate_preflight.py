"""Preflight of the guided migration against real servers: rows per period, dependents from the
catalog, disk space, sessions using the table."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from psycopg import sql

from tui.core.migrate import MigrateError
from tui.core.migrate.preflight import _by_bounds, preflight, rows_per_period, wait_for_writers
from tui.core.migrate.source import load_table, partition_column

from .migrate_support import HOSTILE, PLAIN, Names, build_legacy


def _exact_years(db, n: Names) -> dict[int, int]:
    rows = db.query(sql.SQL(
        "SELECT extract(year FROM {ts} AT TIME ZONE 'UTC')::int, count(*) FROM {t} GROUP BY 1"
    ).format(ts=sql.Identifier(n.ts), t=n.ident(n.table)))
    return dict(rows)


@pytest.mark.parametrize("names", [PLAIN, HOSTILE], ids=["plain", "hostile"])
def test_rows_per_period_exact_and_estimated(db, names):
    with db.connect() as conn:
        build_legacy(conn, names)
        table = load_table(conn, names.schema, names.table)
        pc = partition_column(table, names.ts)
        exact = rows_per_period(conn, table, pc, "year", exact=True)
        expected = _exact_years(db, names)
        assert exact.exact and exact.null_rows == 0
        assert {p.start.year: p.rows for p in exact.periods} == expected
        assert exact.periods[0].start == datetime(2019, 1, 1, tzinfo=UTC)
        assert exact.periods[0].end == datetime(2020, 1, 1, tzinfo=UTC)
        estimated = rows_per_period(conn, table, pc, "year")
        assert not estimated.exact
        assert [p.start for p in estimated.periods] == [p.start for p in exact.periods]
        for e, x in zip(estimated.periods, exact.periods, strict=True):
            assert abs(e.rows - x.rows) <= 0.1 * x.rows, (e, x)
            assert e.bytes > 0
        # months: contiguous, and summing up to the same total
        months = rows_per_period(conn, table, pc, "month", exact=True)
        assert len(months.periods) == 24
        assert all(a.end == b.start for a, b in zip(months.periods, months.periods[1:],
                                                       strict=False))
        assert sum(p.rows for p in months.periods) == sum(expected.values())
        weeks = rows_per_period(conn, table, pc, "week", exact=True)
        assert all(p.start.weekday() == 0 for p in weeks.periods)  # date_trunc's weeks: Monday


def test_rows_without_statistics_and_other_column_types(db):
    db.execute("""
        CREATE TABLE public.t (id int NOT NULL, d date, ts timestamp NOT NULL, txt text);
        INSERT INTO public.t SELECT i, DATE '2024-01-01' + i, TIMESTAMP '2024-01-01' + i * interval
        '1 hour', 'x' FROM generate_series(0, 999) i;
        INSERT INTO public.t VALUES (-5, NULL, TIMESTAMP '2023-12-31 23:59:59', 'y');""")
    with db.connect() as conn:
        table = load_table(conn, "public", "t")
        nostats = rows_per_period(conn, table, partition_column(table, "ts"), "month")
        assert nostats.periods == [] and "ANALYZE" in nostats.note
        conn.execute("CREATE TABLE public.empty (ts date NOT NULL); ANALYZE public.empty")
        empty = load_table(conn, "public", "empty")
        assert "empty" in rows_per_period(conn, empty, partition_column(empty, "ts")).note
        ints = rows_per_period(conn, table, partition_column(table, "id"), exact=True, step=100)
        assert ints.period == "range" and ints.step == 100
        assert [(p.start, p.end, p.rows) for p in ints.periods[:2]] == [(-100, 0, 1), (0, 100, 100)]
        assert sum(p.rows for p in ints.periods) == 1001
        dates = rows_per_period(conn, table, partition_column(table, "d"), "year", exact=True)
        assert dates.null_rows == 1
        assert [(p.start.year, p.rows) for p in dates.periods] == [(2024, 366), (2025, 365),
                                                                   (2026, 269)]
        conn.execute("ANALYZE public.t")
        est = rows_per_period(conn, table, partition_column(table, "id"))
        assert est.step is not None and sum(p.rows for p in est.periods) == pytest.approx(1001, 5)
        plain_ts = rows_per_period(conn, table, partition_column(table, "ts"), "day")
        assert plain_ts.periods[0].start == datetime(2023, 12, 31, tzinfo=UTC)
        with pytest.raises(MigrateError, match="timestamp, date or integer"):
            partition_column(table, "txt")
        with pytest.raises(MigrateError, match="no table"):
            load_table(conn, "public", "nope")
        conn.execute("CREATE TABLE public.p (a int) PARTITION BY RANGE (a)")
        with pytest.raises(MigrateError, match="already partitioned"):
            load_table(conn, "public", "p")


@pytest.mark.parametrize("names", [PLAIN, HOSTILE], ids=["plain", "hostile"])
def test_dependents_from_the_catalog(db, names):
    n = names
    with db.connect() as conn:
        build_legacy(conn, n)
        t = n.ident(n.table)
        conn.execute(sql.SQL("""
            CREATE ROLE {r};
            GRANT SELECT, INSERT ON {t} TO {r};
            GRANT UPDATE ({tr}) ON {t} TO {r};
            GRANT SELECT ON {t} TO PUBLIC;
            COMMENT ON TABLE {t} IS 'payments; the old ones';
            COMMENT ON COLUMN {t}.{tr} IS 'from the machine';
            CREATE MATERIALIZED VIEW {mv} AS SELECT * FROM {view};
            CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
            CREATE TRIGGER {trg} BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {fn}();
            CREATE RULE {rule} AS ON DELETE TO {t} WHERE false DO INSTEAD NOTHING;
            CREATE PUBLICATION {pub} FOR TABLE {t};
            ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
            CREATE POLICY {pol} ON {t} FOR SELECT TO {r} USING ({pdm} > 0);
            CREATE STATISTICS {st} ON {pdm}, {tr} FROM {t};
            ALTER TABLE {t} ADD CONSTRAINT {chk} CHECK ({amount} >= 0);
            ALTER TABLE {t} ADD COLUMN {gid} int GENERATED ALWAYS AS IDENTITY;
            """).format(
            r=sql.Identifier(f"role {n.table}"), t=t, tr=sql.Identifier(n.tracer),
            pdm=sql.Identifier(n.pdm), amount=sql.Identifier(n.amount),
            view=n.ident(n.view), mv=n.ident(n.view + " mat"), fn=n.ident("trg fn"),
            trg=sql.Identifier("Trig;ger"), rule=sql.Identifier("no delete"),
            pub=sql.Identifier(f"pub {n.table}"), pol=sql.Identifier("Pol \"1\""),
            st=n.ident("st ω"), chk=sql.Identifier("amount ≥ 0"), gid=sql.Identifier("G id")))
        try:
            pf = preflight(conn, n.schema, n.table, n.ts)
        finally:
            conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(f"pub {n.table}")))
        d = pf.dependents
        assert pf.table.name == n.table and pf.column.kind == "timestamptz"
        assert sorted(i.columns for i in d.indexes) == sorted([(n.id,), (n.ts,), (n.pdm, n.ts)])
        pk = next(i for i in d.indexes if i.primary)
        assert pk.constraint is not None and pk.unique and "UNIQUE" in pk.definition
        assert {(c.name, c.type) for c in d.constraints} >= {(pk.constraint, "p"),
                                                             ("amount ≥ 0", "c")}
        assert [(f.ref_table, f.columns, f.ref_columns, f.on_delete) for f in d.own_fks] == [
            (n.pdm_table, (n.pdm,), ("id",), "RESTRICT")]
        refs = {(f.table, f.columns, f.on_delete) for f in d.referencing_fks}
        assert refs == {(n.bonus, (n.id,), "CASCADE"), (n.ext, (n.id,), "NO ACTION"),
                        (n.ext, ("orig",), "SET NULL")}
        assert all(f.ref_columns == (n.id,) and f.validated for f in d.referencing_fks)
        assert [(v.name, v.materialized, v.depth) for v in d.views] == [
            (n.view, False, 1), (n.view + " mat", True, 2)]
        assert [t_[0] for t_ in d.triggers] == ["Trig;ger"]
        assert [r[0] for r in d.rules] == ["no delete"]
        assert {(s[2], s[3]) for s in d.sequences} == {(n.id, "serial"), ("G id", "identity")}
        assert d.identity_columns == [("G id", "ALWAYS")]
        role = f"role {n.table}"
        assert {(g.grantee, g.privilege, g.column) for g in d.grants if g.grantee != d.owner} == {
            (role, "SELECT", None), (role, "INSERT", None), ("PUBLIC", "SELECT", None),
            (role, "UPDATE", n.tracer)}
        assert ("table", None, "payments; the old ones") in d.comments
        assert ("column", n.tracer, "from the machine") in d.comments
        assert d.publications == [(f"pub {n.table}", "table", False)]
        assert d.row_security and not d.force_row_security
        assert [(p.name, p.command, p.roles) for p in d.policies] == [
            ('Pol "1"', "SELECT", (role,))]
        assert "> 0" in (d.policies[0].using or "")
        assert [s[0] for s in d.statistics] == ["st ω"]
        assert d.inheritance == [] and d.owner and d.tablespace == "pg_default"
        assert d.replica_identity == "DEFAULT"
        assert pf.disk.needed_bytes >= pf.disk.table_bytes + pf.disk.index_bytes > 0
        assert pf.disk.free_bytes is None and "unknown" in pf.disk.note
        assert pf.sessions == [] and pf.warnings == []


def test_sessions_using_the_table(db):
    with db.connect() as conn:
        build_legacy(conn)
        with db.connect(purpose="reader") as reader, db.connect(purpose="writer") as writer:
            reader.autocommit = writer.autocommit = False
            reader.execute("SELECT count(*) FROM legacy.payment")
            writer.execute("UPDATE legacy.payment SET amount = amount WHERE pay_id = 1")
            pf = preflight(conn, "legacy", "payment", "pay_ts")
            by_app = {s.application_name: s for s in pf.sessions}
            assert set(by_app) == {"pgparts reader", "pgparts writer"}
            assert by_app["pgparts writer"].writes and not by_app["pgparts reader"].writes
            assert by_app["pgparts reader"].modes == ("AccessShareLock",)
            assert by_app["pgparts writer"].state == "idle in transaction"
            assert by_app["pgparts writer"].pid == writer.info.backend_pid
            assert any("writing" in w and str(writer.info.backend_pid) in w for w in pf.warnings)
            reader.rollback()
            assert [w.pid for w in wait_for_writers(conn, pf.table, 0.3, poll=0.1)] == [
                writer.info.backend_pid]
            timer = threading.Timer(0.3, writer.rollback)
            timer.start()
            try:
                assert wait_for_writers(conn, pf.table, 20, poll=0.1) == []
            finally:
                timer.join()
        # our own backend, reading the table in an open transaction, is not listed
        with conn.transaction():
            conn.execute("SELECT count(*) FROM legacy.payment")
            assert preflight(conn, "legacy", "payment", "pay_ts").sessions == []


def test_publication_for_all_tables_and_inheritance(db):
    db.execute("CREATE TABLE public.parent (ts date NOT NULL);"
               "CREATE TABLE public.child () INHERITS (public.parent);"
               "CREATE PUBLICATION everything FOR ALL TABLES")
    try:
        with db.connect() as conn:
            pf = preflight(conn, "public", "parent", "ts")
            assert pf.dependents.publications == [("everything", "all tables", False)]
            assert pf.dependents.inheritance == [("child", "public", "child")]
            assert any("inherit" in w for w in pf.warnings)
    finally:
        db.execute("DROP PUBLICATION everything")


def test_exact_counts_match_date_trunc_for_every_period_and_type(db):
    """The exact counts compare each value with the periods' bounds: the same counts as
    date_trunc in UTC (timestamptz), of the plain timestamp, and of the date, on the bounds
    themselves, a microsecond before them, a Monday and a Sunday, with NULLs."""
    db.execute("""
        CREATE TABLE public.pv (tz timestamptz, ts timestamp, d date);
        INSERT INTO public.pv
        SELECT v, v AT TIME ZONE 'UTC', (v AT TIME ZONE 'UTC')::date
        FROM unnest(ARRAY['2023-12-31 23:59:59.999999+00', '2024-01-01 00:00:00+00',
                          '2024-03-31 23:00:00-02', '2024-04-01 00:00:00+00',
                          '2024-04-07 12:00:00+00', '2024-04-08 00:00:00+00',
                          '2024-04-08 00:00:00.000001+00', '2026-06-15 08:30:00+05']
                         ::timestamptz[]) AS v;
        INSERT INTO public.pv VALUES (NULL, NULL, NULL);""")
    with db.connect() as conn:
        table = load_table(conn, "public", "pv")
        for col, trunc in (("tz", "date_trunc(%s, {c}, 'UTC')"), ("ts", "date_trunc(%s, {c})"),
                           ("d", "date_trunc(%s, {c}::timestamp)")):
            pc = partition_column(table, col)
            for period in ("year", "quarter", "month", "week", "day"):
                # counted by the bounds, not by the date_trunc fallback
                assert _by_bounds(conn, table, pc, period) is not None
                got = rows_per_period(conn, table, pc, period, exact=True)
                want = conn.execute(sql.SQL(
                    "SELECT " + trunc + " AS p, count(*) FROM public.pv WHERE {c} IS NOT NULL"
                    " GROUP BY 1").format(c=sql.Identifier(col)), (period,)).fetchall()
                expected = {(p if p.tzinfo else p.replace(tzinfo=UTC)).astimezone(UTC): n
                            for p, n in want}
                assert {p.start: p.rows for p in got.periods if p.rows} == expected, (
                    col, period)
                assert (got.null_rows, got.total_rows) == (1, 9), (col, period)
