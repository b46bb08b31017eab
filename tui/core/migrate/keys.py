"""The new primary key, the surrogate key it replaces, and the tie-break column.

A partitioned table's primary key must contain the partition column, so the surrogate key
(`pay_id`) cannot stay the key by itself. Proposals come from the catalog (the unique indexes
plus the partition column; the indexes and foreign keys that already hold the partition
column, which is where a natural key usually shows) and, when the operator asks, from the data:
each candidate is probed for uniqueness with `GROUP BY ... HAVING count(*) > 1 LIMIT 1` under a
statement timeout. A natural key is usually not unique yet: the Duplicates and Collisions stages
make it so; a key holding the surrogate id is unique but would keep every duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from . import MigrateError
from .preflight import Dependents
from .source import PartitionColumn, SourceTable, statement_timeout

_INTEGER_TYPES = ("int2", "int4", "int8")


def surrogate_key(table: SourceTable, deps: Dependents) -> str | None:
    """The single integer column of the primary key (or else of a unique constraint) that a
    sequence or an identity fills: its lowest value is the oldest row."""
    sequenced = {s[2] for s in deps.sequences}
    for want_primary in (True, False):
        for ix in deps.indexes:
            if (ix.primary == want_primary and ix.unique and ix.valid and len(ix.columns) == 1
                    and not ix.partial_or_expression):
                col = table.column(ix.columns[0])
                if col.type_name in _INTEGER_TYPES and col.name in sequenced:
                    return col.name
    return None


@dataclass
class KeyProposal:
    columns: tuple[str, ...]
    sources: list[str] = field(default_factory=list)
    nullable: tuple[str, ...] = ()  # columns the key would need NOT NULL on
    holds_surrogate: bool = False  # unique by construction; would keep every duplicate
    unique: bool | None = None  # probed on the data; None: not probed, or the probe timed out
    note: str = ""


def _order(columns: tuple[str, ...], part: str) -> tuple[str, ...]:
    """Partition column first: the key's index then serves range scans on it too."""
    return (part, *[c for c in columns if c != part])


def key_candidates(table: SourceTable, pc: PartitionColumn, deps: Dependents,
                   extra: list[tuple[str, ...]] | None = None) -> list[KeyProposal]:
    """Candidate keys from the catalog (and `extra` ones from the operator), unprobed."""
    surrogate = surrogate_key(table, deps)
    found: dict[frozenset[str], KeyProposal] = {}

    def add(columns: tuple[str, ...], source: str) -> None:
        for c in columns:
            table.column(c)  # MigrateError on a name that is not a column
        cols = _order(columns, pc.name)
        entry = found.setdefault(frozenset(cols), KeyProposal(cols))
        entry.sources.append(source)

    for cols in extra or []:
        add(tuple(cols), "given")
    add((pc.name,), "the partition column alone")
    for ix in deps.indexes:
        if not ix.columns or not ix.valid or ix.partial_or_expression:
            continue
        what = (f"primary key {ix.constraint or ix.name}" if ix.primary
                else f"unique index {ix.name}" if ix.unique else f"index {ix.name}")
        if ix.unique or pc.name in ix.columns:
            add(ix.columns, what if pc.name in ix.columns else f"{what} + {pc.name}")
    for fk in deps.own_fks:
        add(fk.columns, f"foreign key {fk.name} + {pc.name}")
    out = list(found.values())
    for p in out:
        p.nullable = tuple(c for c in p.columns if not table.column(c).not_null)
        p.holds_surrogate = surrogate is not None and surrogate in p.columns
    return out


def is_unique(conn: psycopg.Connection, table: SourceTable, columns: tuple[str, ...],
              timeout: str = "30s") -> bool | None:
    """Whether no two rows share these columns (NULLs count as equal: a key refuses them
    anyway). Reads the table; None when it takes longer than `timeout`."""
    probe = sql.SQL("SELECT 1 FROM {t} GROUP BY {cols} HAVING pg_catalog.count(*) > 1"
                    " LIMIT 1").format(
        t=table.ident, cols=sql.SQL(", ").join(map(sql.Identifier, columns)))
    try:
        with statement_timeout(conn, timeout):
            return conn.execute(probe).fetchone() is None
    except psycopg.errors.QueryCanceled:
        return None


def propose_keys(conn: psycopg.Connection, table: SourceTable, pc: PartitionColumn,
                 deps: Dependents, *, probe: bool = False, timeout: str = "30s",
                 extra: list[tuple[str, ...]] | None = None) -> list[KeyProposal]:
    """Candidate keys, best first: natural keys (unique ones first when probed), fewest
    columns first; keys holding the surrogate id last."""
    out = key_candidates(table, pc, deps, extra)
    if probe:
        for p in out:
            p.unique = is_unique(conn, table, p.columns, timeout)
            if p.unique is None:
                p.note = f"the uniqueness probe took longer than {timeout}"
            elif not p.unique and not p.holds_surrogate:
                p.note = "not unique yet: the duplicates and collisions stages make it so"
    # the partition column alone is rarely the natural key unless the data proves it unique
    return sorted(out, key=lambda p: (p.holds_surrogate, p.unique is False, p.unique is None,
                                      "given" not in p.sources,
                                      len(p.columns) == 1 and p.unique is not True,
                                      len(p.columns)))


# -- the tie-break column -------------------------------------------------------------------------
@dataclass(frozen=True)
class Tiebreak:
    column: str
    not_null: bool
    distinct_fraction: float | None  # from pg_stats: 1.0 = every row a different value
    reason: str


_DISTINCT_SQL = """
SELECT s.attname, s.n_distinct, c.reltuples::float8 FROM pg_stats s
JOIN pg_class c ON c.oid = %(oid)s
WHERE s.schemaname = %(schema)s AND s.tablename = %(name)s AND NOT s.inherited
"""


def propose_tiebreak(conn: psycopg.Connection, table: SourceTable, key: tuple[str, ...],
                     deps: Dependents) -> list[Tiebreak]:
    """Columns that could order the rows colliding on `key`, best first: NOT NULL, then the
    most distinct values (pg_stats, no row read). The surrogate id is left out: ordering by
    arrival is what a tie-break column must not depend on."""
    if not key:
        raise MigrateError("choose the new key first")
    surrogate = surrogate_key(table, deps)
    generated = {c for c, _ in deps.identity_columns}
    stats = {}
    for name, n_distinct, reltuples in conn.execute(
            _DISTINCT_SQL, {"oid": table.oid, "schema": table.schema, "name": table.name}):
        if n_distinct < 0:
            stats[name] = -n_distinct
        elif reltuples > 0:
            stats[name] = min(1.0, n_distinct / reltuples)
    out = []
    for col in table.columns:
        if col.name in key or col.name == surrogate or col.name in generated:
            continue
        frac = stats.get(col.name)
        reason = ("no statistics" if frac is None
                  else f"about {frac:.0%} of the rows hold distinct values")
        out.append(Tiebreak(col.name, col.not_null, frac, reason))
    return sorted(out, key=lambda t: (not t.not_null, -(t.distinct_fraction or 0.0), t.column))
