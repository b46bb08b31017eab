"""A light partition forest for EXPLAIN: only the trees the query and its plan touch.

The full catalog loader also reads sizes, statistics and indexes of every tree in the database,
which costs most of a second at 10,000 partitions. The pruning report needs only the trees of the
relations it sees, with bounds and keys, so it reads those: one round trip, lock-free
(pg_partition_root and pg_get_expr(relpartbound, 0) open no relation).

Its `leaf_count` counts the partitions PostgreSQL plans: a detach-pending partition (an
interrupted DETACH ... CONCURRENTLY) stays in the tree, marked, but is not counted above itself.
The SQL here runs under the session's safe search_path (pg_catalog, pg_temp), never under the
user's: its unqualified pg_get_expr, quote_ident and `=` are pg_catalog's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import psycopg

from ..catalog import STRATEGIES, Forest, PartNode, new_node

# The recursion carries each relation's few pg_class columns, looked up by oid through a LATERAL
# subquery (OFFSET 0 keeps it a per-row index probe): joining pg_class after the recursion made
# the planner hash the whole of pg_class, and ordering by the path arrays cost another 0.1 s at
# 10,000 partitions. Rows are put in level order client-side (a parent before its partitions),
# and the path and the parent's strategy are rebuilt there too.
_LIGHT_SQL = """
WITH RECURSIVE seen AS (
    SELECT x.oid FROM unnest(%(oids)s::oid[]) AS x(oid)
  UNION
    SELECT to_regclass(quote_ident(p.s) || '.' || quote_ident(p.n))::oid
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS p(s, n)
), roots AS (
    SELECT DISTINCT pg_partition_root(c.oid)::oid AS r
    FROM seen JOIN pg_class c ON c.oid = seen.oid
    WHERE c.relkind IN ('r', 'p', 'f') AND (c.relkind = 'p' OR c.relispartition)
), tree AS (
    SELECT c.oid AS relid, 0::oid AS parent, 0 AS level, c.relname, c.relnamespace, c.relkind,
           c.relpersistence, NULL::text COLLATE "C" AS bound, false AS pending
    FROM roots JOIN pg_class c ON c.oid = roots.r
  UNION ALL
    SELECT i.inhrelid, i.inhparent, t.level + 1, c.relname, c.relnamespace, c.relkind,
           c.relpersistence, c.bound, i.inhdetachpending
    FROM tree t
    JOIN pg_inherits i ON i.inhparent = t.relid
    CROSS JOIN LATERAL (
        SELECT c.relname, c.relnamespace, c.relkind, c.relpersistence,
               -- leaves' bounds are read later, only for the partitions shown (fill_bounds)
               CASE WHEN c.relkind = 'p' THEN pg_get_expr(c.relpartbound, 0) END AS bound
        FROM pg_class c WHERE c.oid = i.inhrelid OFFSET 0) c
)
SELECT t.level, t.relid, t.parent, n.nspname, t.relname, t.relkind::text, t.relpersistence::text,
       t.bound, pt.partstrat::text,
       CASE WHEN pt.partrelid IS NOT NULL THEN
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = k.attnum) END,
       CASE WHEN pt.partrelid IS NOT NULL THEN
       (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
          FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = k.attnum) END,
       CASE WHEN pt.partexprs IS NOT NULL THEN pg_get_partkeydef(t.relid) END,
       nullif(pt.partdefid, 0), t.pending
