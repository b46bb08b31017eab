"""Reading every partition tree of a database in a fixed number of round trips, without locks.

The tree comes from a recursive query over pg_inherits with pg_get_expr(relpartbound, 0): relid 0
means the deparser opens no relation, so the read never queues behind DDL. pg_partition_tree() is
avoided on purpose: it locks every partition and runs out of lock slots near 20,000 partitions.
Sizes default to the relpages estimates (no locks); exact sizes are an explicit, lock-taking option.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .bounds import Bound, bound_sort_key, parse_bound
from .gcpause import paused_gc
from .names import display_name, parse_qualified_name
from .preorder import preorder

STRATEGIES = {"r": "range", "l": "list", "h": "hash"}

# The catalog queries below name functions and operators unqualified: they run only on
# connections from connection.connect(), whose search_path is pg_catalog, pg_temp, so nothing a
# user created can shadow them (tests/test_trojans.py). Qualifying them would change nothing
# there; SQL that pgparts hands to others to run is qualified where it is generated.
_TREE_SQL = """
WITH RECURSIVE tree AS (
    SELECT c.oid AS relid, c.oid AS root, 0::oid AS parent, 0 AS level,
           false AS detach_pending, ARRAY[c.oid] AS path
    FROM pg_class c
    WHERE c.relkind = 'p' AND NOT c.relispartition
  UNION ALL
    SELECT i.inhrelid, t.root, i.inhparent, t.level + 1, {detach}, t.path || i.inhrelid
    FROM tree t
    JOIN pg_inherits i ON i.inhparent = t.relid
)
SELECT t.root, t.level, t.relid, t.parent,
       n.nspname AS schema, c.relname AS name, c.relkind, c.relpersistence,
       pg_get_expr(c.relpartbound, 0) AS bound,
       pp.partstrat AS parent_strategy,
       pt.partstrat AS strategy,
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key_columns,
       (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
          FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key_types,
       CASE WHEN pt.partexprs IS NOT NULL THEN pg_get_partkeydef(c.oid) END AS key_expressions,
       nullif(pt.partdefid, 0) AS default_partition,
       t.detach_pending,
       greatest(c.relpages, 0)::bigint * current_setting('block_size')::bigint AS est_heap_bytes,
       coalesce(tc.relpages, 0)::bigint * current_setting('block_size')::bigint
         AS est_toast_bytes,
       coalesce(ix.pages, 0)::bigint * current_setting('block_size')::bigint AS est_index_bytes,
       c.reltuples::bigint AS reltuples,
       pg_stat_get_live_tuples(c.oid) AS n_live_tup,
       pg_stat_get_dead_tuples(c.oid) AS n_dead_tup,
       pg_stat_get_last_vacuum_time(c.oid) AS last_vacuum,
       pg_stat_get_last_autovacuum_time(c.oid) AS last_autovacuum,
       pg_stat_get_last_analyze_time(c.oid) AS last_analyze,
       pg_stat_get_last_autoanalyze_time(c.oid) AS last_autoanalyze{exact}
FROM tree t
JOIN pg_class c ON c.oid = t.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
LEFT JOIN (SELECT x.indrelid, sum(ic.relpages)::bigint AS pages
             FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
            GROUP BY x.indrelid) ix ON ix.indrelid = c.oid
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_partitioned_table pp ON pp.partrelid = t.parent
WHERE n.nspname NOT LIKE 'pg\\_temp\\_%%' OR n.oid = pg_my_temp_schema()
ORDER BY t.root, t.path
"""

# appended to the select list: the loader reads rows by position, exact sizes come last
_EXACT_SQL = """,
       pg_table_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END
         AS toast_bytes"""

# Indexes of every table in the trees; the parent index comes from pg_inherits on the index.
_INDEX_SQL = """
SELECT x.indexrelid AS oid, x.indrelid AS table_oid, ic.relname AS name,
       ic.relkind, x.indisvalid AS valid, x.indisunique AS is_unique, x.indisprimary AS is_primary,
       greatest(ic.relpages, 0)::bigint * current_setting('block_size')::bigint AS est_bytes,
       i.inhparent AS parent_index
FROM pg_index x
JOIN pg_class ic ON ic.oid = x.indexrelid
JOIN pg_class tc ON tc.oid = x.indrelid
-- an index inherits from at most one parent index: a join, not a subquery per index
LEFT JOIN pg_inherits i ON i.inhrelid = x.indexrelid
WHERE tc.relispartition OR tc.relkind = 'p'
"""


# Foreign keys on or pointing at a table of the trees that are not validated: rows written before
# the key was added were never checked. Left out: the entries PostgreSQL keeps per partition of
# a partitioned referenced table (same referencing table as the entry they descend from). Their
# rows are checked by that key's own validation, which before PostgreSQL 18 does not mark them:
# a key added NOT VALID and validated keeps them convalidated = false for good, with the same
# enforcement as a valid one. The key they descend from says whether the rows were checked. A
# partition's copy of a key whose parent key is not validated is left out too: the parent key
# is reported.
_UNVALIDATED_FK_SQL = """
SELECT con.conname AS name, con.conrelid AS table_oid, con.confrelid AS ref_oid,
       rn.nspname, r.relname, fn.nspname, f.relname
FROM pg_constraint con
JOIN pg_class r ON r.oid = con.conrelid
JOIN pg_namespace rn ON rn.oid = r.relnamespace
JOIN pg_class f ON f.oid = con.confrelid
JOIN pg_namespace fn ON fn.oid = f.relnamespace
WHERE con.contype = 'f' AND NOT con.convalidated
  AND (r.relispartition OR r.relkind = 'p' OR f.relispartition OR f.relkind = 'p')
  AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.oid = con.conparentid
                  AND (k.conrelid = con.conrelid OR NOT k.convalidated))
