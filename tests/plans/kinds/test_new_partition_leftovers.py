"""Tables create-ahead and fill-gaps create standalone before attaching them: a run
interrupted in between leaves one, owned by the parent's owner when a superuser applies; the
next run takes it up exactly when pgparts' registry records it (never by its name or owner:
anyone with CREATE on the schema can put a table there). And whatever a plan creates in place
of a partition ends with the grants of the partitions it is made like, not those the applying
role's ALTER DEFAULT PRIVILEGES add."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config
from tui.core.names import display_name
from tui.core.plans import Outcome, PlanRunner
from tui.core.plans.consolidate import SUFFIX, build_consolidation_plan
from tui.core.plans.registry import kind_named
from tui.core.plans.steps import markers

from ...test_plan_support import FAST_PLANS, OLD_WEEKS, build_balances
from ...test_row_security import AsRole
from ..contract.test_contract import _kill_points, _killer
from ..scenarios import SCHEMA, TABLE, ident, no_future, spec
from .test_moves import FAST, run

EV = """
CREATE SCHEMA {s};
CREATE TABLE {s}.ev (k int PRIMARY KEY, v text) PARTITION BY RANGE (k);
CREATE TABLE {s}.ev_0 PARTITION OF {s}.ev FOR VALUES FROM (0) TO (100);
CREATE TABLE {s}.ev_200 PARTITION OF {s}.ev FOR VALUES FROM (200) TO (300);
CREATE TABLE {s}.ev_def PARTITION OF {s}.ev DEFAULT;
INSERT INTO {s}.ev SELECT i, 'v' FROM generate_series(0, 99) i;
INSERT INTO {s}.ev SELECT i, 'v' FROM generate_series(200, 299) i;
"""


def _role(db, name: str) -> str:
    """A role named after the test database (roles are the cluster's, databases are not)."""
    role = f"{name}_{db.name}"
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    return role


def _own_all(conn: psycopg.Connection, role: str) -> None:
    for (rel,) in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (SCHEMA,)).fetchall():
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.SQL(rel),
                                                                  sql.Identifier(role)))


def _build(kind: str, conn: psycopg.Connection, dsn: str) -> None:
    if kind == "create_ahead":
        no_future(conn, dsn)
    else:
        conn.execute("DROP SCHEMA IF EXISTS pgparts CASCADE")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL(EV).format(s=sql.Identifier(SCHEMA)))


def _target(kind: str) -> str:
    return spec() if kind == "create_ahead" else display_name(SCHEMA, "ev")


def _plan(db, kind: str):
    k = kind_named(kind)
    with db.connect() as conn:
        forest = load_forest(conn)
        values = {"count": 1} if kind == "create_ahead" else {}
        return k.build(conn, forest, k.status(conn, forest, _target(kind)),
                       k.request(values, _target(kind)), Config(plans=FAST))


def _tables(conn: psycopg.Connection) -> dict[str, tuple[bool, str, str]]:
    """Every table of the schema: attached?, owner, relkind."""
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT c.relname, c.relispartition, pg_get_userbyid(c.relowner)::text,"
        " c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (SCHEMA,)).fetchall()}


def _registered(conn: psycopg.Connection) -> list[str]:
    if not conn.execute("SELECT to_regclass('pgparts.plan_objects') IS NOT NULL").fetchone()[0]:
        return []
    return [r[0] for r in conn.execute(
        "SELECT name FROM pgparts.plan_objects WHERE role = 'new_partition'").fetchall()]


def _new_tables(db, kind: str, app: str, hook=None) -> tuple[dict, object, set[str]]:
    """Build the scenario owned by `app`, run the kind (with `hook`), and return the tables it
    added, the run's result and the tables the scenario started with."""
    with db.connect() as conn:
        _build(kind, conn, db.dsn)
        _own_all(conn, app)
        before = set(_tables(conn))
    result = run(db, _plan(db, kind), hook=hook)
    with db.connect() as conn:
        return {n: t for n, t in _tables(conn).items() if n not in before}, result, before


