"""The partition tree widget: lazy children, chunked adds, in-place refresh, filter and sort.

Tree node data is the relation's oid; the catalog objects live in the app's Forest. Children are
added when a node is first expanded, 250 per event-loop slice, so 10,000 partitions never block
input. A refresh walks only what the tree already shows: a sibling group whose oids and order are
unchanged gets new labels in place; a changed group is rebuilt, keeping expansion and cursor.

Columns (bound, size, rows, bar, badge) line up across every row on screen whatever its depth: the
name column ends at one x for all rows, each name padded by what its guides leave. On a narrow
pane the columns give way by priority (name, bound and size stay): first the bound takes its
short form ('2026-08-02 +1w'), then the bar halves and goes, then the row count, then the
badge; only then are names (beyond NAME_KEEP cells) and bounds cut. The columns follow what is
shown; when expanding, collapsing or resizing moves them, the groups on screen are
relabelled, hidden ones when they are shown again. Labels are made only for nodes in the Tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Span, Text
from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..core.catalog import Forest, PartNode, sql_ident_text
from ..core.findings import FindingCounts
from .compact import compact_bound
from .format import SEVERITY_ICON, SEVERITY_ORDER, bar, fit, human_bytes, human_rows, sort_nodes

CHUNK = 250  # nodes added per event-loop slice
BOUND_MAX = 26
SIZE_WIDTH = 8  # '1023 MiB', '99.9 KiB' (humanfmt.SIZE_CELLS)
ROWS_WIDTH = 6  # '≥1000k'
BAR_WIDTH = 8
BADGE_WIDTH = 6  # ' ▲12●3'
NAME_MIN = 10
NAME_KEEP = 28  # a name is kept whole up to this many cells before an optional column goes
BOUND_MIN = 8
ICON_WIDTH = 2  # the Tree's '▶ ' before an expandable node (a leaf among them gets 2 spaces)
SCROLLBAR = 1

# The optional columns, most shown first: (compact bound, rows, bar width, badge).
LAYOUTS = (
    (False, True, BAR_WIDTH, True),
    (True, True, BAR_WIDTH, True),
    (True, True, BAR_WIDTH // 2, True),
    (True, True, 0, True),
    (True, False, 0, True),
    (True, False, 0, False),
)


def after_bound(rows: bool, bar_width: int, badge: bool) -> int:
    """Cells after the bound column: ' ' size [' ' rows] [' ' bar] [badge]."""
    return 1 + SIZE_WIDTH + (1 + ROWS_WIDTH if rows else 0) + \
        (1 + bar_width if bar_width else 0) + (BADGE_WIDTH if badge else 0)


AFTER_BOUND = after_bound(True, BAR_WIDTH, True)

SEVERITY_STYLE = {
    "critical": "bold red",
    "warning": "yellow",
    "notice": "cyan",
    "info": "cyan",
}

GroupKey = int | None  # the parent's oid; None for the roots

# control characters (a quoted name may hold a newline) shown escaped: one row stays one line
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}


@dataclass(frozen=True)
class Columns:
    """Where the columns are, shared by every row on screen so they line up at any depth."""

    name_end: int  # cells from the tree's left edge to the end of the name column
    bound_width: int
    elided: frozenset[GroupKey] = frozenset()  # groups showing children as …_suffix
    compact: bool = False  # bounds as start and span
    rows: bool = True
    bar: int = BAR_WIDTH  # cells; 0: no bar
    badge: bool = True


@dataclass
class Group:
    """What one sibling group needs from the shared columns, and how it is labelled now."""

    depth: int
    parent_schema: str | None
    parent_name: str | None
    any_expandable: bool  # the Tree draws an icon only on expandable nodes: pad the others
    full_width: int  # widest name
    elided_width: int  # widest name with the parent's name elided
    bound_width: int
    compact_width: int  # widest bound in its short form
    max_bytes: int  # the bar scale
    labelled_with: Columns | None = None

    def lead(self, guide_depth: int) -> int:
        """Cells before a name: the guides of its depth, then the icon or its padding."""
        return self.depth * guide_depth + (ICON_WIDTH if self.any_expandable else 0)


def display_label(node: PartNode, parent_schema: str | None, elide: str = "") -> str:
    """The name, schema-qualified for a root outside public or a partition in another schema
    than its parent's; quoted where SQL would need quotes. With `elide` (the parent's name), a
    child named parent_suffix shows as …_suffix."""
    if parent_schema is None or node.schema != parent_schema:
        return node.qualified
    text = sql_ident_text(node.name)
    if elide and node.name.startswith(elide) and len(node.name) > len(elide) + 1 \
            and text == node.name:
        return "…" + node.name[len(elide):]
    return text


def compact_short_bound(node: PartNode, cache: dict[int, str] | None = None) -> str:
    """The bound column on a narrow pane: '2026-08-02 +1w' for '2026-08-02 → 2026-08-09'."""
    if cache is not None and node.oid in cache:
        return cache[node.oid]
    text = short_bound(node) if node.is_root else compact_bound(node.bound, short_bound(node))
    if cache is not None:
        cache[node.oid] = text
    return text


def short_bound(node: PartNode, cache: dict[int, str] | None = None) -> str:
    """The bound column: the short bound of a partition, the partition key of a root."""
    if cache is not None and node.oid in cache:
        return cache[node.oid]
    if node.is_root:
        text = node.key
    elif node.bound is not None:
        text = node.bound.short()
    else:
        text = node.bound_text or ""
    if cache is not None:
        cache[node.oid] = text
    return text


class PartitionTree(Tree[int]):
    """Partitioned tables and their partitions at any depth."""

    # Tree's own keys, described for this tree (the help screen lists these)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "move up", show=False),
        Binding("down", "cursor_down", "move down", show=False),
        Binding("enter", "select_cursor", "expand or collapse", show=False),
        Binding("space", "toggle_node", "expand or collapse", show=False),
        Binding("shift+left", "cursor_parent", "to the parent", show=False),
        Binding("shift+right", "cursor_parent_next_sibling", "to the parent's next sibling",
                show=False),
        Binding("shift+up", "cursor_previous_sibling", "previous sibling", show=False),
        Binding("shift+down", "cursor_next_sibling", "next sibling", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__("partitioned tables", **kwargs)
        self.show_root = False
        self.guide_depth = 3
        self.forest: Forest | None = None
        self.sort = "bound"
        self.shown_oids: set[int] | None = None  # None: no filter
        self.expanded_oids: set[int] = set()
        # oid -> (own findings count, worst own rank, findings of its subtree per severity)
        self.badge_source: Callable[[int], tuple[int, int, FindingCounts | None]] | None = None
        self._populated: set[int] = set()
        self._by_oid: dict[int, TreeNode[int]] = {}
        self._shorts: dict[int, str] = {}  # bound labels of the current forest, by oid
        self._compacts: dict[int, str] = {}  # their short forms
        # oid -> an exact count(*) taken with `x`, shown instead of the estimate
        self.rows_source: Callable[[int], int | None] | None = None
        self._groups: dict[GroupKey, Group] = {}  # sibling groups in the Tree, by parent oid
        self._columns = Columns(0, 0)
        self._badges: dict[int, tuple[str, str] | None] = {}  # the badge each label shows
        self._showing = False  # inside show(): one relabel at the end, not one per group
        self._generation = 0

    # -- columns --------------------------------------------------------------------------------
    def _content_width(self) -> int:
        return self.scrollable_content_region.width or self.size.width or 80

    def _group_for(self, nodes: list[PartNode], parent: PartNode | None) -> Group:
        parent_schema = parent.schema if parent is not None else None
        parent_name = parent.name if parent is not None else None
        full = max((len(display_label(n, parent_schema)) for n in nodes), default=0)
        elided = full
        if parent_name is not None and nodes:
            elided = max(len(display_label(n, parent_schema, parent_name)) for n in nodes)
        return Group(
            depth=parent.level + 1 if parent is not None else 0,
            parent_schema=parent_schema,
            parent_name=parent_name,
            any_expandable=any(self._has_children(n) for n in nodes),
            full_width=full,
            elided_width=elided,
            bound_width=max((len(short_bound(n, self._shorts)) for n in nodes), default=0),
            compact_width=max((len(compact_short_bound(n, self._compacts)) for n in nodes),
                              default=0),
            max_bytes=max((n.total_bytes for n in nodes), default=0),
        )

    def _group_shown(self, key: GroupKey) -> bool:
        if key is None:
            return True
        tree_node = self._by_oid.get(key)
        return tree_node is not None and tree_node.is_expanded and self._is_shown(tree_node)

    def compute_columns(self) -> Columns:
        """Columns for the groups on screen: the name column as wide as the widest name needs
        (its guides included), but never so wide that a row overflows the pane."""
        shown = {k: g for k, g in self._groups.items() if self._group_shown(k)}
        if not shown:
            return Columns(0, 0)
        deepest = max(g.lead(self.guide_depth) for g in shown.values())
        for i, (compact, rows, bar_, badge) in enumerate(LAYOUTS):
            # cells for the name and bound columns together
            avail = self._content_width() - SCROLLBAR - 2 - after_bound(rows, bar_, badge)
            widest = max(g.compact_width if compact else g.bound_width for g in shown.values())
            bound_width = min(widest, BOUND_MAX)
            last = i == len(LAYOUTS) - 1
            if deepest + NAME_MIN + bound_width > avail:
                if not last:
                    continue
                # nothing left to drop: the bound gives way, down to BOUND_MIN, so that names
                # keep NAME_MIN cells
                bound_width = min(bound_width, max(avail - deepest - NAME_MIN, BOUND_MIN))
            limit = avail - bound_width
            need = kept = 0
            elided: set[GroupKey] = set()
            for key, group in shown.items():
                lead = group.lead(self.guide_depth)
                width = group.full_width
                if lead + width > limit and group.elided_width < width:
                    elided.add(key)
                    width = group.elided_width
                need = max(need, lead + width)
                kept = max(kept, lead + min(width, NAME_KEEP))
            if kept <= limit or last:
                return Columns(min(need, limit), bound_width, frozenset(elided), compact, rows,
                               bar_, badge)
        raise AssertionError("unreachable: the last layout always returns")

    def _apply_columns(self, labelling: GroupKey | int = -1) -> None:
        """Recompute the columns and relabel the groups on screen made with other columns
        (except `labelling`, which the caller labels); hidden groups are relabelled when they are
        shown again."""
        self._columns = self.compute_columns()
        if self._showing:
            return
        for key, group in self._groups.items():
            if key != labelling and group.labelled_with != self._columns \
                    and self._group_shown(key):
                self._relabel_group(key, group)

    def _relabel_group(self, key: GroupKey, group: Group) -> None:
        forest = self.forest
        tree_node = self.root if key is None else self._by_oid.get(key)
        if forest is None or tree_node is None:
            return
        for child in tree_node.children:
            node = forest.nodes.get(child.data)  # type: ignore[arg-type]
            if node is not None:
                child.set_label(self.label_for(node, group, key))
        group.labelled_with = self._columns

    def on_resize(self, event: events.Resize) -> None:
        if self.forest is not None and self._groups:
            self._apply_columns()

    def get_label_width(self, node: TreeNode[int]) -> int:
        # Tree's default renders every label to measure it, on each rebuild of its lines
        return node._label.cell_len + (ICON_WIDTH if node.allow_expand else 0)

    # -- labels ---------------------------------------------------------------------------------
    def label_for(self, node: PartNode, group: Group, key: GroupKey) -> Text:
        # one string and its spans: Text.append per part costs 5x as much, at 2,500 rows a
        # noticeable pause on expand
        cols = self._columns
        parts: list[str] = []
        spans: list[Span] = []
        pos = 0
        if group.any_expandable and not self._has_children(node):
            parts.append(" " * ICON_WIDTH)
            pos = ICON_WIDTH
        elide = (group.parent_name or "") if key in cols.elided else ""
        name_width = max(cols.name_end - group.lead(self.guide_depth), NAME_MIN)
        name = fit(display_label(node, group.parent_schema, elide).translate(_CONTROL),
                   name_width)
        parts.append(name)
        if node.is_partitioned or node.is_default:
            style = "bold italic" if node.is_partitioned and node.is_default else \
                "bold" if node.is_partitioned else "italic"
            spans.append(Span(pos, pos + len(name), style))
        pos += len(name)
        if cols.bound_width:
            text = compact_short_bound(node, self._compacts) if cols.compact else \
                short_bound(node, self._shorts)
            bound = fit(text.translate(_CONTROL), cols.bound_width)
            parts.append("  ")
            parts.append(bound)
            if node.is_default or node.is_root:
                spans.append(Span(pos + 2, pos + 2 + len(bound), "dim"))
            pos += 2 + len(bound)
        size = f" {human_bytes(node.total_bytes):>{SIZE_WIDTH}}"
        parts.append(size)
        pos += len(size)
        if cols.rows:
            exact = self.rows_source(node.oid) if self.rows_source is not None else None
            rows = human_rows(node.rows, node.rows_known) if exact is None else human_rows(exact)
            parts.append(f" {rows:>{ROWS_WIDTH}}")
            if exact is not None:  # counted with x: bold, the estimates stay plain
                spans.append(Span(pos + 1, pos + 1 + ROWS_WIDTH, "bold"))
            pos += 1 + ROWS_WIDTH
        if cols.bar:
            parts.append(" " + bar(node.total_bytes, group.max_bytes, cols.bar))
            spans.append(Span(pos + 1, pos + 1 + cols.bar, "green"))
            pos += 1 + cols.bar
        badge = self._badges[node.oid] = self._badge(node)
        if badge is not None and cols.badge:
            parts.append(badge[0])
            spans.append(Span(pos, pos + len(badge[0]), badge[1]))
        return Text("".join(parts), no_wrap=True, end="", spans=spans)

    def _badge(self, node: PartNode) -> tuple[str, str] | None:
        """' ▲2' for a leaf's own findings; for a partitioned table, its whole subtree's per
        severity, most severe first (' ▲1●2'), so a collapsed parent never hides a warning.
        Dim when none of them is the table's own."""
        if self.badge_source is None:
            return None
        own, own_rank, below = self.badge_source(node.oid)
        if node.is_partitioned and below is not None and below.total:
            text = ""
            for sev, n in below.by_severity():
                part = f"{SEVERITY_ICON[sev]}{n}"
                if text and len(text) + len(part) + 1 > BADGE_WIDTH:
                    break  # narrow column: the most severe always shows, the rest if they fit
                text += part
            style = SEVERITY_STYLE[below.worst or "info"]
            return f" {text}", style if own else f"dim {style}"
        if own:
            sev = SEVERITY_ORDER[own_rank]
            return f" {SEVERITY_ICON[sev]}{own}", SEVERITY_STYLE[sev]
        return None

    # -- what to show ---------------------------------------------------------------------------
    def _children_of(self, oid: int | None) -> list[PartNode]:
        forest = self.forest
        if forest is None:
            return []
        nodes = forest.roots if oid is None else forest.nodes[oid].children
        if self.shown_oids is not None:
            nodes = [n for n in nodes if n.oid in self.shown_oids]
        return sort_nodes(nodes, self.sort)

    def _has_children(self, node: PartNode) -> bool:
        if self.shown_oids is None:
            return bool(node.children)
        return any(c.oid in self.shown_oids for c in node.children)

    def node_for(self, oid: int) -> TreeNode[int] | None:
        return self._by_oid.get(oid)

    # -- building -------------------------------------------------------------------------------
    async def show(self, forest: Forest, keep_cursor: int | None = None) -> None:
        """Show `forest`: update what is on screen, add what is newly expanded, keep the cursor."""
        self._generation += 1
        generation = self._generation
        cursor = keep_cursor if keep_cursor is not None else self.cursor_oid()
        old = self.forest
        if forest is not old:
            self._shorts = {}
            self._compacts = {}
        self.forest = forest
        self.expanded_oids &= set(forest.nodes)
        self._showing = True
        try:
            await self._sync(self.root, None, generation)
        finally:
            self._showing = False
        if generation != self._generation:
            return
        self._apply_columns()  # groups labelled before a later group widened the columns
        if cursor is not None:
            self.move_to_oid(cursor, old)
        elif self.cursor_node is None and self.root.children:
            self.move_cursor(self.root.children[0])

    def relabel(self) -> None:
        """When the findings arrive: new labels, in place, for the rows on screen whose badge
        changed (a few, not the 2,500 weeks of an expanded table); hidden groups get theirs when
        shown again."""
        forest = self.forest
        if forest is None:
            return
        for key, group in self._groups.items():
            if not self._group_shown(key):
                group.labelled_with = None
            elif group.labelled_with != self._columns:
                self._relabel_group(key, group)
            else:
                tree_node = self.root if key is None else self._by_oid.get(key)
                for child in tree_node.children if tree_node is not None else ():
                    node = forest.nodes.get(child.data)  # type: ignore[arg-type]
                    if node is not None and self._badge(node) != self._badges.get(node.oid):
                        child.set_label(self.label_for(node, group, key))

    def relabel_node(self, oid: int) -> None:
        """A new label for one row (its exact row count arrived), if it is in the tree."""
        tree_node = self._by_oid.get(oid)
        forest = self.forest
        if tree_node is None or forest is None or oid not in forest.nodes:
            return
        parent = tree_node.parent
        key = parent.data if parent is not None and not parent.is_root else None
        group = self._groups.get(key)
        if group is not None:
            tree_node.set_label(self.label_for(forest.nodes[oid], group, key))

    async def _sync(self, tree_node: TreeNode[int], oid: int | None, generation: int) -> None:
        wanted = self._children_of(oid)
        parent = self.forest.nodes[oid] if oid is not None and self.forest else None
        group = self._group_for(wanted, parent)
        self._groups[oid] = group
        self._apply_columns(labelling=oid)
        group.labelled_with = self._columns
        current = [c.data for c in tree_node.children]
        if current == [n.oid for n in wanted]:
            for child, node in zip(list(tree_node.children), wanted, strict=True):
                child.set_label(self.label_for(node, group, oid))
                child.allow_expand = self._has_children(node)
                await self._sync_below(child, node, generation)
            return
        for child in list(tree_node.children):
            self._forget(child)
        tree_node.remove_children()
        for i, node in enumerate(wanted):
            if generation != self._generation:
                return
            expand = node.oid in self.expanded_oids and self._has_children(node)
            child = tree_node.add(self.label_for(node, group, oid), data=node.oid,
                                  expand=expand, allow_expand=self._has_children(node))
            self._by_oid[node.oid] = child
            if i % CHUNK == CHUNK - 1:
                await asyncio.sleep(0)
        for child, node in zip(list(tree_node.children), wanted, strict=False):
            if generation != self._generation:
                return
            await self._sync_below(child, node, generation)

    async def _sync_below(self, child: TreeNode[int], node: PartNode, generation: int) -> None:
        if child.is_expanded and node.oid in self.expanded_oids:
            self._populated.add(node.oid)
            await self._sync(child, node.oid, generation)
        elif node.oid in self._populated or child.children:
            # collapsed: drop its children, they are re-read from the forest when expanded
            for grandchild in list(child.children):
                self._forget(grandchild)
            child.remove_children()
            self._populated.discard(node.oid)
            self._groups.pop(node.oid, None)

    def _forget(self, tree_node: TreeNode[int]) -> None:
        for child in tree_node.children:
            self._forget(child)
        if tree_node.data is not None and self._by_oid.get(tree_node.data) is tree_node:
            del self._by_oid[tree_node.data]
            self._groups.pop(tree_node.data, None)
            self._badges.pop(tree_node.data, None)
        self._populated.discard(tree_node.data)  # type: ignore[arg-type]

    async def populate(self, tree_node: TreeNode[int]) -> None:
        oid = tree_node.data
        if oid is None or self.forest is None or oid not in self.forest.nodes:
            return
        if oid in self._populated:
            self._apply_columns()  # shown again: align it (and the others) with what is shown
            return
        self._populated.add(oid)
        await self._sync(tree_node, oid, self._generation)

    async def on_tree_node_expanded(self, event: Tree.NodeExpanded[int]) -> None:
        if event.node.data is None:
            return
        self.expanded_oids.add(event.node.data)
        await self.populate(event.node)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[int]) -> None:
        if event.node.data is not None:
            self.expanded_oids.discard(event.node.data)
            if self.forest is not None:
                self._apply_columns()  # what it showed no longer widens the columns

    # -- cursor ---------------------------------------------------------------------------------
    def cursor_oid(self) -> int | None:
        node = self.cursor_node
        return node.data if node is not None else None

    def move_to_oid(self, oid: int, old_forest: Forest | None = None) -> bool:
        """Put the cursor on `oid`, or on its nearest ancestor still shown."""
        forest = self.forest
        candidates = [oid]
        lookup = forest if forest is not None and oid in forest.nodes else old_forest
        node = lookup.nodes.get(oid) if lookup is not None else None
        while node is not None and node.parent_oid:
            candidates.append(node.parent_oid)
            node = lookup.nodes.get(node.parent_oid) if lookup is not None else None
        for candidate in candidates:
            tree_node = self._by_oid.get(candidate)
            if tree_node is not None and self._is_shown(tree_node):
                _ = self.last_line  # lays out the lines so the node's line number is current
                self.move_cursor(tree_node)
                return True
        return False

    @staticmethod
    def _is_shown(tree_node: TreeNode[int]) -> bool:
        parent = tree_node.parent
        while parent is not None:
            if not parent.is_expanded and not parent.is_root:
                return False
            parent = parent.parent
        return True

    async def reveal(self, oid: int) -> None:
        """Expand the ancestors of `oid` (adding their children) and put the cursor on it."""
        forest = self.forest
        if forest is None or oid not in forest.nodes:
            return
        chain: list[int] = []
        node = forest.nodes[oid]
        while node.parent_oid:
            chain.append(node.parent_oid)
            node = forest.nodes[node.parent_oid]
        for ancestor in reversed(chain):
            tree_node = self._by_oid.get(ancestor)
            if tree_node is None:
                return
            self.expanded_oids.add(ancestor)
            if not tree_node.is_expanded:
                tree_node.expand()
            await self.populate(tree_node)
        self.move_to_oid(oid)
