"""Partition layouts: proposals by interval and by target rows, the layout file, validation."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from psycopg import sql

from tui.core.migrate import MigrateError
from tui.core.migrate.layout import (
    Partition,
    propose_layout,
    read_layout,
    validate_layout,
    write_layout,
)
from tui.core.migrate.preflight import rows_per_period
from tui.core.migrate.source import load_table, partition_column

NOW = datetime(2026, 11, 21, tzinfo=UTC)
# scenario 2's shape: little old data, then busier years
PER_YEAR = {**{y: 2 for y in range(2000, 2020)}, 2020: 70, 2021: 25, 2022: 90, 2023: 100,
            2024: 80, 2025: 95, 2026: 60}
SCHEMA, TABLE, COLUMN = 'Ctl "x"', 'Pay;"ment" Ω', 'Pay "TS"'


def _build(db) -> None:
    db.execute(sql.SQL("CREATE SCHEMA {s}; CREATE TABLE {t} (id bigserial PRIMARY KEY,"
                       " {c} timestamptz NOT NULL)").format(
        s=sql.Identifier(SCHEMA), t=sql.Identifier(SCHEMA, TABLE), c=sql.Identifier(COLUMN)))
    for year, n in PER_YEAR.items():
        # spread over the first ten months, so that the current year holds all its rows
        db.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {lo}::timestamptz"
                           " + (i * interval '300 days') / {n} FROM generate_series(0, {n} - 1) i"
                           ).format(t=sql.Identifier(SCHEMA, TABLE), c=sql.Identifier(COLUMN),
                                    lo=sql.Literal(datetime(year, 1, 1, tzinfo=UTC)),
                                    n=sql.Literal(n)))


def _names(parts: list[Partition]) -> list[str]:
    return [p.name.removeprefix(TABLE + "_") for p in parts]


def test_target_rows_merges_quiet_years(db, tmp_path):
    _build(db)
    with db.connect() as conn:
        table = load_table(conn, SCHEMA, TABLE)
        pc = partition_column(table, COLUMN)
        months = rows_per_period(conn, table, pc, "month", exact=True)
        parts = propose_layout(months, TABLE, target_rows=100, now=NOW)
        assert _names(parts) == ["2000_2019", "2020_2021", "2022", "2023", "2024", "2025",
                                 "2026", "2027", "default"]
        assert [p.rows for p in parts] == [40, 95, 90, 100, 80, 95, 60, 0, 0]
        assert parts[0].lo == datetime(2000, 1, 1, tzinfo=UTC)
        assert parts[0].hi == datetime(2020, 1, 1, tzinfo=UTC) and parts[-1].default
        # a smaller target: no year fits, so quarters, and the quiet ones merged
        small = propose_layout(months, TABLE, target_rows=40, now=NOW)
        assert small[0].name == f"{TABLE}_2000_q1_2019_q4" and small[0].rows == 40
        assert all(p.rows <= 40 for p in small if not p.default)
        assert _names(small)[-3:] == ["2026_q4", "2027_q1", "default"]
        # the same from the planner's statistics
        conn.execute(sql.SQL("ANALYZE {}").format(table.ident))
        estimated = rows_per_period(conn, table, pc, "month")
        est = propose_layout(estimated, TABLE, target_rows=120, now=NOW)
        assert _names(est)[-3:] == ["2026", "2027", "default"]
        assert sum(p.rows or 0 for p in est) == pytest.approx(sum(PER_YEAR.values()), abs=5)

        # the layout file, both formats, read back and validated by the server
        for suffix in ("toml", "json"):
            path = tmp_path / f"layout.{suffix}"
            write_layout(path, parts, pc)
            column, back = read_layout(path)
            assert column == COLUMN
            assert [(p.name, p.rows, p.default) for p in back] == [
                (p.name, p.rows, p.default) for p in parts]
            check = validate_layout(conn, back, pc, now=NOW, counts=months)
            assert check.ok and check.warnings == [], check.problems
            assert [(p.name, p.lo, p.hi, p.rows) for p in check.partitions] == [
                (p.name, p.lo, p.hi, p.rows) for p in parts]
        assert json.loads((tmp_path / "layout.json").read_text())["partitions"][0]["from"] == \
            "2000-01-01 00:00:00+00:00"
        # an edited layout: the old years left out fall into the default partition
        edited = validate_layout(conn, parts[1:], pc, now=NOW, counts=months)
        assert edited.ok and edited.partitions[-1].rows == 40
        assert edited.warnings == ["about 40 row(s) fall outside every range: they would go to "
                                   "the default partition"]
        no_default = validate_layout(conn, parts[1:-1], pc, now=NOW, counts=months)
        assert [p for p in no_default.problems if "the copy would fail" in p]


def test_intervals_and_refusals(db):
    _build(db)
    with db.connect() as conn:
        table = load_table(conn, SCHEMA, TABLE)
        pc = partition_column(table, COLUMN)
        months = rows_per_period(conn, table, pc, "month", exact=True)
        quarters = propose_layout(months, TABLE, interval="quarter", now=NOW, future=2)
        assert _names(quarters)[:2] == ["2000_q1", "2000_q2"]
        assert _names(quarters)[-4:] == ["2026_q4", "2027_q1", "2027_q2", "default"]
        assert sum(p.rows or 0 for p in quarters) == sum(PER_YEAR.values())
        yearly = propose_layout(months, TABLE, interval="year", now=NOW)
        assert len(yearly) == 2027 - 2000 + 1 + 1
        with pytest.raises(MigrateError, match="count them per week"):
            propose_layout(months, TABLE, interval="week", now=NOW)
        with pytest.raises(MigrateError, match="either an interval or a target"):
            propose_layout(months, TABLE, now=NOW)
        with pytest.raises(MigrateError, match="shorter prefix"):
            propose_layout(months, "x" * 60, interval="year", now=NOW)
        days = rows_per_period(conn, table, pc, "day", exact=True)
        weekly = propose_layout(days, TABLE, interval="week", now=NOW)
        assert weekly[-2].name == f"{TABLE}_2026_11_23"  # next Monday's week: the future one
        assert all(p.lo.weekday() == 0 for p in weekly if not p.default)


def test_integer_ranges(db):
    db.execute("CREATE TABLE public.t (n int NOT NULL);"
               "INSERT INTO public.t SELECT i FROM generate_series(1, 5) i;"
               "INSERT INTO public.t SELECT 2000 + i FROM generate_series(1, 300) i;")
    with db.connect() as conn:
        table = load_table(conn, "public", "t")
        pc = partition_column(table, "n")
        counts = rows_per_period(conn, table, pc, exact=True, step=1000)
        parts = propose_layout(counts, "t", target_rows=200)
        assert [(p.name, p.lo, p.hi, p.rows) for p in parts] == [
            ("t_0_1000", 0, 2000, 5), ("t_2000", 2000, 3000, 300), ("t_3000", 3000, 4000, 0),
            ("t_default", None, None, 0)]
        assert validate_layout(conn, parts, pc).ok
        with pytest.raises(MigrateError, match="ranges"):
            propose_layout(counts, "t", interval="year")


def test_validation_problems(db, tmp_path):
    db.execute("CREATE TABLE public.t (d date NOT NULL)")
    with db.connect() as conn:
        pc = partition_column(load_table(conn, "public", "t"), "d")
        path = tmp_path / "bad.toml"
        path.write_text("""