"""


@dataclass
class UnvalidatedKey:
    """A foreign key on (`table_oid`) or pointing at (`ref_oid`) a table of the forest whose
    rows were not all checked (convalidated = false where that means it)."""

    name: str
    table_oid: int
    ref_oid: int
    table: str  # display names: the referencing table may lie outside the forest
    ref: str


@dataclass
class IndexInfo:
    """One index of a relation of the forest (partitioned or plain)."""

    oid: int
    table_oid: int
    name: str
    relkind: str  # 'I' partitioned index, 'i' plain
    valid: bool
    is_unique: bool
    is_primary: bool
    est_bytes: int
    parent_index: int | None


@dataclass
class PartNode:
    """One relation of a partition tree: a root, a partitioned middle level or a leaf."""

    oid: int
    root_oid: int
    parent_oid: int | None
    level: int
    path: tuple[int, ...]
    schema: str
    name: str
    relkind: str  # 'p' partitioned, 'r' table, 'f' foreign
    persistence: str  # 'p' permanent, 'u' unlogged, 't' temp
    bound_text: str | None
    bound: Bound | None
    parent_strategy: str | None
    strategy: str | None
    key_columns: tuple[str, ...]
    key_types: tuple[str, ...]
    key_expressions: str | None
    default_partition_oid: int | None
    detach_pending: bool
    heap_bytes: int
    toast_bytes: int
    index_bytes: int
    exact_sizes: bool
    reltuples: int
    n_live_tup: int
    n_dead_tup: int
    last_vacuum: datetime | None
    last_autovacuum: datetime | None
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    children: list[PartNode] = field(default_factory=list, repr=False)
    indexes: list[IndexInfo] = field(default_factory=list, repr=False)
    # Rolled up over the subtree (equal to the node's own figures for a leaf).
    total_table_bytes: int = 0
    total_index_bytes: int = 0
    total_toast_bytes: int = 0
    rows: int = 0
    rows_known: bool = True
    leaf_count: int = 0

    # -- identity --------------------------------------------------------------------------
    @property
    def qualified(self) -> str:
        return display_name(self.schema, self.name)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def is_partitioned(self) -> bool:
        return self.relkind == "p"

    @property
    def is_leaf(self) -> bool:
        return self.relkind != "p"

    @property
    def is_root(self) -> bool:
        return self.parent_oid is None

    @property
    def is_default(self) -> bool:
        return self.bound is not None and self.bound.is_default

    @property
    def key(self) -> str:
        """The partition key as written in PARTITION BY, e.g. 'RANGE ("timestamp")'."""
        if not self.strategy:
            return ""
        if self.key_expressions:
            return self.key_expressions
        cols = ", ".join(sql_ident_text(c) for c in self.key_columns)
        return f"{self.strategy.upper()} ({cols})"

    # -- own sizes -------------------------------------------------------------------------
    @property
    def table_bytes(self) -> int:
        """Heap plus TOAST (as pg_table_size counts it), without indexes."""
        return self.heap_bytes + self.toast_bytes

    @property
    def total_bytes(self) -> int:
        return self.total_table_bytes + self.total_index_bytes

    @property
    def own_rows_estimate(self) -> int:
        """reltuples when the relation was ever analyzed, else the stats collector's live count."""
        if self.reltuples >= 0:
            return self.reltuples
        return max(self.n_live_tup, 0)

    @property
    def last_analyzed(self) -> datetime | None:
        times = [t for t in (self.last_analyze, self.last_autoanalyze) if t]
        return max(times) if times else None

    @property
    def last_vacuumed(self) -> datetime | None:
        times = [t for t in (self.last_vacuum, self.last_autovacuum) if t]
        return max(times) if times else None

    def walk(self) -> Iterator[PartNode]:
        """This node and its descendants in tree order."""
        return preorder(self)

    def leaves(self) -> Iterator[PartNode]:
        for node in self.walk():
            if node.is_leaf:
                yield node


