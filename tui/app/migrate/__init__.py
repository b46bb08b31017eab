"""The guided migration in the console (issue 11): pick a plain table (picker.py), choose the
partition column, key, tie-break and layout (form.py), then run the stages one by one, each
previewed and confirmed (wizard.py). Every stage is reached through `STAGES` and shown from its
plan (the engine's description) and its report (tui.core.migrate.report); the screens only
display and dispatch, every database call runs in a thread worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from ..app import PgpartsApp


def open_wizard(app: PgpartsApp) -> Screen | None:
    from .picker import MigratePickerScreen

    return MigratePickerScreen()
