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

import asyncio
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("PGPARTS_DEMO_NOW", "2026-11-21")

from textual.widgets import TextArea, Tree  # noqa: E402

from tui.app.app import PgpartsApp  # noqa: E402
from tui.app.explain_screen import ExplainScreen  # noqa: E402
from tui.app.tree_view import PartitionTree  # noqa: E402
from tui.core.config import Config  # noqa: E402
from tui.core.connection import Target  # noqa: E402
from tui.core.demo import open_demo  # noqa: E402

SIZE = (140, 40)
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


async def _settle(pilot, predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("the console did not get there in time")
        await pilot.pause(0.05)
    await pilot.pause()


async def _explain(pilot, screen: ExplainScreen, text: str) -> None:
    editor = screen.query_one("#explain-editor", TextArea)
    editor.text = text
    editor.move_cursor(editor.document.end)
    before = screen.runs
    await pilot.press("f5")
    await _settle(pilot, lambda: screen.runs > before)
    if screen.report is None:
        raise SystemExit(f"EXPLAIN failed: {screen.last.error if screen.last else '?'}")


async def shoot(dsn: str) -> None:
    app = PgpartsApp(Target(dsn, label="demo"), Config(), read_only=False)
    app.show_load_time = False
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot, lambda: app.catalog_loads >= 1 and not app.catalog_loading)
        forest = app.forest
        assert forest is not None
        tree = app.screen.query_one(PartitionTree)
        await tree.reveal(forest.find("account_balances").oid)
        await pilot.pause()
        await pilot.press("e")
        await _settle(pilot, lambda: isinstance(app.screen, ExplainScreen))
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


def main() -> int:
    handle = open_demo(progress=lambda msg: print(f"demo: {msg}", file=sys.stderr))
    try:
        asyncio.run(shoot(handle.dsn))
    finally:
        handle.stop()
    for name in FILES:
        print(HERE / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
