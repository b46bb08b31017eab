"""Abort after Build drops the partitioned table only when it is the one pgparts built; the
exported script (`--abort --sql`) checks that too before its DROP."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tui.core.migrate.abort import abort_plan
from tui.core.migrate.migration import prepare

from .migrate_support import PLAIN
from .test_migrate_stages import _build, _choices, _run_to

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
