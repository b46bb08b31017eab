"""The main screen: the partition tree, details of the selected node, a status line.

Side by side from `NARROW_BELOW` columns on; on a narrower terminal the details go below the
tree, which then has the full width for its columns. `d` hides or shows the details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, Tree

from ..core.catalog import Forest
from ..core.findings import FindingCounts
from .details import render_details
from .details_extra import DetailsExtras
from .footer_keys import COMPACT_BELOW, FooterKeys
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


NARROW_BELOW = 120  # columns: below, the details go under the tree


class MainScreen(FooterKeys, DetailsExtras, Screen):
    """Left: the live partition tree. Right: the selected relation. Bottom: status and keys."""

    FOOTER_APP_COMMANDS = None  # the console's footer=True commands: this is their screen
    BINDINGS: ClassVar[list[BindingType]] = [
        # the filter box is hidden once enter kept the filter: escape clears it from the tree
        Binding("escape", "clear_filter", "clear filter", show=True, id="filter-clear",
                tooltip="clear the name filter"),
        Binding("d", "toggle_details", "details", show=False, id="toggle-details",
                tooltip="hide or show the details pane"),
    ]

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
        tree.rows_source = self._exact_rows
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

    def _exact_rows(self, oid: int) -> int | None:
        counted = self.papp.exact_rows.get(oid)
        return counted[0] if counted is not None else None

    def cursor_oid(self) -> int | None:
        return self.tree.cursor_oid()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW_BELOW, "narrow")
        self.refresh_bindings()
        self.update_status()

    def footer_hidden_commands(self) -> frozenset[str]:
        # at 80 columns 'esc clear filter' would push help and quit out of the footer: while a
        # filter is on, '/' (it is open) and 'r' (the keys still work) give it their room
        if self.size.width < COMPACT_BELOW and self.check_action("clear_filter", ()):
            return frozenset({"filter", "refresh"})
        return frozenset()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return self.tree.shown_oids is not None or self.query_one(FilterInput).display
        return True

    async def action_clear_filter(self) -> None:
        box = self.query_one(FilterInput)
        box.display = False
        if box.value:
            box.value = ""  # Input.Changed re-applies the (empty) filter
        else:
            await self.apply_filter("")
        self.tree.focus()
        self.refresh_bindings()

    def action_toggle_details(self) -> None:
        self.toggle_class("no-details")

    def row_counted(self, oid: int) -> None:
        """An exact count arrived (or failed): the row and the details show it."""
        self.tree.relabel_node(oid)
        self.update_details()

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
            elif self.tree.shown_oids is not None and not self.tree.shown_oids:
                value = self.query_one(FilterInput).value.strip()
                static.update(Text.assemble(
                    ("No table or partition name contains ", "bold"), (repr(value), "bold"),
                    ("\n\nescape clears the filter", "dim")))
            else:
                static.update("")
            return
        node = forest.nodes[oid]
        static.update(render_details(
            node, forest, findings=app.findings_by_oid.get(oid, []),
            exact_rows=app.exact_rows.get(oid), counting=oid in app.counting,
            checked=app.findings_loaded,
            lifecycle=self.lifecycle_sections(node, forest, app.config,
                                              app.shown_key(app.command("maintain"))),
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
        start = len(text)
        # the padding of the line takes 2 cells
        room = status.size.width - 2
        for level in range(3):
            if level:
                text.right_crop(len(text) - start)
            self._status_parts(text, short=level >= 1, tiny=level >= 2)
            if not status.size.width or text.cell_len <= room:
                break
        else:
            # a long filter: what does not fit ends in an ellipsis rather than a silent cut
            text.truncate(room, overflow="ellipsis")
        status.update(text)

    def _status_parts(self, text: Text, short: bool, tiny: bool = False) -> None:
        """The status line after the mode; `short`: the form that fits 80 columns (no sort
        unless changed, no load time, shorter words; 'as of' stays: it dates what is shown);
        `tiny`: the form that still fits with a sort, a filter or auto-refresh shown too
        (no partition count nor total size, 'by size', '2 found', 'auto')."""
        app = self.papp
        forest = app.forest
        assert forest is not None
        roots = len(forest.roots)
        parts = len(forest.nodes) - roots
        total = sum(r.total_bytes for r in forest.roots)
        tables = ("table" if short else "partitioned table") + ("" if roots == 1 else "s")
        text.append(f"{thousands(roots)} {tables}")
        if not tiny:  # the tree's rows show the sizes
            text.append(f" · {thousands(parts)} partition{'' if parts == 1 else 's'} · "
                        f"{human_bytes(total)}")
            if short:
                text.append(" exact" if forest.exact_sizes else " est.", style="dim")
            else:
                text.append(f" ({'exact' if forest.exact_sizes else 'estimated'})", style="dim")
        if not short or self.tree.sort != SORTS[0]:
            text.append(f" · by {self.tree.sort}" if tiny else f" · sort: {self.tree.sort}")
        if self.tree.shown_oids is not None:
            value = self.query_one(FilterInput).value
            text.append(f" · filter: {value!r}", style="bold")
        if app.findings:
            count = len(app.findings)
            text.append(f" · {count} found" if tiny else
                        f" · {count} finding{'s' if count != 1 else ''}")
        if app.findings_error:
            text.append(f" · {app.findings_error}", style="red")
        if app.auto_refresh_on:
            text.append(" · auto" if tiny else
                        f" · auto {app.auto_refresh_seconds:g}s" if short else
                        f" · auto-refresh {app.auto_refresh_seconds:g}s")
        if app.catalog_loading:
            text.append(" · refreshing…", style="italic")
        elif app.show_load_time:
            text.append(f" · as of {forest.loaded_at:%H:%M:%S} UTC", style="dim")
            if not short:
                text.append(f" ({app.last_load_seconds:.2f}s)", style="dim")

    # -- filter ---------------------------------------------------------------------------------
    def open_filter(self) -> None:
        box = self.query_one(FilterInput)
        box.display = True
        # now, not after a refresh (Widget.focus): keys typed right after / go to the box
        self.set_focus(box)
        self.refresh_bindings()

    @on(Input.Changed, "#filter")
    async def _filter_changed(self, event: Input.Changed) -> None:
        await self.apply_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one(FilterInput)
        if not event.value:
            box.display = False
        self.tree.focus()
        self.refresh_bindings()

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
        self.refresh_bindings()

    # -- sort -----------------------------------------------------------------------------------
    async def cycle_sort(self) -> None:
        tree = self.tree
        tree.sort = SORTS[(SORTS.index(tree.sort) + 1) % len(SORTS)]
        if self.papp.forest is not None:
            await tree.show(self.papp.forest)
        self.update_status()
        self.notify(f"sorted by {tree.sort}", timeout=2)
