"""Abort puts the original's identity sequence past the values the new table drew while it was
live: rows written there (then moved into the original, as abort requires) would otherwise
collide with the next insert into the restored table. Both aborts: right after Copy (one
step) and after stage 7 began (restore.py's steps)."""

from __future__ import annotations

from psycopg import sql

from tui.core.migrate.abort import abort_plan
from tui.core.migrate.migration import Choices, prepare, run_plan

from .test_migrate_stages import _run_to

T = 'Seq ;"t'
TABLE = sql.Identifier("public", T)


def _late_rows_moved_to_the_original(db, old_name: str, label: str) -> None:
    """Three rows written to the new table (ids from its own identity sequence), then copied
    into the original, where abort wants every row of the new table."""
    db.execute(sql.SQL("INSERT INTO {t} (at, what) SELECT timestamptz '2024-02-01 00:00+00',"
                       " {w} FROM generate_series(1, 3)").format(t=TABLE, w=sql.Literal(label)))
    db.execute(sql.SQL("INSERT INTO {o} OVERRIDING SYSTEM VALUE SELECT * FROM {t}"
                       " WHERE what = {w}").format(o=sql.Identifier("public", old_name),
                                                   t=TABLE, w=sql.Literal(label)))


def _abort_then_insert(db) -> int:
    with db.connect() as conn:
        plan = abort_plan(conn, "public", T)
        script = plan.to_sql(conn)
    assert "pg_catalog.setval" in script and "pg_catalog.max" in script, script
    result = run_plan(db.target, plan)
    assert result.ok, result.error
    # the next id is past the late rows: no duplicate key
    db.execute(sql.SQL("INSERT INTO {t} (at, what) VALUES (now(), 'after')").format(t=TABLE))
    return db.query(sql.SQL("SELECT id FROM {t} WHERE what = 'after'").format(t=TABLE))[0][0]


def test_abort_sets_the_identity_sequence_past_rows_the_new_table_handed_out(db):
    db.execute(sql.SQL("""
        CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY (START 100) PRIMARY KEY,
                          at timestamptz NOT NULL, what text);
        INSERT INTO {t} (at, what) SELECT timestamptz '2024-01-01 00:00+00'
            + make_interval(hours => i * 50), 'e' || i FROM generate_series(1, 100) i;
        ANALYZE {t};""").format(t=TABLE))
    choices = Choices("public", T, "at", ("at", "id"), interval="quarter")
    with db.connect() as conn:
        spec = prepare(conn, choices).spec
    assert _run_to(db, spec, "copy").ok
    _late_rows_moved_to_the_original(db, spec.old_name, "late")
    assert _abort_then_insert(db) == 203  # 100..199, the late 200..202
    # again, aborted once stage 7 began (the new table has its keys and indexes)
    db.execute(sql.SQL("DELETE FROM {t} WHERE what = 'after'").format(t=TABLE))
    with db.connect() as conn:
        spec = prepare(conn, choices).spec
    assert _run_to(db, spec, "dependencies").ok
    _late_rows_moved_to_the_original(db, spec.old_name, "later")
    assert _abort_then_insert(db) == 207  # the second Build's identity continued from 203: 204..206
