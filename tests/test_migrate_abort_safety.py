"""The migration's checks before anything it cannot undo, in the runner and in the exported
script (`--sql`, run as psql -v ON_ERROR_STOP=1 would): abort after Build drops the partitioned
table only when it is the one pgparts built and holds no row the original lacks (a row written
to the table's name after Build lives only there); the copy does not take a partition holding
such a row for copied; stage 1 stops while a session writes, stage 3 on a group over 60."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tui.core.migrate.abort import abort_plan
from tui.core.migrate.migration import prepare, run_plan
from tui.core.migrate.stages import stage, standing
from tui.core.plans.engine.runner import Outcome

from .migrate_support import PLAIN
from .test_migrate_stages import _build, _choices, _rows, _run_to

n = PLAIN


def _copied(db):
    _build(db, n)
    with db.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    assert _run_to(db, spec, "copy").ok
    return spec


def _run_script(db, script: str) -> str | None:
    """Run an exported script as psql -v ON_ERROR_STOP=1 would: statement by statement (the
    script's lines are whole statements ending in ';'), stopping at the first error."""
    with psycopg.connect(db.dsn, autocommit=True) as c:
        try:
            c.execute(script.encode())
        except psycopg.Error as exc:
            return str(exc)
    return None


def test_abort_keeps_a_table_holding_rows_the_original_lacks(db):
    spec = _copied(db)
    # the application wrote to the table's name after Build: the row lives only in the new table
    db.execute(sql.SQL("INSERT INTO {t} ({id}, {ts}, {pdm}, {tr}, {a}) VALUES"
                       " (999999, '2020-06-01 00:00+00', 1, 'late', 1)").format(
        t=n.ident(n.table), id=sql.Identifier(n.id), ts=sql.Identifier(n.ts),
        pdm=sql.Identifier(n.pdm), tr=sql.Identifier(n.tracer), a=sql.Identifier(n.amount)))
    with db.connect() as conn:
        plan = abort_plan(conn, n.schema, n.table)
        script = plan.to_sql(conn)
    result = run_plan(db.target, plan)
    assert result.outcome == Outcome.FAILED and "not in" in result.error, result.error
    assert (999999,) in [r[:1] for r in _rows(db, n.ident(n.table), n)]
    with db.connect() as conn:
        assert standing(conn, n.schema, n.table).recorded is not None
    # the exported script stops before its DROP too
    error = _run_script(db, script)
    assert error is not None and "not in" in error, error
    assert (999999,) in [r[:1] for r in _rows(db, n.ident(n.table), n)]
    # once the row is where it belongs (here: gone), abort runs
    db.execute(sql.SQL("DELETE FROM {t} WHERE {id} = 999999").format(
        t=n.ident(n.table), id=sql.Identifier(n.id)))
    with db.connect() as conn:
        plan = abort_plan(conn, n.schema, n.table)
    assert run_plan(db.target, plan).ok
    assert db.query(sql.SQL("SELECT to_regclass({})").format(
        sql.Literal(n.ident(spec.old_name).as_string()))) == [(None,)]


def test_abort_after_stage_7_keeps_a_table_holding_rows_the_original_lacks(db):
    """Once stage 7 ran, abort is stage 7's own (views and keys go back first); it still
    refuses to drop a new table holding a row the original lacks."""
    spec = _copied(db)
    assert _run_to(db, spec, "dependencies").ok
    db.execute(sql.SQL("INSERT INTO {t} ({id}, {ts}, {pdm}, {tr}, {a}) VALUES"
                       " (999998, '2020-06-02 00:00+00', 1, 'late', 1)").format(
        t=n.ident(n.table), id=sql.Identifier(n.id), ts=sql.Identifier(n.ts),
        pdm=sql.Identifier(n.pdm), tr=sql.Identifier(n.tracer), a=sql.Identifier(n.amount)))
    with db.connect() as conn:
        plan = abort_plan(conn, n.schema, n.table)
    result = run_plan(db.target, plan)
    assert result.outcome == Outcome.FAILED and "not in" in result.error, result.error
    assert (999998,) in [r[:1] for r in _rows(db, n.ident(n.table), n)]
    db.execute(sql.SQL("DELETE FROM {t} WHERE {id} = 999998").format(
        t=n.ident(n.table), id=sql.Identifier(n.id)))
    with db.connect() as conn:
        plan = abort_plan(conn, n.schema, n.table)
    result = run_plan(db.target, plan)
    assert result.ok, result.error
    with db.connect() as conn:
        assert standing(conn, n.schema, n.table).recorded is None


def test_abort_script_refuses_another_table_under_the_name(db):
    _copied(db)
    with db.connect() as conn:
        script = abort_plan(conn, n.schema, n.table).to_sql(conn)
    # between export and run, the partitioned table went and another one took its name
    db.execute(sql.SQL("ALTER TABLE {t} RENAME TO pgparts_elsewhere;"
                       " CREATE TABLE {t} (keep int); INSERT INTO {t} VALUES (1)").format(
        t=n.ident(n.table)))
    error = _run_script(db, script)
    assert error is not None and "is not the table pgparts built" in error, error
    assert db.query(sql.SQL("SELECT keep FROM {}").format(n.ident(n.table))) == [(1,)]


def test_copy_is_not_done_for_a_partition_holding_rows_written_after_build(db):
    _build(db, n)
    with db.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    assert _run_to(db, spec, "build").ok
    # a writer the maintenance window missed: its row lands in the 2019 partition, which the
    # original has rows for too; the copy must not take that partition for copied
    db.execute(sql.SQL("INSERT INTO {t} ({id}, {ts}, {pdm}, {tr}, {a}) VALUES"
                       " (999999, '2019-06-01 00:00+00', 1, 'late', 1)").format(
        t=n.ident(n.table), id=sql.Identifier(n.id), ts=sql.Identifier(n.ts),
        pdm=sql.Identifier(n.pdm), tr=sql.Identifier(n.tracer), a=sql.Identifier(n.amount)))
    result = _run_to(db, spec, "copy")
    assert result is not None and result.outcome == Outcome.FAILED, result
    assert "payment_2019: the original has" in result.error, result.error
    with db.connect() as conn:
        assert standing(conn, n.schema, n.table).recorded.state == "build"


def test_exported_collisions_stage_stops_on_a_group_over_60(db):
    _build(db, n, over_60=True)
    with db.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    assert _run_to(db, spec, "duplicates").ok
    before = _rows(db, n.ident(n.table), n)
    with db.connect() as conn:
        script = stage("collisions").plan(conn, spec).to_sql(conn)
    error = _run_script(db, script)
    assert error is not None and "more than 60" in error, error
    assert _rows(db, n.ident(n.table), n) == before
    with db.connect() as conn:
        assert standing(conn, n.schema, n.table).recorded.state == "duplicates"


def test_exported_preflight_stops_while_a_session_writes(db):
    _build(db, n)
    with db.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
        script = stage("preflight").plan(conn, spec).to_sql(conn)
    with psycopg.connect(db.dsn) as writer:  # a transaction left open holding a write lock
        writer.execute(sql.SQL("UPDATE {t} SET {a} = {a} WHERE false").format(
            t=n.ident(n.table), a=sql.Identifier(n.amount)))
        error = _run_script(db, script)
        writer.rollback()
    assert error is not None and "sessions are writing" in error, error
    assert _run_script(db, script) is None
