"""What a screen's footer shows: its own keys and only the app's essentials.

The app binds the console commands on every screen; at 80 columns a footer listing them all
next to a screen's own keys loses the ones that matter (help, quit). A screen that mixes in
`FooterKeys` shows, of the app's bindings, only the command ids in `FOOTER_APP_COMMANDS` (None:
every command marked footer=True). The keys still work; the help screen (?) lists them all.
Below `COMPACT_BELOW` columns the footer drops its padding.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from textual import events
from textual.app import App
from textual.binding import ActiveBinding
from textual.css.query import NoMatches
from textual.widgets import Footer

COMPACT_BELOW = 120


class FooterKeys:
    FOOTER_APP_COMMANDS: ClassVar[frozenset[str] | None] = frozenset({"help", "quit"})

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        bindings: dict[str, ActiveBinding] = super().active_bindings  # type: ignore[misc]
        keep = self.FOOTER_APP_COMMANDS
        hidden = self.footer_hidden_commands()
        if keep is None and not hidden:
            return bindings
        out: dict[str, ActiveBinding] = {}
        for key, active in bindings.items():
            binding = active.binding
            if binding.show and isinstance(active.node, App) and (
                    (keep is not None and binding.id not in keep) or binding.id in hidden):
                active = ActiveBinding(active.node, replace(binding, show=False),
                                       active.enabled, active.tooltip)
            out[key] = active
        return out

    def footer_hidden_commands(self) -> frozenset[str]:
        """Command ids to leave out of the footer for now (the screen's state needs the room)."""
        return frozenset()

    def on_resize(self, event: events.Resize) -> None:
        try:
            footer = self.query_one(Footer)  # type: ignore[attr-defined]
        except NoMatches:
            return
        footer.compact = event.size.width < COMPACT_BELOW
