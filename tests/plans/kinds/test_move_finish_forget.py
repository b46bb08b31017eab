"""A merge resumed after its swap forgets every registry entry it finished, also when the
first source's entry (the anchor, whose oid the move's targets are recorded under) fails its
catalog check and is left out of the finish."""

from __future__ import annotations

from psycopg import sql

from tui.core.catalog import load_forest

from ..scenarios import LEAVES, MERGED, base, ident, merged_plain, spec
from .test_moves import plan_for, run


def _registry(conn) -> list[tuple[str, str]]:
    return sorted(conn.execute("SELECT role, name FROM pgparts.plan_objects"
                               " WHERE role LIKE 'move%'").fetchall())


def test_a_merge_finished_after_its_swap_forgets_every_entry_it_finished(db):
    with db.connect() as conn:
        base(conn)
        oids = {c.name: c.oid for c in load_forest(conn).find(spec()).children}
    first, second = oids[LEAVES[0]], oids[LEAVES[1]]  # [0, 100) comes first: the anchor
    values = {"partitions": [LEAVES[1], LEAVES[0]], "name": MERGED}
    plan = plan_for(db, "merge", values)
    swap = next(i for i, s in enumerate(plan.steps) if s.title.startswith("Swap"))
    plan.steps = plan.steps[:swap + 1]  # stopped right after the swap committed
    result = run(db, plan)
    assert result.ok, result.error
    with db.connect() as conn:
        assert merged_plain(conn)
        # the anchor's detached table renamed by hand: its entry no longer matches the catalog
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            ident(f"pgparts_moved_{first}"), sql.Identifier("kept by hand")))
    finish = plan_for(db, "merge", values)
    assert finish.title.startswith("finish moving"), finish.title
    result = run(db, finish)
    assert result.ok, result.error
    with db.connect() as conn:
        # the second source was dropped and forgotten, and so were the move's targets; only
        # the anchor's entry stays, with its table (pgparts no longer vouches for either)
        assert _registry(conn) == [("move_source", f"pgparts_moved_{first}")]
        assert conn.execute(sql.SQL("SELECT to_regclass({})").format(sql.Literal(
            ident(f"pgparts_moved_{second}").as_string(conn)))).fetchone()[0] is None
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            ident("kept by hand"))).fetchone()[0] == 100
