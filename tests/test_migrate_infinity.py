"""A partition column holding 'infinity' / '-infinity' (sentinels for "never expires"): the
migration analyses, previews, copies and verifies such a table like any other. The infinities
(and NULLs) go to the DEFAULT partition, samples print them as PostgreSQL does, no row is lost,
and status, abort and resume work. Integer columns (no infinity) run the same way."""

from __future__ import annotations

import json

import pytest
from psycopg import sql

from tui.cli import main
from tui.core.infinity import INFINITY, NEG_INFINITY
from tui.core.migrate.migration import Choices, prepare
from tui.core.migrate.preflight import preflight
from tui.core.migrate.report import stage_report

from .test_migrate_stages import _run_to, catalog_dump

FINITE = {"timestamptz": "'2024-01-01'::timestamptz + i * interval '9 days 1 hour'",
          "timestamp": "'2024-01-01'::timestamp + i * interval '9 days 1 hour'",
          "date": "'2024-01-01'::date + i * 9",
          "int": "i * 10"}
# acct 1 holds two copies of one row (a duplicate by error on an infinite key)
INFINITE = {"timestamptz": ("infinity", "-infinity"), "timestamp": ("infinity", "-infinity"),
            "date": ("infinity", "-infinity"), "int": ("100000", "-5")}
ROWS = "SELECT id, acct, v::text, tracer FROM inf.sub ORDER BY id"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _setup(db, kind: str) -> None:
    hi, lo = INFINITE[kind]
    db.execute(sql.SQL("""
        CREATE SCHEMA inf;
        CREATE TABLE inf.sub (id bigserial PRIMARY KEY, acct int NOT NULL,
                              v {type} NOT NULL, tracer text NOT NULL);
        INSERT INTO inf.sub (acct, v, tracer)
        SELECT i % 5, {finite}, 'T' || i FROM generate_series(1, 50) i;
        INSERT INTO inf.sub (acct, v, tracer) VALUES
            (1, {hi}, 'I1'), (2, {hi}, 'I2'), (3, {lo}, 'N1'), (1, {hi}, 'I1');
        CREATE INDEX ON inf.sub (v);
        ANALYZE inf.sub""").format(type=sql.SQL("integer" if kind == "int" else kind),
                                   finite=sql.SQL(FINITE[kind]), hi=sql.Literal(hi),
                                   lo=sql.Literal(lo)))


@pytest.mark.parametrize("kind", ["timestamptz", "timestamp", "date", "int"])
def test_infinite_partition_values_end_to_end(db, capsys, kind):
    _setup(db, kind)
    d = ("-d", db.dsn)
    interval = ("--target-rows", "20") if kind == "int" else ("--interval", "year")
    args = ("inf.sub", "--by", "v", "--key", "acct,v", "--tiebreak", "tracer", *interval)
    before = db.query(ROWS)
    dump = catalog_dump(db, "inf", "sub")

    status, out, err = run_cli(capsys, "migrate", *args, "--dry-run", "--json", *d)
    assert status == 0, err
    doc = json.loads(out)
    layout = doc["spec"]["partitions"]
    default = next(p for p in layout if p["default"])
    infinite = kind != "int"
    if infinite:
        # the four infinite rows are in no period: the DEFAULT partition takes them
        assert default["rows"] == 4
        assert all("infinity" not in str(p["from"]) + str(p["to"]) for p in layout)
    status, out, err = run_cli(capsys, "migrate", *args, "--sql", *d)
    assert status == 0 and "INSERT INTO" in out, err
    assert catalog_dump(db, "inf", "sub") == dump

    # stopped after the copy, then aborted: the original exactly as before
    with db.connect() as conn:
        spec = prepare(conn, Choices("inf", "sub", "v", ("acct", "v"), "tracer",
                                     interval=None if kind == "int" else "year",
                                     target_rows=20 if kind == "int" else None)).spec
        # the console's preview of the duplicates: the sample names the infinite key
        lines = stage_report(conn, spec, "duplicates").lines
    if infinite:
        assert "sample: 1, infinity, I1: id 51, 54" in lines, lines
    assert _run_to(db, spec, "copy").ok
    status, out, err = run_cli(capsys, "migrate", "inf.sub", "status", *d)
    assert status == 0 and "last stage done: copy" in out, err
    status, _out, err = run_cli(capsys, "migrate", "inf.sub", "--abort", "--apply", "--yes", *d)
    assert status == 0, err
    assert catalog_dump(db, "inf", "sub") == dump
    after_dedupe = [r for r in before if r[0] != before[-1][0]]  # the later copy goes
    assert db.query(ROWS) in (before, after_dedupe)

    # stopped after Build, resumed unattended to the end
    with db.connect() as conn:
        spec = prepare(conn, Choices("inf", "sub", "v", ("acct", "v"), "tracer",
                                     interval=None if kind == "int" else "year",
                                     target_rows=20 if kind == "int" else None)).spec
    assert _run_to(db, spec, "build").ok
    status, _out, err = run_cli(capsys, "migrate", "inf.sub", "--resume", "--apply", "--yes", *d)
    assert status == 0, err
    assert db.query(ROWS) == after_dedupe
    assert db.query("SELECT relkind FROM pg_class WHERE oid = 'inf.sub'::regclass") == [("p",)]
    if infinite:
        held = db.query("SELECT v::text, count(*) FROM inf.sub_default GROUP BY 1 ORDER BY 1")
        assert held == [("-infinity", 1), ("infinity", 2)]
    status, out, err = run_cli(capsys, "migrate", "inf.sub", "status", "--json", *d)
    doc = json.loads(out)
    assert (doc["last_stage"], doc["problems"]) == ("finish", []), out


