"""A new partition's name as the user gives it (split's and merge's --name, move-values' new
TO_PARTITION, the console's fields for them): taken as typed, but a name with a dot is read as
[schema.]name, refused in another schema than the one the move builds in, and never becomes a
table literally named `other.x`. Planning only: nothing runs."""

from __future__ import annotations

import pytest

from tui.core.names import quote_ident
from tui.core.plans.kind import PlanKindError

from ..scenarios import LEAVES, LIST_A, SCHEMA, base, list_spec, with_list_and_null
from .test_move_kinds import plan_for
from .test_remedies import cli

Q = quote_ident(SCHEMA)


def _names(plan) -> list[str]:
    return [t["name"] for t in plan.details["targets"]]


def test_move_values_into_other_dot_x(db, capsys):
    with db.connect() as conn:
        with_list_and_null(conn, db.dsn)
    status, out, err = cli(capsys, "move-values", list_spec(), LIST_A, "other.x", "--values",
                           "b", "--dry-run", "-d", db.dsn)
    assert status == 2 and "\n" not in err.strip(), err
    assert "names schema other" in err and "other.x" not in out, (out, err)
    # qualified by the schema the move builds in: the name alone
    plan = plan_for(db, "move_values", {"from_partition": LIST_A, "to_partition": f"{Q}.x",
                                        "values": ["b"]}, list_spec())
    assert _names(plan) == [LIST_A, "x"]


@pytest.mark.parametrize(("kind", "values", "said"), [
    ("split", {"partition": LEAVES[1], "at": ["150"], "name": ["other.y"]},
     "--name: other.y names schema other"),
    ("merge", {"partitions": LEAVES[:2], "name": "other.y"},
     "--name: other.y names schema other"),
    ("merge", {"partitions": LEAVES[:2], "name": "a.b.c"}, "--name: a.b.c is not [schema.]name"),
])
def test_split_and_merge_names_with_a_schema(db, kind, values, said):
    with db.connect() as conn:
        base(conn)
    with pytest.raises(PlanKindError) as caught:
        plan_for(db, kind, values)
    assert str(caught.value).startswith(said), caught.value


def test_names_read_alike_by_split_and_merge(db):
    with db.connect() as conn:
        base(conn)
    plan = plan_for(db, "split", {"partition": LEAVES[1], "at": ["150"],
                                  "name": [f"{Q}.Upper"]})
    assert _names(plan) == [LEAVES[1], "upper"]  # unquoted: folded, as SQL reads it
    plan = plan_for(db, "merge", {"partitions": LEAVES[:2], "name": '"v1.2"'})
    assert _names(plan) == ["v1.2"]  # a quoted dot belongs to the name
    plan = plan_for(db, "merge", {"partitions": LEAVES[:2], "name": 'As "typed'})
    assert _names(plan) == ['As "typed']  # no dot: taken as typed
