"""Who owns what a move builds: applied by a superuser, the new partitions (their
sub-partitions too) are owned like the partitions they replace, a move out of the DEFAULT
gives its new range partitions the parent's owner; a role that cannot give that owner is told
so at planning time, in one line, before anything changes."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.plans import PlanRunner
from tui.core.plans.consolidate import SUFFIX, build_consolidation_plan
from tui.core.plans.kind import PlanKindError

from ...test_plan_support import FAST_PLANS, OLD_WEEKS, build_balances
from ...test_row_security import AsRole
from ..scenarios import (
    DEFAULT,
    HWEEK_MERGED,
    HWEEKS,
    SCHEMA,
    SPLIT_NEW,
    SPLIT_SOURCE,
    hweek,
    ident,
    leftovers,
    spec,
    with_default_and_ref,
    with_hash_weeks,
)
from .test_moves import FAST, plan_for, run
from .test_remedies import cli


def _roles(db, *names: str) -> list[str]:
    """Roles named after the test database (roles are the cluster's, databases are not)."""
    out = [f"{n}_{db.name}" for n in names]
    for role in out:
        db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    return out


def _own_all(db, role: str) -> None:
    for (rel,) in db.query(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (SCHEMA,)):
        db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.SQL(rel),
                                                                sql.Identifier(role)))


def _owners(conn: psycopg.Connection) -> dict[str, str]:
    return {n.name: o for n in load_forest(conn).find(spec()).walk() for (o,) in conn.execute(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = %s", (n.oid,))}


def test_moved_partitions_keep_their_owners_when_a_superuser_applies(db, capsys):
    app, other = _roles(db, "app", "dflt")
    with db.connect() as conn:
        with_default_and_ref(conn, db.dsn)
    _own_all(db, app)
    db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident(DEFAULT),
                                                            sql.Identifier(other)))
    status, out, err = cli(capsys, "split", spec(), SPLIT_SOURCE, "--at", "150", "--name",
                           SPLIT_NEW, "--sql", "-d", db.dsn)
    assert status == 0, err
    assert out.count(f'OWNER TO "{app}"') == 2, out
    status, out, err = cli(capsys, "split", spec(), SPLIT_SOURCE, "--at", "150", "--name",
                           SPLIT_NEW, "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    # drain-default: the new range partitions take the parent's owner, the new DEFAULT the
    # old DEFAULT's
    result = run(db, plan_for(db, "drain_default", {}))
    assert result.ok, result.error
    with db.connect() as conn:
        owners = _owners(conn)
        assert leftovers(conn) == []
    assert owners[SPLIT_SOURCE] == owners[SPLIT_NEW] == app, owners
    assert owners[DEFAULT] == other, owners
    assert set(owners.values()) == {app, other}, owners
    assert len(owners) > 7, owners  # the drained partitions are there


def test_sub_partitions_of_a_merge_keep_their_owners(db):
    app, leaves = _roles(db, "app", "leaf")
    with db.connect() as conn:
        with_hash_weeks(conn, db.dsn, extras=False)
    _own_all(db, app)
    # the first week's sub-partitions (the merge's model) belong to another role
    for r in range(4):
        db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
            ident(f"{hweek(HWEEKS[1])}_h{r}"), sql.Identifier(leaves)))
    plan = plan_for(db, "merge", {"partitions": [hweek(HWEEKS[1]), hweek(HWEEKS[2])],
                                  "name": HWEEK_MERGED})
    assert any(f"owned by {leaves}" in line for line in plan.facts.changes), plan.facts.changes
    result = run(db, plan)
    assert result.ok, result.error
    with db.connect() as conn:
        owners = _owners(conn)
    assert owners[HWEEK_MERGED] == app
    assert {owners[f"{HWEEK_MERGED}_h{r}"] for r in range(4)} == {leaves}, owners


def test_a_role_that_cannot_give_the_owner_is_told_before_anything_runs(db):
    app, mover = _roles(db, "app", "mover")
    with db.connect() as conn:
        with_default_and_ref(conn, db.dsn)
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {d} TO {m}; GRANT USAGE, CREATE ON SCHEMA {s}"
                       " TO {m}").format(d=sql.Identifier(db.name), m=sql.Identifier(mover),
                                         s=sql.Identifier(SCHEMA)))
    _own_all(db, mover)
    db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident(SPLIT_SOURCE),
                                                            sql.Identifier(app)))
    as_mover = AsRole(db, mover)
    values = {"partition": SPLIT_SOURCE, "at": ["150"], "name": [SPLIT_NEW]}
    with pytest.raises(PlanKindError) as caught:
        plan_for(as_mover, "split", values)
    said = str(caught.value)
    assert "\n" not in said and app in said and "superuser" in said, said
    # a member of the owner: the owner must also be allowed to create in the schema
    db.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(app), sql.Identifier(mover)))
    with pytest.raises(PlanKindError, match="may not create in schema"):
        plan_for(as_mover, "split", values)
    # then the mover applies it, and the new partitions are the owner's
    db.execute(sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(sql.Identifier(SCHEMA),
                                                                 sql.Identifier(app)))
    plan = plan_for(as_mover, "split", values)
    assert any(f"owned by {app}" in line for line in plan.facts.changes), plan.facts.changes
    result = PlanRunner(as_mover.target, plan, config=FAST, backoff_base=0.02).run()
    assert result.ok, result.error
    with db.connect() as conn:
        owners = _owners(conn)
        assert leftovers(conn) == []
    assert owners[SPLIT_SOURCE] == owners[SPLIT_NEW] == app, owners


def test_a_consolidated_week_keeps_the_weeks_owner(db):
    (app,) = _roles(db, "app")
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1])
        for (rel,) in conn.execute("SELECT oid::regclass::text FROM pg_class WHERE relname"
                                   " LIKE 'account_balances%' AND relkind IN ('r', 'p')"
                                   ).fetchall():
            conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.SQL(rel),
                                                                      sql.Identifier(app)))
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
        assert any(f'OWNER TO "{app}"' in st.sql.as_string(conn) for s in plan.steps
                   for st in s.statements), "no ALTER ... OWNER TO in the plan"
    result = PlanRunner(db.target, plan, config=FAST_PLANS).run()
    assert result.ok, result.error
    with db.connect() as conn:
        owner = conn.execute("SELECT pg_get_userbyid(relowner)::text FROM pg_class"
                             " WHERE relname = %s", (b.weeks[0] + SUFFIX,)).fetchone()[0]
    assert owner == app
