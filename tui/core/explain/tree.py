"""A light partition forest for EXPLAIN: only the trees the query and its plan touch.

The full catalog loader also reads sizes, statistics and indexes of every tree in the database,
which costs most of a second at 10,000 partitions. The pruning report needs only the trees of the
relations it sees, with bounds and keys, so it reads those: one round trip, lock-free
(pg_partition_root and pg_get_expr(relpartbound, 0) open no relation).
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from ..catalog import STRATEGIES, Forest, PartNode

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
    SELECT r AS relid, r AS root, 0::oid AS parent, 0 AS level, ARRAY[r] AS path
    FROM roots WHERE r IS NOT NULL
  UNION ALL
    SELECT i.inhrelid, t.root, i.inhparent, t.level + 1, t.path || i.inhrelid
    FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid
)
SELECT t.level, t.relid, t.parent, n.nspname, c.relname, c.relkind::text,
       c.relpersistence::text,
       -- leaves' bounds are read later, only for the partitions shown (fill_bounds)
       CASE WHEN c.relkind = 'p' THEN pg_get_expr(c.relpartbound, 0) END,
       pp.partstrat::text, pt.partstrat::text,
       CASE WHEN pt.partrelid IS NOT NULL THEN
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) END,
       CASE WHEN pt.partrelid IS NOT NULL THEN
       (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
          FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) END,
       CASE WHEN pt.partexprs IS NOT NULL THEN pg_get_partkeydef(c.oid) END,
       nullif(pt.partdefid, 0)
FROM tree t
JOIN pg_class c ON c.oid = t.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_partitioned_table pp ON pp.partrelid = t.parent
ORDER BY t.root, t.path
"""


def load_trees(
    conn: psycopg.Connection, oids: set[int], names: set[tuple[str, str]]
) -> Forest:
    """The partition trees containing any of `oids` or of the (schema, name) relations."""
    schemas = [s for s, _ in names]
    rels = [n for _, n in names]
    # binary: 10,000 rows of oids parse faster; paths are rebuilt here instead of sent
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(_LIGHT_SQL, {"oids": sorted(oids), "schemas": schemas,
                                        "names": rels}).fetchall()
    nodes: dict[int, PartNode] = {}
    roots: list[PartNode] = []
    for (level, relid, parent, schema, name, relkind, persistence, bound_text,
         parent_strategy, strategy, key_columns, key_types, key_expressions, default) in rows:
        up = nodes.get(parent) if parent else None
        # rows come in path order (ORDER BY t.path): a parent always precedes its partitions
        path = (*up.path, relid) if up is not None else (relid,)
        node = PartNode(
            oid=relid, root_oid=path[0], parent_oid=parent or None, level=level, path=path,
            schema=schema, name=name, relkind=relkind, persistence=persistence,
            bound_text=bound_text, bound=None,  # parsed on demand (pruning._bounds_below)
            parent_strategy=STRATEGIES.get(parent_strategy or ""),
            strategy=STRATEGIES.get(strategy or ""),
            key_columns=tuple(key_columns or ()), key_types=tuple(key_types or ()),
            key_expressions=key_expressions, default_partition_oid=default,
            detach_pending=False, heap_bytes=0, toast_bytes=0, index_bytes=0,
            exact_sizes=False, reltuples=-1, n_live_tup=0, n_dead_tup=0, last_vacuum=None,
            last_autovacuum=None, last_analyze=None, last_autoanalyze=None,
        )
        nodes[relid] = node
        if node.parent_oid is None:
            roots.append(node)
        elif up is not None:
            up.children.append(node)
    # leaf counts bottom-up: rows come in path order, so reversed order visits children first
    for node in reversed(list(nodes.values())):
        if node.is_leaf:
            node.leaf_count = 1
        parent_node = nodes.get(node.parent_oid) if node.parent_oid else None
        if parent_node is not None:
            parent_node.leaf_count += node.leaf_count
    return Forest(roots, nodes, {}, int(conn.info.server_version), datetime.now(UTC))


_BOUNDS_SQL = """
SELECT c.oid, pg_get_expr(c.relpartbound, 0) FROM pg_class c WHERE c.oid = ANY(%s::oid[])
"""


def fill_bounds(conn: psycopg.Connection, nodes: list[PartNode]) -> None:
    """Read the bounds of these partitions (one round trip; pg_get_expr(.., 0) takes no lock)."""
    missing = [n for n in nodes if n.bound_text is None and n.parent_oid is not None]
    if not missing:
        return
    by_oid = {n.oid: n for n in missing}
    for oid, text in conn.execute(_BOUNDS_SQL, (list(by_oid),)).fetchall():
        by_oid[oid].bound_text = text
