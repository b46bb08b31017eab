"""Stages 8 and 9 and abort through the real runner: the insert trigger under concurrent
inserts, Finish refusing to drop the original on a mismatch (then dropping it), abort putting
the original back exactly (catalog dumps compared)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tui.core.migrate import MigrateError
from tui.core.migrate.dependencies import dependency_steps
from tui.core.migrate.finish import finish_facts, finish_steps
from tui.core.migrate.insert_trigger import trigger_steps
from tui.core.migrate.restore import abort_steps
from tui.core.plans.engine.runner import Outcome

from .migrate_stages import (
    after_copy,
    build_and_copy,
    build_original,
    catalog_dump,
    killer,
    original_deps,
    run_stage,
    spec_of,
    stage_plan,
)
from .migrate_support import HOSTILE, PLAIN, Names


def _rows(conn: psycopg.Connection, n: Names, table: str | None = None) -> list[tuple]:
    return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(
        n.ident(table or n.table))).fetchall()


@pytest.mark.parametrize(("names", "stage"), [(PLAIN, 6), (PLAIN, 7), (HOSTILE, 8)],
                         ids=["plain-after-copy", "plain-inside-dependencies",
                              "hostile-after-trigger"])
def test_abort_restores_the_original(db, names, stage):
    with db.connect() as conn:
        build_original(conn, names)
        before = catalog_dump(conn, names)
        rows = {r: _rows(conn, names, r) for r in (names.table, names.bonus, names.ext)}
        spec = build_and_copy(conn, names, spec_of(conn, names))
        deps = original_deps(conn, spec)
    if stage == 7:
        # up to the first referencing key's validation: the new key under the old one's name
        # (NOT VALID; before 18 added valid, with no validation step), the old one aside, key
        # columns added and back-filled
        def part(c):
            steps = dependency_steps(c, spec, deps)
            return steps[:next(i for i, s in enumerate(steps)
                               if s.title.startswith("Foreign key of")) + 1]
        assert run_stage(db, spec, part).ok
    if stage == 8:
        assert run_stage(db, spec, lambda c: dependency_steps(c, spec, deps)).ok
        assert run_stage(db, spec, lambda c: trigger_steps(c, spec)).ok
    new_oid = db.query("SELECT %s::regclass::oid", (names.ident(names.table).as_string(),))[0][0]
    if stage == 6:  # given another oid than the new table's, abort refuses and changes nothing
        result = run_stage(db, spec, lambda c: abort_steps(
            c, spec, original_deps(c, spec), stage, new_table_oid=new_oid + 1000))
        assert result.outcome == Outcome.FAILED and "not the table" in result.error
    result = run_stage(db, spec, lambda c: abort_steps(c, spec, original_deps(c, spec), stage,
                                                       new_table_oid=new_oid))
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert catalog_dump(conn, names) == before
        assert {r: _rows(conn, names, r) for r in rows} == rows
        # built again, there is nothing left to do
        assert abort_steps(conn, spec, original_deps(conn, spec), stage) == []


def test_abort_killed_then_resumed(db):
    n = PLAIN
    with db.connect() as conn:
        build_original(conn, n)
        before = catalog_dump(conn, n)
        spec = build_and_copy(conn, n, spec_of(conn, n))
    assert run_stage(db, spec, lambda c: dependency_steps(c, spec, original_deps(c, spec))).ok

    def build(c):
        return abort_steps(c, spec, original_deps(c, spec), "dependencies")

    # killed at the last statement of a step of each kind; each run plans again from the catalog
    for prefix in ("Give", "View", "Foreign keys of", "Drop the new table", "Names of"):
        with db.connect() as conn:
            steps = build(conn)
        i = next(k for k, s in enumerate(steps, 1) if s.title.startswith(prefix))
        point = (i, len(steps[i - 1].statements))
        hook, fired = killer(db, {point})
        result = run_stage(db, spec, build, hook=hook)
        assert fired == [point] and result.outcome == Outcome.FAILED, (prefix, result.error)
    result = run_stage(db, spec, build)
    assert result.ok, result.error
    with db.connect() as conn:
        assert catalog_dump(conn, n) == before


def test_finish_refuses_on_a_mismatch_then_drops(db):
    n = HOSTILE
    with db.connect() as conn:
        spec, deps = after_copy(conn, n)
    assert run_stage(db, spec, lambda c: dependency_steps(c, spec, deps)).ok
    t, amount = n.ident(n.table), sql.Identifier(n.amount)
    victim = db.query(sql.SQL("SELECT min({}) FROM {}").format(sql.Identifier(n.id), t))[0][0]
    change = sql.SQL("UPDATE {} SET {} = {} + %s WHERE {} = %s").format(
        t, amount, amount, sql.Identifier(n.id))
    db.execute(change, (1, victim))
    result = run_stage(db, spec, lambda c: finish_steps(c, spec))
    assert result.outcome == Outcome.FAILED
    assert "are not in" in result.error, result.error
    with db.connect() as conn:
        assert conn.execute("SELECT EXISTS (SELECT FROM pg_class WHERE oid = %s)",
                            (spec.oid,)).fetchone()[0]
    # put right, and the application wrote one more payment since: every original row is
    # there, so the original goes, and the serial sequence stays with the new table
    db.execute(change, (-1, victim))
    db.execute(sql.SQL("INSERT INTO {} ({}, {}, {}) VALUES ('2020-05-05 05:05Z', 4, 'N')").format(
        t, sql.Identifier(n.ts), sql.Identifier(n.pdm), sql.Identifier(n.tracer)))
    result = run_stage(db, spec, lambda c: finish_steps(c, spec))
    assert result.ok, result.error
    with db.connect() as conn:
        assert not conn.execute("SELECT EXISTS (SELECT FROM pg_class WHERE oid = %s)",
                                (spec.oid,)).fetchone()[0]
        owner = conn.execute("SELECT pg_get_serial_sequence(%s, %s)",
                             (t.as_string(conn), n.id)).fetchone()[0]
        assert owner is not None
        assert finish_steps(conn, spec) == []
        with pytest.raises(MigrateError, match="dropped"):
            abort_steps(conn, spec, deps, 9)
    facts = finish_facts(spec)
    assert [d.verified for d in facts.destroys] == [True]
    # verified first, so no data is lost; still a drop: typed confirmation, like every drop
    assert facts.needs_typed_confirmation and not facts.loses_data


def test_insert_trigger_under_concurrent_inserts(db):
    n = PLAIN
    with db.connect() as conn:
        spec, deps = after_copy(conn, n)
    assert run_stage(db, spec, lambda c: dependency_steps(c, spec, deps)).ok
    assert run_stage(db, spec, lambda c: trigger_steps(c, spec)).ok
    with db.connect() as conn:
        fn = conn.execute(
            "SELECT p.prosecdef, p.proconfig, has_function_privilege('public', p.oid,"
            " 'EXECUTE') FROM pg_proc p WHERE p.proname LIKE 'pgparts_collisions%'").fetchone()
        assert fn == (True, ["search_path=pg_catalog, pg_temp"], False)
    insert = sql.SQL("INSERT INTO {} ({}, {}, {}) VALUES ('2020-03-03 10:07:00Z', 3, %s)"
                     " RETURNING {}").format(
        n.ident(n.table), sql.Identifier(n.ts), sql.Identifier(n.pdm),
        sql.Identifier(n.tracer), sql.Identifier(n.ts))
    writers = 6
    start = threading.Barrier(writers)
    got: list = []
    errors: list = []

    def write(i: int) -> None:
        try:
            with psycopg.connect(db.dsn) as c:  # one transaction each, committed on exit
                start.wait(timeout=30)
                got.append(c.execute(insert, (f"C{i}",)).fetchone()[0])
                c.execute("SELECT pg_sleep(0.05)")  # hold the minute a moment
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert errors == []
    stored = db.query(sql.SQL(
        "SELECT {ts}, {tr} FROM {t} WHERE {pdm} = 3 AND {ts} >= '2020-03-03 10:07Z'"
        " AND {ts} < '2020-03-03 10:08Z' ORDER BY 1").format(
        ts=sql.Identifier(n.ts), tr=sql.Identifier(n.tracer), t=n.ident(n.table),
        pdm=sql.Identifier(n.pdm)))
    assert len(stored) == writers == len({ts for ts, _ in stored})
    assert sorted(got) == [ts for ts, _ in stored]
    assert {ts.second for ts, _ in stored} == set(range(writers))  # the minute's first seconds
    # the same row again is a duplicate by error: the primary key refuses it
    with pytest.raises(psycopg.errors.UniqueViolation), psycopg.connect(db.dsn) as c:
        c.execute(sql.SQL("INSERT INTO {} ({}, {}, {}) VALUES (%s, 3, 'C0')").format(
            n.ident(n.table), sql.Identifier(n.ts), sql.Identifier(n.pdm),
            sql.Identifier(n.tracer)), (next(ts for ts, tr in stored if tr == "C0"),))
    # a row colliding with nothing keeps its timestamp
    with psycopg.connect(db.dsn) as c:
        kept = c.execute(sql.SQL("INSERT INTO {} ({}, {}, {}) VALUES ("
                                 "'2020-03-04 11:11:11Z', 3, 'Z') RETURNING {}").format(
            n.ident(n.table), sql.Identifier(n.ts), sql.Identifier(n.pdm),
            sql.Identifier(n.tracer), sql.Identifier(n.ts))).fetchone()[0]
    assert (kept.minute, kept.second) == (11, 11)


PSQL = next((p for p in ("/usr/lib/postgresql/15/bin/psql", "/usr/lib/postgresql/18/bin/psql",
                         shutil.which("psql") or "") if p and Path(p).exists()), None)


def _psql(db, tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.sql"
    path.write_text(text)
    env = {**os.environ, "PGOPTIONS": "-c search_path=public"}  # the script must not care
    return subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.dsn, "-f",
                           str(path)], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
def test_exported_scripts_run_by_psql(db, tmp_path):
    """`--sql`: stages 7-9 as scripts, run by psql; Finish's script stops before the DROP on a
    mismatch."""
    n = HOSTILE
    with db.connect() as conn:
        spec, deps = after_copy(conn, n)
        script = stage_plan(spec, dependency_steps(conn, spec, deps)).to_sql(conn)
    done = _psql(db, tmp_path, "deps", script)
    assert done.returncode == 0, done.stderr
    with db.connect() as conn:
        assert dependency_steps(conn, spec, original_deps(conn, spec)) == []
        script = stage_plan(spec, trigger_steps(conn, spec)).to_sql(conn)
    assert _psql(db, tmp_path, "trigger", script).returncode == 0
    t, amount = n.ident(n.table), sql.Identifier(n.amount)
    change = sql.SQL("UPDATE {} SET {} = {} + %s WHERE {} = (SELECT min({}) FROM {})").format(
        t, amount, amount, sql.Identifier(n.id), sql.Identifier(n.id), t)
    db.execute(change, (1,))
    with db.connect() as conn:
        script = stage_plan(spec, finish_steps(conn, spec)).to_sql(conn)
    refused = _psql(db, tmp_path, "finish", script)
    assert refused.returncode != 0 and "are not in" in refused.stderr, refused.stderr
    assert db.query("SELECT EXISTS (SELECT FROM pg_class WHERE oid = %s)", (spec.oid,))[0][0]
    db.execute(change, (-1,))
    finished = _psql(db, tmp_path, "finish2", script)
    assert finished.returncode == 0, finished.stderr
    assert not db.query("SELECT EXISTS (SELECT FROM pg_class WHERE oid = %s)", (spec.oid,))[0][0]
