"""Regenerate the screenshots of the actions on a partition from the demo database.

    python screenshots/make_actions_screenshots.py

Starts (or joins) the demo server with its data laid out around a fixed date
($PGPARTS_DEMO_NOW, 2026-11-21 unless set), opens the console headless at 140x40, puts the cursor
on control.payment_2023, presses m and saves actions.svg (the menu of the plan kinds that apply
to it or to its table); then chooses split, types the boundary of scenario 2 (2023-07-01) and
saves split.svg (the plan screen with the partition filled in and the plan's preview). Nothing
is applied.
"""

from __future__ import annotations

import sys

from demo_shots import HERE, console, open_on, run, settle

from tui.app.node_actions import ActionsMenu  # noqa: E402
from tui.app.plan_screen import PlanScreen  # noqa: E402

FILES = ("actions.svg", "split.svg")


async def shoot(dsn: str) -> None:
    async with console(dsn) as (app, pilot):
        await open_on(app, pilot, "control.payment_2023", "m", ActionsMenu)
        await pilot.pause(0.3)
        app.save_screenshot(FILES[0], path=str(HERE))
        menu = app.screen
        assert isinstance(menu, ActionsMenu)
        split = next(a for a in menu.actions if a.kind == "split")
        menu.open(split)
        await settle(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await settle(pilot, lambda: screen.loads >= 1 and not screen.planning)
        before = screen.loads
        screen.query_one("#plan-option-at").value = "2023-07-01"
        screen.query_one("#plan-option-name").value = "payment_2023_h2"
        await settle(pilot, lambda: screen.loads > before and not screen.planning)
        screen.query_one("#plan-preview-pane").focus()
        await pilot.pause(0.3)
        app.save_screenshot(FILES[1], path=str(HERE))


if __name__ == "__main__":
    sys.exit(run(shoot, FILES))
