"""The new key, the surrogate key and the tie-break column, proposed from the catalog and
probed on the data."""

from __future__ import annotations

import pytest

from tui.core.migrate import MigrateError
from tui.core.migrate.keys import is_unique, propose_keys, propose_tiebreak, surrogate_key
from tui.core.migrate.preflight import dependents
from tui.core.migrate.source import load_table, partition_column

from .migrate_support import HOSTILE, PLAIN, build_legacy


@pytest.mark.parametrize("names", [PLAIN, HOSTILE], ids=["plain", "hostile"])
def test_proposals_for_the_legacy_table(db, names):
    n = names
    with db.connect() as conn:
        build_legacy(conn, n, rows=600)
        table = load_table(conn, n.schema, n.table)
        pc = partition_column(table, n.ts)
        deps = dependents(conn, table)
        assert surrogate_key(table, deps) == n.id
        keys = propose_keys(conn, table, pc, deps)
        best = keys[0]
        assert best.columns == (n.ts, n.pdm) and best.unique is None
        assert any(s.startswith("index ") for s in best.sources)
        assert any(s.startswith("foreign key ") for s in best.sources)
        assert keys[-1].columns == (n.ts, n.id) and keys[-1].holds_surrogate
        pk = next(i for i in deps.indexes if i.primary)
        assert keys[-1].sources == [f"primary key {pk.constraint} + {n.ts}"]
        probed = {p.columns: p for p in propose_keys(conn, table, pc, deps, probe=True)}
        assert probed[(n.ts, n.pdm)].unique is False
        assert "not unique yet" in probed[(n.ts, n.pdm)].note
        assert probed[(n.ts, n.id)].unique is True
        assert probed[(n.ts,)].unique is False
        # the operator's own candidate comes first among equals
        given = propose_keys(conn, table, pc, deps, extra=[(n.pdm, n.tracer)])
        assert given[0].columns == (n.ts, n.pdm, n.tracer) and given[0].sources == ["given"]
        with pytest.raises(MigrateError, match="no column"):
            propose_keys(conn, table, pc, deps, extra=[("nope",)])
        ties = propose_tiebreak(conn, table, (n.ts, n.pdm), deps)
        assert ties[0].column == n.tracer and ties[0].not_null
        assert ties[0].distinct_fraction is not None and ties[0].distinct_fraction > 0.9
        assert n.id not in [t.column for t in ties]


def test_unique_proposal_and_probe_timeout(db):
    db.execute("""
        CREATE TABLE public.ev (id int GENERATED ALWAYS AS IDENTITY, d date NOT NULL,
                                code text, note text, UNIQUE (code));
        INSERT INTO public.ev (d, code) SELECT DATE '2024-01-01' + i, 'c' || i
        FROM generate_series(1, 300) i;""")
    with db.connect() as conn:
        table = load_table(conn, "public", "ev")
        pc = partition_column(table, "d")
        deps = dependents(conn, table)
        assert surrogate_key(table, deps) is None  # the identity is no key here
        keys = propose_keys(conn, table, pc, deps, probe=True)
        # unique on the data, and the partition column alone proves unique too
        assert [(k.columns, k.unique) for k in keys][:2] == [(("d",), True), (("d", "code"), True)]
        assert keys[1].nullable == ("code",)
        with db.connect() as locker:
            locker.autocommit = False
            locker.execute("LOCK TABLE public.ev IN ACCESS EXCLUSIVE MODE")
            assert is_unique(conn, table, ("d",), timeout="200ms") is None
            locker.rollback()
        assert is_unique(conn, table, ("d",)) is True
        # inside the caller's transaction, the caller's own timeout comes back afterwards
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '42s'")
            assert is_unique(conn, table, ("d",), timeout="5s") is True
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "42s"
        ties = propose_tiebreak(conn, table, ("d",), deps)
        assert [t.column for t in ties] == ["code", "note"]  # identity left out
        assert ties[0].reason == "no statistics"
        with pytest.raises(MigrateError):
            propose_tiebreak(conn, table, (), deps)
