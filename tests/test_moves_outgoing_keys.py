"""A move on a table that has foreign keys of its own (to another table): the new partitions get
the keys before the swap, validated, so that the swap's ATTACH adopts them (one key per
partition, inherited from the parent's, valid) instead of validating them under the parent's
lock; a run killed after the keys were added resumes."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tui.core.catalog import load_forest
from tui.core.config import Config, PlansConfig
from tui.core.plans import PlanRunner
from tui.core.plans.registry import kind_named

from .plans.scenarios import (
    HWEEK_MERGED,
    MOVE_SCENARIOS,
    SPLIT_NEW,
    SPLIT_SOURCE,
    TABLE,
    ident,
    leftovers,
    spec,
)

DIM = 'dïm ";x'
KEY = 'to dïm ";é'
FAST = PlansConfig(lock_timeout_seconds=0.3, lock_retries=2)


def _plan(db):
    kind = kind_named("split")
    with db.connect() as conn:
        forest = load_forest(conn)
        return kind.build(conn, forest, kind.status(conn, forest, spec()),
                          kind.request(MOVE_SCENARIOS["split"].values, spec()),
                          Config(plans=FAST))


def _keys(conn: psycopg.Connection, partition: str) -> list[tuple[str, bool, bool]]:
    """(name, validated, inherited from the parent's key) of the keys to DIM on a partition."""
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT conname, convalidated, conparentid <> 0 FROM pg_constraint"
        " WHERE contype = 'f' AND conrelid = %s::regclass AND confrelid = %s::regclass",
        (ident(partition).as_string(conn), ident(DIM).as_string(conn))).fetchall()]


def test_split_builds_the_parents_own_keys_before_the_swap_and_resumes(db):
    with db.connect() as conn:
        MOVE_SCENARIOS["split"].build(conn, db.dsn)
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(ident(DIM)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT DISTINCT id FROM {}").format(
            ident(DIM), ident(TABLE)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY (id) REFERENCES {}")
                     .format(ident(TABLE), sql.Identifier(KEY), ident(DIM)))
    plan = _plan(db)
    titles = [s.title for s in plan.steps]
    add = next(i for i, t in enumerate(titles, 1) if t.startswith("Add the parent's foreign"))
    assert titles[add].startswith("Validate the parent's foreign keys"), titles
    assert add < next(i for i, t in enumerate(titles, 1) if t.startswith("Swap")), titles

    # killed while validating them: the keys exist NOT VALID on the new tables
    def kill(event: str, step: int, stmt: int, runner: PlanRunner) -> None:
        if (event, step, stmt) == ("statement", add + 1, 1):
            with psycopg.connect(db.dsn, autocommit=True) as c:
                c.execute("SELECT pg_terminate_backend(%s, 5000)", (runner.backend_pid,))

    first = PlanRunner(db.target, plan, config=FAST, backoff_base=0.02, hook=kill).run()
    assert not first.ok
    result = PlanRunner(db.target, _plan(db), config=FAST, backoff_base=0.02).run()
    assert result.ok, (result.error, result.state)
    skipped = [o.title for o in result.steps if o.status.value == "skipped"]
    assert any(t.startswith("Add the parent's foreign") for t in skipped), skipped
    with db.connect() as conn:
        for part in (SPLIT_SOURCE, SPLIT_NEW):
            # adopted by ATTACH: had it cloned the parent's key instead, there would be two
            assert _keys(conn, part) == [(KEY, True, True)], part
        assert leftovers(conn) == []
        try:
            with conn.transaction():
                conn.execute(sql.SQL("INSERT INTO {} VALUES (99999, 160, 'x')").format(
                    ident(TABLE)))
        except psycopg.errors.ForeignKeyViolation:
            pass
        else:
            raise AssertionError("the key is not enforced on the new partition")


def test_merge_of_sub_partitioned_weeks_keys_the_leaves_before_the_swap(db):
    """A sub-partitioned new partition gets the keys on its leaves (before PostgreSQL 18 a
    partitioned table takes no NOT VALID key): ATTACH creates the partition's own and adopts
    the leaves' validated ones."""
    scenario = MOVE_SCENARIOS["merge"]
    with db.connect() as conn:
        scenario.build(conn, db.dsn)
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(ident(DIM)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT DISTINCT id FROM {}").format(
            ident(DIM), ident(TABLE)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY (id) REFERENCES {}")
                     .format(ident(TABLE), sql.Identifier(KEY), ident(DIM)))
    kind = kind_named("merge")
    with db.connect() as conn:
        forest = load_forest(conn)
        plan = kind.build(conn, forest, None, kind.request(scenario.values, spec()),
                          Config(plans=FAST))
    add = next(s for s in plan.steps if s.title.startswith("Add the parent's foreign"))
    assert len(add.statements) == 4  # the merged week's four hash leaves, not the week
    result = PlanRunner(db.target, plan, config=FAST, backoff_base=0.02).run()
    assert result.ok, (result.error, result.state)
    with db.connect() as conn:
        assert scenario.fixed(conn)
        merged = [HWEEK_MERGED] + [f"{HWEEK_MERGED}_h{r}" for r in range(4)]
        for part in merged:
            assert _keys(conn, part) == [(KEY, True, True)], part
        assert leftovers(conn) == []
