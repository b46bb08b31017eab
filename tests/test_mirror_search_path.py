"""The mirror trigger pgparts leaves on a week between the copy and the swap runs in the session
of whoever writes to that week. It must not resolve its `=` through that session's search_path:
with the default `"$user", public`, an application role's `public.=(varchar, varchar)` is an
exact match for a varchar key column and wins over pg_catalog's text `=` (CVE-2018-1058), so a
superuser deleting a row of the week during a consolidation would run the role's code.
"""

from __future__ import annotations

import dataclasses
import uuid

import psycopg
from psycopg import sql

from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import build_consolidation_plan

from .test_plan_support import (
    FAST_PLANS,
    OLD_WEEKS,
    build_balances,
)

_TRAP = """
BEGIN
    BEGIN
        EXECUTE {alter};
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    RETURN $1::text OPERATOR(pg_catalog.=) $2::text;
END
"""


def _rolsuper(db, role: str) -> bool:
    return db.query("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))[0][0]


def test_a_writer_during_consolidation_never_runs_a_planted_operator(db):
    role = f"app_{uuid.uuid4().hex[:8]}"
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=20)
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    try:
        with psycopg.connect(db.dsn, autocommit=True) as app:
            app.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            alter = sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(role))
            body = sql.SQL(_TRAP).format(alter=sql.Literal(alter.as_string(app)))
            app.execute(sql.SQL(
                "CREATE FUNCTION public.trap_eq(varchar, varchar) RETURNS boolean"
                " LANGUAGE plpgsql AS {}").format(sql.Literal(body.as_string(app))))
            app.execute("CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar,"
                        " FUNCTION = public.trap_eq)")
        with db.connect() as conn:
            plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS,
                                            weeks=[b.weeks[0]])
        build_only = dataclasses.replace(plan, steps=plan.steps[:1])
        result = PlanRunner(db.target, build_only, config=FAST_PLANS, backoff_base=0.05).run()
        assert result.ok, result
        # a superuser with PostgreSQL's default search_path writes to the week: the mirror
        # trigger deletes the row from the copy by its primary key
        with psycopg.connect(db.dsn, autocommit=True) as writer:
            assert writer.execute("SHOW search_path").fetchone()[0] == '"$user", public'
            deleted = writer.execute(sql.SQL(
                "DELETE FROM {} WHERE ctid = (SELECT ctid FROM {} LIMIT 1)").format(
                sql.Identifier("public", b.weeks[0] + "_hash_0"),
                sql.Identifier("public", b.weeks[0] + "_hash_0"))).rowcount
            assert deleted == 1
            n_week, n_copy = writer.execute(sql.SQL(
                "SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
                sql.Identifier("public", b.weeks[0]),
                sql.Identifier("public", b.weeks[0] + "_consolidated"))).fetchone()
        assert n_week == n_copy  # the mirror did its work
        assert not _rolsuper(db, role), "the mirror trigger ran the role's operator"
        # the trap is armed: the same comparison under the default search_path springs it
        with psycopg.connect(db.dsn, autocommit=True) as c:
            c.execute("SELECT 'a'::varchar = 'a'::varchar")
        assert _rolsuper(db, role)
    finally:
        with db.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