def test_infinite_values_load_and_dump(db):
    db.execute("CREATE TABLE public.t (d date, ts timestamp, tz timestamptz);"
               " INSERT INTO public.t VALUES ('infinity', '-infinity', 'infinity'),"
               " ('2024-02-29', '2024-02-29 10:00', '2024-02-29 10:00+00')")
    with db.connect() as conn:
        rows = conn.execute("SELECT d, ts, tz, ARRAY[tz, '-infinity'] FROM public.t"
                            " ORDER BY d").fetchall()
        assert rows[1][:3] == (INFINITY, NEG_INFINITY, INFINITY)
        assert rows[1][3] == [INFINITY, NEG_INFINITY] and str(rows[1][3][1]) == "-infinity"
        assert sorted([rows[1][0], rows[0][0], NEG_INFINITY]) == [
            NEG_INFINITY, rows[0][0], INFINITY]
        # passed back as the same values, text and binary
        assert conn.execute("SELECT count(*) FROM public.t WHERE d = %s AND ts = %s",
                            (rows[1][0], rows[1][1])).fetchone() == (1,)
        with conn.cursor(binary=True) as cur:
            assert cur.execute("SELECT d, ts, tz FROM public.t ORDER BY d").fetchall()[1] == (
                INFINITY, NEG_INFINITY, INFINITY)
        assert sql.Literal(INFINITY).as_string(conn) == "'infinity'"


def test_collisions_at_an_infinite_timestamp_stop_with_nothing_changed(db18, capsys):
    # two tracers of one account at 'infinity': renumbering the seconds cannot separate them
    _setup(db18, "timestamptz")
    db18.execute("INSERT INTO inf.sub (acct, v, tracer) VALUES (2, 'infinity', 'I3')")
    before = db18.query(ROWS)
    dump = catalog_dump(db18, "inf", "sub")
    status, _out, err = run_cli(capsys, "migrate", "inf.sub", "--by", "v", "--key", "acct,v",
                                "--tiebreak", "tracer", "--interval", "year", "--apply",
                                "--yes", "-d", db18.dsn)
    assert status == 1, err
    assert ("pgparts:   acct = 2, minute infinity: 2 rows share an infinite timestamp (seconds"
            " cannot tell them apart)") in err, err
    assert db18.query(ROWS) == before and catalog_dump(db18, "inf", "sub") == dump