@pytest.mark.parametrize("kind", ["create_ahead", "fill_gaps"])
def test_a_superusers_interrupted_run_is_resumed_at_every_kill_point(db, kind):
    """Applied by a superuser on a table another role owns: killed at each step, the next run
    attaches the tables the first one created (owned by the parent's owner) under their names,
    with no second table beside them."""
    app = _role(db, "app")
    with db.connect() as conn:
        _build(kind, conn, db.dsn)
    points = _kill_points(_plan(db, kind))
    expected, result, _before = _new_tables(db, kind, app)
    assert result.ok, result.error
    assert expected and all(a and o == app for a, o, _k in expected.values()), expected
    assert len(points) >= 5, points
    for point in points:
        hook, fired = _killer(db, point)
        _new, result, before = _new_tables(db, kind, app, hook)
        assert fired and result.outcome == Outcome.FAILED, (point, result.error)
        result = run(db, _plan(db, kind))
        assert result.ok, (point, result.error)
        with db.connect() as conn:
            added = {n: t for n, t in _tables(conn).items() if n not in before}
            assert _registered(conn) == [], point
        assert added == expected, (point, added, expected)


def test_a_table_that_only_looks_like_a_leftover_is_never_attached(db):
    """Tables of the next partition's name, not recorded in the registry: one put there by a
    role with CREATE on the schema (then given to the parent's owner, as a superuser's
    leftover is, with a marker comment), one owned by the applying role itself; both stay
    aside, and the new partition gets another name."""
    app = _role(db, "app")
    planter = _role(db, "planter")
    with db.connect() as conn:
        _build("fill_gaps", conn, db.dsn)
        _own_all(conn, app)
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
            sql.Identifier(SCHEMA), sql.Identifier(planter)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(planter)))
        conn.execute(sql.SQL("CREATE TABLE {} (k int NOT NULL, v text)").format(
            ident("ev_100")))
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident("ev_100"),
                                                                  sql.Identifier(app)))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            ident("ev_100"), sql.Literal('pgparts:{"role":"new_partition"}')))
    plan = _plan(db, "fill_gaps")
    assert plan.details["created"] == ["ev_100_2"], plan.details
    assert run(db, plan).ok
    with db.connect() as conn:
        tables = _tables(conn)
    assert tables["ev_100"][:2] == (False, app), tables
    assert tables["ev_100_2"][:2] == (True, app), tables
    # create-ahead, with a table of the new partition's name owned by the applying role
    added, result, _before = _new_tables(db, "create_ahead", app)
    assert result.ok, result.error
    name = min(n for n, (_a, _o, kind) in added.items() if kind == "p")
    with db.connect() as conn:
        no_future(conn, db.dsn)
        # shaped as a leftover would be: partitioned like the newest week, empty
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {}) PARTITION BY HASH (id)").format(
            ident(name), ident(TABLE)))
    assert run(db, _plan(db, "create_ahead")).ok
    with db.connect() as conn:
        tables = _tables(conn)
    assert not tables[name][0] and tables[f"{name}_2"][0], tables


def _acl(conn: psycopg.Connection, table: int | str) -> set[tuple[str, str, bool]]:
    """Who may do what on a table, by oid or by name in the scenario's schema (its owner's
    built-in privileges spelled out)."""
    if isinstance(table, str):
        table = conn.execute("SELECT to_regclass(%s)::oid",
                             (sql.Identifier(SCHEMA, table).as_string(conn),)).fetchone()[0]
    return {(g, p, o) for g, p, o in conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text"
        " END, a.privilege_type, a.is_grantable FROM pg_class c,"
        " aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE c.oid = %s",
        (table,)).fetchall()}


def _default_privileges(conn: psycopg.Connection, nosy: str, schema: str) -> None:
    """The applying role grants to `nosy` on every table it creates: database-wide (which
    replaces the built-in default, here also taking TRUNCATE from itself as owner) and in
    `schema`, and PUBLIC there; and UPDATE (setval) on its sequences in `schema`."""
    who = sql.Identifier(nosy)
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES GRANT INSERT ON TABLES TO {}").format(who))
    conn.execute("ALTER DEFAULT PRIVILEGES REVOKE TRUNCATE ON TABLES FROM CURRENT_USER")
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {},"
                         " PUBLIC").format(sql.Identifier(schema), who))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT UPDATE ON SEQUENCES TO {}"
                         ).format(sql.Identifier(schema), who))


