"""Actions on the selected tree node: a small menu of the plan kinds that can act on it.

Each registered kind says what it can do with a node (`PlanKind.actions_for`: the table its
plan is about and the option values it prefills, e.g. the partition under the cursor, or it and
its neighbour); the menu lists every entry of every kind, kinds acting on the partition itself
first, and opens the plan screen of the chosen one with those values filled in. Nothing here
knows a kind: entries come from the registry. The same entries are in the command palette
(`NodeActionCommands`) while the tree is shown.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..core.catalog import Forest, PartNode
from ..core.plans import registry
from ..core.plans.kind import NodeAction
from .plain import highlight, plain

if TYPE_CHECKING:
    from .app import PgpartsApp


def node_actions(forest: Forest, node: PartNode) -> list[NodeAction]:
    """Every registered kind's entries for `node`: those acting on the node as a partition
    (with values prefilled, or marked `on_node`) first, then those acting on a table, each
    group in registry order."""
    found = [a for kind in registry.PLAN_KINDS for a in kind.menu_actions(forest, node)]
    return [a for a in found if a.values or a.on_node] + [
        a for a in found if not (a.values or a.on_node)]


def sentence(label: str) -> str:
    """A menu entry as a sentence: the kinds' titles are capitalized, the entries made for
    a neighbour ('merge with the next partition') are not; every entry starts alike."""
    return label[:1].upper() + label[1:]


def plan_screen_for(action: NodeAction) -> Screen:
    from .plan_screen import plan_screen_class

    kind = registry.kind_named(action.kind)
    # the menu's wording when it says more than the kind's title ('... with the next')
    title = sentence(action.label) if action.label != kind.title else ""
    return plan_screen_class(kind)(kind, action.table, list(action.preselect),
                                   dict(action.values), title)


def open_actions(app: PgpartsApp) -> Screen | None:
    """The menu for the node under the tree cursor, or None after saying why there is none."""
    node = app.selected_node
    if node is None or app.forest is None:
        app.notify("actions: select a partition in the tree", severity="warning")
        return None
    actions = node_actions(app.forest, node)
    if not actions:
        app.notify(f"actions: no plan applies to {node.qualified}", severity="warning",
                   timeout=5)
        return None
    return ActionsMenu(node, actions)


class ActionsMenu(ModalScreen[None]):
    """The entries for one node; enter opens the plan screen of the one under the cursor."""

    DEFAULT_CSS = """
    ActionsMenu {
        align: center middle;
    }
    ActionsMenu #actions-box {
        /* wide enough for 'merge with the previous partition  a + b' on one line */
        width: 110;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    ActionsMenu #actions-title {
        margin-bottom: 1;
    }
    ActionsMenu OptionList, ActionsMenu OptionList:focus {
        height: auto;
        max-height: 14;
        border: none;
        padding: 0;
        background: $surface;
    }
    ActionsMenu #actions-hint {
        margin-top: 1;
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "close", show=True, id="actions-close",
                tooltip="close the menu"),
    ]

    def __init__(self, node: PartNode, actions: list[NodeAction]) -> None:
        super().__init__()
        self.node = node
        self.actions = actions

    def compose(self) -> ComposeResult:
        title = Text("Actions on ", style="bold")
        title.append(self.node.qualified, style="bold")
        if self.node.bound is not None:
            title.append(f"  {self.node.bound.short()}", style="dim")
        with Vertical(id="actions-box"):
            yield Static(title, id="actions-title")
            yield OptionList(*[Option(self._entry(a), id=str(i), disabled=bool(a.unavailable))
                               for i, a in enumerate(self.actions)], id="actions-list")
            yield Static("enter: open the plan (nothing runs before you apply) · esc: close",
                         id="actions-hint")

    @staticmethod
    def _entry(action: NodeAction) -> Text:
        text = Text(sentence(action.label))
        if action.detail:
            # 'of control.payment' goes on with the label's sentence; a name stands apart
            sep = " " if action.detail.startswith("of ") else "  "
            text.append(f"{sep}{action.detail}", style="dim")
        if action.unavailable:
            # said before it is chosen, not after the plan screen opened
            text.stylize("dim")
            text.append(f"\n  cannot: {action.unavailable}", style="yellow")
        return text

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected, "#actions-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.open(self.actions[int(event.option.id or 0)])

    def open(self, action: NodeAction) -> None:
        # the plan screen takes the menu's place: escape there goes back to the tree
        self.app.switch_screen(plan_screen_for(action))

    def action_close(self) -> None:
        self.dismiss(None)


class NodeActionCommands(Provider):
    """The selected node's actions in the command palette (while the tree is shown)."""

    def _actions(self) -> list[NodeAction]:
        from .main_screen import MainScreen

        app = self.app
        if not isinstance(self.screen, MainScreen):
            return []
        node = getattr(app, "selected_node", None)
        forest = getattr(app, "forest", None)
        if node is None or forest is None:
            return []
        return node_actions(forest, node)

    @staticmethod
    def _title(action: NodeAction) -> str:
        label = sentence(action.label)
        if not action.detail:
            return label
        # as in the menu: 'Fill the gaps ... of metrics', 'Split a range partition: p'
        sep = " " if action.detail.startswith("of ") else ": "
        return f"{label}{sep}{action.detail}"

    async def _open(self, action: NodeAction) -> None:
        await self.app.push_screen(plan_screen_for(action))

    async def discover(self) -> Hits:
        for action in self._actions():
            if action.unavailable:
                continue  # the menu shows why
            title = self._title(action)
            yield DiscoveryHit(plain(title), partial(self._open, action), text=title,
                               help="opens the plan screen with it filled in")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action in self._actions():
            if action.unavailable:
                continue
            title = self._title(action)
            score = max(matcher.match(title), matcher.match(f"{action.kind} {title}"))
            if score > 0:
                yield Hit(score, highlight(matcher, title), partial(self._open, action),
                          text=title, help="opens the plan screen with it filled in")