def sql_ident_text(name: str) -> str:
    """Quote an identifier for display only when PostgreSQL would need it."""
    return display_name(None, name)


@dataclass
class Forest:
    """Every partition tree of one database, as of `loaded_at` (the server's clock)."""

    roots: list[PartNode]
    nodes: dict[int, PartNode]
    indexes: dict[int, IndexInfo]
    server_version: int
    loaded_at: datetime
    exact_sizes: bool = False
    # False until load_indexes() ran: the tree can be shown before its indexes are read
    indexes_loaded: bool = True
    # read with the indexes
    unvalidated_keys: list[UnvalidatedKey] = field(default_factory=list)

    def walk(self) -> Iterator[PartNode]:
        for root in self.roots:
            yield from root.walk()

    def parent(self, node: PartNode) -> PartNode | None:
        return self.nodes.get(node.parent_oid) if node.parent_oid else None

    def find(self, spec: str) -> PartNode:
        """Find a table of the forest by 'name', 'schema.name' or quoted forms of either.

        Raises LookupError with a message that says what was meant or what is ambiguous.
        """
        schema, name = parse_qualified_name(spec)
        hits = [
            n for n in self.nodes.values()
            if n.name == name and (schema is None or n.schema == schema)
        ]
        if not hits:
            raise LookupError(f"no partitioned table or partition named {spec!r}")
        if len(hits) > 1:
            where = ", ".join(sorted(h.qualified for h in hits))
            raise LookupError(f"{spec!r} is ambiguous: {where}; qualify it with a schema")
        return hits[0]



def in_tree_order(nodes: Iterable[PartNode]) -> list[PartNode]:
    """Siblings in the order pgparts shows them everywhere (the CLI's tree, the console's):
    partitions by bound (MINVALUE first, DEFAULT last), top-level tables by name, then schema.

    The catalog returns partitions in creation order, so a partition created after its
    neighbours (a consolidated week, a back-filled year) would otherwise sort last.
    """
    items = list(nodes)
    try:
        # a root has no bound: the roots compare by (name, schema) alone
        return sorted(items, key=lambda n: (bound_sort_key(n.bound), n.name, n.schema))
    except TypeError:  # values of mixed kinds cannot happen under one key; stay total anyway
        return sorted(items, key=lambda n: (n.name, n.schema))


_new = object.__new__


def new_node(state: dict[str, Any]) -> PartNode:
    """A PartNode from all its field values, without the generated __init__: it takes as long
    as everything else done per partition (PartNode is a plain dataclass: no slots, no
    __post_init__; a test checks that loaded nodes carry exactly its fields)."""
    node = _new(PartNode)
    node.__dict__ = state
    return node


