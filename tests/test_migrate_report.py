"""What the wizard reads besides the stages' plans, on both server versions: the plain tables
(a recorded migration listed once, under its name, with its last stage), the proposals, the
layout as text and back, and each stage's report, under hostile names."""

from __future__ import annotations

import re

import pytest
from psycopg import sql

from tui.core.connection import connect
from tui.core.migrate import MigrateError
from tui.core.migrate.edit import layout_editable, layout_text, with_layout_text
from tui.core.migrate.migration import Choices, prepare, run_plan
from tui.core.migrate.report import proposals, stage_report
from tui.core.migrate.stages import STAGES, stage
from tui.core.migrate.tables import migratable_tables

from .migrate_support import HOSTILE, OVER_60_COUNT, OVER_60_PDM
from .test_migrate_stages import _build

n = HOSTILE


def test_tables_proposals_and_stage_reports(db):
    _build(db, n, over_60=True)
    db.execute(sql.SQL("CREATE TABLE {} (ts date) PARTITION BY RANGE (ts)").format(
        n.ident("parted")))
    with connect(db.target, purpose="test") as conn:
        found = migratable_tables(conn)
        names = {(t.schema, t.name) for t in found.tables}
        # plain tables only: no partitioned table, nothing of pgparts' own
        assert (n.schema, n.table) in names and (n.schema, "parted") not in names
        payment = next(t for t in found.tables if t.name == n.table)
        assert payment.rows and payment.bytes > 0 and not payment.migration

        p = proposals(conn, n.schema, n.table)
        assert p.column == n.ts and p.key == (n.ts, n.pdm) and p.tiebreak == n.tracer
        assert p.surrogate == n.id and {c for c, _ in p.columns} == {n.id, n.ts, n.pdm}

        prep = prepare(conn, Choices(n.schema, n.table, p.column, p.key, p.tiebreak,
                                     interval="year"))
        spec = prep.spec
        # the layout as text and back (hostile partition names survive the TOML)
        assert layout_editable(conn, spec)
        text = layout_text(conn, spec)
        again, warnings = with_layout_text(conn, spec, text)
        assert again.partitions == spec.partitions and not warnings
        for bad, said in (("[[partitions]]\nname = 1", "partition 1: needs a name"),
                          (text.replace("default = true", "default = false"), "needs from"),
                          ("partitions = []", "no DEFAULT partition")):
            with pytest.raises(MigrateError, match=said) as exc:
                with_layout_text(conn, spec, bad)
            assert "\n" not in str(exc.value)
        reports = {s.name: stage_report(conn, spec, s.name, prep) for s in STAGES}
    pre = reports["preflight"]
    assert pre.table_title == "rows per year" and len(pre.table) == 2 and pre.writers == 0
    assert any(line.startswith("referenced by: ") and n.bonus in line for line in pre.lines)
    assert any(line.startswith("duplicates on (") for line in reports["duplicates"].lines)
    collisions = reports["collisions"]
    assert collisions.blocking and f"{OVER_60_COUNT} rows" in collisions.blocking[-1]
    # groups named by their key columns, samples as seconds before → after
    assert collisions.blocking[-1] == (f"{n.pdm} = {OVER_60_PDM}, minute 2019-07-20 00:00 UTC: "
                                       f"{OVER_60_COUNT} rows"), collisions.blocking
    samples = [line for line in collisions.lines if line.startswith("sample: ")]
    assert samples and all(re.fullmatch(
        rf"sample: {re.escape(n.pdm)} = \d+, minute \d{{4}}-\d\d-\d\d \d\d:\d\d UTC: "
        r"seconds \d\d → \d\d(, \d\d → \d\d)*(, …)?", line) for line in samples), samples
    assert reports["layout"].table[-1][1] == "DEFAULT"
    assert reports["layout"].table[0][1] == "2019-01-01 → 2020-01-01"
    # stages with nothing to count report nothing: a front end shows them alike
    assert reports["dependencies"].lines == [] and not reports["finish"].blocking

    # once recorded (stage 2), the table is listed with its last stage done
    db.execute(sql.SQL("DELETE FROM {t} WHERE {tr} LIKE 'REPLAY-%'").format(
        t=n.ident(n.table), tr=sql.Identifier(n.tracer)))
    with connect(db.target, purpose="test") as conn:
        plan = stage("duplicates").plan(conn, spec)
    assert run_plan(db.target, plan, write_journal=False).ok
    with connect(db.target, purpose="test") as conn:
        payment = next(t for t in migratable_tables(conn).tables if t.name == n.table)
        assert payment.migration == "duplicates"
        assert stage_report(conn, spec, "duplicates").lines[0].startswith(
            "duplicates on (") and "0 groups" in stage_report(conn, spec, "duplicates").lines[0]
