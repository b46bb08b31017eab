"""Regenerate the plan screen's screenshots from the demo database.

    python screenshots/make_consolidate_screenshots.py

Starts (or joins) the demo server with its data laid out around a fixed date
($PGPARTS_DEMO_NOW, 2026-11-21 unless set), opens the console headless at 140x40, puts the cursor
on account_balances, presses c and saves consolidate.svg (status, default selection, plan
preview) and consolidate-confirm.svg (the confirmation dialog) next to this script; then puts the
cursor on metrics, presses f and saves fix.svg (the same plan screen with the index_fix kind that
fixes metrics' index findings). Nothing is applied.
"""

from __future__ import annotations

import sys

from demo_shots import HERE, console, open_on, run, settle

from tui.app.confirm import ConfirmModal  # noqa: E402
from tui.app.plan_screen import PlanScreen  # noqa: E402

FILES = ("consolidate.svg", "consolidate-confirm.svg", "fix.svg")


async def shoot(dsn: str) -> None:
    async with console(dsn) as (app, pilot):
        await open_on(app, pilot, "account_balances", "c", PlanScreen)
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
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, PlanScreen))
        await open_on(app, pilot, "metrics", "f", PlanScreen)
        screen = app.screen
        await settle(pilot, lambda: screen.loads >= 1 and not screen.planning)
        await pilot.pause(0.3)
        app.save_screenshot(FILES[2], path=str(HERE))


if __name__ == "__main__":
    sys.exit(run(shoot, FILES))
