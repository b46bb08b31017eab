"""Which partitions a plan really touches, per reference to a partitioned table.

How pruning shows in EXPLAIN (FORMAT JSON, VERBOSE) (see the partition mechanics reference, §4):
- plan time: pruned partitions are absent; one survivor means no Append at all;
- executor start-up: absent too, counted by 'Subplans Removed' on the Append/Merge Append;
- during execution (ANALYZE only): the scan stays but has 'Actual Loops' 0.
Leaf scans are mapped back to their partitioned ancestors with the catalog (schema + name from
VERBOSE). When a plan no longer names partitions (all removed at start-up, or a generic plan
explained with NULL arguments) the locks the transaction holds name them: the planner locks every
partition that survived plan-time pruning.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from ..bounds import parse_bound
from ..catalog import Forest, PartNode
from .plan_tree import SCAN_TYPES, PlanNode, PlanTree

_JOINS = frozenset({"Nested Loop", "Hash Join", "Merge Join"})
_BY_PATH = attrgetter("node.path")


@dataclass
class ScannedPartition:
    """A leaf partition the plan scans, under the table it is reported against."""

    node: PartNode
    forest: Forest = field(repr=False)
    table: PartNode = field(repr=False)
    executed: bool | None = None  # ANALYZE: False when every scan of it had Actual Loops 0
    in_plan: bool = True  # False: known only from the generic plan's locks (PG < 16)
    _bounds: str | None = field(default=None, repr=False)

    @property
    def bounds(self) -> str:
        """The bounds from below the reported table down to the leaf (formatted on demand:
        a plan over 10,000 partitions should not format 10,000 bounds nobody reads)."""
        if self._bounds is None:
            self._bounds = _bounds_below(self.forest, self.table, self.node)
        return self._bounds


@dataclass
class TableReference:
    """One reference to a partitioned table in the plan (a self-join has two)."""

    table: PartNode
    label: str
    partitions_total: int
    partitions: list[ScannedPartition]
    pruned_at_startup: int
    analyzed: bool
    generic: bool
    append_nodes: list[PlanNode] = field(default_factory=list)
    scan_nodes: list[PlanNode] = field(default_factory=list)
    startup_unattributed: bool = False  # removed subplans could not be named
    # partitions below the table left detach-pending by an interrupted DETACH ... CONCURRENTLY:
    # PostgreSQL no longer plans them, so they are not in partitions_total (nor prunable)
    detach_pending: int = 0
    notes: list[str] = field(default_factory=list)
    advice: list = field(default_factory=list)  # list[Advice], filled by the report

    @property
    def partitions_scanned(self) -> int:
        return len(self.partitions)

    @property
    def pruned_at_plan(self) -> int:
        return max(self.partitions_total - self.partitions_scanned - self.pruned_at_startup, 0)

    @property
    def never_executed(self) -> int | None:
        if not self.analyzed:
            return None
        return sum(1 for p in self.partitions if p.executed is False)

    @property
    def partitions_executed(self) -> int:
        return self.partitions_scanned - (self.never_executed or 0)

    @property
    def leaf_oids(self) -> set[int]:
        return {p.node.oid for p in self.partitions}

    @property
    def status(self) -> str:
        """'empty' (no partitions), 'full' (every partition scanned) or 'pruned'."""
        if self.partitions_total == 0:
            return "empty"
        if self.partitions_executed >= self.partitions_total:
            return "full"
        return "pruned"

    @property
    def verdict(self) -> str:
        if not self.detach_pending:
            return self._verdict()
        noun = "partition" if self.detach_pending == 1 else "partitions"
        return f"{self._verdict()}; {self.detach_pending} {noun} detach-pending, not counted"

    def _verdict(self) -> str:
        total = self.partitions_total
        noun = "partition" if total == 1 else "partitions"
        if total == 0:
            return "has no partitions"
        if self.generic:
            if self.partitions_scanned >= total:
                return f"no pruning: all {total} {noun} in the generic plan"
            return (f"generic plan keeps {self.partitions_scanned} of {total} {noun}"
                    " (start-up pruning with the values decides the rest)")
        if self.status == "full":
            return f"no pruning: all {total} {noun} scanned"
        done = self.partitions_executed
        text = f"scans {done} of {total} {noun}"
        parts = []
        if self.pruned_at_plan:
            parts.append(f"{self.pruned_at_plan} pruned at plan time")
        if self.pruned_at_startup:
            parts.append(f"{self.pruned_at_startup} at executor start-up")
        if self.never_executed:
            parts.append(f"{self.never_executed} never executed (run-time pruning)")
        if done == 0 and not parts:
            parts.append("all pruned")
        return f"{text} ({', '.join(parts)})" if parts else text


def count_detach_pending(forest: Forest, refs: list[TableReference]) -> None:
    """Set each reference's detach_pending: the marked partitions below its table (rare: the
    forest is scanned once, and only the few marked nodes are matched to tables)."""
    pending = [n for n in forest.nodes.values() if n.detach_pending]
    if not pending:
        return
    for ref in refs:
        oid = ref.table.oid
        ref.detach_pending = sum(1 for n in pending if oid in n.path[:-1])


def names_index(forest: Forest) -> dict[tuple[str, str], PartNode]:
    """The forest's relations by (schema, name), the way VERBOSE plans name them."""
    return {(n.schema, n.name): n for n in forest.nodes.values()}