def test_new_partitions_get_their_neighbours_grants_not_the_appliers_defaults(db):
    app, reader, nosy = (_role(db, n) for n in ("app", "reader", "nosy"))
    # create-ahead (sub-partitioned like the current week) as a superuser, for app's table
    with db.connect() as conn:
        no_future(conn, db.dsn)
        _own_all(conn, app)
        for (rel,) in conn.execute("SELECT c.oid::regclass::text FROM pg_class c JOIN"
                                   " pg_namespace n ON n.oid = c.relnamespace"
                                   " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                                   (SCHEMA,)).fetchall():
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.SQL(rel),
                                                                    sql.Identifier(reader)))
        _default_privileges(conn, nosy, SCHEMA)
        root = load_forest(conn).find(spec())
        newest = max((c for c in root.children if c.is_partitioned), key=lambda c: c.name)
        like = _acl(conn, newest.oid)
        like_leaf = _acl(conn, newest.children[0].oid)
    plan = _plan(db, "create_ahead")
    with db.connect() as conn:
        assert any("REVOKE ALL ON TABLE" in st.sql.as_string(conn) for s in plan.steps
                   for st in s.statements)
    result = run(db, plan)
    assert result.ok, result.error
    with db.connect() as conn:
        root = load_forest(conn).find(spec())
        new = [c for c in root.children if c.is_partitioned and c.name > newest.name]
        assert new, [c.name for c in root.children]
        for part in new:
            assert _acl(conn, part.oid) == like, (part.name, _acl(conn, part.oid), like)
            for leaf in part.children:
                assert _acl(conn, leaf.oid) == like_leaf, leaf.name
        assert any(p == "TRUNCATE" for g, p, _o in like if g == app)  # the owner's own
    # a move (fill-gaps out of the DEFAULT): the new DEFAULT's grants are the old one's
    with db.connect() as conn:
        # the scenario built without them (its tables as their owner made them), then back
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES REVOKE INSERT ON TABLES FROM {}").format(
            sql.Identifier(nosy)))
        conn.execute("ALTER DEFAULT PRIVILEGES GRANT TRUNCATE ON TABLES TO CURRENT_USER")
        _build("fill_gaps", conn, db.dsn)
        _default_privileges(conn, nosy, SCHEMA)
        # and on every sequence: the change log's identity orders its entries
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES GRANT UPDATE ON SEQUENCES TO {}").format(
            sql.Identifier(nosy)))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (150, 'v')").format(ident("ev")))
        _own_all(conn, app)
        conn.execute(sql.SQL("GRANT SELECT ON {}, {} TO {}").format(
            ident("ev"), ident("ev_def"), sql.Identifier(reader)))
        conn.execute(sql.SQL("GRANT UPDATE ON {} TO {}").format(ident("ev_def"),
                                                                sql.Identifier(reader)))
        old_default = _acl(conn, "ev_def")
    plan = _plan(db, "fill_gaps")
    after_capture = 1 + next(i for i, st in enumerate(plan.steps, 1)
                             if st.title.startswith("Capture"))

    def stop(event: str, step: int, _stmt: int, runner) -> None:
        if event == "statement" and step == after_capture:
            runner.cancel()

    assert run(db, plan, hook=stop).outcome == Outcome.CANCELLED
    with db.connect() as conn:  # the change log, replayed into the new partitions
        logs = conn.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n"
                            " ON n.oid = c.relnamespace WHERE n.nspname = 'pgparts'"
                            " AND c.relname LIKE 'pgparts\\_%' AND c.relkind IN ('r', 'S')"
                            ).fetchall()
        assert len(logs) >= 3  # log, its sequence, state
        me = conn.execute("SELECT current_user::text").fetchone()[0]
        for (log,) in logs:
            assert {g for g, _p, _o in _acl(conn, log)} == {me}, _acl(conn, log)
    result = run(db, _plan(db, "fill_gaps"))
    assert result.ok, result.error
    with db.connect() as conn:
        got_default = _acl(conn, "ev_def")
        got_new = _acl(conn, "ev_100")
    assert got_default == old_default, (got_default, old_default)
    # a new range partition out of the DEFAULT: the grants of the parent and of the DEFAULT
    # its rows come from (here the DEFAULT's hold the parent's)
    assert got_new == old_default, (got_new, old_default)
    assert not any(g in (nosy, "PUBLIC") for g, _p, _o in got_new | got_default)


