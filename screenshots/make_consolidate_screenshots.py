"""Regenerate the consolidation screenshots from the demo database.

    python screenshots/make_consolidate_screenshots.py

Starts (or joins) the demo server with its data laid out around a fixed date
($PGPARTS_DEMO_NOW, 2026-11-21 unless set), opens the console headless at 140x40, puts the cursor
on account_balances, presses c and saves consolidate.svg (status, default selection, plan
preview) and consolidate-confirm.svg (the confirmation dialog) next to this script. Nothing is
applied.
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

from tui.app.app import PgpartsApp  # noqa: E402
from tui.app.confirm import ConfirmModal  # noqa: E402
from tui.app.consolidate_screen import ConsolidateScreen  # noqa: E402
from tui.app.tree_view import PartitionTree  # noqa: E402
from tui.core.config import Config  # noqa: E402
from tui.core.connection import Target  # noqa: E402
from tui.core.demo import open_demo  # noqa: E402

SIZE = (140, 40)
FILES = ("consolidate.svg", "consolidate-confirm.svg")


async def _settle(pilot, predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("the console did not get there in time")
        await pilot.pause(0.05)
    await pilot.pause()


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
        await pilot.press("c")
        await _settle(pilot, lambda: isinstance(app.screen, ConsolidateScreen))
        screen = app.screen
        await _settle(pilot, lambda: screen.loads >= 1 and not screen.planning)
        await pilot.pause(0.3)
        app.save_screenshot(FILES[0], path=str(HERE))
        await pilot.press("A")
        await _settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.pause(0.3)
        app.save_screenshot(FILES[1], path=str(HERE))
        await pilot.press("n")  # nothing is applied
        await pilot.pause()


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
