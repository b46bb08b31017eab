"""Regenerate the EXPLAIN screenshots from the demo database.

    python screenshots/make_explain_screenshots.py

Starts (or joins) the demo server with its data laid out around a fixed date
($PGPARTS_DEMO_NOW, 2026-11-21 unless set), opens the console headless at 140x40, puts the cursor
on account_balances, presses e and saves:

- explain.svg: a query with a time range and an account, pruned on both levels (the week and
  its HASH partition); the Append over the partitions scanned and its members are expanded;
- explain_unpruned.svg: the same table filtered on `timestamp::date`, which no level can prune,
  with the advice and its rewrite.

Plain EXPLAIN only: nothing is run.
"""

from __future__ import annotations

import sys

from demo_shots import HERE, console, open_on, run, settle
from textual.widgets import TextArea, Tree  # noqa: E402

from tui.app.explain_screen import ExplainScreen  # noqa: E402

FILES = ("explain.svg", "explain_unpruned.svg")

PRUNED = """SELECT "timestamp", activity_id, usd_value
FROM account_balances
WHERE "timestamp" >= '2026-11-08' AND "timestamp" < '2026-11-22'
  AND account_address = 'rdx1qsp7a0b1c2d3e4f5'
ORDER BY "timestamp\""""

UNPRUNED = """SELECT activity_id, sum(usd_value)
FROM account_balances
WHERE "timestamp"::date = '2026-11-10'
GROUP BY activity_id"""


async def _explain(pilot, screen: ExplainScreen, text: str) -> None:
    editor = screen.query_one("#explain-editor", TextArea)
    editor.text = text
    editor.move_cursor(editor.document.end)
    before = screen.runs
    await pilot.press("f5")
    await settle(pilot, lambda: screen.runs > before)
    if screen.report is None:
        raise SystemExit(f"EXPLAIN failed: {screen.last.error if screen.last else '?'}")


async def shoot(dsn: str) -> None:
    async with console(dsn) as (app, pilot):
        await open_on(app, pilot, "account_balances", "e", ExplainScreen)
        screen = app.screen
        assert isinstance(screen, ExplainScreen)

        await _explain(pilot, screen, PRUNED)
        plan = screen.query_one("#explain-plan", Tree)
        # open the Append over the partitions scanned, then its members: their conditions
        for _ in range(2):
            stack = list(plan.root.children)
            while stack:
                node = stack.pop()
                if node.allow_expand and not node.is_expanded:
                    node.expand()
                stack.extend(node.children)
            await pilot.pause(0.2)
        await pilot.pause(0.3)
        app.save_screenshot(FILES[0], path=str(HERE))

        await _explain(pilot, screen, UNPRUNED)
        await pilot.pause(0.3)
        app.save_screenshot(FILES[1], path=str(HERE))


if __name__ == "__main__":
    sys.exit(run(shoot, FILES))
