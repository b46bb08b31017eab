"""Regenerate the consolidation screenshots from the demo database.

    python screenshots/make_consolidate_screenshots.py

Starts (or joins) the demo server with its data laid out around a fixed date
($PGPARTS_DEMO_NOW, 2026-11-21 unless set), opens the console headless at 140x40, puts the cursor
on account_balances, presses c and saves consolidate.svg (status, default selection, plan
preview) and consolidate-confirm.svg (the confirmation dialog) next to this script. Nothing is
applied.
"""

from __future__ import annotations

import sys

from demo_shots import HERE, console, open_on, run, settle

from tui.app.confirm import ConfirmModal  # noqa: E402
from tui.app.consolidate_screen import ConsolidateScreen  # noqa: E402

FILES = ("consolidate.svg", "consolidate-confirm.svg")


async def shoot(dsn: str) -> None:
    async with console(dsn) as (app, pilot):
        await open_on(app, pilot, "account_balances", "c", ConsolidateScreen)
        screen = app.screen
        await settle(pilot, lambda: screen.loads >= 1 and not screen.planning)
        await pilot.pause(0.3)
        app.save_screenshot(FILES[0], path=str(HERE))
        await pilot.press("A")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.pause(0.3)
        app.save_screenshot(FILES[1], path=str(HERE))
        await pilot.press("n")  # nothing is applied
        await pilot.pause()


if __name__ == "__main__":
    sys.exit(run(shoot, FILES))
