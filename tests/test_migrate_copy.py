"""Stage 6's row selection: the DEFAULT partition's condition is the complement of the other
partitions' ranges, whether written as one span (an index serves it) or in the general form."""

from __future__ import annotations

import pytest
from psycopg import sql

from tui.core.migrate.copy import range_condition
from tui.core.migrate.spec import MigrationSpec, SpecPartition

P = SpecPartition
LAYOUTS = {
    # end to end, listed out of order: one span [0, 60)
    "chained": ((P("b", "20", "40"), P("a", "0", "20"), P("c", "40", "60")), True),
    "from MINVALUE": ((P("a", "MINVALUE", "10"), P("b", "10", "50")), True),
    "to MAXVALUE": ((P("a", "-3", "7"), P("b", "7", None)), True),
    "both ends open": ((P("a", None, "30"), P("b", "30", "MAXVALUE")), True),
    # a gap (20 to 30) and a second start: the general form
    "gap": ((P("a", "0", "20"), P("b", "30", "60")), False),
    # the same value written twice differently never chains: the general form
    "other text": ((P("a", "0", "20"), P("b", "020", "60")), False),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_default_condition_is_the_complement_of_the_ranges(db, layout):
    parts, spanned = LAYOUTS[layout]
    spec = MigrationSpec("public", "t", 0, "t_old", "v", "integer", ("v",), None, None,
                         (*parts, P("d", default=True)))
    db.execute("CREATE TABLE IF NOT EXISTS public.vals (v int8);"
               " TRUNCATE public.vals; INSERT INTO public.vals SELECT g FROM"
               " generate_series(-10, 70) g UNION ALL SELECT NULL")
    default = range_condition(spec, spec.partitions[-1])
    ranges = sql.SQL(" OR ").join(sql.SQL("({})").format(range_condition(spec, p))
                                  for p in parts)
    got, want = db.query(sql.SQL(
        "SELECT array_agg(v ORDER BY v) FILTER (WHERE {d}),"
        " array_agg(v ORDER BY v) FILTER (WHERE v IS NULL OR NOT ({r})) FROM public.vals"
    ).format(d=default, r=ranges))[0]
    assert got == want and None in got
    with db.connect() as conn:
        assert ("NOT (" not in default.as_string(conn)) == spanned