def _bounds_below(forest: Forest, table: PartNode, leaf: PartNode) -> str:
    """Bounds of each level from just below `table` to `leaf`, e.g. '2024-01-07 → … / hash 0/4'."""
    if leaf.parent_oid == table.oid:
        return _level_bound(leaf)  # a partition of the reported table itself: the usual case
    parts: list[str] = []
    start = leaf.path.index(table.oid) + 1 if table.oid in leaf.path else 1
    for oid in leaf.path[start:]:
        node = forest.nodes.get(oid)
        if node is not None:
            text = _level_bound(node)
            if text:
                parts.append(text)
    return " / ".join(parts)


def _level_bound(node: PartNode) -> str:
    """One level's bound, short; '' when it was not read."""
    if node.bound is None and node.bound_text:
        fast = _short_day_range(node.bound_text)
        if fast is not None:
            return fast
        try:
            node.bound = parse_bound(node.bound_text)
        except ValueError:
            return node.bound_text
    return node.bound.short() if node.bound is not None else ""


# A range of whole days, as the server prints date and timestamp(tz) bounds at midnight UTC:
# FROM ('2024-01-07 00:00:00+00') TO ('2024-01-08 00:00:00+00'). Bound.short() shows these as
# '2024-01-07 → 2024-01-08' after parsing both values into datetimes; --json lists every scanned
# partition (10,000 of them in a full scan), so this shape is formatted straight from the text.
_DAY = r"([1-9]\d{3}-[01]\d-[0-3]\d)(?: 00:00:00(?:\+00)?)?"
_DAY_RANGE = re.compile(rf"^FOR VALUES FROM \('{_DAY}'\) TO \('{_DAY}'\)$")


def _short_day_range(text: str) -> str | None:
    """Bound.short() of a whole-day range bound, without parsing it; None for other shapes."""
    m = _DAY_RANGE.match(text)
    return f"{m.group(1)} → {m.group(2)}" if m else None


def _is_boundary(node: PlanNode) -> bool:
    """A subplan, initplan or CTE starts a separate reference to whatever it scans."""
    return bool(node.subplan_name) or node.parent_relationship in ("SubPlan", "InitPlan")


def _anchor(scan: PlanNode) -> PlanNode:
    """The topmost Append/Merge Append that gathers this scan with its sibling partitions.

    Climbing stops at subplan/CTE boundaries and at joins that are not themselves members of
    an Append (a partition-wise join is; the two sides of an ordinary self-join are not).
    """
    if _is_boundary(scan) or scan.parent is None:
        return scan
    above = _append_above(scan.parent)
    return above if above is not None else scan


def _append_above(start: PlanNode) -> PlanNode | None:
    """The topmost Append at or above `start` within the climbing limits of _anchor."""
    candidate = None
    node: PlanNode | None = start
    while node is not None:
        if node.is_append:
            candidate = node
        if _is_boundary(node):
            break
        if node.node_type in _JOINS and not (node.parent and node.parent.is_append):
            break
        node = node.parent
    return candidate


_NUMBERED = re.compile(r"^(.*)_(\d+)$")


def _named_as(alias: str | None, refnames: Collection[str]) -> bool:
    """Whether EXPLAIN's name for a scan is one of these query names (EXPLAIN adds _N to a
    name used twice, and names a table's partitions after the table's own name)."""
    if not alias:
        return False
    for name in refnames:
        if alias == name:
            return True
        m = _NUMBERED.match(alias)
        if m is not None and m.group(1) == name:
            return True
    return False


