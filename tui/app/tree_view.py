"""The partition tree widget: lazy children, chunked adds, in-place refresh, filter and sort.

Tree node data is the relation's oid; the catalog objects live in the app's Forest. Children are
added when a node is first expanded, 250 per event-loop slice, so 10,000 partitions never block
input. A refresh walks only what the tree already shows: a sibling group whose oids and order are
unchanged gets new labels in place; a changed group is rebuilt, keeping expansion and cursor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..core.catalog import Forest, PartNode, sql_ident_text
from .format import SEVERITY_ICON, SEVERITY_ORDER, bar, fit, human_bytes, human_rows, sort_nodes

CHUNK = 250  # nodes added per event-loop slice
NAME_MAX = 44
BOUND_MAX = 26
BAR_WIDTH = 8

SEVERITY_STYLE = {
    "critical": "bold red",
    "warning": "yellow",
    "notice": "cyan",
    "info": "cyan",
}


@dataclass
class GroupLayout:
    """Column widths and the bar scale shared by one group of siblings."""

    name_width: int
    bound_width: int
    max_bytes: int
    parent_schema: str | None
    elide: str = ""
    # the Tree draws an expand icon only on expandable nodes: pad the others so columns align
    any_expandable: bool = False


def display_label(node: PartNode, parent_schema: str | None, elide: str = "") -> str:
    """The name, schema-qualified for a root outside public or a partition in another schema
    than its parent's; quoted where SQL would need quotes. With `elide` (the parent's name), a
    child named parent_suffix shows as …_suffix when the full names do not fit."""
    if parent_schema is None or node.schema != parent_schema:
        return node.qualified
    text = sql_ident_text(node.name)
    if elide and node.name.startswith(elide) and len(node.name) > len(elide) + 1 \
            and text == node.name:
        return "…" + node.name[len(elide):]
    return text


# cells after the name: "  " bound " " size(9) " " rows(6) " " bar(8) badge(~4)
FIXED_COLUMNS = 2 + 1 + 9 + 1 + 6 + 1 + BAR_WIDTH + 4


def short_bound(node: PartNode, cache: dict[int, str] | None = None) -> str:
    if cache is not None and node.oid in cache:
        return cache[node.oid]
    text = node.bound.short() if node.bound else ""
    if cache is not None:
        cache[node.oid] = text
    return text


def group_layout(
    nodes: list[PartNode], parent: PartNode | None, budget: int | None = None,
    shorts: dict[int, str] | None = None,
) -> GroupLayout:
    """Columns for one sibling group; `budget` is the width left for the name column."""
    parent_schema = parent.schema if parent is not None else None
    if not nodes:
        return GroupLayout(0, 0, 0, parent_schema)
    bounds = [len(short_bound(n, shorts)) for n in nodes]
    bound_width = min(max(bounds), BOUND_MAX)
    name_width = min(max(len(display_label(n, parent_schema)) for n in nodes), NAME_MAX)
    elide = ""
    if budget is not None and parent is not None and name_width > budget - bound_width:
        elide = parent.name
        name_width = min(max(len(display_label(n, parent_schema, elide)) for n in nodes),
                         NAME_MAX)
    if budget is not None:
        name_width = max(min(name_width, budget - bound_width), 12)
    return GroupLayout(name_width, bound_width, max(n.total_bytes for n in nodes),
                       parent_schema, elide=elide)


class PartitionTree(Tree[int]):
    """Partitioned tables and their partitions at any depth."""

    def __init__(self, **kwargs) -> None:
        super().__init__("partitioned tables", **kwargs)
        self.show_root = False
        self.guide_depth = 3
        self.forest: Forest | None = None
        self.sort = "bound"
        self.shown_oids: set[int] | None = None  # None: no filter
        self.expanded_oids: set[int] = set()
        # oid -> (own findings count, worst own rank); oid -> (subtree count, worst rank)
        self.badge_source: Callable[[int], tuple[int, int, int, int]] | None = None
        self._populated: set[int] = set()
        self._by_oid: dict[int, TreeNode[int]] = {}
        self._shorts: dict[int, str] = {}  # bound labels of the current forest, by oid
        self._generation = 0

    # -- labels ---------------------------------------------------------------------------------
    def label_for(self, node: PartNode, layout: GroupLayout) -> Text:
        text = Text(no_wrap=True, end="")
        if layout.any_expandable and not self._has_children(node):
            text.append("  ")
        name_style = "bold" if node.is_partitioned else ""
        if node.is_default:
            name_style += " italic"
        text.append(fit(display_label(node, layout.parent_schema, layout.elide),
                        layout.name_width),
                    style=name_style.strip())
        if layout.bound_width:
            bound = short_bound(node, self._shorts)
            text.append("  ")
            text.append(fit(bound, layout.bound_width), style="dim" if node.is_default else "")
        rows = human_rows(node.rows, node.rows_known)
        text.append(f" {human_bytes(node.total_bytes):>9} {rows:>6} ")
        text.append(bar(node.total_bytes, layout.max_bytes, BAR_WIDTH), style="green")
        if self.badge_source is not None:
            own, own_rank, below, below_rank = self.badge_source(node.oid)
            if own:
                sev = SEVERITY_ORDER[own_rank]
                text.append(f" {SEVERITY_ICON[sev]}{own}", style=SEVERITY_STYLE[sev])
            elif below and node.is_partitioned:
                sev = SEVERITY_ORDER[below_rank]
                text.append(f" ({SEVERITY_ICON[sev]}{below})", style=f"dim {SEVERITY_STYLE[sev]}")
        return text

    def _name_budget(self, parent: PartNode | None) -> int:
        """Cells left for the name column of `parent`'s children, so a row fits the pane."""
        width = self.scrollable_content_region.width or self.size.width or 80
        depth = parent.level + 1 if parent is not None else 0
        indent = depth * self.guide_depth + 2  # guides, then the expand icon
        return width - indent - FIXED_COLUMNS - 1  # the vertical scrollbar

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
        self.forest = forest
        self.expanded_oids &= set(forest.nodes)
        await self._sync(self.root, None, generation)
        if generation != self._generation:
            return
        if cursor is not None:
            self.move_to_oid(cursor, old)
        elif self.cursor_node is None and self.root.children:
            self.move_cursor(self.root.children[0])

    def relabel(self) -> None:
        """New labels for every node on screen (e.g. when the findings arrive), in place."""
        forest = self.forest
        if forest is None:
            return
        for tree_node in [self.root, *self._by_oid.values()]:
            if not tree_node.children:
                continue
            oid = tree_node.data
            parent = forest.nodes.get(oid) if oid is not None else None
            wanted = [forest.nodes[c.data] for c in tree_node.children if c.data in forest.nodes]
            layout = group_layout(wanted, parent, self._name_budget(parent), self._shorts)
            layout.any_expandable = any(self._has_children(n) for n in wanted)
            for child in tree_node.children:
                node = forest.nodes.get(child.data)
                if node is not None:
                    child.set_label(self.label_for(node, layout))

    async def _sync(self, tree_node: TreeNode[int], oid: int | None, generation: int) -> None:
        wanted = self._children_of(oid)
        parent = self.forest.nodes[oid] if oid is not None and self.forest else None
        layout = group_layout(wanted, parent, self._name_budget(parent), self._shorts)
        layout.any_expandable = any(self._has_children(n) for n in wanted)
        current = [c.data for c in tree_node.children]
        if current == [n.oid for n in wanted]:
            for child, node in zip(list(tree_node.children), wanted, strict=True):
                child.set_label(self.label_for(node, layout))
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
            child = tree_node.add(self.label_for(node, layout), data=node.oid, expand=expand,
                                  allow_expand=self._has_children(node))
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

    def _forget(self, tree_node: TreeNode[int]) -> None:
        for child in tree_node.children:
            self._forget(child)
        if tree_node.data is not None and self._by_oid.get(tree_node.data) is tree_node:
            del self._by_oid[tree_node.data]
        self._populated.discard(tree_node.data)  # type: ignore[arg-type]

    async def populate(self, tree_node: TreeNode[int]) -> None:
        oid = tree_node.data
        if oid is None or oid in self._populated or self.forest is None:
            return
        if oid not in self.forest.nodes:
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