FROM tree t
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = t.relid
"""


# What the pruning report does not read: sizes, statistics and indexes stay at "unknown".
_NOT_READ: dict[str, Any] = {
    "bound": None,  # parsed on demand (pruning._bounds_below)
    "heap_bytes": 0, "toast_bytes": 0, "index_bytes": 0,
    "exact_sizes": False, "reltuples": -1, "n_live_tup": 0, "n_dead_tup": 0,
    "last_vacuum": None, "last_autovacuum": None, "last_analyze": None, "last_autoanalyze": None,
}
_PER_ROW = frozenset({
    "oid", "root_oid", "parent_oid", "level", "path", "schema", "name", "relkind", "persistence",
    "bound_text", "parent_strategy", "strategy", "key_columns", "key_types", "key_expressions",
    "default_partition_oid", "detach_pending",
})


def _fast_template() -> dict[str, Any] | None:
    """PartNode's field values before a row fills them in, when nodes may be made by filling an
    instance's __dict__ (PartNode's generated __init__ takes as long as everything else done per
    partition here). None, and the constructor is used, unless PartNode is a plain dataclass
    whose every field is set here or has a default, and whose factories make lists."""
    if hasattr(PartNode, "__slots__") or hasattr(PartNode, "__post_init__"):
        return None
    template: dict[str, Any] = {}
    for f in dataclasses.fields(PartNode):
        if f.name in _PER_ROW or f.name in _NOT_READ:
            template[f.name] = _NOT_READ.get(f.name)
        elif f.default is not dataclasses.MISSING:
            template[f.name] = f.default
        elif f.default_factory is not list:  # type: ignore[comparison-overlap]
            return None  # a field this module would not know how to fill
    return template


_TEMPLATE = _fast_template()
_LIST_FIELDS = tuple(f.name for f in dataclasses.fields(PartNode)
                     if f.default_factory is list)  # type: ignore[comparison-overlap]


def _part_node(values: dict[str, Any]) -> PartNode:
    if _TEMPLATE is None:
        return PartNode(**values, **_NOT_READ)
    state = {**_TEMPLATE, **values}
    for name in _LIST_FIELDS:
        state[name] = []
    return new_node(state)


def load_trees(
    conn: psycopg.Connection, oids: set[int], names: set[tuple[str, str]]
) -> Forest:
    """The partition trees containing any of `oids` or of the (schema, name) relations."""
    schemas = [s for s, _ in names]
    rels = [n for _, n in names]
    # binary: 10,000 rows of oids parse faster
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(_LIGHT_SQL, {"oids": oid_array(sorted(oids)), "schemas": schemas,
                                        "names": rels}).fetchall()
    # by level, so that a parent precedes its partitions (cheaper here than in the query)
    rows.sort(key=itemgetter(0, 1))  # (level, oid)
    nodes: dict[int, PartNode] = {}
    roots: list[PartNode] = []
    get = nodes.get
    for (level, relid, parent, schema, name, relkind, persistence, bound_text,
         strategy, key_columns, key_types, key_expressions, default, pending) in rows:
        up = get(parent) if parent else None
        partitioned = relkind == "p"
        node = _part_node({
            "oid": relid, "root_oid": up.root_oid if up is not None else relid,
            "parent_oid": parent or None, "level": level,
            "path": (*up.path, relid) if up is not None else (relid,),
            "schema": schema, "name": name, "relkind": relkind, "persistence": persistence,
            "bound_text": bound_text,
            "parent_strategy": up.strategy if up is not None else None,
            "strategy": STRATEGIES.get(strategy) if partitioned else None,
            "key_columns": tuple(key_columns) if key_columns else (),
            "key_types": tuple(key_types) if key_types else (),
            "key_expressions": key_expressions, "default_partition_oid": default,
            "detach_pending": pending,
        })
        if not partitioned:
            node.leaf_count = 1
        nodes[relid] = node
        if up is not None:
            up.children.append(node)
        elif not parent:
            roots.append(node)
    # leaf counts bottom-up: rows come by level, so reversed order visits children first. A
    # partition whose DETACH ... CONCURRENTLY was interrupted is no longer planned by
    # PostgreSQL, so it can be neither scanned nor pruned: its leaves are not counted above it
    for node in reversed(list(nodes.values())):
        if node.leaf_count and node.parent_oid is not None and not node.detach_pending:
            up = get(node.parent_oid)
            if up is not None:
                up.leaf_count += node.leaf_count
    return Forest(roots, nodes, {}, int(conn.info.server_version), datetime.now(UTC),
                  indexes_loaded=False)


_BOUNDS_SQL = """
SELECT c.oid, pg_get_expr(c.relpartbound, 0) FROM pg_class c WHERE c.oid = ANY(%s::oid[])
"""


def fill_bounds(conn: psycopg.Connection, nodes: Iterable[PartNode]) -> None:
    """Read the bounds of these partitions (one round trip; pg_get_expr(.., 0) takes no lock)."""
    by_oid = {n.oid: n for n in nodes if n.bound_text is None and n.parent_oid is not None}
    if not by_oid:
        return
    with conn.cursor(binary=True) as cur:
        for oid, text in cur.execute(_BOUNDS_SQL, (oid_array(by_oid),)).fetchall():
            by_oid[oid].bound_text = text


def oid_array(oids: Iterable[int]) -> str:
    """An oid[] as its text literal ('{1,2,3}'), cast in the query: psycopg dumps a Python list
    element by element, which costs tens of milliseconds for 10,000 oids."""
    return "{" + ",".join(str(int(o)) for o in oids) + "}"