def _alias_key(scan: PlanNode) -> tuple[str, int]:
    """(name, number) of EXPLAIN's name for a scan: 'ab_3' -> ('ab', 3), 'ab' -> ('ab', 0).
    The partitions of one reference are named after it, numbered in the order the planner
    expanded them, one reference after the other."""
    alias = (scan.relation.alias if scan.relation is not None else None) or ""
    base, sep, number = alias.rpartition("_")  # _NUMBERED without the regex: 10,000 scans
    if sep and base and number.isdecimal() and number.isascii():
        return base, int(number)
    return alias, 0


def _same_name(a: str, b: str) -> bool:
    if a == b:
        return True
    # EXPLAIN cuts a long name to keep its _N within 63 bytes: there a prefix is the same name
    long = max(len(a.encode()), len(b.encode())) >= 48
    return long and (a.startswith(b) or b.startswith(a))


def _down_path(anchor: PlanNode, scan: PlanNode) -> list[PlanNode]:
    """The nodes from `anchor` down to `scan`, both included."""
    path = [scan]
    node = scan
    while node is not anchor and node.parent is not None:
        node = node.parent
        path.append(node)
    path.reverse()
    return path


def _references_in(
    anchor: PlanNode, members: list[tuple[PlanNode, PartNode]]
) -> list[list[tuple[PlanNode, PartNode]]]:
    """The references to one table among the scans one Append gathers, by the plan's own
    structure. A reference's partitions are adjacent members of the Append (in partition
    order); another reference starts where a partition comes again, where members of other
    tables (another UNION ALL arm) come in between, or where EXPLAIN's name for the scans
    changes (`ab a UNION ALL ab b`). A Parallel Append orders its members by cost, not by
    reference: there EXPLAIN's numbering, which follows the planner's expansion of one
    reference after the other, gives the order."""
    keys = [_alias_key(scan) for scan, _ in members]
    if all(scan.parent is anchor for scan, _ in members):
        return _flat_references(anchor, members, keys, bool(anchor.raw.get("Parallel Aware")))
    paths = [_down_path(anchor, scan) for scan, _ in members]
    parallel = any(n.is_append and n.raw.get("Parallel Aware") for p in paths for n in p[:-1])
    order = list(range(len(members)))
    if parallel:
        order.sort(key=keys.__getitem__)
    positions: dict[int, dict[int, int]] = {}

    def position(parent: PlanNode, child: PlanNode) -> int:
        index = positions.get(id(parent))
        if index is None:
            index = positions[id(parent)] = {id(c): i for i, c in enumerate(parent.children)}
        return index[id(child)]

    runs: list[list[tuple[PlanNode, PartNode]]] = []
    seen: set[int] = set()
    previous: int | None = None
    for i in order:
        scan, leaf = members[i]
        cut = previous is None or leaf.oid in seen
        if not cut and previous is not None:
            name, prev_name = keys[i][0], keys[previous][0]
            cut = not _same_name(name, prev_name)
            if not cut and not parallel:
                a, b = paths[previous], paths[i]
                depth = 0
                while depth + 1 < min(len(a), len(b)) and a[depth + 1] is b[depth + 1]:
                    depth += 1
                common = a[depth]
                if common.is_append and depth + 1 < min(len(a), len(b)):
                    # a member of the Append between them holds none of this table's scans,
                    # or one of them is a query of its own (an arm the planner kept whole)
                    cut = position(common, b[depth + 1]) - position(common, a[depth + 1]) > 1 \
                        or _is_arm(a[depth + 1]) or _is_arm(b[depth + 1])
        if cut:
            runs.append([])
            seen = set()
        runs[-1].append((scan, leaf))
        seen.add(leaf.oid)
        previous = i
    return runs


def _flat_references(
    anchor: PlanNode, members: list[tuple[PlanNode, PartNode]], keys: list[tuple[str, int]],
    parallel: bool,
) -> list[list[tuple[PlanNode, PartNode]]]:
    """_references_in for the usual shape, every scan a member of the Append itself (a plan
    over 10,000 partitions): the same cuts (a partition again, another member in between, a
    change of EXPLAIN's name) without the walk up from each scan."""
    if parallel and len(set(keys)) == len(keys) and len({k[0] for k in keys}) == 1 \
            and len({leaf.oid for _, leaf in members}) == len(members):
        return [members]  # one name, no partition twice: one reference, whatever the order
    order = range(len(members))
    if parallel:
        order = sorted(order, key=keys.__getitem__)
    position = {id(child): i for i, child in enumerate(anchor.children)}
    runs: list[list[tuple[PlanNode, PartNode]]] = []
    seen: set[int] = set()
    last_position = -2
    last_name: str | None = None
    for i in order:
        scan, leaf = members[i]
        name = keys[i][0]
        here = position[id(scan)]
        gap = not parallel and here - last_position > 1
        if last_name is None or leaf.oid in seen or gap or not _same_name(name, last_name):
            runs.append([])
            seen = set()
        runs[-1].append((scan, leaf))
        seen.add(leaf.oid)
        last_position, last_name = here, name
    return runs


