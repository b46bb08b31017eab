"""The console's one table of commands: keys, footer, help screen and command palette all read it.

A command is data: an id (also the Binding id, so user keymaps can rebind it), a key, a short
title for the footer, a one-line description for the help screen and the palette, and the
Textual action it runs on the app. Commands that change the database say so (`writes=True`); in
--read-only mode they stay listed but cannot run.

Screens owned by other parts of the console register with `screen="module:attribute"`: the
module is imported only when the command first runs, and the attribute is called with the app
(`factory(app) -> Screen`). See `PgpartsApp` in app.py for what a screen can read from the app.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleCommand:
    id: str
    key: str  # a Textual key name: "r", "ctrl+r", "slash", "question_mark"
    title: str  # short, for the footer
    description: str  # one line, for the help screen and the palette
    action: str = ""  # a Textual action on the app, e.g. "refresh"; derived when `screen` is set
    screen: str | None = None  # "package.module:factory", imported lazily
    writes: bool = False  # changes the database: disabled in --read-only mode
    main_only: bool = False  # acts on the partition tree: only while the main screen is shown
    footer: bool = True
    key_display: str | None = None
    priority: bool = False

    @property
    def app_action(self) -> str:
        if self.action:
            return self.action
        if self.screen:
            return f"open_screen({self.id!r})"
        raise ValueError(f"command {self.id!r} has neither an action nor a screen")

    @property
    def shown_key(self) -> str:
        if self.key_display:
            return self.key_display
        return _KEY_NAMES.get(self.key, self.key)


_KEY_NAMES = {
    "slash": "/",
    "question_mark": "?",
    "ctrl+p": "^p",
    "ctrl+r": "^r",
}


def action_name(action: str) -> str:
    """'open_screen("explain")' -> 'open_screen'."""
    return action.split("(", 1)[0].strip()