def test_a_consolidated_copy_gets_the_weeks_grants_not_the_appliers_defaults(db):
    nosy = _role(db, "nosy")
    with db.connect() as conn:
        b = build_balances(conn, weeks=OLD_WEEKS[:1], rows_per_week=40)
        week = b.weeks[0]
        old = conn.execute("SELECT to_regclass(%s)::oid", (f"public.{week}",)).fetchone()[0]
        like = _acl(conn, old)
        _default_privileges(conn, nosy, "public")
        plan = build_consolidation_plan(conn, "account_balances", config=FAST_PLANS)
        # the change counter the swap's check reads
        assert any(st.sql.as_string(conn).startswith("REVOKE ALL ON SEQUENCE")
                   for step in plan.steps for st in step.statements)
    result = run(db, plan)
    assert result.ok, result.error
    with db.connect() as conn:
        new = conn.execute("SELECT to_regclass(%s)::oid",
                           (f"public.{week}{SUFFIX}",)).fetchone()[0]
        got = _acl(conn, new)
    assert new is not None and new != old  # the copy took the week's place
    assert got == like, (got, like)


def test_a_recorded_leftover_that_got_rows_is_still_refused(db):
    """The registry proves who created a table, not what was written to it since: a leftover
    holding rows is not attached (its rows would join the table unchecked)."""
    app = _role(db, "app")
    hook, fired = _killer(db, ("statement", 3, 1))  # after the create step committed
    _added, result, _before = _new_tables(db, "fill_gaps", app, hook)
    assert fired and result.outcome == Outcome.FAILED, result.error
    with db.connect() as conn:
        assert _registered(conn) == ["ev_100"]
        conn.execute(sql.SQL("INSERT INTO {} VALUES (150, 'planted')").format(
            ident("ev_100")))
    result = run(db, _plan(db, "fill_gaps"))
    assert result.outcome == Outcome.FAILED and "holds rows" in result.error, result.error
    with db.connect() as conn:
        assert _tables(conn)["ev_100"][0] is False
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident("ev"))).fetchone()[0] == 200


def test_the_entry_of_a_leftover_dropped_by_hand_is_forgotten(db):
    app = _role(db, "app")
    hook, fired = _killer(db, ("statement", 3, 1))  # after the create step committed
    _added, result, _before = _new_tables(db, "fill_gaps", app, hook)
    assert fired and result.outcome == Outcome.FAILED, result.error
    with db.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE {}").format(ident("ev_100")))
        assert _registered(conn) == ["ev_100"]
    result = run(db, _plan(db, "fill_gaps"))
    assert result.ok, result.error
    with db.connect() as conn:
        assert _registered(conn) == []
        assert _tables(conn)["ev_100"][:2] == (True, app)


@pytest.mark.parametrize("registry", ["none", "a superuser's"])
def test_a_role_that_cannot_use_the_registry_still_creates_partitions(db, registry):
    """The table's owner applying, with no CREATE on the database and no registry (or one a
    superuser created, which grants it nothing): partitions are created as before, unrecorded
    (an interrupted run's table would be left aside, not taken up)."""
    app = _role(db, "app")
    with db.connect() as conn:
        _build("fill_gaps", conn, db.dsn)
        _own_all(conn, app)
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
            sql.Identifier(SCHEMA), sql.Identifier(app)))
        if registry != "none":
            conn.execute(markers.guard_sql(conn, create=True))
    as_app = AsRole(db, app)
    plan = _plan(as_app, "fill_gaps")
    create = next(s for s in plan.steps if s.title.startswith("Create"))
    assert "You cannot record it in pgparts' registry" in create.explanation
    result = PlanRunner(as_app.target, plan, config=FAST, backoff_base=0.02).run()
    assert result.ok, result.error
    with db.connect() as conn:
        assert _tables(conn)["ev_100"][:2] == (True, app)
        exists = conn.execute("SELECT to_regnamespace('pgparts') IS NOT NULL").fetchone()[0]
        assert exists == (registry != "none")
        assert _registered(conn) == []