def _is_arm(member: PlanNode) -> bool:
    """An Append's member that is a query of its own rather than (a level of) partitions: the
    planner flattens the plain Appends of one table's partitions into their parent, so a plain
    Append member, or an Append below a member that is no Append itself (Gather, Aggregate,
    Limit, ...), is another UNION ALL arm. A Merge Append member is a sub-partitioned level
    of an ordered scan."""
    if member.node_type == "Append":
        return True
    return not member.is_append and any(n.is_append for n in member.walk())


def _appends_of(anchor: PlanNode, scans: list[PlanNode]) -> list[PlanNode]:
    """The Appends of one reference: all those below `anchor` when its scans are all of the
    anchor's members of this table, else the Appends above its own scans."""
    out: dict[int, PlanNode] = {}
    for scan in scans:
        node: PlanNode | None = scan.parent
        while node is not None:
            if node.is_append:
                out[id(node)] = node
            if node is anchor:
                break
            node = node.parent
    return list(out.values())


def _label(scans: list[PlanNode], table: PartNode) -> str:
    aliases = {s.relation.alias for s in scans if s.relation and s.relation.alias}
    under_append = any(a.is_append for s in scans for a in s.ancestors())
    if len(aliases) == 1 and len(scans) == 1 and not under_append:
        return next(iter(aliases))
    # PostgreSQL names the partitions of one reference alias_1, alias_2, ...
    bases = set()
    for a in aliases:
        base, _, number = a.rpartition("_")
        bases.add(base if number.isdecimal() and _ else a)
        if len(bases) > 1:
            return table.name
    return next(iter(bases)) if len(bases) == 1 else table.name


