"""Row-level security must never hide rows from a plan: a copy that sees only the rows a policy
lets through, verified by checks that see the same subset, would drop the others with the old
partition. Every pgparts session runs with row_security = off, so a query that a policy would
filter fails instead (PostgreSQL's own guarantee), and the plan stops before changing anything;
a superuser or a role with BYPASSRLS is not affected."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tui.core.connection import Target, connect
from tui.core.plans import Outcome, PlanRunner

from .plans.kinds.test_moves import FAST, plan_for
from .plans.scenarios import MOVE_SCENARIOS, SCHEMA, SPLIT_SOURCE, TABLE, ident


class AsRole:
    """The test database reached as `role` (SET ROLE at connection start, libpq's options)."""

    def __init__(self, db, role: str) -> None:
        self.target = Target(f"{db.dsn} options='-c role={role}'")

    def connect(self, **kw) -> psycopg.Connection:
        return connect(self.target, **kw)


def _count(db, table: str) -> int:
    return db.query(sql.SQL("SELECT count(*) FROM {}").format(ident(table)))[0][0]


def test_a_policy_that_hides_rows_stops_a_move_and_loses_nothing(db):
    scenario = MOVE_SCENARIOS["split"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
    owner = f"rls_{db.name}"
    db.execute(sql.SQL(
        "CREATE ROLE {r} NOLOGIN; GRANT CREATE ON DATABASE {d} TO {r};"
        " GRANT USAGE, CREATE ON SCHEMA {s} TO {r}").format(
        r=sql.Identifier(owner), d=sql.Identifier(db.name), s=sql.Identifier(SCHEMA)))
    for (rel,) in db.query(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (SCHEMA,)):
        db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.SQL(rel),
                                                                sql.Identifier(owner)))
    # FORCE: the policy applies to the table's owner too; it hides the upper half of the rows
    db.execute(sql.SQL(
        "ALTER TABLE {p} ENABLE ROW LEVEL SECURITY; ALTER TABLE {p} FORCE ROW LEVEL SECURITY;"
        " CREATE POLICY half ON {p} USING (k < 150)").format(p=ident(SPLIT_SOURCE)))
    before, whole = _count(db, SPLIT_SOURCE), _count(db, TABLE)
    as_owner = AsRole(db, owner)
    with as_owner.connect() as c:
        assert c.execute("SELECT current_user").fetchone()[0] == owner
    plan = plan_for(as_owner, "split", scenario.values)
    result = PlanRunner(as_owner.target, plan, config=FAST, backoff_base=0.02).run()
    assert result.outcome == Outcome.FAILED, result
    assert "row-level security" in result.error, result.error
    # every row is still where it was, and seen through the table
    assert (_count(db, SPLIT_SOURCE), _count(db, TABLE)) == (before, whole)