column = "d"
[[partitions]]
name = "t_old"
from = "minvalue"
to = "2020-01-01"
[[partitions]]
name = "t_2020"
from = "2020-01-01"
to = "2021-02-01"
[[partitions]]
name = "t_2021"
from = "2021-01-01"
to = "2022-01-01"
[[partitions]]
name = "t_2023"
from = "2023-01-01"
to = "2024-13-01"
[[partitions]]
name = "t_2021"
from = "2025-01-01"
to = "2024-01-01"
[[partitions]]
name = "t_2030"
from = "2030-01-01"
to = "2031-01-01"
[[partitions]]
name = "d1"
default = true
[[partitions]]
name = "d2"
default = true
""")
        _, parts = read_layout(path)
        assert parts[0].lo == "MINVALUE"
        check = validate_layout(conn, parts, pc, now=NOW)
        assert not check.ok
        text = "\n".join(check.problems)
        assert "'t_2021' is used twice" in text
        assert "more than one DEFAULT partition: d1, d2" in text
        assert "bound '2024-13-01' is not a date" in text
        assert "t_2021: from 2025-01-01 is not before to 2024-01-01" in text
        assert "t_2020 and t_2021 overlap" in text
        assert "gap between t_2021 and t_2030" in text
        assert [p.name for p in check.partitions] == ["t_old", "t_2020", "t_2021", "t_2030", "d1"]
        assert check.partitions[1].lo == date(2020, 1, 1)
        # bounds of a date column are written as dates
        write_layout(path, [Partition("t_2020", datetime(2020, 1, 1, tzinfo=UTC),
                                      datetime(2021, 1, 1, tzinfo=UTC)),
                            Partition("t_default", default=True)], pc)
        assert 'from = "2020-01-01"' in path.read_text()
        assert validate_layout(conn, read_layout(path)[1], pc, now=datetime(2019, 1, 1)).ok
        fine = validate_layout(conn, [Partition("t_all", "MINVALUE", "2020-01-01")], pc, now=NOW)
        assert fine.ok and len(fine.warnings) == 2  # no default, nothing in the future
        for content, message in (("partitions = 3", "list of partitions"),
                                 ("[[partitions]]\nname = 'x'\n", "needs from and to"),
                                 ("[[partitions]]\nname = 'x'\nfrom = 1.5\nto = 2\n", "bound"),
                                 ("[[partitions]]\nname = 'x'\ndefault = true\nto = 2\n",
                                  "no bounds"),
                                 ("[[partitions]]\nname = 'x'\nfro = 1\n", "unknown key"),
                                 ("[[partitions", "not a valid layout file")):
            path.write_text(content)
            with pytest.raises(MigrateError, match=message):
                read_layout(path)
        with pytest.raises(MigrateError, match="cannot read"):
            read_layout(tmp_path / "missing.toml")