def _build_nodes(rows: list[tuple], exact: bool) -> tuple[dict[int, PartNode], list[PartNode]]:
    """The nodes of the tree query's rows (read by position: dict rows cost a tenth of the load),
    linked to their parents, with sizes and rows rolled up."""
    nodes: dict[int, PartNode] = {}
    roots: list[PartNode] = []
    get = nodes.get
    strategy_of = STRATEGIES.get
    for row in rows:
        (root, level, relid, parent_oid, schema, name, relkind, persistence, bound_text,
         parent_strategy, strategy, key_columns, key_types, key_expressions, default_partition,
         detach_pending, heap, toast, index, reltuples, n_live_tup, n_dead_tup, last_vacuum,
         last_autovacuum, last_analyze, last_autoanalyze) = row[:26]
        try:
            bound = parse_bound(bound_text)
        except ValueError:
            bound = None
        if exact:
            table_bytes, index_bytes, toast_bytes = row[26:29]
            toast = toast_bytes or 0
            heap = max((table_bytes or 0) - toast, 0)
            index = index_bytes or 0
        n_live_tup = n_live_tup or 0
        # rows come in path order, so the parent (and its path) is already built
        parent = get(parent_oid) if parent_oid else None
        leaf = relkind != "p"
        node = new_node({
            "oid": relid, "root_oid": root, "parent_oid": parent_oid or None, "level": level,
            "path": (*parent.path, relid) if parent is not None else (relid,),
            "schema": schema, "name": name, "relkind": relkind, "persistence": persistence,
            "bound_text": bound_text, "bound": bound,
            "parent_strategy": strategy_of(parent_strategy),
            "strategy": strategy_of(strategy),
            "key_columns": tuple(key_columns) if key_columns else (),
            "key_types": tuple(key_types) if key_types else (),
            "key_expressions": key_expressions, "default_partition_oid": default_partition,
            "detach_pending": bool(detach_pending),
            "heap_bytes": heap, "toast_bytes": toast, "index_bytes": index,
            "exact_sizes": exact, "reltuples": reltuples,
            "n_live_tup": n_live_tup, "n_dead_tup": n_dead_tup or 0,
            "last_vacuum": last_vacuum, "last_autovacuum": last_autovacuum,
            "last_analyze": last_analyze, "last_autoanalyze": last_autoanalyze,
            "children": [], "indexes": [],
            # the node's own figures; _roll_up_all adds the partitions' to a partitioned table
            "total_table_bytes": heap + toast, "total_index_bytes": index,
            "total_toast_bytes": toast,
            "rows": (reltuples if reltuples >= 0 else max(n_live_tup, 0)) if leaf else 0,
            "rows_known": (reltuples >= 0 or n_live_tup > 0) if leaf else True,
            "leaf_count": 1 if leaf else 0,
        })
        nodes[relid] = node
        if parent is not None:
            parent.children.append(node)
        elif not parent_oid:
            roots.append(node)
    _roll_up_all(nodes)
    return nodes, roots


def _roll_up_all(nodes: dict[int, PartNode]) -> None:
    """Add each node's totals to its parent's, children first (`nodes` in tree order, walked
    backwards).

    PostgreSQL reports 0 bytes for a partitioned table and -1 reltuples unless its parent was
    analyzed by hand, so a partitioned table's rows come from its partitions only.
    """
    get = nodes.get
    for node in reversed(nodes.values()):
        parent = get(node.parent_oid) if node.parent_oid else None
        if parent is None:
            continue
        parent.total_table_bytes += node.total_table_bytes
        parent.total_toast_bytes += node.total_toast_bytes
        parent.total_index_bytes += node.total_index_bytes
        parent.rows += node.rows
        parent.rows_known = parent.rows_known and node.rows_known
        parent.leaf_count += node.leaf_count


def _roll_up(root: PartNode) -> None:
    """Totals of a tree built by hand (the loader does this as it builds)."""
    nodes = {n.oid: n for n in root.walk()}
    for node in nodes.values():
        leaf = node.is_leaf
        node.total_table_bytes = node.table_bytes
        node.total_toast_bytes = node.toast_bytes
        node.total_index_bytes = node.index_bytes
        node.rows = node.own_rows_estimate if leaf else 0
        node.rows_known = (node.reltuples >= 0 or node.n_live_tup > 0) if leaf else True
        node.leaf_count = 1 if leaf else 0
    _roll_up_all(nodes)