def test_drain_default_leaves_the_infinities_in_the_default(db18, capsys):
    # a DEFAULT holding a missing year and the sentinels, next to a range up to 'infinity'
    db18.execute("""
        CREATE TABLE public.sub (v timestamptz NOT NULL, n int NOT NULL, PRIMARY KEY (v, n))
            PARTITION BY RANGE (v);
        CREATE TABLE public.sub_2024 PARTITION OF public.sub
            FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE public.sub_2025 PARTITION OF public.sub
            FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE public.sub_later PARTITION OF public.sub
            FOR VALUES FROM ('2030-01-01') TO ('infinity');
        CREATE TABLE public.sub_default PARTITION OF public.sub DEFAULT;
        INSERT INTO public.sub SELECT '2024-01-01'::timestamptz + g * interval '20 days', g
            FROM generate_series(0, 30) g;
        INSERT INTO public.sub VALUES ('2023-05-01', 100), ('infinity', 101),
            ('-infinity', 102), ('infinity', 103)""")
    before = db18.query("SELECT v::text, n FROM public.sub ORDER BY n")
    status, out, err = run_cli(capsys, "drain-default", "public.sub", "--apply", "--yes",
                               "-d", db18.dsn)
    assert status == 0, err
    assert db18.query("SELECT v::text, n FROM public.sub ORDER BY n") == before
    assert db18.query("SELECT v::text FROM public.sub_default ORDER BY n") == [
        ("infinity",), ("-infinity",), ("infinity",)]
    assert db18.query("SELECT count(*) FROM public.sub_2023") == [(1,)]
    # the checks read the same table (bounds up to 'infinity', sentinels in the DEFAULT)
    status, out, err = run_cli(capsys, "check", "public.sub", "--json", "-d", db18.dsn)
    assert status in (0, 1) and isinstance(json.loads(out), list), err
    for argv in (["fill-gaps", "public.sub"], ["create-ahead", "public.sub"],
                 ["split", "public.sub", "public.sub_later", "--at", "2031-01-01"]):
        status, out, err = run_cli(capsys, *argv, "--dry-run", "-d", db18.dsn)
        assert status == 0, (argv, err)


@pytest.mark.parametrize("kind", ["timestamptz", "date"])
def test_rows_per_period_counts_the_infinities_apart(db18, kind):
    _setup(db18, kind)
    with db18.connect() as conn:
        pf = preflight(conn, "inf", "sub", "v", "year", exact=True)
        assert (pf.rows.infinite_rows, pf.rows.neg_infinite_rows, pf.rows.null_rows) == (3, 1, 0)
        assert sum(p.rows for p in pf.rows.periods) == 50 and pf.rows.total_rows == 54
        assert "about 3 'infinity' and 1 '-infinity' in 'v'" in " ".join(pf.warnings)
        # from the statistics: -infinity is the histogram's first bound, infinity an MCV
        est = preflight(conn, "inf", "sub", "v", "year").rows
        assert [p.start.year for p in est.periods] == [2024, 2025]
        assert est.infinite_rows == 3 and sum(p.rows for p in est.periods) in range(48, 53)


LAYOUT = """
column = "v"

[[partitions]]
name = "sub_old"
from = "-infinity"
to = "2025-01-01 00:00:00+00:00"

[[partitions]]
name = "sub_new"
from = "2025-01-01 00:00:00+00:00"
to = "infinity"

[[partitions]]
name = "sub_default"
default = true
"""


def test_a_layout_file_bounded_by_the_infinities(db18, capsys, tmp_path):
    # FROM ('-infinity') holds '-infinity'; TO ('infinity') does not hold 'infinity'
    _setup(db18, "timestamptz")
    path = tmp_path / "layout.toml"
    path.write_text(LAYOUT)
    args = ("migrate", "inf.sub", "--by", "v", "--key", "acct,v", "--tiebreak", "tracer",
            "--layout", str(path), "-d", db18.dsn)
    status, out, err = run_cli(capsys, *args, "--dry-run", "--json")
    assert status == 0, err
    rows = {p["name"]: p["rows"] for p in json.loads(out)["spec"]["partitions"]}
    assert rows == {"sub_old": 41, "sub_new": 10, "sub_default": 3}
    status, out, err = run_cli(capsys, *args, "--apply", "--yes")
    assert status == 0, err
    assert db18.query("SELECT tableoid::regclass::text, count(*) FROM inf.sub GROUP BY 1"
                      " ORDER BY 1") == [("inf.sub_default", 2), ("inf.sub_new", 10),
                                         ("inf.sub_old", 41)]
