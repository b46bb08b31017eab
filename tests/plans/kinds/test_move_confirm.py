"""What a split's preview says it drops (the detached original, not the partition that keeps its
name), its row estimate (each source row once, in the preview and the progress total) and its
confirmation on the terminal (the table's name typed, as the console asks), on real servers."""

from __future__ import annotations

import io

import pytest
from psycopg import sql

from tui.core.catalog import PartNode, load_forest
from tui.core.names import display_name
from tui.core.plans.kind import PlanKindError

from ..scenarios import MOVE_SCENARIOS, SCHEMA, SPLIT_NEW, SPLIT_SOURCE, TABLE, ident, spec
from .test_moves import plan_for
from .test_remedies import cli

SCENARIO = MOVE_SCENARIOS["split"]
SPLIT = ("split", spec(), SPLIT_SOURCE, "--at", "150", "--name", SPLIT_NEW)


class Terminal(io.StringIO):
    """What the operator types, as a terminal: --apply asks only on one."""

    def isatty(self) -> bool:
        return True


def _built(db) -> PartNode:
    with db.connect() as conn:
        SCENARIO.build(conn, db.dsn)
        conn.execute(sql.SQL("ANALYZE {}").format(ident(TABLE)))
        source = load_forest(conn).find(display_name(SCHEMA, SPLIT_SOURCE))
    assert source is not None and source.rows > 0
    return source


def test_split_preview_names_the_detached_original(db, capsys):
    source = _built(db)
    [gone] = plan_for(db, "split", SCENARIO.values).facts.destroys
    assert gone.name == display_name(SCHEMA, f"pgparts_moved_{source.oid}")
    status, out, err = cli(capsys, *SPLIT, "--dry-run", "-d", db.dsn)
    assert status == 0, err
    drops = out.split("\nDrops:\n")[1].split("\nSteps:")[0]
    assert f"the detached original of {source.qualified}, table {gone.name} (its rows " \
           f"verified in the new partitions first)" in drops, drops
    assert f"table {source.qualified}" not in drops, drops


def test_split_counts_each_source_row_once(db):
    source = _built(db)
    plan = plan_for(db, "split", SCENARIO.values)
    copy = next(s for s in plan.steps if s.title.startswith("Copy "))
    shares = [st.est_rows for st in copy.statements if st.kind == "copy"]
    assert len(shares) == 2 and sum(shares) == source.rows, shares
    # the progress bar's total (every statement moving rows) and the preview's estimate
    assert sum(st.est_rows for s in plan.steps for st in s.statements
               if st.kind == "copy") == source.rows
    assert plan.estimate.rows == source.rows


def test_split_apply_wants_the_table_name_typed(db, capsys, monkeypatch):
    source = _built(db)
    # 'yes' is not enough where originals are dropped: the table's name is
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    status, out, err = cli(capsys, *SPLIT, "--apply", "-d", db.dsn)
    assert status == 1 and "Type its name" in out and "not applied" in err, (out, err)
    assert f"drops the detached original of {source.qualified}" in err, err
    with db.connect() as conn:
        assert not SCENARIO.fixed(conn)
    monkeypatch.setattr("sys.stdin", Terminal(spec() + "\n"))
    status, out, err = cli(capsys, *SPLIT, "--apply", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        assert SCENARIO.fixed(conn)


def test_a_long_name_is_said_once(db):
    _built(db)
    long = "a" * 71
    with pytest.raises(PlanKindError) as caught:
        plan_for(db, "split", {**SCENARIO.values, "name": [long]})
    assert str(caught.value).startswith(f"--name: {long!r} is 71 bytes; PostgreSQL keeps only "
                                        f"63"), caught.value