def build_references(
    plan: PlanTree,
    forest: Forest,
    *,
    mentioned: Mapping[int, Collection[str]] | Collection[int] | None = None,
    locked: frozenset[int] | None = None,
    generic: bool = False,
    by_name: dict[tuple[str, str], PartNode] | None = None,
) -> list[TableReference]:
    """Every reference to a partitioned table in `plan`, with what it scans and what it pruned.

    `mentioned`: forest oids the query text names, each with the names EXPLAIN gives its scans
    (relations.py: the alias, else the relation's name); a scan is reported against the named
    ancestor its scan name points to, else the highest named one (a query on a sub-partitioned
    week reports that week), else its root. A partition named directly is not a partition of
    the parent's reference: a leaf is an ordinary table, a mid-level partition its own table.
    `by_name`: the forest's nodes by (schema, name), when the caller has it already.
    """
    if by_name is None:
        by_name = names_index(forest)
    refnames: Mapping[int, Collection[str]] = mentioned if isinstance(mentioned, Mapping) \
        else dict.fromkeys(mentioned or (), ())
    nodes = forest.nodes

    def table_for(leaf: PartNode, scan: PlanNode | None = None) -> PartNode | None:
        named = [oid for oid in leaf.path if oid in refnames]
        if not named:
            return nodes.get(leaf.path[0])
        if len(named) > 1 and scan is not None:
            alias = scan.relation.alias if scan.relation is not None else None
            fits = [oid for oid in named if _named_as(alias, refnames[oid])]
            if len(fits) == 1:
                return nodes[fits[0]]
            if len(fits) > 1:
                # 'ab_1' is both a partition's own name and EXPLAIN's name for the second
                # partition of 'ab': gathered with siblings by an Append, it is ab's
                under_append = _append_above(scan.parent) is not None if scan.parent else False
                return nodes[fits[0] if under_append else fits[-1]]
            named = [oid for oid in named if oid != leaf.oid] or named
        return nodes[named[0]]

    # A plan over 10,000 partitions has 10,000 scans under one Append. The table a leaf is
    # reported against depends only on the leaf's parent (unless the query names the leaf
    # itself), and the Append gathering a scan that is not itself a subplan only on its plan
    # parent: scans sharing both go straight to the group the first of them found.
    groups: dict[tuple[int, int], list[tuple[PlanNode, PartNode]]] = {}
    anchors: dict[int, PlanNode] = {}
    shortcut: dict[tuple[int, int | None], list[tuple[PlanNode, PartNode]]] = {}
    for node in plan.walk():
        relation = node.relation
        if relation is None or node.node_type not in SCAN_TYPES:
            continue
        leaf = by_name.get((relation.schema or "public", relation.name))
        if leaf is None or leaf.relkind == "p":
            continue
        parent = node.parent
        # the shortcut holds when the table does not depend on the scan's name: the query
        # names at most one relation on the leaf's path
        plain = parent is not None and leaf.oid not in refnames and not _is_boundary(node) \
            and sum(1 for oid in leaf.path if oid in refnames) <= 1
        if plain:
            same = shortcut.get((id(parent), leaf.parent_oid))
            if same is not None:
                same.append((node, leaf))
                continue
        table = table_for(leaf, node)
        if table is None or table.oid == leaf.oid:
            continue  # the query names this partition itself: an ordinary table scan
        anchor = _anchor(node)
        anchors[id(anchor)] = anchor
        group = groups.setdefault((id(anchor), table.oid), [])
        group.append((node, leaf))
        if plain and anchor is not node:  # gathered by an Append, not a scan on its own
            shortcut[(id(parent), leaf.parent_oid)] = group

    # One Append may gather several references to one table: UNION ALL arms are flattened into
    # their parent's Append (`ab UNION ALL xy UNION ALL ab` is one Append scanning ab twice),
    # and arms that cannot be flattened hang below it (Append -> Gather -> Parallel Append).
    split: dict[tuple[int, int, int], list[tuple[PlanNode, PartNode]]] = {}
    distinct: set[tuple[int, int, int]] = set()  # no partition scanned twice
    appends_of: dict[tuple[int, int, int], list[PlanNode]] = {}
    for (anchor_id, table_oid), members in groups.items():
        anchor = anchors[anchor_id]
        runs = _references_in(anchor, members) if anchor.is_append else [members]
        for number, run in enumerate(runs):
            key = (anchor_id, table_oid, number)
            split[key] = run
            if len({leaf.oid for _, leaf in run}) == len(run):
                distinct.add(key)
            if not anchor.is_append:
                appends_of[key] = []
            elif len(runs) == 1:  # with any Append below whose every subplan was removed
                appends_of[key] = [n for n in anchor.walk() if n.is_append]
            else:
                appends_of[key] = _appends_of(anchor, [scan for scan, _ in run])
    # an Append gathering several references (or tables) lost subplans of which?
    claims: dict[int, int] = {}
    for appends in appends_of.values():
        for a in appends:
            if a.subplans_removed:
                claims[id(a)] = claims.get(id(a), 0) + 1
    shared = {a for a, n in claims.items() if n > 1}

    refs: list[TableReference] = []
    for (anchor_id, table_oid, sub), members in split.items():
        table = forest.nodes[table_oid]
        scans = [s for s, _ in members]
        appends = appends_of[(anchor_id, table_oid, sub)]
        if (anchor_id, table_oid, sub) in distinct:
            partitions = [ScannedPartition(leaf, forest, table, None if scan.actual_loops is None
                                           else scan.actual_loops > 0)
                          for scan, leaf in members]
        else:
            parts: dict[int, ScannedPartition] = {}
            for scan, leaf in members:
                executed = None if scan.actual_loops is None else scan.actual_loops > 0
                prev = parts.get(leaf.oid)
                if prev is None:
                    parts[leaf.oid] = ScannedPartition(leaf, forest, table, executed)
                elif executed:
                    prev.executed = True
            partitions = list(parts.values())
        partitions.sort(key=_BY_PATH)
        removed = sum(int(a.subplans_removed or 0) for a in appends if id(a) not in shared)
        refs.append(TableReference(
            table=table, label=_label(scans, table),
            partitions_total=table.leaf_count,
            partitions=partitions,
            pruned_at_startup=removed, analyzed=plan.analyzed, generic=generic,
            append_nodes=appends, scan_nodes=scans,
        ))

    _split_shared_removed(forest, refs, shared, table_for, locked)
    _attach_orphans(plan, forest, refs, table_for, locked, by_name)
    if locked is not None:
        _name_removed(forest, refs, table_for, locked, generic)
    return refs


