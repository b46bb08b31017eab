"""The main screen: the partition tree on the left, details of the selected node on the right."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, Tree

from ..core.catalog import Forest
from ..core.findings import FindingCounts
from .details import render_details
from .format import SORTS, ancestors, filter_forest, human_bytes, thousands
from .messages import CatalogFailed
from .tree_view import PartitionTree

if TYPE_CHECKING:
    from .app import PgpartsApp


class FilterInput(Input):
    BINDINGS = [Binding("escape", "clear_filter", "clear filter", show=True)]

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.Submitted(self, ""))


class MainScreen(Screen):
    """Left: the live partition tree. Right: the selected relation. Bottom: status and keys."""

    AUTO_FOCUS = "#tree"

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="panes"):
            with Vertical(id="left"):
                box = FilterInput(placeholder="filter names (enter: keep, esc: clear)",
                                  id="filter")
                box.display = False
                yield box
                yield PartitionTree(id="tree")
            with VerticalScroll(id="details-pane"):
                yield Static("", id="details")
        yield Static("", id="status")
        yield Footer()

    @property
    def papp(self) -> PgpartsApp:
        return self.app  # type: ignore[return-value]

    @property
    def tree(self) -> PartitionTree:
        return self.query_one(PartitionTree)

    def on_mount(self) -> None:
        tree = self.tree
        tree.badge_source = self._badges
        tree.loading = True
        tree.focus()
        self._pre_filter_expanded: set[int] | None = None
        self.update_status()
        # the first load starts once the widgets that show its result exist
        self.papp.refresh_catalog()

    def _badges(self, oid: int) -> tuple[int, int, FindingCounts | None]:
        app = self.papp
        own = app.findings_by_oid.get(oid, [])
        from .format import severity_rank

        own_rank = max((severity_rank(f.severity) for f in own), default=0)
        return len(own), own_rank, app.subtree_findings.get(oid)

    def cursor_oid(self) -> int | None:
        return self.tree.cursor_oid()

    # -- catalog events (called by the app) -----------------------------------------------------
    async def catalog_loaded(self, forest: Forest) -> None:
        tree = self.tree
        tree.loading = False
        if self.focused is None:
            tree.focus()
        if tree.shown_oids is not None:
            visible, expand, _ = filter_forest(forest, self.query_one(FilterInput).value)
            tree.shown_oids = visible
            tree.expanded_oids |= expand
        await tree.show(forest)
        self.update_details()

    def catalog_failed(self, message: CatalogFailed) -> None:
        tree = self.tree
        tree.loading = False
        if self.papp.forest is None:
            self.query_one("#details", Static).update(
                Text.assemble(("Cannot read the catalog\n\n", "bold red"), message.error,
                              ("\n\nctrl+r: retry    q: quit", "dim"))
            )

    def findings_changed(self) -> None:
        self.tree.relabel()
        self.update_details()

    # -- tree events ----------------------------------------------------------------------------
    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[int]) -> None:
        self.update_details()

    def update_details(self) -> None:
        app = self.papp
        forest = app.forest
        try:
            static = self.query_one("#details", Static)
        except NoMatches:
            return
        oid = self.tree.cursor_oid()
        if forest is None:
            return
        if oid is None or oid not in forest.nodes:
            if not forest.roots:
                static.update(Text("No partitioned tables in this database.", style="dim"))
            else:
                static.update("")
            return
        node = forest.nodes[oid]
        static.update(render_details(
            node, forest, findings=app.findings_by_oid.get(oid, []),
            exact_rows=app.exact_rows.get(oid), counting=oid in app.counting,
            checked=app.findings_loaded,
        ))

    def update_status(self) -> None:
        app = self.papp
        try:
            status = self.query_one("#status", Static)
        except NoMatches:  # the load started before this screen composed its widgets
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        if app.read_only:
            text.append(" READ-ONLY ", style="bold reverse yellow")
            text.append(" ")
        if app.connection_error:
            text.append(f"{app.connection_error}", style="bold red")
            text.append("  ctrl+r reconnect", style="red")
            status.update(text)
            return
        forest = app.forest
        if forest is None:
            text.append("reading the catalog…", style="italic")
            status.update(text)
            return
        roots = len(forest.roots)
        parts = len(forest.nodes) - roots
        total = sum(r.total_bytes for r in forest.roots)
        text.append(f"{thousands(roots)} partitioned tables · {thousands(parts)} partitions · "
                    f"{human_bytes(total)}")
        text.append(f" ({'exact' if forest.exact_sizes else 'estimated'})", style="dim")
        text.append(f" · sort: {self.tree.sort}")
        if self.tree.shown_oids is not None:
            value = self.query_one(FilterInput).value
            text.append(f" · filter: {value!r}", style="bold")
        if app.findings:
            count = len(app.findings)
            text.append(f" · {count} finding{'s' if count != 1 else ''}")
        if app.findings_error:
            text.append(f" · {app.findings_error}", style="red")
        if app.auto_refresh_on:
            text.append(f" · auto-refresh {app.auto_refresh_seconds:g}s")
        if app.catalog_loading:
            text.append(" · refreshing…", style="italic")
        elif app.show_load_time:
            text.append(f" · as of {forest.loaded_at:%H:%M:%S} UTC"
                        f" ({app.last_load_seconds:.2f}s)", style="dim")
        status.update(text)

    # -- filter ---------------------------------------------------------------------------------
    def open_filter(self) -> None:
        box = self.query_one(FilterInput)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    async def _filter_changed(self, event: Input.Changed) -> None:
        await self.apply_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one(FilterInput)
        if not event.value:
            box.display = False
        self.tree.focus()

    async def apply_filter(self, value: str) -> None:
        tree = self.tree
        forest = self.papp.forest
        if forest is None:
            return
        cursor = tree.cursor_oid()
        if value.strip():
            if self._pre_filter_expanded is None:
                self._pre_filter_expanded = set(tree.expanded_oids)
            visible, expand, _ = filter_forest(forest, value)
            tree.shown_oids = visible
            tree.expanded_oids |= expand
        else:
            tree.shown_oids = None
            if self._pre_filter_expanded is not None:
                # back to the user's own expansion, plus the way to where the cursor is now
                tree.expanded_oids = self._pre_filter_expanded
                if cursor is not None:
                    tree.expanded_oids |= set(ancestors(forest, cursor))
                self._pre_filter_expanded = None
        await tree.show(forest, keep_cursor=cursor)
        if value.strip() and (tree.cursor_node is None or tree.cursor_oid() not in
                              (tree.shown_oids or set())):
            first = next(iter(tree.root.children), None)
            if first is not None:
                tree.move_cursor(first)
        self.update_details()
        self.update_status()

    # -- sort -----------------------------------------------------------------------------------
    async def cycle_sort(self) -> None:
        tree = self.tree
        tree.sort = SORTS[(SORTS.index(tree.sort) + 1) % len(SORTS)]
        if self.papp.forest is not None:
            await tree.show(self.papp.forest)
        self.update_status()
        self.notify(f"sorted by {tree.sort}", timeout=2)
