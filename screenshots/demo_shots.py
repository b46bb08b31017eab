"""What the screenshot scripts share: the demo at a fixed date, the console opened headless on
it at one size, and a wait that fails loudly instead of saving a half-drawn screen."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
# the demo's dates follow this day, so two runs on the same code give the same pictures
os.environ.setdefault("PGPARTS_DEMO_NOW", "2026-11-21")

from tui.app.app import PgpartsApp  # noqa: E402
from tui.app.tree_view import PartitionTree  # noqa: E402
from tui.core.config import Config  # noqa: E402
from tui.core.connection import Target  # noqa: E402
from tui.demo.server import open_demo  # noqa: E402

SIZE = (140, 40)


async def settle(pilot, predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("the console did not get there in time")
        await pilot.pause(0.05)
    await pilot.pause()


@asynccontextmanager
async def console(dsn: str, size: tuple[int, int] = SIZE
                  ) -> AsyncIterator[tuple[PgpartsApp, object]]:
    """The console on the demo, its catalog loaded; load times hidden for stable pictures."""
    app = PgpartsApp(Target(dsn, label="demo"), Config(), read_only=False)
    app.show_load_time = False
    async with app.run_test(size=size) as pilot:
        # the health checks too: their badges and the indexes are read after the tree
        await settle(pilot, lambda: app.catalog_loads >= 1 and not app.catalog_loading
                     and app.findings_loaded)
        assert app.forest is not None
        yield app, pilot


async def open_on(app: PgpartsApp, pilot, table: str, key: str, screen: type) -> None:
    """Put the tree's cursor on `table`, press `key`, and wait until `screen` is shown."""
    assert app.forest is not None
    await app.screen.query_one(PartitionTree).reveal(app.forest.find(table).oid)
    await pilot.pause()
    await pilot.press(key)
    await settle(pilot, lambda: isinstance(app.screen, screen))


def run(shoot: Callable[[str], Awaitable[None]], files: Iterable[str]) -> int:
    handle = open_demo(progress=lambda msg: print(f"demo: {msg}", file=sys.stderr))
    try:
        asyncio.run(shoot(handle.dsn))
    finally:
        handle.stop()
    for name in files:
        print(HERE / name)
    return 0