def _locked_leaves_not_shown(forest, refs, table_for, locked) -> dict[int, list[PartNode]]:
    """Leaf partitions the plan locked but no reference shows, by the table they belong to."""
    present = {oid for r in refs for oid in r.leaf_oids}
    by_table: dict[int, list[PartNode]] = {}
    for oid in locked or ():
        leaf = forest.nodes.get(oid)
        if leaf is None or leaf.is_partitioned or oid in present or leaf.detach_pending:
            continue
        table = table_for(leaf)
        if table is not None and table.oid != leaf.oid:
            by_table.setdefault(table.oid, []).append(leaf)
    return by_table


def _split_shared_removed(forest, refs, shared, table_for, locked) -> None:
    """`Subplans Removed` of an Append that gathers several references (UNION ALL of two
    tables, or of one table twice) counts the partitions each of them lost at start-up. The
    locks say which: the planner locks every partition that survived plan-time pruning, so a
    locked partition no reference shows was removed at start-up. Split when the locks account
    for exactly the removed count, one reference per table; otherwise the count is not
    attributed (a note on each reference says so) rather than counted once per reference."""
    if not shared:
        return
    absent = _locked_leaves_not_shown(forest, refs, table_for, locked) \
        if locked is not None else {}
    for append_id in shared:
        mine = [r for r in refs if any(id(a) == append_id for a in r.append_nodes)]
        removed = next(int(a.subplans_removed or 0) for a in mine[0].append_nodes
                       if id(a) == append_id)
        tables = [r.table.oid for r in mine]
        counts = [len(absent.get(t, ())) for t in tables]
        if len(set(tables)) == len(tables) and sum(counts) == removed:
            for ref, count in zip(mine, counts, strict=True):
                ref.pruned_at_startup += count
                absent.pop(ref.table.oid, None)
            continue
        for ref in mine:
            ref.startup_unattributed = True
            ref.notes.append(f"{removed} subplans of an Append shared with another reference "
                             "were removed at executor start-up; which were this table's "
                             "could not be told (counted as pruned at plan time)")


def _attach_orphans(plan, forest, refs, table_for, locked, by_name) -> None:
    """Appends whose every partition was removed at start-up name no partition: attribute them
    to a table through the locks (the survivors of plan-time pruning are locked). Such an Append
    may still scan an ordinary table (`SELECT ... FROM t UNION ALL SELECT ... FROM probe` under
    an outer condition gathers both arms in one Append)."""
    def partition_scan(node: PlanNode) -> bool:
        rel = node.relation
        return node.is_scan and rel is not None \
            and (rel.schema or "public", rel.name) in by_name

    claimed = {id(a) for r in refs for a in r.append_nodes}
    orphans = [n for n in plan.walk() if n.is_append and id(n) not in claimed
               and n.subplans_removed and not any(partition_scan(c) for c in n.walk())]
    if not orphans:
        return
    absent_by_table = {t: len(leaves) for t, leaves
                       in _locked_leaves_not_shown(forest, refs, table_for, locked).items()}
    for orphan in orphans:
        removed = int(orphan.subplans_removed or 0)
        pick = [t for t, n in absent_by_table.items() if n == removed] or list(absent_by_table)
        if len(pick) != 1 and sum(absent_by_table.values()) != removed:
            continue  # cannot tell which table; the report says nothing rather than guess
        # one table, or every table whose locked partitions the plan does not show: together
        # they account for exactly the removed subplans (UNION ALL of two tables)
        appends = [n for n in orphan.walk() if n.is_append]
        for oid in pick:
            table = forest.nodes[oid]
            count = removed if len(pick) == 1 else absent_by_table[oid]
            del absent_by_table[oid]
            refs.append(TableReference(
                table=table, label=table.name, partitions_total=table.leaf_count, partitions=[],
                pruned_at_startup=count, analyzed=plan.analyzed, generic=False,
                append_nodes=appends,
            ))


def _name_removed(forest, refs, table_for, locked, generic) -> None:
    """Generic plans explained with NULL arguments (PG < 16): the partitions removed at start-up
    are part of the generic plan; the locks say which they are."""
    if not generic:
        return
    by_table = _locked_leaves_not_shown(forest, refs, table_for, locked)
    for table_oid, leaves in by_table.items():
        mine = [r for r in refs if r.table.oid == table_oid]
        if len(mine) != 1:
            continue
        ref = mine[0]
        for leaf in leaves:
            ref.partitions.append(ScannedPartition(leaf, forest, ref.table, None, in_plan=False))
        ref.partitions.sort(key=lambda p: p.node.path)
        ref.pruned_at_startup = 0
    for ref in refs:
        if ref.generic and ref.pruned_at_startup:
            # removed only because the placeholder arguments were NULL
            ref.startup_unattributed = True