def tree_query(server_version_num: int, exact_sizes: bool = False) -> sql.Composed:
    detach = sql.SQL("i.inhdetachpending" if server_version_num >= 140000 else "false")
    exact = sql.SQL(_EXACT_SQL if exact_sizes else "")
    return sql.SQL(_TREE_SQL).format(detach=detach, exact=exact)


def load_forest(
    conn: psycopg.Connection, *, exact_sizes: bool = False, indexes: bool = True
) -> Forest:
    """Load every partition tree: one round trip (a pipeline) whatever the partition count.

    With indexes=False the forest holds only what the tree query reads, for showing the tree
    sooner; load_indexes() adds the indexes (the health checks and the details need them).
    """
    version = int(conn.info.server_version)
    with paused_gc():
        return _load_forest(conn, version, exact_sizes, indexes)


def _load_forest(
    conn: psycopg.Connection, version: int, exact_sizes: bool, indexes: bool
) -> Forest:
    index_cur = key_cur = None
    with conn.pipeline():
        clock = conn.cursor()
        clock.execute("SELECT now()")
        tree = conn.cursor(binary=True)
        tree.execute(tree_query(version, exact_sizes))
        if indexes:
            # the server runs it while the tree rows become objects
            index_cur = conn.cursor(binary=True)
            index_cur.execute(_INDEX_SQL)
            key_cur = conn.cursor(binary=True)
            key_cur.execute(_UNVALIDATED_FK_SQL)
        now_row = clock.fetchone()
        nodes, roots = _build_nodes(tree.fetchall(), exact_sizes)
        index_rows = index_cur.fetchall() if index_cur is not None else []
        key_rows = key_cur.fetchall() if key_cur is not None else []
    now = now_row[0]  # type: ignore[index]
    forest = Forest(roots, nodes, {}, version, now, exact_sizes, indexes_loaded=False)
    if indexes:
        _attach_indexes(forest, index_rows, key_rows)
    return forest


def load_indexes(conn: psycopg.Connection, forest: Forest) -> None:
    """Read the indexes of every table of `forest` into it (one query, no locks).

    Safe while another thread shows the forest: each node gets a complete list at once, and
    `indexes_loaded` turns true only after the last one.
    """
    with paused_gc(), conn.cursor(binary=True) as cur:
        rows = cur.execute(_INDEX_SQL).fetchall()
        key_rows = cur.execute(_UNVALIDATED_FK_SQL).fetchall()
        _attach_indexes(forest, rows, key_rows)


def _attach_indexes(forest: Forest, rows: list[tuple], key_rows: list[tuple]) -> None:
    indexes: dict[int, IndexInfo] = {}
    per_table: dict[int, list[IndexInfo]] = {}
    get = forest.nodes.get
    for row in rows:
        info = IndexInfo(*row)
        if get(info.table_oid) is None:
            continue  # a table created after the tree was read
        indexes[info.oid] = info
        per_table.setdefault(info.table_oid, []).append(info)
    for oid, node in forest.nodes.items():
        node.indexes = per_table.get(oid, [])
    forest.indexes = indexes
    forest.unvalidated_keys = [
        UnvalidatedKey(name, int(t), int(r), display_name(ts, tn), display_name(rs, rn))
        for name, t, r, ts, tn, rs, rn in key_rows]
    forest.indexes_loaded = True


def exact_row_count(
    conn: psycopg.Connection, node: PartNode, *, timeout_seconds: float = 30.0
) -> int:
    """count(*) of one relation (a whole subtree for a partitioned table), under a timeout.

    Runs in its own short transaction so the statement_timeout and the AccessShare locks end with
    it.
    """
    with conn.transaction():
        conn.execute(
            sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(f"{int(timeout_seconds * 1000)}ms")
            )
        )
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(node.ident)).fetchone()
    return int(row[0]) if row else 0
